"""Row shapes: every common shape becomes OpenAI messages plus tools, and an unknown shape gets a message on how to map it."""

from __future__ import annotations

import json

import pytest

from ft.data.shapes import RowError, to_conversation

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
CALL = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}


def convert(row: dict, **kwargs):
    return to_conversation("rows.jsonl:1", row, kwargs.pop("messages_column", None), "tools", **kwargs)


def test_openai_messages_with_tools_list():
    row = {"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": '{"temp": 3}'},
        {"role": "assistant", "content": "3 degrees."},
    ], "tools": [WEATHER_TOOL]}
    conv = convert(row)
    assert conv.shape == "messages"
    assert [m["role"] for m in conv.messages] == ["system", "user", "assistant", "tool", "assistant"]
    assert conv.messages[2] == {"role": "assistant", "content": "", "tool_calls": [dict(CALL, id="call_1")]}
    assert conv.messages[3] == {"role": "tool", "content": '{"temp": 3}', "tool_call_id": "call_1", "name": "get_weather"}
    assert conv.tools == [WEATHER_TOOL]


def test_tools_as_json_string_equal_list():
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    as_list = convert({"messages": messages, "tools": [WEATHER_TOOL]})
    as_string = convert({"messages": messages, "tools": json.dumps([WEATHER_TOOL])})
    bare = convert({"messages": messages, "tools": json.dumps([WEATHER_TOOL["function"]])})
    assert as_list.tools == as_string.tools == bare.tools == [WEATHER_TOOL]


def test_arguments_string_and_object_normalised():
    def row(arguments):
        return {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "tool_calls": [
            {"type": "function", "function": {"name": "get_weather", "arguments": arguments}}]}]}

    from_string = convert(row('{"city": "Oslo"}')).messages[1]["tool_calls"]
    from_object = convert(row({"city": "Oslo"})).messages[1]["tool_calls"]
    assert from_string == from_object == [CALL]


def test_malformed_arguments_named():
    row = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"'}}]}]}
    with pytest.raises(RowError) as err:
        convert(row)
    assert "message 1: invalid tool call" in str(err.value)
    assert "get_weather" in str(err.value)
    assert "not valid JSON" in str(err.value)


def test_legacy_function_call_and_function_role():
    row = {"messages": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": None, "function_call": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}},
        {"role": "function", "name": "get_weather", "content": "3"},
    ]}
    conv = convert(row)
    assert conv.messages[1]["tool_calls"] == [CALL]
    assert conv.messages[2] == {"role": "tool", "content": "3", "name": "get_weather"}


def test_content_parts_and_json_tool_result():
    row = {"messages": [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": "c"},
        {"role": "tool", "content": {"temp": 3}},
    ]}
    conv = convert(row)
    assert conv.messages[0]["content"] == "ab"
    assert conv.messages[2]["content"] == '{"temp": 3}'


def test_image_content_rejected():
    row = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
                        {"role": "assistant", "content": "c"}]}
    with pytest.raises(RowError, match="message 0: content must be text or a list of text parts"):
        convert(row)


def test_sharegpt_function_call_and_observation():
    row = {"conversations": [
        {"from": "human", "value": "Weather in Oslo?"},
        {"from": "function_call", "value": '{"name": "get_weather", "arguments": {"city": "Oslo"}}'},
        {"from": "observation", "value": '{"temp": 3}'},
        {"from": "gpt", "value": "3 degrees."},
    ], "tools": json.dumps([WEATHER_TOOL["function"]])}
    conv = convert(row)
    assert conv.shape == "sharegpt"
    assert conv.messages == [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": "", "tool_calls": [CALL]},
        {"role": "tool", "content": '{"temp": 3}'},
        {"role": "assistant", "content": "3 degrees."},
    ]
    assert conv.tools == [WEATHER_TOOL]


def test_sharegpt_system_column_prepended():
    row = {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}], "system": "Be brief."}
    assert convert(row).messages[0] == {"role": "system", "content": "Be brief."}


def test_sharegpt_unknown_role_named():
    row = {"conversations": [{"from": "narrator", "value": "x"}]}
    with pytest.raises(RowError, match="message 0: ShareGPT role 'narrator'"):
        convert(row)


def test_instruction_input_output():
    conv = convert({"instruction": "Translate", "input": "hei", "output": "hi"})
    assert conv.shape == "instruction"
    assert conv.messages == [{"role": "user", "content": "Translate\n\nhei"}, {"role": "assistant", "content": "hi"}]


def test_instruction_history_and_system():
    conv = convert({"instruction": "And now?", "input": "", "output": "b", "history": [["first?", "a"]],
                    "system": "Be brief."})
    assert [m["content"] for m in conv.messages] == ["Be brief.", "first?", "a", "And now?", "b"]


def test_prompt_completion_strings_and_lists():
    assert convert({"prompt": "2+2?", "completion": "4"}).messages == [
        {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]
    listed = convert({"prompt": [{"role": "user", "content": "2+2?"}],
                      "completion": [{"role": "assistant", "content": "4"}]})
    assert listed.shape == "prompt_completion"
    assert [m["role"] for m in listed.messages] == ["user", "assistant"]


def test_plain_text():
    conv = convert({"text": "Once upon a time."})
    assert conv.shape == "text"
    assert conv.messages == [{"role": "assistant", "content": "Once upon a time."}]


def test_messages_under_other_column_found():
    conv = convert({"id": 3, "dialogue": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]})
    assert conv.shape == "messages"
    assert len(conv.messages) == 2


def test_messages_column_named_in_config():
    row = {"a": [{"role": "user", "content": "x"}], "b": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    assert convert(row, messages_column="b").messages[1]["content"] == "yo"
    assert convert(row, columns={"messages": "b"}).messages[1]["content"] == "yo"


def test_messages_as_json_text_from_csv():
    cell = json.dumps([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}])
    conv = convert({"messages": cell, "tools": ""})
    assert conv.messages[1]["content"] == "yo"
    assert conv.tools is None


def test_column_mapping_for_instruction_shape():
    conv = convert({"question": "2+2?", "answer": "4"}, columns={"instruction": "question", "output": "answer"})
    assert conv.shape == "instruction"
    assert conv.messages[1]["content"] == "4"


def test_named_shape_missing_column_says_how_to_map():
    with pytest.raises(RowError) as err:
        convert({"question": "2+2?", "answer": "4"}, shape="instruction")
    message = str(err.value)
    assert "data.shape is instruction but the row has no column 'instruction', 'output'" in message
    assert "columns are ['answer', 'question']" in message
    assert "data.columns: {instruction: YOUR_COLUMN, output: YOUR_COLUMN}" in message


def test_unknown_shape_lists_columns_and_mapping():
    with pytest.raises(RowError) as err:
        convert({"query": "2+2?", "response": "4"})
    message = str(err.value)
    assert message.startswith("unrecognised shape: columns are ['query', 'response']")
    assert "instruction + output" in message
    assert "prompt + completion" in message
    assert "data.columns: {instruction: question, output: answer}" in message


def test_unknown_mapping_field_rejected():
    with pytest.raises(RowError, match="unknown field"):
        convert({"text": "x"}, columns={"answer": "a"})


def test_bfcl_row_becomes_prompt_and_tools():
    row = {"id": "simple_python_0",
           "question": [[{"role": "user", "content": "Area of a triangle, base 10, height 5?"}]],
           "function": [{"name": "geometry.area", "description": "Area.", "parameters": {
               "type": "dict", "properties": {"base": {"type": "integer"}, "scale": {"type": "float"}},
               "required": ["base"]}}]}
    conv = convert(row)
    assert conv.shape == "bfcl"
    assert conv.messages == [{"role": "user", "content": "Area of a triangle, base 10, height 5?"}]
    function = conv.tools[0]["function"]
    assert function["name"] == "geometry.area"
    assert function["parameters"]["type"] == "object"
    assert function["parameters"]["properties"]["scale"] == {"type": "number"}
