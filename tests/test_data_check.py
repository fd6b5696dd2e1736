"""`ft data check`: the report, its JSON form, bad-row listing, trained-span marking and the exit code."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from conftest import shared_data
from ft.cli import main
from ft.config import load_config
from ft.datacheck import run_data_check

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "data" / "quickstart"


def write_config(tmp_path: Path, model_dir: Path, train, extra: str = "") -> Path:
    path = tmp_path / "config.yaml"
    # The tiny model's folder name does not say SmolLM2, so the family's call style is named here.
    path.write_text(f"model:\n  name: {model_dir}\n  tool_call_style: smollm2\n"
                    f"data:\n  train: {train}\n  max_length: 1024\n{extra}")
    return path


def check(config: Path, *args: str) -> int:
    return main(["data", "check", str(config), *args])


def test_report_for_quickstart(tmp_path, tiny_model_dir, capsys):
    config = write_config(tmp_path, tiny_model_dir, QUICKSTART / "train.jsonl",
                          f"  eval: {QUICKSTART / 'eval.jsonl'}\n")
    assert check(config) == 0
    out = capsys.readouterr().out
    assert f"{QUICKSTART / 'train.jsonl'}: 400 rows read; shape: messages (400)" in out
    assert "rows used: 400 (300 with tool calls); cut at the prompt side to fit max_length 1024: 0" in out
    assert "rows dropped: none" in out
    assert "tokens per row: p50 383, p90 485, p99 575, p100 596" in out
    assert "tokens: 155957, trained: 22021 (14.1%)" in out
    assert "== data.eval" in out
    assert "tool calls written in smollm2 style; end-of-turn token <|im_end|>; trained: every assistant turn" in out
    assert "== example (train.jsonl:1); trained tokens inside [[ ]]" in out
    assert '[[<tool_call>[{"name": "set_reminder", "arguments": {"text": "move the car", "minutes": 26}}]</tool_call><|im_end|>]]' in out
    assert out.rstrip().endswith("ready: training can start")


def test_json_report(tmp_path, tiny_model_dir, capsys):
    config = write_config(tmp_path, tiny_model_dir, QUICKSTART / "eval.jsonl")
    assert check(config, "--json") == 0
    report = json.loads(capsys.readouterr().out)
    train = report["train"]
    assert train["rows_read"] == {str(QUICKSTART / "eval.jsonl"): 60}
    assert train["rows_used"] == 60
    assert train["tokens"] == 23551
    assert train["trained_tokens"] == 3274
    assert train["trained_share"] == 0.139
    assert set(train["length_percentiles"]) == {"p50", "p90", "p99", "p100"}
    assert report["example"]["text"].count("[[") == report["example"]["text"].count("]]") > 0
    assert report["ready"] is True


def test_bad_rows_listed_with_lines(tmp_path, tiny_model_dir, capsys):
    rows = (QUICKSTART / "eval.jsonl").read_text().splitlines()[:2] + [json.dumps({"query": "q", "reply": "r"})] * 7
    data = tmp_path / "mixed.jsonl"
    data.write_text("\n".join(rows) + "\n")
    assert check(write_config(tmp_path, tiny_model_dir, data)) == 2
    out = capsys.readouterr().out
    assert "  bad rows: 7\n    mixed.jsonl:3: unrecognised shape: columns are ['query', 'reply']" in out
    assert "    mixed.jsonl:7: unrecognised shape" in out
    assert "    ... and 2 more" in out
    assert "not ready: `ft train` would stop" in out


def test_trained_span_coloured_on_terminal(tmp_path, tiny_model_dir):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    out = Terminal()
    loaded = load_config(write_config(tmp_path, tiny_model_dir, QUICKSTART / "eval.jsonl"))
    assert run_data_check(loaded, out=out) == 0
    text = out.getvalue()
    assert "trained tokens in green" in text
    assert "\033[32m<tool_call>" in text
    assert "[[" not in text


def test_all_rows_too_long_names_setting(tmp_path, tiny_model_dir, capsys):
    config = write_config(tmp_path, tiny_model_dir, QUICKSTART / "eval.jsonl")
    assert check(config, "--set", "data.max_length=64", "--set", "data.overlong=drop") == 2
    out = capsys.readouterr().out
    assert "rows dropped: 60 longer than max_length" in out
    assert "nothing to train on. Fix: raise data.max_length (now 64) or set data.overlong: truncate_prompt" in out


def test_bfcl_rows_have_no_assistant_turn(tmp_path, tiny_model_dir, capsys):
    path = shared_data("bfcl-v4/BFCL_v4_simple_python.json")
    assert check(write_config(tmp_path, tiny_model_dir, path)) == 2
    out = capsys.readouterr().out
    assert f"{path}: 400 rows read; shape: bfcl (400)" in out
    assert "rows dropped: 400 no assistant turn" in out
    assert "bad rows" not in out


def test_glaive_calls_inside_trained_span(tmp_path, tiny_model_dir, capsys):
    path = shared_data("glaive-toolcall/en.json")
    assert check(write_config(tmp_path, tiny_model_dir, path), "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["train"]["shapes"] == {str(path): {"sharegpt": 300}}
    assert report["train"]["rows_with_tool_calls"] > 140
    assert '[[<tool_call>[{"name": "' in report["example"]["text"]


def test_saved_dataset_split(tmp_path, tiny_model_dir, capsys):
    path = shared_data("tool-use-finetuning/hf-disk")
    config = write_config(tmp_path, tiny_model_dir, path, "  split: validation\n  max_length: 8192\n")
    config.write_text(config.read_text().replace("  max_length: 1024\n", ""))
    assert check(config, "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["train"]["rows_read"] == {f"{path}[validation]": 60}
    assert report["train"]["rows_used"] == 60
    assert report["train"]["rows_with_tool_calls"] > 0
