"""`ft train` end to end through the real CLI on a tiny model, and its refusals of bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def write_config(tmp_path: Path, model_dir: Path, train: str | None = None) -> Path:
    data = train or str(REPO / "data/quickstart/train.jsonl")
    text = f"""# Run: ft train this-file
model:
  name: {model_dir}
data:
  train: {data}
  eval: {REPO / 'data/quickstart/eval.jsonl'}
  max_rows: 4
  eval_max_rows: 8
  max_length: 512
training:
  max_steps: 6
  batch_size: 4
  learning_rate: 0.01
  warmup_ratio: 0.0
  lr_scheduler: constant
output:
  dir: {tmp_path / 'runs'}
  run_name: e2e
"""
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "ft.cli", *args], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=600)


def test_train_writes_run_folder(tmp_path, tiny_model_dir):
    config = write_config(tmp_path, tiny_model_dir)
    result = run_cli("train", str(config), "--set", "training.log_every_steps=1")
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "runs" / "e2e"
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "loss.png", "adapter/adapter_model.safetensors",
                 "adapter/tokenizer.json", "adapter/ft_model.json"):
        assert (run / name).is_file(), name
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [row["loss"] for row in rows if "loss" in row]
    assert len(losses) == 6
    assert losses[-1] < losses[0]
    assert {"step", "loss", "learning_rate", "tokens_per_s", "elapsed_s"} <= set(rows[0])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 6
    assert summary["trained_tokens"] > 0
    assert summary["tokens_seen"] > summary["trained_tokens"]
    # The final eval-loss pass and the tool-call evaluation on the 8 eval rows, both inside the training time.
    assert 0 < summary["eval_time_s"] < summary["train_time_s"]
    assert "log_every_steps: 1  # override" in (run / "config.yaml").read_text()
    assert "step     6/6 | loss" in result.stdout
    assert "training.log_every_steps = 1  (override)" in result.stdout
    assert "done: 6 steps" in result.stdout


def test_unknown_key_refused(tmp_path, tiny_model_dir):
    config = write_config(tmp_path, tiny_model_dir)
    config.write_text(config.read_text().replace("  max_steps: 6", "  max_step: 6"))
    result = run_cli("train", str(config))
    assert result.returncode == 2
    assert "training.max_step: unknown key. Did you mean `max_steps`?" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()


def test_missing_model_path_refused(tmp_path, tiny_model_dir):
    config = write_config(tmp_path, tmp_path / "no-such-model")
    result = run_cli("train", str(config))
    assert result.returncode == 2
    assert "model.name:" in result.stderr and "no-such-model" in result.stderr and "does not exist" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()


def test_broken_data_line_refused(tmp_path, tiny_model_dir):
    data = tmp_path / "train.jsonl"
    lines = (REPO / "data/quickstart/train.jsonl").read_text().splitlines()[:5]
    lines[2] = lines[2][:40]
    data.write_text("\n".join(lines) + "\n")
    config = write_config(tmp_path, tiny_model_dir, train=str(data))
    result = run_cli("train", str(config))
    assert result.returncode == 2
    assert "train.jsonl: 1 bad row(s):\n  line 3: invalid JSON" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()
