"""`ft submit --emit-script`: a PEP 723 uv script pinned to uv.lock, with the resolved config embedded."""

from __future__ import annotations

import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from fake_hub import run_ft, write_config

tomllib = pytest.importorskip("tomllib")

REPO = Path(__file__).resolve().parents[1]
# The reference regular expression for inline script metadata, from PEP 723.
PEP723_BLOCK = re.compile(r"(?m)^# /// (?P<type>[a-zA-Z0-9-]+)$\s(?P<content>(^#(| .*)$\s)+)^# ///$")


def script_metadata(text: str) -> dict:
    blocks = [match for match in PEP723_BLOCK.finditer(text) if match["type"] == "script"]
    assert len(blocks) == 1
    content = "".join(line[2:] if line.startswith("# ") else line[1:]
                      for line in blocks[0]["content"].splitlines(keepends=True))
    return tomllib.loads(content)


def locked_versions() -> dict[str, set[str]]:
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    versions: dict[str, set[str]] = {}
    for package in lock["package"]:
        versions.setdefault(package["name"], set()).add(package.get("version"))
    return versions


def split_pin(requirement: str) -> tuple[str, str]:
    match = re.match(r"^([A-Za-z0-9._-]+)==([^\s;]+)", requirement)
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match[1]).lower(), match[2]


@pytest.fixture
def emitted(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("FT_HOME", str(tmp_path / "ft-home"))
    config = write_config(tmp_path)
    target = tmp_path / "out" / "train_tiny.py"
    target.parent.mkdir()
    result = run_ft(capsys, "submit", str(config), "--emit-script", str(target))
    assert result.code == 0, result.err
    return target, result


def test_header_parses(emitted):
    target, result = emitted
    metadata = script_metadata(target.read_text())
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert metadata["requires-python"] == pyproject["project"]["requires-python"]
    assert "ft==0.1.0" in metadata["dependencies"]
    assert metadata["tool"]["uv"]["override-dependencies"] == pyproject["tool"]["uv"]["override-dependencies"]
    wheel = metadata["tool"]["uv"]["sources"]["ft"]["path"]
    assert wheel == "ft-0.1.0-py3-none-any.whl"
    assert (target.parent / wheel).is_file()
    assert f"uv run {target}" in result.out


def test_pins_equal_lock(emitted):
    target, _ = emitted
    dependencies = [item for item in script_metadata(target.read_text())["dependencies"] if item != "ft==0.1.0"]
    locked = locked_versions()
    pinned: dict[str, set[str]] = {}
    for requirement in dependencies:
        name, version = split_pin(requirement)
        assert version in locked.get(name, set()), f"{requirement} is not in uv.lock"
        pinned.setdefault(name, set()).add(version)
    for name in ("torch", "transformers", "peft", "accelerate", "datasets", "huggingface-hub", "pydantic"):
        assert pinned[name] == locked[name], name
    assert "pytest" not in pinned  # the dev group stays out


def test_embedded_config_loads(emitted, tmp_path):
    from ft.config import load_config

    target, _ = emitted
    namespace = runpy.run_path(str(target), run_name="emitted")
    copy = tmp_path / "embedded.yaml"
    copy.write_text(namespace["CONFIG_YAML"])
    loaded = load_config(copy)
    assert loaded.config.data.train == str(tmp_path / "rows.jsonl")
    assert loaded.config.training.max_steps == 2
    assert loaded.config.output.dir == str(tmp_path / "runs")


def test_ft_source_replaces_wheel(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("FT_HOME", str(tmp_path / "ft-home"))
    target = tmp_path / "train.py"
    result = run_ft(capsys, "submit", str(write_config(tmp_path)), "--emit-script", str(target),
                    "--ft-source", "git+https://example.invalid/ft.git@v0.1.0")
    assert result.code == 0, result.err
    metadata = script_metadata(target.read_text())
    assert "ft @ git+https://example.invalid/ft.git@v0.1.0" in metadata["dependencies"]
    assert "sources" not in metadata["tool"]["uv"]
    assert not list(tmp_path.glob("*.whl"))


def test_script_hands_config_to_train(tmp_path, capsys, monkeypatch):
    """The script body, run by this environment's Python as `uv run` runs it once the pins are installed, writes the
    embedded config to a file and hands it to `ft train`: an override that the schema rejects shows both."""
    monkeypatch.setenv("FT_HOME", str(tmp_path / "ft-home"))
    target = tmp_path / "train_tiny.py"
    assert run_ft(capsys, "submit", str(write_config(tmp_path)), "--emit-script", str(target)).code == 0
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    result = subprocess.run([sys.executable, str(target), "--set", "training.max_steps=none-at-all"], cwd=tmp_path,
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    assert re.search(r"error: \S*ft-script-\w+/tiny\.yaml: 1 problem", result.stderr), result.stderr
    assert "training.max_steps: " in result.stderr
    assert "(from --set)" in result.stderr


def test_stale_lock_rejected(tmp_path):
    from ft.errors import FtError
    from ft.jobs.pins import export_requirements

    for name in ("pyproject.toml", "uv.lock", "README.md"):
        (tmp_path / name).write_text((REPO / name).read_text())
    assert "pyyaml==" in export_requirements(tmp_path).lower()
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"pyyaml>=6.0",', '"pyyaml>=6.0",\n    "ft-package-not-locked>=1",'))
    with pytest.raises(FtError, match="does not match pyproject.toml"):
        export_requirements(tmp_path)
