"""The config schema: every shipped config validates, problems are all reported with key and line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ft.config import load_config
from ft.errors import FtError

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_config_validates(path):
    loaded = load_config(path)
    assert loaded.config.model.name
    assert path.read_text().startswith("# Run:"), "every config starts with the command that runs it"


def test_all_problems_reported_with_lines(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  nmae: x\ndata:\n  train: t.jsonl\n  max_length: abc\ntraining:\n  bogus: 1\n")
    with pytest.raises(FtError) as err:
        load_config(bad)
    message = str(err.value)
    assert "4 problem(s)" in message
    assert "line 2: model.nmae: unknown key. Did you mean `name`?" in message
    assert "line 5: data.max_length:" in message
    assert "line 7: training.bogus: unknown key" in message
    assert "model.name: required key is missing" in message


def test_override_and_sources(tmp_path):
    loaded = load_config(REPO / "configs/quickstart.yaml", ["training.max_steps=20", "data.messages_column=trace"])
    assert loaded.config.training.max_steps == 20
    assert loaded.config.data.messages_column == "trace"
    assert loaded.sources["training.max_steps"] == "override"
    assert loaded.sources["model.name"] == "file"
    assert "training.seed = 42  (default)" in loaded.describe()
    assert "max_steps: 20  # override" in loaded.to_yaml()


def test_override_wrong_type_named(tmp_path):
    with pytest.raises(FtError) as err:
        load_config(REPO / "configs/quickstart.yaml", ["training.max_steps=many"])
    assert "training.max_steps" in str(err.value)
    assert "(from --set)" in str(err.value)


@pytest.mark.parametrize("text, expected", [
    ("", "the config is empty"),
    ("- a\n- b\n", "must be a mapping of sections"),
    ("model: [unclosed\n", "invalid YAML"),
])
def test_unreadable_configs(tmp_path, text, expected):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(FtError) as err:
        load_config(path)
    assert expected in str(err.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(FtError) as err:
        load_config(tmp_path / "nope.yaml")
    assert "config file not found" in str(err.value)


def test_fsdp_unquoted_off():
    """YAML reads an unquoted `off` as false; `training.fsdp: off` must still mean plain data parallel."""
    from ft.config import Config

    text = "model:\n  name: m\ndata:\n  train: t.jsonl\ntraining:\n  fsdp: off\n"
    assert Config.model_validate(yaml.safe_load(text)).training.fsdp == "off"
