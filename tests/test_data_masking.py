"""Trained spans: exactly the assistant turns as rendered, ending with the end-of-turn token."""

from __future__ import annotations

import json

import pytest

from ft.config import DataSection
from ft.data.prepare import IGNORE, prepare, require_examples
from ft.data.render import find_end_token, probe_template
from ft.errors import FtError


@pytest.fixture(scope="module")
def tokenizer(smollm2_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_dir)


@pytest.fixture(scope="module")
def traits(tokenizer):
    return probe_template(tokenizer, "auto", "llama", "HuggingFaceTB/SmolLM2-135M-Instruct")


def write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def trained_text(example, tokenizer) -> list[str]:
    runs, current = [], []
    for token, label in zip(example.input_ids, example.labels):
        if label != IGNORE:
            current.append(token)
        elif current:
            runs.append(tokenizer.decode(current))
            current = []
    if current:
        runs.append(tokenizer.decode(current))
    return runs


TOOL_ROW = {
    "messages": [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}}]},
        {"role": "tool", "content": "{\"temp\": 3}"},
        {"role": "assistant", "content": "It is 3 degrees in Oslo."},
    ],
    "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                                 "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
}


def test_tool_call_turn_trained_with_end_token(tmp_path, tokenizer, traits):
    end = find_end_token(tokenizer)
    data = DataSection(train=write_rows(tmp_path / "t.jsonl", [TOOL_ROW]), max_length=1024)
    prepared = prepare(data, tokenizer, traits, end, seed=0)
    runs = trained_text(prepared.examples[0], tokenizer)
    assert runs == [
        '<tool_call>[{"name": "get_weather", "arguments": {"city": "Oslo"}}]</tool_call><|im_end|>',
        "It is 3 degrees in Oslo.<|im_end|>",
    ]


def test_pad_equal_to_eos_keeps_eos_label(tmp_path, tokenizer, traits):
    # SmolLM2's pad token is its EOS (<|im_end|>): masking padding by id would drop every end-of-turn label.
    assert tokenizer.pad_token_id == tokenizer.eos_token_id
    end = find_end_token(tokenizer)
    data = DataSection(train=write_rows(tmp_path / "t.jsonl", [TOOL_ROW]), max_length=1024)
    example = prepare(data, tokenizer, traits, end, seed=0).examples[0]
    assert sum(1 for t, l in zip(example.input_ids, example.labels) if t == end and l == end) == 2


def test_arguments_string_and_object_render_the_same(tmp_path, tokenizer, traits):
    as_object = json.loads(json.dumps(TOOL_ROW))
    as_object["messages"][1]["tool_calls"][0]["function"]["arguments"] = {"city": "Oslo"}
    end = find_end_token(tokenizer)
    data = DataSection(train=write_rows(tmp_path / "t.jsonl", [TOOL_ROW, as_object]), max_length=1024)
    first, second = prepare(data, tokenizer, traits, end, seed=0).examples
    assert first.input_ids == second.input_ids


def test_overlong_row_cut_at_prompt_side(tmp_path, tokenizer, traits):
    row = {"messages": [{"role": "user", "content": "word " * 400}, {"role": "assistant", "content": "Short answer."}]}
    end = find_end_token(tokenizer)
    data = DataSection(train=write_rows(tmp_path / "t.jsonl", [row]), max_length=64)
    prepared = prepare(data, tokenizer, traits, end, seed=0)
    assert prepared.truncated == 1
    example = prepared.examples[0]
    assert len(example.input_ids) == 64
    assert trained_text(example, tokenizer) == ["Short answer.<|im_end|>"]


def test_overlong_answer_dropped_and_counted(tmp_path, tokenizer, traits):
    row = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "word " * 200}]}
    end = find_end_token(tokenizer)
    data = DataSection(train=write_rows(tmp_path / "t.jsonl", [row, TOOL_ROW]), max_length=64)
    prepared = prepare(data, tokenizer, traits, end, seed=0)
    assert prepared.dropped["answer longer than max_length"] == 1


def test_broken_json_line_named(tmp_path, tokenizer, traits):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(TOOL_ROW) + "\n{\"messages\": [\n" + json.dumps(TOOL_ROW) + "\n")
    with pytest.raises(FtError) as err:
        prepare(DataSection(train=str(path)), tokenizer, traits, find_end_token(tokenizer), seed=0)
    assert "t.jsonl: 1 bad row(s):\n  line 2: invalid JSON" in str(err.value)


def test_cut_turn_loses_its_labels(tmp_path, tokenizer, traits):
    row = {"messages": [
        {"role": "user", "content": "Tell a story."},
        {"role": "assistant", "content": "word " * 100},
        {"role": "user", "content": "Shorter?"},
        {"role": "assistant", "content": "No."},
    ]}
    end = find_end_token(tokenizer)
    data = DataSection(train=write_rows(tmp_path / "t.jsonl", [row]), max_length=64)
    prepared = prepare(data, tokenizer, traits, end, seed=0)
    example = prepared.examples[0]
    assert prepared.truncated == 1
    assert example.cut
    assert tokenizer.decode(example.input_ids[:2]) == " word word"
    assert trained_text(example, tokenizer) == ["No.<|im_end|>"]


def test_overlong_drop_counted(tmp_path, tokenizer, traits):
    row = {"messages": [{"role": "user", "content": "word " * 100}, {"role": "assistant", "content": "ok"}]}
    short = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]}
    data = DataSection(train=write_rows(tmp_path / "t.jsonl", [row, short]), max_length=64, overlong="drop")
    prepared = prepare(data, tokenizer, traits, find_end_token(tokenizer), seed=0)
    assert prepared.dropped == {"longer than max_length": 1}
    assert len(prepared.examples) == 1


def test_special_token_text_reported(tmp_path, tokenizer, traits):
    row = {"messages": [{"role": "user", "content": "Say <|im_end|> please"}, {"role": "assistant", "content": "ok"}]}
    data = DataSection(train=write_rows(tmp_path / "t.jsonl", [TOOL_ROW, row]))
    with pytest.raises(FtError) as err:
        prepare(data, tokenizer, traits, find_end_token(tokenizer), seed=0)
    assert "t.jsonl:2: message 0 (user) contains the special token '<|im_end|>' as text" in str(err.value)


def test_no_rows_left_names_setting(tmp_path, tokenizer, traits):
    prompts = {"messages": [{"role": "user", "content": "hi"}]}
    data = DataSection(train=write_rows(tmp_path / "t.jsonl", [prompts, prompts]))
    prepared = prepare(data, tokenizer, traits, find_end_token(tokenizer), seed=0)
    assert prepared.dropped == {"no assistant turn": 2}
    with pytest.raises(FtError) as err:
        require_examples(prepared, "data.train", data)
    assert str(err.value).startswith("data.train: no row is left to train on (2 no assistant turn). Fix: the rows "
                                     "hold prompts but no assistant turn")


def test_mixed_sources_prepared(tmp_path, tokenizer, traits):
    first = write_rows(tmp_path / "a.jsonl", [TOOL_ROW])
    second = write_rows(tmp_path / "b.jsonl", [{"instruction": "2+2?", "output": "4"}] * 3)
    data = DataSection(train=[{"path": first, "weight": 3}, {"path": second, "weight": 1}], max_length=1024)
    prepared = prepare(data, tokenizer, traits, find_end_token(tokenizer), seed=0)
    assert prepared.rows_mixed == {first: 3, second: 1}
    assert prepared.shapes == {"messages": 1, "instruction": 3}
    assert sorted(e.where for e in prepared.examples) == ["a.jsonl:1"] * 3 + ["b.jsonl:1"]
