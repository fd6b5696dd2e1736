from __future__ import annotations

import json
from pathlib import Path

import pytest

from ft.toolcalls import (
    STYLES,
    ParsedCalls,
    ToolCall,
    default_style,
    format_tool_calls,
    format_tools_prompt,
    normalize_tool_calls,
    parse_tool_calls,
)

DATA = Path("../shared/data")
GUIDE_TEST = DATA / "tool-use-finetuning" / "test.jsonl"
GLAIVE = DATA / "glaive-toolcall"

WEATHER = ToolCall(
    "get_weather",
    {
        "city": "北京",
        "units": {"temperature": "celsius", "wind": ["m/s", 1.5]},
        "days": 3,
        "alerts": True,
        "note": None,
        "quote": 'say "hi"\nnow',
    },
)
FACTORIAL = ToolCall("math.factorial", {"n": 5})
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "City name."}},
            "required": ["city"],
        },
    },
}


def _skip_without(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"{path} not found: the shared data folder is not next to the repository")


# ---------------------------------------------------------------------------------------------------------------
# normalize_tool_calls


def test_normalize_string_and_object_arguments_equal():
    as_string = normalize_tool_calls(
        [{"type": "function", "function": {"name": "f", "arguments": '{"a": 1, "b": {"c": "是"}}'}}]
    )
    as_object = normalize_tool_calls([{"name": "f", "arguments": {"a": 1, "b": {"c": "是"}}}])

    assert as_string == as_object
    assert as_string == [ToolCall("f", {"a": 1, "b": {"c": "是"}})]


def test_normalize_accepts_every_key_spelling():
    raw = [
        {"name": "a", "parameters": {"x": 1}},
        {"tool_name": "b", "args": {"y": 2}},
        {"name": "c", "arguments": None},
        {"name": "d", "arguments": ""},
        {"name": "e"},
        {"type": "function", "function": {"name": "f", "arguments": {"z": 3}}},
    ]

    calls = normalize_tool_calls(raw)

    assert calls == [
        ToolCall("a", {"x": 1}),
        ToolCall("b", {"y": 2}),
        ToolCall("c", {}),
        ToolCall("d", {}),
        ToolCall("e", {}),
        ToolCall("f", {"z": 3}),
    ]
    assert normalize_tool_calls(None) == []


def test_normalize_invalid_json_message():
    bad = '{"city": "Paris" "days": 3}'

    with pytest.raises(ValueError) as caught:
        normalize_tool_calls([{"name": "ok", "arguments": {}}, {"name": "get_weather", "arguments": bad}])

    message = str(caught.value)
    assert message.startswith("tool call 1 (get_weather): arguments are not valid JSON")
    assert "{\"city\": \"Paris\" \"days\"" in message
    assert "expected a JSON object" in message


def test_normalize_message_cuts_long_value():
    bad = "{" + "x" * 200

    with pytest.raises(ValueError) as caught:
        normalize_tool_calls([{"name": "f", "arguments": bad}])

    message = str(caught.value)
    assert "{" + "x" * 59 + "..." in message
    assert "x" * 61 not in message


def test_normalize_rejects_non_object_arguments():
    with pytest.raises(ValueError, match=r"arguments must be a JSON object, got list '\[1, 2\]'"):
        normalize_tool_calls([{"name": "f", "arguments": "[1, 2]"}])
    with pytest.raises(ValueError, match="arguments must be a JSON object or a string containing one, got int"):
        normalize_tool_calls([{"name": "f", "arguments": 7}])


def test_normalize_rejects_missing_name():
    with pytest.raises(ValueError, match='tool call 0: missing function name, expected a "name" string'):
        normalize_tool_calls([{"arguments": {}}])
    with pytest.raises(ValueError, match="tool call 0: expected a JSON object, got 'f'"):
        normalize_tool_calls(["f"])


# ---------------------------------------------------------------------------------------------------------------
# format_tool_calls


EXPECTED_FORMATS = {
    "smollm2": '<tool_call>[{"name": "f", "arguments": {"a": 1}}, {"name": "g", "arguments": {}}]</tool_call>',
    "hermes": '<tool_call>\n{"name": "f", "arguments": {"a": 1}}\n</tool_call>\n'
    '<tool_call>\n{"name": "g", "arguments": {}}\n</tool_call>',
    "guide": '<tool_call>{"tool_name": "f", "args": {"a": 1}}</tool_call>\n'
    '<tool_call>{"tool_name": "g", "args": {}}</tool_call>',
    "llama": '{"name": "f", "parameters": {"a": 1}}\n{"name": "g", "parameters": {}}',
    "mistral": '[TOOL_CALLS] [{"name": "f", "arguments": {"a": 1}}, {"name": "g", "arguments": {}}]',
    "pythonic": "[f(a=1), g()]",
}


@pytest.mark.parametrize("style", STYLES)
def test_format_exact_text(style):
    calls = [ToolCall("f", {"a": 1}), ToolCall("g", {})]

    assert format_tool_calls(calls, style) == EXPECTED_FORMATS[style]


def test_format_pythonic_literals():
    call = ToolCall("math.f", {"s": "北京 \"q\"", "b": False, "n": None, "x": -2.5, "l": [1, {"k": True}]})

    assert format_tool_calls([call], "pythonic") == '[math.f(s="北京 \\"q\\"", b=False, n=None, x=-2.5, l=[1, {"k": True}])]'


def test_format_accepts_raw_entries_and_empty():
    raw = [{"type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}]

    assert format_tool_calls(raw, "hermes") == '<tool_call>\n{"name": "f", "arguments": {"a": 1}}\n</tool_call>'
    assert format_tool_calls([], "hermes") == ""


def test_format_rejects_unknown_style():
    with pytest.raises(ValueError, match="unknown tool call style 'xml', expected one of: smollm2, hermes"):
        format_tool_calls([FACTORIAL], "xml")


def test_format_pythonic_rejects_unwritable_calls():
    with pytest.raises(ValueError, match="argument name 'first-name' of f is not a Python identifier"):
        format_tool_calls([ToolCall("f", {"first-name": "a"})], "pythonic")
    with pytest.raises(ValueError, match="function name 'get-weather' is not a dotted Python name"):
        format_tool_calls([ToolCall("get-weather", {})], "pythonic")
    with pytest.raises(ValueError, match="non-finite number nan"):
        format_tool_calls([ToolCall("f", {"x": float("nan")})], "pythonic")


# ---------------------------------------------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize("style", STYLES)
def test_round_trip_every_style(style):
    calls = [WEATHER, FACTORIAL]

    text = format_tool_calls(calls, style)
    parsed = parse_tool_calls(text)

    assert "北京" in text
    assert parsed.calls == calls
    assert parsed.malformed is False
    assert parsed.style == style


@pytest.mark.parametrize("style", STYLES)
def test_round_trip_inside_prose(style):
    text = "Let me look that up.\n" + format_tool_calls([WEATHER], style) + "\n"

    parsed = parse_tool_calls(text)

    assert parsed.calls == [WEATHER]
    assert parsed.malformed is False
    assert parsed.style == style


# ---------------------------------------------------------------------------------------------------------------
# parse_tool_calls on messy output


def test_parse_plain_text_has_no_call():
    for text in ["The capital of France is Paris.", "", "See [Note(s)] and {braces}.", '{"name": "Bob", "age": 3}']:
        assert parse_tool_calls(text) == ParsedCalls([], False, None)


def test_parse_code_fence():
    text = 'Here you go:\n```json\n{"name": "get_time", "arguments": {"zone": "UTC"}}\n```'

    assert parse_tool_calls(text) == ParsedCalls([ToolCall("get_time", {"zone": "UTC"})], False, "json")


def test_parse_think_block_is_ignored():
    text = (
        '<think>Maybe <tool_call>{"name": "wrong", "arguments": {}}</tool_call> or not.</think>\n'
        '<tool_call>\n{"name": "right", "arguments": {"a": 1}}\n</tool_call>'
    )

    assert parse_tool_calls(text) == ParsedCalls([ToolCall("right", {"a": 1})], False, "hermes")


def test_parse_think_opened_in_prompt():
    text = 'I should call it.</think>\n\n<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>'

    assert parse_tool_calls(text).calls == [ToolCall("f", {})]


def test_parse_unclosed_think_has_no_call():
    text = '<think>I will call <tool_call>{"name": "f", "arguments": {}}'

    assert parse_tool_calls(text) == ParsedCalls([], False, None)


def test_parse_cut_off_block_is_malformed():
    text = 'Sure.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Par'

    assert parse_tool_calls(text) == ParsedCalls([], True, "hermes")


def test_parse_missing_close_tag_with_complete_json():
    text = '<tool_call>\n{"name": "f", "arguments": {"a": [1, 2]}}\n'

    assert parse_tool_calls(text) == ParsedCalls([ToolCall("f", {"a": [1, 2]})], False, "hermes")


def test_parse_cut_off_second_block_keeps_first():
    text = '<tool_call>{"name": "f", "arguments": {}}</tool_call>\n<tool_call>{"name": "g", "argu'

    assert parse_tool_calls(text) == ParsedCalls([ToolCall("f", {})], True, "hermes")


def test_parse_single_quoted_dict():
    text = "<tool_call>{'name': 'f', 'arguments': {'city': \"O'Hare\", 'flag': true, 'none': null}}</tool_call>"

    parsed = parse_tool_calls(text)

    assert parsed.calls == [ToolCall("f", {"city": "O'Hare", "flag": True, "none": None})]
    assert parsed.malformed is False


def test_parse_arguments_as_json_string():
    text = '<tool_call>{"name": "f", "arguments": "{\\"a\\": 1}"}</tool_call>'

    assert parse_tool_calls(text).calls == [ToolCall("f", {"a": 1})]


def test_parse_invalid_arguments_string_is_malformed():
    text = '<tool_call>{"name": "f", "arguments": "{a: 1"}</tool_call>'

    assert parse_tool_calls(text) == ParsedCalls([], True, "hermes")


def test_parse_openai_tool_calls_object():
    text = json.dumps(
        {
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": "é"}'}},
                {"id": "call_2", "type": "function", "function": {"name": "g", "arguments": {}}},
            ]
        }
    )

    assert parse_tool_calls(text) == ParsedCalls([ToolCall("f", {"a": "é"}), ToolCall("g", {})], False, "openai")


def test_parse_bare_json_list():
    text = '[{"name": "f", "arguments": {"a": 1}}, {"name": "g", "arguments": {"b": 2}}]'

    assert parse_tool_calls(text) == ParsedCalls([ToolCall("f", {"a": 1}), ToolCall("g", {"b": 2})], False, "json")


def test_parse_cut_off_llama_json_is_malformed():
    text = '{"name": "f", "parameters": {"a": '

    assert parse_tool_calls(text) == ParsedCalls([], True, None)


def test_parse_mistral_without_space():
    text = '[TOOL_CALLS][{"name": "f", "arguments": {"a": 1}, "id": "abcDEF123"}]'

    assert parse_tool_calls(text) == ParsedCalls([ToolCall("f", {"a": 1})], False, "mistral")


def test_parse_cut_off_mistral_is_malformed():
    assert parse_tool_calls('[TOOL_CALLS] [{"name": "f", "argu') == ParsedCalls([], True, "mistral")


def test_parse_pythonic_dotted_name():
    text = "I will compute it. [math.factorial(number=5)] Done."

    assert parse_tool_calls(text) == ParsedCalls([ToolCall("math.factorial", {"number": 5})], False, "pythonic")


def test_parse_pythonic_single_quotes_and_tuples():
    text = "[geo.distance(a=(1.5, -2), name='Zoë', tags=['x'], opts={'deep': [True, None]})]"

    parsed = parse_tool_calls(text)

    assert parsed.calls == [
        ToolCall("geo.distance", {"a": [1.5, -2], "name": "Zoë", "tags": ["x"], "opts": {"deep": [True, None]}})
    ]


def test_parse_pythonic_never_evaluates():
    text = '[f(a=__import__("os").system("echo hacked"))]'

    assert parse_tool_calls(text) == ParsedCalls([], True, "pythonic")


def test_parse_pythonic_unquoted_value_is_malformed():
    assert parse_tool_calls("[get_weather(city=Paris)]") == ParsedCalls([], True, "pythonic")


def test_parse_pythonic_cut_off_is_malformed():
    assert parse_tool_calls('[f(a=1, b="x') == ParsedCalls([], True, "pythonic")


def test_parse_pythonic_positional_argument_is_malformed():
    # A call list is read as a whole, so one unreadable call drops the list.
    assert parse_tool_calls("[f(), g(1)]") == ParsedCalls([], True, "pythonic")


def test_parse_bare_python_calls_in_tool_code_fence():
    text = '```tool_code\nget_time(zone="UTC")\nmath.sqrt(x=4)\n```'

    parsed = parse_tool_calls(text)

    assert parsed == ParsedCalls([ToolCall("get_time", {"zone": "UTC"}), ToolCall("math.sqrt", {"x": 4})], False, "pythonic")


def test_parse_pythonic_inside_tool_call_tags():
    assert parse_tool_calls("<tool_call>[f(a=1)]</tool_call>") == ParsedCalls([ToolCall("f", {"a": 1})], False, "pythonic")


def test_parse_nested_name_key_ignored():
    text = '{"name": "add_user", "arguments": {"user": {"name": "Ann", "arguments": []}}}'

    assert parse_tool_calls(text).calls == [ToolCall("add_user", {"user": {"name": "Ann", "arguments": []}})]


# ---------------------------------------------------------------------------------------------------------------
# format_tools_prompt


def test_tools_prompt_smollm2_exact():
    expected = (
        "You can call the tools listed below when the user's request needs them. "
        "Each line inside <tools></tools> describes one tool as a JSON object.\n"
        "<tools>\n"
        '{"name": "get_weather", "description": "Get the weather.", "parameters": {"type": "object", '
        '"properties": {"city": {"type": "string", "description": "City name."}}, "required": ["city"]}}\n'
        '{"name": "now", "parameters": {"type": "object", "properties": {}}}\n'
        "</tools>\n"
        "To call tools, write one <tool_call></tool_call> block that contains a JSON list of all calls, for example:\n"
        '<tool_call>[{"name": "tool_name", "arguments": {"argument_name": "value"}}]</tool_call>'
    )

    assert format_tools_prompt([WEATHER_TOOL, {"name": "now"}], "smollm2") == expected


def test_tools_prompt_bare_and_openai_forms_equal():
    bare = {key: WEATHER_TOOL["function"][key] for key in ("parameters", "description", "name")}

    for style in STYLES:
        assert format_tools_prompt([bare], style) == format_tools_prompt([WEATHER_TOOL], style)


def test_tools_prompt_example_parses_in_its_style():
    for style in STYLES:
        prompt = format_tools_prompt([WEATHER_TOOL], style)
        example = prompt.rsplit("for example:\n", 1)[1]

        assert parse_tool_calls(example).calls == [ToolCall("tool_name", {"argument_name": "value"})]
        assert parse_tool_calls(example).style == style


def test_tools_prompt_guide_describes_input_args():
    prompt = format_tools_prompt([WEATHER_TOOL], "guide")

    line = prompt.split("<tools>\n", 1)[1].split("\n</tools>", 1)[0]
    assert json.loads(line) == {
        "tool_name": "get_weather",
        "description": "Get the weather.",
        "input_args": {"city": "string - City name."},
    }


def test_tools_prompt_empty_and_invalid():
    assert format_tools_prompt([], "hermes") == ""
    with pytest.raises(ValueError, match='tool 0: missing "name" string'):
        format_tools_prompt([{"description": "no name"}], "hermes")
    with pytest.raises(ValueError, match="unknown tool call style"):
        format_tools_prompt([WEATHER_TOOL], "json")


# ---------------------------------------------------------------------------------------------------------------
# default_style


@pytest.mark.parametrize(
    ("model_type", "name", "style"),
    [
        ("llama", "HuggingFaceTB/SmolLM2-135M-Instruct", "smollm2"),
        ("llama", "HuggingFaceTB/SmolLM-360M-Instruct", "smollm2"),
        ("smollm3", "HuggingFaceTB/SmolLM3-3B", "hermes"),
        ("qwen2", "Qwen/Qwen2.5-0.5B-Instruct", "hermes"),
        ("qwen3", None, "hermes"),
        ("llama", "meta-llama/Llama-3.2-1B-Instruct", "llama"),
        ("llama", None, "llama"),
        ("mistral", "mistralai/Mistral-7B-Instruct-v0.3", "mistral"),
        ("gemma3_text", "google/gemma-3-270m-it", "pythonic"),
        ("gemma3", None, "pythonic"),
        ("phi3", "microsoft/Phi-3-mini", "hermes"),
        (None, None, "hermes"),
    ],
)
def test_default_style(model_type, name, style):
    assert default_style(model_type, name) == style


# ---------------------------------------------------------------------------------------------------------------
# Real data


def _first_assistant_turn(row: dict) -> str:
    return next(message["content"] for message in row["trace"] if message["role"] == "assistant")


def test_guide_data_tool_rows_parse():
    _skip_without(GUIDE_TEST)
    rows = [json.loads(line) for line in GUIDE_TEST.read_text(encoding="utf-8").splitlines()]
    tool_rows = [row for row in rows if row["tool_needed"]]
    assert len(tool_rows) > 20

    for row in tool_rows:
        parsed = parse_tool_calls(_first_assistant_turn(row))

        assert [call.name for call in parsed.calls] == [row["tool_name"]], row["query"]
        assert parsed.malformed is False, row["query"]
        assert parsed.style == "guide", row["query"]


def test_guide_data_no_tool_rows_have_no_call():
    _skip_without(GUIDE_TEST)
    rows = [json.loads(line) for line in GUIDE_TEST.read_text(encoding="utf-8").splitlines()]
    plain_rows = [row for row in rows if not row["tool_needed"]]
    assert plain_rows

    for row in plain_rows:
        assert parse_tool_calls(_first_assistant_turn(row)) == ParsedCalls([], False, None), row["query"]


def test_guide_calls_round_trip_every_style():
    _skip_without(GUIDE_TEST)
    rows = [json.loads(line) for line in GUIDE_TEST.read_text(encoding="utf-8").splitlines()]
    row = next(row for row in rows if row["tool_needed"])
    calls = parse_tool_calls(_first_assistant_turn(row)).calls

    for style in STYLES:
        assert parse_tool_calls(format_tool_calls(calls, style)).calls == calls


@pytest.mark.parametrize("file_name", ["en.json", "zh.json"])
def test_glaive_function_calls_parse(file_name):
    path = GLAIVE / file_name
    _skip_without(path)
    rows = json.loads(path.read_text(encoding="utf-8"))
    values = [turn["value"] for row in rows for turn in row["conversations"] if turn["from"] == "function_call"]
    assert len(values) > 100

    for value in values:
        expected = json.loads(value)
        parsed = parse_tool_calls(value)

        assert parsed.calls == [ToolCall(expected["name"], expected["arguments"])], value
        assert parsed.malformed is False, value
