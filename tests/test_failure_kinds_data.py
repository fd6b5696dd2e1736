"""The data-side kinds of fine-tuning failure, each shown on its smallest input with the expected outcome.

Padding masked by id (3), assistant-only loss without template markers (4), truncation that removes every trained
token (5), no chat template or a separate end-of-turn token (6), unrecognised shapes (12), and tool-call arguments
that are JSON text in one row and an object in the next (13).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ft.config import DataSection, load_config
from ft.data.collate import PaddedCollator
from ft.data.prepare import IGNORE, prepare
from ft.data.render import find_end_token, probe_template
from ft.errors import FtError

REPO = Path(__file__).resolve().parents[1]
ROW = {
    "messages": [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
        {"role": "tool", "content": '{"temp": 3}'},
        {"role": "assistant", "content": "It is 3 degrees."},
    ],
}


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def traits(tokenizer):
    return probe_template(tokenizer, "smollm2", "llama", "tiny")


def write_rows(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def prepared(tmp_path, tokenizer, traits, rows, strict=True, **data_keys):
    data = DataSection(train=write_rows(tmp_path / "t.jsonl", rows), **data_keys)
    return prepare(data, tokenizer, traits, find_end_token(tokenizer), seed=0, strict=strict)


def write_config(tmp_path: Path, model_dir: Path, train: str, extra: str = "") -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(f"""model:
  name: {model_dir}
  tool_call_style: smollm2
data:
  train: {train}
  max_rows: 4
  max_length: 512
{extra}training:
  max_steps: 2
  batch_size: 2
  warmup_ratio: 0.0
output:
  dir: {tmp_path / 'runs'}
  run_name: kinds
""")
    return path


def test_kind3_end_token_label_survives_padding(tmp_path, tokenizer, traits):
    assert tokenizer.pad_token_id == tokenizer.eos_token_id
    example = prepared(tmp_path, tokenizer, traits, [ROW], max_length=512).examples[0]
    end = find_end_token(tokenizer)
    trained_ends = [i for i, label in enumerate(example.labels) if label == end]
    assert len(trained_ends) == 2
    batch = PaddedCollator(tokenizer.pad_token_id)([
        {"input_ids": example.input_ids, "labels": example.labels},
        {"input_ids": example.input_ids + [end] * 5, "labels": example.labels + [IGNORE] * 5},
    ])
    assert [batch["labels"][0, i].item() for i in trained_ends] == [end, end]
    assert batch["attention_mask"][0].sum().item() == len(example.input_ids)


def test_kind4_spans_without_generation_markers(tmp_path, tokenizer, traits):
    assert "generation %}" not in tokenizer.chat_template
    example = prepared(tmp_path, tokenizer, traits, [ROW], max_length=512).examples[0]
    trained = [tokenizer.decode([t for t, l in zip(example.input_ids, example.labels) if l != IGNORE])]
    assert trained == ['<tool_call>[{"name": "get_weather", "arguments": {"city": "Oslo"}}]</tool_call><|im_end|>'
                       "It is 3 degrees.<|im_end|>"]


def test_kind4_nothing_trained_never_starts(tmp_path, tiny_model_dir):
    from ft.train import run_train

    rows = [{"messages": [{"role": "user", "content": f"question {i}"}]} for i in range(3)]
    config = write_config(tmp_path, tiny_model_dir, write_rows(tmp_path / "prompts.jsonl", rows))
    with pytest.raises(FtError) as err:
        run_train(load_config(config))
    assert "data.train: no row is left to train on (3 no assistant turn)" in str(err.value)
    assert not (tmp_path / "runs").exists()


def test_kind5_truncation_drops_and_counts(tmp_path, tokenizer, traits):
    long_answer = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "word " * 300}]}
    result = prepared(tmp_path, tokenizer, traits, [long_answer, ROW], max_length=64)
    assert result.dropped == {"answer longer than max_length": 1}
    assert len(result.examples) == 1


def test_kind5_all_rows_cut_away_stops(tmp_path, tiny_model_dir):
    from ft.train import run_train

    rows = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "word " * 300}]}] * 2
    config = write_config(tmp_path, tiny_model_dir, write_rows(tmp_path / "long.jsonl", rows))
    with pytest.raises(FtError) as err:
        run_train(load_config(config, ["data.max_length=64"]))
    assert "no row is left to train on (2 answer longer than max_length)" in str(err.value)
    assert "raise data.max_length (now 64)" in str(err.value)
    assert not (tmp_path / "runs").exists()


def copy_model(source: Path, target: Path, tokenizer_changes: dict, drop_template: bool = False) -> Path:
    shutil.copytree(source, target)
    if drop_template:
        (target / "chat_template.jinja").unlink()
    config_path = target / "tokenizer_config.json"
    tokenizer_config = json.loads(config_path.read_text())
    tokenizer_config.update(tokenizer_changes)
    tokenizer_config.pop("chat_template", None) if drop_template else None
    config_path.write_text(json.dumps(tokenizer_config))
    return target


def test_kind6_no_chat_template_asks_for_one(tmp_path, tiny_model_dir):
    from ft.train import prepare_run

    base = copy_model(tiny_model_dir, tmp_path / "base", {}, drop_template=True)
    config = write_config(tmp_path, base, str(REPO / "data/quickstart/train.jsonl"))
    with pytest.raises(FtError) as err:
        prepare_run(load_config(config))
    assert "has no chat template. Set model.chat_template" in str(err.value)

    template = tmp_path / "chatml.jinja"
    template.write_text((tiny_model_dir / "chat_template.jinja").read_text())
    run = prepare_run(load_config(config, [f"model.chat_template={template}"]))
    assert len(run.train.examples) == 4


@pytest.fixture(scope="module")
def trained_with_separate_eos(tmp_path_factory, tiny_model_dir) -> Path:
    """Train 2 steps on a model whose EOS is `<|endoftext|>` while its template ends turns with `<|im_end|>`."""
    from ft.train import run_train

    tmp_path = tmp_path_factory.mktemp("eos")
    model = copy_model(tiny_model_dir, tmp_path / "base", {"eos_token": "<|endoftext|>"})
    for name in ("config.json", "generation_config.json"):
        values = json.loads((model / name).read_text())
        values["eos_token_id"] = 0
        (model / name).write_text(json.dumps(values))
    config = write_config(tmp_path, model, str(REPO / "data/quickstart/train.jsonl"))
    return run_train(load_config(config))


def test_kind6_end_token_in_generation_config(trained_with_separate_eos):
    generation = json.loads((trained_with_separate_eos / "adapter" / "generation_config.json").read_text())
    assert generation["eos_token_id"] == 2
    saved = json.loads((trained_with_separate_eos / "adapter" / "ft_model.json").read_text())
    assert saved["end_token_id"] == 2


def test_kind6_end_token_in_saved_tokenizer(trained_with_separate_eos):
    tokenizer_config = json.loads((trained_with_separate_eos / "adapter" / "tokenizer_config.json").read_text())
    assert tokenizer_config["eos_token"] == "<|im_end|>"


def test_kind12_sharegpt_recognised(tmp_path, tokenizer, traits):
    row = {"conversations": [{"from": "human", "value": "Weather in Oslo?"},
                             {"from": "function_call", "value": '{"name": "get_weather", "arguments": {"city": "Oslo"}}'},
                             {"from": "observation", "value": '{"temp": 3}'},
                             {"from": "gpt", "value": "It is 3 degrees."}]}
    sharegpt = prepared(tmp_path, tokenizer, traits, [row], max_length=512)
    openai = prepared(tmp_path, tokenizer, traits, [ROW], max_length=512)
    assert sharegpt.shapes == {"sharegpt": 1}
    assert sharegpt.examples[0].input_ids == openai.examples[0].input_ids
    assert sharegpt.examples[0].labels == openai.examples[0].labels


def test_kind12_unknown_shape_lists_columns(tmp_path, tokenizer, traits):
    with pytest.raises(FtError) as err:
        prepared(tmp_path, tokenizer, traits, [{"query": "q", "reply": "r"}])
    message = str(err.value)
    assert "data.train: 1 row(s) cannot be used:\n  t.jsonl:1: unrecognised shape: columns are ['query', 'reply']" in message
    assert "data.columns" in message


def test_kind13_string_and_object_arguments_same_tokens(tmp_path, tokenizer, traits):
    as_object = json.loads(json.dumps(ROW))
    as_object["messages"][1]["tool_calls"][0]["function"]["arguments"] = {"city": "Oslo"}
    first, second = prepared(tmp_path, tokenizer, traits, [ROW, as_object], max_length=512).examples
    assert first.input_ids == second.input_ids


def test_kind13_malformed_arguments_named_with_row(tmp_path, tokenizer, traits):
    broken = json.loads(json.dumps(ROW))
    broken["messages"][1]["tool_calls"][0]["function"]["arguments"] = '{"city": Oslo}'
    with pytest.raises(FtError) as err:
        prepared(tmp_path, tokenizer, traits, [ROW, broken])
    message = str(err.value)
    assert "t.jsonl:2: message 1: invalid tool call: tool call 0 (get_weather): arguments are not valid JSON" in message
