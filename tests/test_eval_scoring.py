"""`ft eval` with scripted generations: exact metrics, BFCL scoring, reports and input errors.

Generation is replaced by fixed texts, so each metric has a value computed by hand. The tiny model's tokenizer
renders the prompts, as in a real run, and no weights load.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import ft.cli
from ft.evaluate import generation, loading
from ft.evaluate.generation import Generation
from ft.evaluate.report import console_table
from ft.evaluate.runner import run_eval
from ft.toolcalls import ToolCall, format_tool_calls

QUICKSTART_EVAL = Path(__file__).resolve().parents[1] / "data" / "quickstart" / "eval.jsonl"
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_data(relative: str) -> Path:
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"{path} not found: the shared data folder is not next to the repository")
    return path

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
                   "required": ["city"]}}}
TRANSLATE_TOOL = {"type": "function", "function": {
    "name": "translate", "description": "Translate text.",
    "parameters": {"type": "object", "properties": {"text": {"type": "string"}, "target_language": {"type": "string"}},
                   "required": ["text", "target_language"]}}}
REMINDER_TOOL = {"type": "function", "function": {
    "name": "set_reminder", "description": "Set a reminder.",
    "parameters": {"type": "object", "properties": {"text": {"type": "string"}, "minutes": {"type": "integer"}},
                   "required": ["text", "minutes"]}}}


def call_turn(name: str, arguments: dict) -> dict:
    return {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": name, "arguments": arguments}}]}


# One row per case. The scripted output of each row follows it in SCRIPTED_TEXTS.
ROWS = [
    # 1. correct call
    {"messages": [{"role": "user", "content": "Weather in Paris in celsius?"},
                  call_turn("get_weather", {"city": "Paris", "unit": "celsius"})], "tools": [WEATHER_TOOL]},
    # 2. no call expected, none made
    {"messages": [{"role": "user", "content": "Say hello."}, {"role": "assistant", "content": "Hello!"}],
     "tools": [WEATHER_TOOL]},
    # 3. wrong tool name; the reference is a ShareGPT function_call turn
    {"conversations": [{"from": "human", "value": "Translate hi to French"},
                       {"from": "function_call",
                        "value": '{"name": "translate", "arguments": {"text": "hi", "target_language": "French"}}'}],
     "tools": json.dumps([TRANSLATE_TOOL, WEATHER_TOOL])},
    # 4. wrong argument value; the reference is guide-style text
    {"messages": [{"role": "user", "content": "Weather in Berlin?"},
                  {"role": "assistant", "content": 'Let me check.\n<tool_call>{"tool_name": "get_weather", '
                                                   '"args": {"city": "Berlin", "unit": "celsius"}}</tool_call>'}]},
    # 5. malformed output that still ended
    {"messages": [{"role": "user", "content": "Remind me to call Sam in 40 minutes"},
                  call_turn("set_reminder", {"text": "call Sam", "minutes": 40})], "tools": [REMINDER_TOOL]},
    # 6. output cut off by the token cap
    {"messages": [{"role": "user", "content": "Weather in Rome?"}, call_turn("get_weather", {"city": "Rome"})],
     "tools": [WEATHER_TOOL]},
    # 7. no assistant turn: skipped
    {"messages": [{"role": "user", "content": "Only a question."}]},
]
SCRIPTED_TEXTS = [
    '<tool_call>[{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}]</tool_call>',
    "Hello there!",
    '<tool_call>[{"name": "get_weather", "arguments": {"city": "hi"}}]</tool_call>',
    '<tool_call>[{"name": "get_weather", "arguments": {"city": "Munich", "unit": "celsius"}}]</tool_call>',
    '<tool_call>[{"name": "set_reminder", "arguments": {"text": "call Sam", "minutes": }}]</tool_call>',
    '<tool_call>[{"name": "get_weather", "arguments": {"ci',
]
SCRIPTED_ENDED = [True, True, True, True, True, False]


@pytest.fixture
def data_file(tmp_path) -> Path:
    path = tmp_path / "held_out.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in ROWS), encoding="utf-8")
    return path


@pytest.fixture
def scripted(monkeypatch):
    """Replace weight loading and generation; return the prompts each model was given, by label.

    The texts for a label come from scripts[label], a function of (row index, decoded prompt).
    """
    prompts_seen: dict[str, list[str]] = {}
    scripts = {}

    def fake_generate(model, tokenizer, prompts, stop_ids, max_new_tokens, batch_size, label="model"):
        decoded = [tokenizer.decode(prompt) for prompt in prompts]
        prompts_seen[label] = decoded
        return [scripts[label](index, text) for index, text in enumerate(decoded)]

    monkeypatch.setattr(loading, "load_base_weights", lambda target, dtype: object())
    monkeypatch.setattr(generation, "generate_batched", fake_generate)
    return scripts, prompts_seen


@pytest.fixture
def run_cli(monkeypatch):
    """Return a function that runs `ft` in-process, with `ft eval` plugged in for this test only."""
    commands = list(ft.cli.PLUGGED_COMMANDS)
    if "eval" not in {name for name, _, _ in commands}:
        commands.append(("eval", "ft.evaluate.cli", "measure tool calling"))
    monkeypatch.setattr(ft.cli, "PLUGGED_COMMANDS", commands)
    return ft.cli.main


def scripted_rows(index: int, prompt: str) -> Generation:
    return Generation(SCRIPTED_TEXTS[index], 10, SCRIPTED_ENDED[index])


def test_metrics_on_scripted_outputs(tiny_model_dir, data_file, scripted, tmp_path):
    scripts, prompts_seen = scripted
    scripts["base"] = scripted_rows

    result, _ = run_eval(str(tiny_model_dir), str(data_file), out_dir=tmp_path / "out")

    metrics = result["models"][0]["metrics"]
    assert metrics["rows"] == 6
    assert metrics["call_decision_accuracy"] == pytest.approx(4 / 6)
    assert metrics["tool_name_accuracy"] == pytest.approx(2 / 5)
    assert metrics["argument_exact_match"] == pytest.approx(1 / 5)
    assert metrics["argument_accuracy"] == pytest.approx(3 / 9)
    assert metrics["malformed_rate"] == pytest.approx(2 / 6)
    assert metrics["ended_within_cap_rate"] == pytest.approx(5 / 6)
    assert result["data"]["rows_without_assistant"] == 1
    assert result["data"]["rows_read"] == 7


def test_records_hold_reference_and_output(tiny_model_dir, data_file, scripted, tmp_path):
    scripts, _ = scripted
    scripts["base"] = scripted_rows

    result, _ = run_eval(str(tiny_model_dir), str(data_file), out_dir=tmp_path / "out")

    guide_row = result["records"][3]
    assert guide_row["where"] == "held_out.jsonl:4"
    assert guide_row["reference"] == [{"name": "get_weather", "arguments": {"city": "Berlin", "unit": "celsius"}}]
    output = guide_row["outputs"]["base"]
    assert output["generation"] == SCRIPTED_TEXTS[3]
    assert output["calls"] == [{"name": "get_weather", "arguments": {"city": "Munich", "unit": "celsius"}}]
    assert output["args_correct"] == 1
    assert output["args_total"] == 2
    assert result["records"][5]["outputs"]["base"]["ended"] is False


def test_prompts_render_as_training(tiny_model_dir, data_file, scripted, tmp_path):
    from ft.data.render import prepare_messages, probe_template
    from ft.data.shapes import to_conversation
    from transformers import AutoTokenizer

    scripts, prompts_seen = scripted
    scripts["base"] = scripted_rows
    run_eval(str(tiny_model_dir), str(data_file), out_dir=tmp_path / "out")

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    traits = probe_template(tokenizer, "auto", "llama", str(tiny_model_dir))
    conversation = to_conversation("row", ROWS[0], None, "tools")
    messages, tools = prepare_messages(conversation, traits)
    expected = tokenizer.apply_chat_template(messages[:-1], tools=tools, tokenize=False, add_generation_prompt=True)
    assert prompts_seen["base"][0] == expected
    assert "get_weather" in prompts_seen["base"][0]
    assert prompts_seen["base"][0].endswith("<|im_start|>assistant\n")


def test_baseline_difference(tiny_model_dir, data_file, scripted, tmp_path):
    scripts, _ = scripted
    scripts["baseline"] = lambda index, prompt: Generation("I cannot call tools.", 5, True)
    scripts["base"] = scripted_rows

    result, _ = run_eval(str(tiny_model_dir), str(data_file), baseline=str(tiny_model_dir),
                         out_dir=tmp_path / "out")

    assert [model["label"] for model in result["models"]] == ["baseline", "base"]
    baseline_metrics = result["models"][0]["metrics"]
    assert baseline_metrics["call_decision_accuracy"] == pytest.approx(1 / 6)
    assert result["difference"]["call_decision_accuracy"] == pytest.approx(4 / 6 - 1 / 6)
    assert result["difference"]["malformed_rate"] == pytest.approx(2 / 6)
    assert result["difference"]["tool_name_accuracy"] == pytest.approx(2 / 5)
    assert set(result["records"][0]["outputs"]) == {"baseline", "base"}


def test_report_files_written(tiny_model_dir, data_file, scripted, tmp_path):
    scripts, _ = scripted
    scripts["baseline"] = lambda index, prompt: Generation("no", 1, True)
    scripts["base"] = scripted_rows
    out_dir = tmp_path / "out"

    result, written_to = run_eval(str(tiny_model_dir), str(data_file), baseline=str(tiny_model_dir), out_dir=out_dir)

    assert written_to == out_dir
    saved = json.loads((out_dir / "eval.json").read_text(encoding="utf-8"))
    assert len(saved["records"]) == 6
    assert saved["difference"] == result["difference"]
    report = (out_dir / "report.md").read_text(encoding="utf-8")
    assert "| metric | baseline | base | change |" in report
    assert "| call decision accuracy | 0.167 | 0.667 | +0.500 |" in report
    assert (out_dir / "eval.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [path.name for path in out_dir.iterdir() if path.name.startswith(".")]


def test_console_table_layout(tiny_model_dir, data_file, scripted, tmp_path):
    scripts, _ = scripted
    scripts["baseline"] = lambda index, prompt: Generation("no", 1, True)
    scripts["base"] = scripted_rows

    result, _ = run_eval(str(tiny_model_dir), str(data_file), baseline=str(tiny_model_dir), out_dir=tmp_path / "out")
    lines = console_table(result).splitlines()

    assert lines[1].split() == ["metric", "baseline", "base", "change"]
    assert lines[2].split() == ["call", "decision", "accuracy", "0.167", "0.667", "+0.500"]
    assert lines[3].split() == ["tool", "name", "accuracy", "0.000", "0.400", "+0.400"]
    assert lines[6].split() == ["malformed", "output", "rate", "0.000", "0.333", "+0.333"]
    assert lines[8].split() == ["rows", "scored", "6", "6"]


def test_every_turn_scored(tiny_model_dir, scripted, tmp_path):
    scripts, prompts_seen = scripted
    scripts["base"] = lambda index, prompt: Generation("", 1, True)
    row = {"messages": [
        {"role": "user", "content": "Weather in Oslo?"},
        call_turn("get_weather", {"city": "Oslo"}),
        {"role": "tool", "content": "3 degrees"},
        {"role": "assistant", "content": "It is 3 degrees in Oslo."},
    ], "tools": [WEATHER_TOOL]}
    path = tmp_path / "two_turns.jsonl"
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")

    result, _ = run_eval(str(tiny_model_dir), str(path), turns="all", out_dir=tmp_path / "out")

    assert [record["turn"] for record in result["records"]] == [0, 1]
    assert result["records"][0]["reference"] == [{"name": "get_weather", "arguments": {"city": "Oslo"}}]
    assert result["records"][1]["reference"] == []
    assert result["models"][0]["metrics"]["call_decision_accuracy"] == pytest.approx(1 / 2)
    assert '"city": "Oslo"' in prompts_seen["base"][1]
    assert prompts_seen["base"][1].endswith("3 degrees<|im_end|>\n<|im_start|>assistant\n")


# ---------------------------------------------------------------------------------------------------------------
# BFCL


def bfcl_answer_text(ground_truth: list[dict], rename: str | None = None) -> str:
    """Write the ground truth's calls with the first acceptable value of each argument ("" means left out)."""
    calls = []
    for entry in ground_truth:
        name, arguments = next(iter(entry.items()))
        chosen = {key: values[0] for key, values in arguments.items() if values[0] != ""}
        calls.append(ToolCall(rename or name, chosen))
    return format_tool_calls(calls, "smollm2")


@pytest.fixture
def bfcl_answers() -> dict[str, list[dict]]:
    path = shared_data("bfcl-v4/possible_answer/BFCL_v4_simple_python.json")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()[:5]]
    return {row["id"]: row["ground_truth"] for row in rows}


def test_bfcl_right_calls_score_one(tiny_model_dir, scripted, bfcl_answers, tmp_path):
    data = shared_data("bfcl-v4/BFCL_v4_simple_python.json")
    scripts, prompts_seen = scripted
    ids = list(bfcl_answers)
    scripts["base"] = lambda index, prompt: Generation(bfcl_answer_text(bfcl_answers[ids[index]]), 20, True)

    result, _ = run_eval(str(tiny_model_dir), str(data), limit=5, out_dir=tmp_path / "out")

    metrics = result["models"][0]["metrics"]
    assert result["data"]["kind"] == "bfcl"
    assert metrics["rows"] == 5
    assert metrics["bfcl_accuracy"] == 1.0
    assert metrics["tool_name_accuracy"] == 1.0
    assert metrics["call_decision_accuracy"] == 1.0
    assert [record["id"] for record in result["records"]] == ids
    assert "calculate_triangle_area" in prompts_seen["base"][0]
    assert "BFCL accuracy (AST)" in console_table(result)
    assert "argument exact match" not in console_table(result)


def test_bfcl_wrong_calls_score_zero(tiny_model_dir, scripted, bfcl_answers, tmp_path):
    data = shared_data("bfcl-v4/BFCL_v4_simple_python.json")
    scripts, _ = scripted
    ids = list(bfcl_answers)
    scripts["base"] = lambda index, prompt: Generation(
        bfcl_answer_text(bfcl_answers[ids[index]], rename="wrong_function"), 20, True)

    result, _ = run_eval(str(tiny_model_dir), str(data), limit=5, out_dir=tmp_path / "out")

    metrics = result["models"][0]["metrics"]
    assert metrics["bfcl_accuracy"] == 0.0
    assert metrics["tool_name_accuracy"] == 0.0
    assert metrics["call_decision_accuracy"] == 1.0
    assert result["records"][0]["outputs"]["base"]["reason"].startswith("wrong function")


def test_bfcl_irrelevance_expects_no_call(tiny_model_dir, scripted, tmp_path):
    data = shared_data("bfcl-v4/BFCL_v4_irrelevance.json")
    scripts, _ = scripted
    scripts["base"] = lambda index, prompt: Generation(
        "None of the functions fits." if index < 2 else '[{"name": "f", "arguments": {}}]', 8, True)

    result, _ = run_eval(str(tiny_model_dir), str(data), limit=4, out_dir=tmp_path / "out")

    metrics = result["models"][0]["metrics"]
    assert metrics["bfcl_accuracy"] == pytest.approx(2 / 4)
    assert metrics["tool_name_accuracy"] is None
    assert result["records"][0]["reference"] == []


def test_bfcl_without_answers_rejected(run_cli, tiny_model_dir, tmp_path, capsys):
    source = shared_data("bfcl-v4/BFCL_v4_simple_python.json")
    copy = tmp_path / "BFCL_v4_simple_python.json"
    shutil.copy(source, copy)

    code = run_cli(["eval", str(tiny_model_dir), "--data", str(copy), "--out", str(tmp_path / "out")])

    assert code == 2
    error = capsys.readouterr().err
    assert "possible_answer" in error
    assert "Traceback" not in error


# ---------------------------------------------------------------------------------------------------------------
# Input errors through the CLI


def test_missing_data_file_exit_2(run_cli, tiny_model_dir, tmp_path, capsys):
    code = run_cli(["eval", str(tiny_model_dir), "--data", str(tmp_path / "missing.jsonl"),
                    "--out", str(tmp_path / "out")])

    assert code == 2
    assert "missing.jsonl: data file not found" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_unknown_run_folder_exit_2(run_cli, tmp_path, monkeypatch, capsys):
    (tmp_path / "runs").mkdir()
    monkeypatch.chdir(tmp_path)

    code = run_cli(["eval", "runs/nope", "--data", str(QUICKSTART_EVAL)])

    assert code == 2
    error = capsys.readouterr().err
    assert "runs/nope: folder not found in runs" in error
    assert "adapter/ft_model.json" in error


def test_missing_model_path_exit_2(run_cli, tmp_path, capsys):
    code = run_cli(["eval", str(tmp_path / "absent" / "nope"), "--data", str(QUICKSTART_EVAL)])

    assert code == 2
    error = capsys.readouterr().err
    assert "MODEL_OR_RUN" in error
    assert "does not exist" in error


def test_rows_without_assistant_exit_2(run_cli, tiny_model_dir, tmp_path, capsys):
    path = tmp_path / "questions.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n", encoding="utf-8")

    code = run_cli(["eval", str(tiny_model_dir), "--data", str(path), "--out", str(tmp_path / "out")])

    assert code == 2
    assert "no row has an assistant turn" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_baseline_auto_needs_run(run_cli, tiny_model_dir, capsys):
    code = run_cli(["eval", str(tiny_model_dir), "--data", str(QUICKSTART_EVAL), "--baseline", "auto"])

    assert code == 2
    assert "--baseline auto" in capsys.readouterr().err


def test_float16_on_cpu_exit_2(run_cli, tiny_model_dir, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("float16 is valid on a CUDA machine")

    code = run_cli(["eval", str(tiny_model_dir), "--data", str(QUICKSTART_EVAL), "--precision", "float16",
                    "--out", str(tmp_path / "out")])

    assert code == 2
    assert "--precision float16: float16" in capsys.readouterr().err


def test_unreadable_reference_rejected(run_cli, tiny_model_dir, tmp_path, capsys):
    row = {"messages": [{"role": "user", "content": "hi"},
                        {"role": "assistant", "content": '<tool_call>{"tool_name": "f", "args": {</tool_call>'}]}
    path = tmp_path / "bad_reference.jsonl"
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")

    code = run_cli(["eval", str(tiny_model_dir), "--data", str(path), "--out", str(tmp_path / "out")])

    assert code == 2
    error = capsys.readouterr().err
    assert "bad_reference.jsonl:1: assistant turn 0" in error
    assert "cannot be read" in error
