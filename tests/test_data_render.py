"""Chat-template handling: tool calls by the template or in a style, role transforms, spans without markers."""

from __future__ import annotations

import json
import re

import pytest

from ft.config import DataSection
from ft.data.prepare import IGNORE, prepare
from ft.data.render import find_end_token, probe_template
from ft.toolcalls import parse_tool_calls

# Gemma-3-like: no system role, user and assistant must alternate, tools and tool_calls ignored, content trimmed.
GEMMA_LIKE = r"""
{%- if messages[0]['role'] == 'system' -%}{{ raise_exception('System role not supported') }}{%- endif -%}
{%- for message in messages -%}
{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}
{%- endif -%}
{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}
{{ '<|im_start|>' + role + '\n' + message['content'] | trim + '<|im_end|>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}{{ '<|im_start|>model\n' }}{%- endif -%}
"""

# Qwen-like: tools in a system block, tool calls written by the template, tool results as user turns.
QWEN_LIKE = r"""
{%- if tools -%}{{ '<|im_start|>system\n<tools>' }}{%- for tool in tools -%}{{ '\n' + tool | tojson }}{%- endfor -%}
{{ '\n</tools><|im_end|>\n' }}{%- endif -%}
{%- for message in messages -%}
{%- if message.role == 'assistant' -%}
{{ '<|im_start|>assistant\n' + message.content }}
{%- for call in message.tool_calls or [] -%}
{{ '<tool_call>\n{"name": "' + call.function.name + '", "arguments": ' + call.function.arguments | tojson + '}\n</tool_call>' }}
{%- endfor -%}
{{ '<|im_end|>\n' }}
{%- elif message.role == 'tool' -%}
{{ '<|im_start|>user\n<tool_response>\n' + message.content + '\n</tool_response><|im_end|>\n' }}
{%- else -%}
{{ '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' }}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\n' }}{%- endif -%}
"""

# Mistral-like: the tool list goes before the last user turn, so earlier turns render differently later on.
MISTRAL_LIKE = r"""
{%- set ns = namespace(last_user=-1) -%}
{%- for message in messages -%}{%- if message.role == 'user' -%}{%- set ns.last_user = loop.index0 -%}{%- endif -%}{%- endfor -%}
{%- for message in messages -%}
{%- if message.role == 'user' -%}
{%- if tools and loop.index0 == ns.last_user -%}{{ '[AVAILABLE_TOOLS]' + tools | tojson + '[/AVAILABLE_TOOLS]' }}{%- endif -%}
{{ '[INST]' + message.content + '[/INST]\n' }}
{%- elif message.role == 'assistant' -%}
{%- if message.tool_calls -%}{{ '[TOOL_CALLS]' + message.tool_calls | map(attribute='function') | list | tojson }}{%- endif -%}
{{ message.content + '<|im_end|>' }}
{%- elif message.role == 'tool' -%}{{ '[TOOL_RESULTS]' + message.content + '[/TOOL_RESULTS]' }}
{%- else -%}{{ message.content + '\n\n' }}
{%- endif -%}
{%- endfor -%}
"""

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]


def call(name: str, city: str) -> dict:
    return {"type": "function", "function": {"name": name, "arguments": {"city": city}}}


TWO_CALL_ROW = {
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather and time in Oslo?"},
        {"role": "assistant", "content": "", "tool_calls": [call("get_weather", "Oslo"), call("get_time", "Oslo")]},
        {"role": "tool", "content": "3 C"},
        {"role": "tool", "content": "14:00"},
        {"role": "assistant", "content": "It is 3 degrees at 14:00."},
    ],
    "tools": TOOLS,
}
TWO_USER_ROW = {
    "messages": [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": "", "tool_calls": [call("get_weather", "Oslo")]},
    ],
    "tools": TOOLS,
}


@pytest.fixture(scope="module")
def base_tokenizer(smollm2_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_dir)


@pytest.fixture
def tokenizer(base_tokenizer):
    original = base_tokenizer.chat_template
    yield base_tokenizer
    base_tokenizer.chat_template = original


def prepared_runs(tmp_path, tokenizer, rows, style="auto", model_type="llama",
                  name="HuggingFaceTB/SmolLM2-135M-Instruct", **data_keys):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    traits = probe_template(tokenizer, style, model_type, name)
    data = DataSection(train=str(path), max_length=2048, **data_keys)
    prepared = prepare(data, tokenizer, traits, find_end_token(tokenizer), seed=0)
    return traits, prepared, [trained_runs(example, tokenizer) for example in prepared.examples]


def trained_runs(example, tokenizer) -> list[str]:
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


def test_smollm2_template_has_no_generation_markers(tmp_path, tokenizer):
    assert re.search(r"{%-?\s*generation\s*-?%}", tokenizer.chat_template) is None
    _, _, runs = prepared_runs(tmp_path, tokenizer, [TWO_USER_ROW])
    assert runs == [["Hello!<|im_end|>",
                     '<tool_call>[{"name": "get_weather", "arguments": {"city": "Oslo"}}]</tool_call><|im_end|>']]


def test_gemma_like_template_transforms(tmp_path, tokenizer):
    tokenizer.chat_template = GEMMA_LIKE
    traits, prepared, runs = prepared_runs(tmp_path, tokenizer, [TWO_CALL_ROW], model_type="gemma3_text",
                                           name="google/gemma-3-1b-it")
    assert (traits.accepts_system, traits.accepts_tool_role, traits.accepts_repeated_role) == (False, False, False)
    assert traits.style == "pythonic"
    assert runs == [['[get_weather(city="Oslo"), get_time(city="Oslo")]<|im_end|>',
                     "It is 3 degrees at 14:00.<|im_end|>"]]
    text = prepared.texts[0]
    assert text.startswith("<|im_start|>user\nBe brief.\n\n")
    assert "<tool_response>\n3 C\n</tool_response>\n\n<tool_response>\n14:00\n</tool_response>" in text
    assert text.count("<|im_start|>user") == 2


def test_template_written_tool_calls(tmp_path, tokenizer):
    tokenizer.chat_template = QWEN_LIKE
    traits, prepared, runs = prepared_runs(tmp_path, tokenizer, [TWO_USER_ROW], model_type="qwen2", name="Qwen/Qwen2.5-0.5B")
    assert traits.style == "template"
    assert traits.renders_tools
    assert runs == [["Hello!<|im_end|>",
                     '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call><|im_end|>']]
    assert prepared.texts[0].startswith('<|im_start|>system\n<tools>\n{"type": "function"')


def test_tool_list_moving_between_turns(tmp_path, tokenizer):
    tokenizer.chat_template = MISTRAL_LIKE
    traits, prepared, runs = prepared_runs(tmp_path, tokenizer, [TWO_USER_ROW], model_type="mistral",
                                           name="mistralai/Mistral-7B-Instruct-v0.3")
    assert traits.style == "template"
    assert runs == [["Hello!<|im_end|>",
                     '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Oslo"}}]<|im_end|>']]
    assert "[INST]Hi[/INST]\nHello!<|im_end|>[AVAILABLE_TOOLS]" in prepared.texts[0]


def test_configured_style_parses_back(tmp_path, tokenizer):
    traits, _, runs = prepared_runs(tmp_path, tokenizer, [TWO_CALL_ROW], style="hermes")
    assert traits.style == "hermes"
    call_turn = runs[0][0].removesuffix("<|im_end|>")
    assert call_turn.startswith("<tool_call>\n{")
    parsed = parse_tool_calls(call_turn)
    assert parsed.style == "hermes"
    assert [(c.name, c.arguments) for c in parsed.calls] == [("get_weather", {"city": "Oslo"}), ("get_time", {"city": "Oslo"})]


def test_template_style_needs_template_support(tokenizer):
    with pytest.raises(ValueError, match="model.tool_call_style is `template` but this chat template does not render"):
        probe_template(tokenizer, "template", "llama", "HuggingFaceTB/SmolLM2-135M-Instruct")


def test_opening_assistant_turn_not_trained(tmp_path, tokenizer):
    row = {"messages": [{"role": "assistant", "content": "Welcome!"}, {"role": "user", "content": "Hi"},
                        {"role": "assistant", "content": "Hello."}]}
    _, prepared, runs = prepared_runs(tmp_path, tokenizer, [row])
    assert runs == [["Hello.<|im_end|>"]]
    assert "Welcome!" in prepared.texts[0]


def test_last_assistant_and_all(tmp_path, tokenizer):
    _, _, last = prepared_runs(tmp_path, tokenizer, [TWO_USER_ROW], train_on="last_assistant")
    assert last == [['<tool_call>[{"name": "get_weather", "arguments": {"city": "Oslo"}}]</tool_call><|im_end|>']]
    _, prepared, everything = prepared_runs(tmp_path, tokenizer, [TWO_USER_ROW], train_on="all")
    example = prepared.examples[0]
    assert example.labels == example.input_ids
    assert everything == [[prepared.texts[0]]]


def test_plain_text_trained_whole_with_eos(tmp_path, tokenizer):
    _, prepared, runs = prepared_runs(tmp_path, tokenizer, [{"text": "Once upon a time."}])
    assert runs == [["Once upon a time.<|im_end|>"]]
    assert prepared.shapes == {"text": 1}


def test_token_joining_prompt_and_answer_trained(tmp_path, tokenizer):
    """A token that holds the last prompt character and the first answer characters is trained.

    It carries the start of the answer (here `[TOOL_CALLS`), so leaving it out would never teach the model to
    begin a call. The same text is what tokenizing the whole conversation gives, as transformers-based trainers do.
    """
    tokenizer.chat_template = MISTRAL_LIKE.replace("[/INST]\\n", "[/INST]")
    _, _, runs = prepared_runs(tmp_path, tokenizer, [TWO_USER_ROW], model_type="mistral", name="mistral")
    assert runs[0][1].startswith("][TOOL_CALLS]")
