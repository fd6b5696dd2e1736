"""Never lose work: SIGKILL or SIGTERM mid-run, then `--resume`, ends with the uninterrupted run's weights."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ft.checkpoints import STOP_EXIT_CODE, checkpoint_problem, complete_checkpoints

REPO = Path(__file__).resolve().parents[1]
STEPS = 8
SAVE_EVERY = 3
# The resumed run replays the same float32 operations in the same order on the same machine; the tolerance
# covers only reordering inside BLAS kernels.
WEIGHT_TOLERANCE = 1e-6


def write_config(tmp_path: Path, model_dir: Path) -> Path:
    path = tmp_path / "resume.yaml"
    path.write_text(f"""# Run: ft train resume.yaml
model:
  name: {model_dir}
data:
  train: {REPO / 'data/quickstart/train.jsonl'}
  max_rows: 12
  max_length: 512
lora:
  dropout: 0.1
training:
  max_steps: {STEPS}
  batch_size: 2
  learning_rate: 0.01
  warmup_ratio: 0.25
  lr_scheduler: cosine
  save_every_steps: {SAVE_EVERY}
  keep_checkpoints: 5
output:
  dir: {tmp_path / 'runs'}
""")
    return path


def start(config: Path, run_name: str, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "ft.cli", "train", str(config), "--set", f"output.run_name={run_name}",
                             *extra], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=600)
    return process.returncode, out, err


def wait_for_step(metrics: Path, step: int, process: subprocess.Popen, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if metrics.is_file() and any(json.loads(line)["step"] >= step for line in metrics.read_text().splitlines() if line):
            return
        if process.poll() is not None:
            raise AssertionError(f"training ended before step {step}: {process.stderr.read()[-2000:]}")
        time.sleep(0.01)
    raise AssertionError(f"step {step} not reached in {timeout_s} s")


def adapter_weights(run: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(run / "adapter" / "adapter_model.safetensors")


def learning_rates(run: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {row["step"]: row["learning_rate"] for row in rows if "learning_rate" in row}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_model_dir):
    tmp_path = tmp_path_factory.mktemp("resume")
    config = write_config(tmp_path, tiny_model_dir)
    code, _, err = finish(start(config, "straight"))
    assert code == 0, err[-3000:]
    return config, tmp_path / "runs" / "straight"


def assert_same_run(resumed: Path, straight: Path) -> None:
    assert learning_rates(resumed) == learning_rates(straight)
    assert sorted(learning_rates(resumed)) == list(range(1, STEPS + 1))
    expected, actual = adapter_weights(straight), adapter_weights(resumed)
    assert expected.keys() == actual.keys()
    worst = max(float((expected[k] - actual[k]).abs().max()) for k in expected)
    assert worst <= WEIGHT_TOLERANCE


def test_sigkill_then_resume_matches(reference):
    config, straight = reference
    kill_step = random.Random().randint(SAVE_EVERY + 1, 2 * SAVE_EVERY - 1)
    process = start(config, "killed")
    run = straight.parent / "killed"
    wait_for_step(run / "metrics.jsonl", kill_step, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert [c.name for c in complete_checkpoints(run / "checkpoints")][-1].startswith("checkpoint-")

    code, out, err = finish(start(config, "killed", "--resume", str(run)))
    assert code == 0, err[-3000:]
    assert "resuming" in out
    assert_same_run(run, straight)


def test_sigterm_writes_checkpoint_and_resume_matches(reference):
    config, straight = reference
    stop_step = random.Random().randint(1, STEPS - 2)
    process = start(config, "stopped")
    run = straight.parent / "stopped"
    wait_for_step(run / "metrics.jsonl", stop_step, process)
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    code, _, err = finish(process)
    assert time.monotonic() - sent < 60
    assert code == STOP_EXIT_CODE, err[-3000:]
    assert "Resume with: ft train" in err
    assert complete_checkpoints(run / "checkpoints"), "SIGTERM must leave a checkpoint"
    assert not (run / "adapter").exists()

    code, _, err = finish(start(config, "stopped", "--resume", "auto"))
    assert code == 0, err[-3000:]
    assert_same_run(run, straight)


def test_partial_checkpoint_skipped(tmp_path):
    folder = tmp_path / "checkpoints" / "checkpoint-4"
    folder.mkdir(parents=True)
    (folder / "adapter_model.safetensors").write_bytes(b"partial")
    assert checkpoint_problem(folder) == "no manifest (written partly, or not by ft)"
    messages = []
    assert complete_checkpoints(tmp_path / "checkpoints", report=messages.append) == []
    assert "checkpoint-4 skipped" in messages[0]
