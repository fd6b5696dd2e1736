"""Tests for scripts/make_quickstart_data.py and the files it writes under data/quickstart/."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = REPO_ROOT / "scripts" / "make_quickstart_data.py"
DATA_DIR = REPO_ROOT / "data" / "quickstart"
EXPECTED_ROWS = {"train.jsonl": 400, "eval.jsonl": 60}
SPLITS = list(EXPECTED_ROWS)
JSON_TYPES = {"string": str, "integer": int, "number": (int, float)}


def load_generator():
    spec = importlib.util.spec_from_file_location("make_quickstart_data", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    # dataclasses looks the module up in sys.modules while the script runs.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


generator = load_generator()


def read_rows(name: str) -> list[dict]:
    with open(DATA_DIR / name, encoding="utf-8") as file:
        return [json.loads(line) for line in file]


def user_messages(rows: list[dict]) -> list[str]:
    return [message["content"] for row in rows for message in row["messages"] if message["role"] == "user"]


def tool_calls(row: dict) -> list[dict]:
    return [call for message in row["messages"] for call in message.get("tool_calls") or []]


def parse_arguments(call: dict) -> dict:
    arguments = call["function"]["arguments"]
    if isinstance(arguments, str):
        arguments = json.loads(arguments)
    assert isinstance(arguments, dict), f"arguments of {call['id']} are not a JSON object: {arguments!r}"
    return arguments


def check_arguments(arguments: dict, schema: dict, where: str) -> None:
    properties = schema["properties"]
    for key in schema["required"]:
        assert key in arguments, f"{where}: required argument {key!r} is missing"
    for key, value in arguments.items():
        assert key in properties, f"{where}: unknown argument {key!r}"
        expected_type = JSON_TYPES[properties[key]["type"]]
        assert isinstance(value, expected_type) and not isinstance(value, bool), f"{where}: {key}={value!r} has the wrong type"
        if "enum" in properties[key]:
            assert value in properties[key]["enum"], f"{where}: {key}={value!r} is not in the enum"


def check_row(row: dict, where: str) -> None:
    """Assert that one row has the OpenAI chat shape and that its tool traffic is consistent."""
    assert set(row) == {"messages", "tools"}, f"{where}: unexpected keys {sorted(row)}"

    offered = {tool["function"]["name"]: tool["function"] for tool in row["tools"]}
    assert 2 <= len(row["tools"]) <= 4, f"{where}: offers {len(row['tools'])} tools"
    assert len(offered) == len(row["tools"]), f"{where}: a tool is offered twice"
    for tool in row["tools"]:
        assert tool["type"] == "function", where
        assert tool["function"]["parameters"]["type"] == "object", where

    messages = list(row["messages"])
    if messages[0]["role"] == "system":
        messages.pop(0)
    assert messages[0]["role"] == "user", f"{where}: first non-system message is {messages[0]['role']}"
    assert messages[-1]["role"] == "assistant", f"{where}: last message is {messages[-1]['role']}"
    assert isinstance(messages[-1]["content"], str) and messages[-1]["content"], f"{where}: final answer is empty"
    assert "tool_calls" not in messages[-1], f"{where}: final assistant message calls a tool"

    if len(messages) == 2:
        return

    call_message, *tool_messages, _final = messages[1:]
    assert call_message["role"] == "assistant", where
    assert call_message["content"] in ("", None), f"{where}: tool-call message has text {call_message['content']!r}"
    calls = call_message["tool_calls"]
    assert 1 <= len(calls) <= 2, f"{where}: {len(calls)} calls in one turn"

    calls_by_id = {}
    for call in calls:
        assert call["type"] == "function", where
        assert call["id"].startswith("call_"), f"{where}: call id {call['id']!r}"
        name = call["function"]["name"]
        assert name in offered, f"{where}: calls {name}, which the row does not offer"
        check_arguments(parse_arguments(call), offered[name]["parameters"], f"{where} {call['id']}")
        calls_by_id[call["id"]] = call
    assert len(calls_by_id) == len(calls), f"{where}: duplicate call ids"

    assert len(tool_messages) == len(calls), f"{where}: {len(tool_messages)} tool messages for {len(calls)} calls"
    for message in tool_messages:
        assert message["role"] == "tool", f"{where}: expected a tool message, got {message['role']}"
        assert message["tool_call_id"] in calls_by_id, f"{where}: tool message answers unknown id {message['tool_call_id']}"
        assert message["name"] == calls_by_id[message["tool_call_id"]]["function"]["name"], where
        assert isinstance(json.loads(message["content"]), dict), f"{where}: tool result is not a JSON object"
    answered = {message["tool_call_id"] for message in tool_messages}
    assert answered == set(calls_by_id), f"{where}: calls without a result: {set(calls_by_id) - answered}"


def test_generator_output_matches_committed_files(tmp_path):
    assert generator.main(["--out", str(tmp_path)]) == 0

    for name in SPLITS:
        assert (tmp_path / name).read_bytes() == (DATA_DIR / name).read_bytes(), f"{name} is stale; rerun the generator"
    assert not list(tmp_path.glob(".*.tmp")), "a temporary file was left behind"


def test_check_flag_passes_on_committed_files():
    result = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr


def test_check_flag_fails_on_changed_file(tmp_path, capsys):
    assert generator.main(["--out", str(tmp_path)]) == 0
    with open(tmp_path / "eval.jsonl", "a", encoding="utf-8") as file:
        file.write("{}\n")

    assert generator.main(["--out", str(tmp_path), "--check"]) == 1
    assert "eval.jsonl" in capsys.readouterr().err


def test_check_flag_fails_on_missing_file(tmp_path, capsys):
    assert generator.main(["--out", str(tmp_path), "--check"]) == 1
    assert "missing" in capsys.readouterr().err


@pytest.mark.parametrize("name", SPLITS)
def test_row_count(name):
    assert len(read_rows(name)) == EXPECTED_ROWS[name]


@pytest.mark.parametrize("name", SPLITS)
def test_rows_valid(name):
    for index, row in enumerate(read_rows(name)):
        check_row(row, f"{name} row {index}")


@pytest.mark.parametrize("name", SPLITS)
def test_no_tool_share(name):
    rows = read_rows(name)
    no_tool = sum(1 for row in rows if not tool_calls(row))

    assert 0.20 <= no_tool / len(rows) <= 0.30, f"{no_tool} of {len(rows)} rows need no tool"


@pytest.mark.parametrize("name", SPLITS)
def test_both_argument_encodings(name):
    calls = [call for row in read_rows(name) for call in tool_calls(row)]
    encodings = {type(call["function"]["arguments"]) for call in calls}

    assert str in encodings
    assert dict in encodings


@pytest.mark.parametrize("name", SPLITS)
def test_parallel_calls_present(name):
    counts = [len(tool_calls(row)) for row in read_rows(name)]

    assert 2 in counts


@pytest.mark.parametrize("name", SPLITS)
def test_arguments_appear_in_request(name):
    # Evaluation compares arguments exactly, so each value must be readable from the user's words.
    for index, row in enumerate(read_rows(name)):
        request = user_messages([row])[0]
        for call in tool_calls(row):
            for key, value in parse_arguments(call).items():
                assert str(value) in request, f"{name} row {index}: {key}={value!r} not in {request!r}"


@pytest.mark.parametrize("name", SPLITS)
def test_system_message_share(name):
    rows = read_rows(name)
    with_system = sum(1 for row in rows if row["messages"][0]["role"] == "system")

    assert 0.3 <= with_system / len(rows) <= 0.7


def test_eval_requests_not_in_train():
    train = set(user_messages(read_rows("train.jsonl")))
    shared = [message for message in user_messages(read_rows("eval.jsonl")) if message in train]

    assert shared == []


def test_every_tool_used_in_train():
    used = {call["function"]["name"] for row in read_rows("train.jsonl") for call in tool_calls(row)}

    assert used == set(generator.TOOLS)


def test_tool_schemas_distinct():
    shapes = {json.dumps(tool["function"]["parameters"], sort_keys=True) for tool in generator.TOOLS.values()}

    assert 6 <= len(generator.TOOLS) <= 8
    assert len(shapes) == len(generator.TOOLS)
