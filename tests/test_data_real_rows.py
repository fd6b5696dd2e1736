"""Every row of real tool-use data sets: the trained tokens are exactly the assistant turns and nothing else.

The expected text is built independently of the masking code: for each assistant message after the template
transforms (tool calls written into the text), its content followed by `<|im_end|>`, which is how SmolLM2's
ChatML template closes a turn. The trained tokens of each row, decoded run by run, must equal that list.
"""

from __future__ import annotations

import pytest

from conftest import shared_data
from ft.config import DataSection
from ft.data.prepare import IGNORE, prepare
from ft.data.render import find_end_token, prepare_messages, probe_template
from ft.data.shapes import to_conversation
from ft.data.sources import read_source

END = "<|im_end|>"


@pytest.fixture(scope="module")
def tokenizer(smollm2_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_dir)


@pytest.fixture(scope="module")
def traits(tokenizer):
    return probe_template(tokenizer, "auto", "llama", "HuggingFaceTB/SmolLM2-135M-Instruct")


def trained_runs(example) -> list[list[int]]:
    runs, current = [], []
    for token, label in zip(example.input_ids, example.labels):
        if label != IGNORE:
            current.append(token)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return runs


def expected_turns(path: str, traits) -> dict[str, list[str]]:
    """Return, per row location, the text of each assistant turn as the template receives it, plus END."""
    expected = {}
    for raw in read_source(path, "train"):
        conversation = to_conversation(raw.where, raw.row, None, "tools")
        messages, _ = prepare_messages(conversation, traits)
        expected[raw.where] = [m["content"] + END for i, m in enumerate(messages) if m["role"] == "assistant" and i > 0]
    return expected


@pytest.mark.parametrize("relative", [
    "tool-use-finetuning/train.jsonl",
    "glaive-toolcall/en.json",
    "glaive-toolcall/zh.json",
])
def test_trained_tokens_are_assistant_turns(relative, tokenizer, traits):
    path = str(shared_data(relative))
    # Long enough that no row is cut: the longest glaive row is 11,632 tokens, the longest seed row 5,211.
    data = DataSection(train=path, max_length=16384)
    prepared = prepare(data, tokenizer, traits, find_end_token(tokenizer), seed=0)
    expected = expected_turns(path, traits)

    assert prepared.truncated == 0
    assert sum(prepared.dropped.values()) == 0
    assert len(prepared.examples) == len(expected)
    runs = [trained_runs(example) for example in prepared.examples]
    decoded = tokenizer.batch_decode([run for row in runs for run in row], clean_up_tokenization_spaces=False)
    position = 0
    mismatched = []
    for example, row_runs in zip(prepared.examples, runs):
        got = decoded[position:position + len(row_runs)]
        position += len(row_runs)
        if got != expected[example.where]:
            mismatched.append(example.where)
    assert mismatched == [], f"{len(mismatched)} rows differ, first {mismatched[0]}"


def test_glaive_function_calls_trained_as_calls(tokenizer, traits):
    path = str(shared_data("glaive-toolcall/en.json"))
    prepared = prepare(DataSection(train=path, max_length=16384), tokenizer, traits, find_end_token(tokenizer), seed=0)
    with_calls = [e for e in prepared.examples if e.tool_calls]
    assert len(with_calls) == 153
    first = with_calls[0]
    texts = tokenizer.batch_decode(trained_runs(first), clean_up_tokenization_spaces=False)
    assert any(text.startswith('<tool_call>[{"name": ') and text.endswith(f"]</tool_call>{END}") for text in texts)
