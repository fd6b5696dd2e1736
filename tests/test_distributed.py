"""Two CPU processes (gloo) through `ft train --nproc 2` follow the single-process loss curve."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Same rows in every optimizer step and the same loss normalisation; only the order of float32 sums differs.
LOSS_TOLERANCE = 1e-4


def write_config(tmp_path: Path, model_dir: Path) -> Path:
    path = tmp_path / "ddp.yaml"
    path.write_text(f"""# Run: ft train ddp.yaml --nproc 2
model:
  name: {model_dir}
data:
  train: {REPO / 'data/quickstart/train.jsonl'}
  max_rows: 16
  max_length: 512
training:
  max_steps: 4
  learning_rate: 0.01
  warmup_ratio: 0.0
  lr_scheduler: constant
output:
  dir: {tmp_path / 'runs'}
""")
    return path


def train(config: Path, run_name: str, batch_size: int, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "ft.cli", "train", str(config), "--set", f"output.run_name={run_name}",
                           "--set", f"training.batch_size={batch_size}", *extra],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def losses(run: Path) -> list[float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [row["loss"] for row in rows if "loss" in row]


def token_counts(run: Path) -> list[int]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [row["tokens"] for row in rows if "tokens" in row]


def test_two_processes_match_one(tmp_path, tiny_model_dir):
    config = write_config(tmp_path, tiny_model_dir)
    single = train(config, "single", 4)
    assert single.returncode == 0, single.stderr[-3000:]
    double = train(config, "double", 2, "--nproc", "2", "--master-port", "29517")
    assert double.returncode == 0, double.stderr[-3000:]

    assert "global batch 4 rows = 2 rows x 1 accumulation x 2 process(es)" in double.stdout
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert runs == ["double", "single"], "exactly one run folder per run, written by rank 0"
    one, two = losses(tmp_path / "runs" / "single"), losses(tmp_path / "runs" / "double")
    assert len(one) == len(two) == 4
    assert max(abs(a - b) for a, b in zip(one, two)) <= LOSS_TOLERANCE
    assert (tmp_path / "runs" / "double" / "adapter" / "adapter_model.safetensors").is_file()

    # Both runs train the same 16 rows, so the token counts, summed over the processes, are the same.
    summaries = {name: json.loads((tmp_path / "runs" / name / "summary.json").read_text()) for name in ("single", "double")}
    assert summaries["single"]["processes"] == 1
    assert summaries["double"]["processes"] == 2
    assert summaries["double"]["tokens_seen"] == summaries["single"]["tokens_seen"]
    assert summaries["double"]["trained_tokens"] == summaries["single"]["trained_tokens"]
    assert token_counts(tmp_path / "runs" / "double") == token_counts(tmp_path / "runs" / "single")
