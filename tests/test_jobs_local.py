"""The local backend. The detached runner records stages, exit codes, cancel and timeout. A tiny training is then
submitted, followed, listed and pulled through the CLI, and another one is canceled mid-run.
"""

from __future__ import annotations

import re
import sys
import time

import pytest

from fake_hub import run_ft, write_config

# A stand-in for `ft train`: it prints, and on SIGTERM writes a marker and exits 143 as training does after its
# checkpoint.
STOPPABLE = """
import signal, sys, time
def stop(signum, frame):
    print("stopping: checkpoint written", flush=True)
    sys.exit(143)
signal.signal(signal.SIGTERM, stop)
print("working", flush=True)
time.sleep(120)
"""


@pytest.fixture
def store(monkeypatch, tmp_path):
    from ft.jobs.store import JobStore

    monkeypatch.setenv("FT_HOME", str(tmp_path / "ft-home"))
    return JobStore()


def start_job(store, tmp_path, job_id: str, code: str, timeout_s: int | None = None):
    from ft.jobs import local
    from ft.jobs.store import JobRecord, job_folder

    record = JobRecord(id=job_id, backend="local", run_name=job_id, config_path="inline", timeout_s=timeout_s,
                       run_dir=str(tmp_path / "runs" / job_id), log_path=str(job_folder(job_id) / "log.txt"),
                       spec={"command": [sys.executable, "-c", code], "cwd": str(tmp_path)})
    return local.start(store, record, "# no config: the command is inline\n")


def wait_for(store, job_id: str, condition, timeout_s: float = 60.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        record = store.get(job_id)
        if condition(record):
            return record
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not reach the condition; last stage {store.get(job_id).stage}")


def ended(record) -> bool:
    return record.stage in ("COMPLETED", "ERROR", "CANCELED")


def log_text(record) -> str:
    from pathlib import Path

    return Path(record.log_path).read_text()


def test_runner_records_completion(store, tmp_path):
    start_job(store, tmp_path, "ok", "print('hello from the job')")
    record = wait_for(store, "ok", ended)
    assert record.stage == "COMPLETED"
    assert record.exit_code == 0
    assert record.started_at is not None and record.finished_at >= record.started_at
    assert "hello from the job" in log_text(record)
    assert "ft job ok: COMPLETED, exit code 0" in log_text(record)


def test_runner_records_failure(store, tmp_path):
    start_job(store, tmp_path, "fails", "import sys; print('bad row'); sys.exit(3)")
    record = wait_for(store, "fails", ended)
    assert record.stage == "ERROR"
    assert record.exit_code == 3
    assert record.message == "training exited with code 3"


def test_cancel_stops_job(store, tmp_path):
    from ft.jobs import local

    start_job(store, tmp_path, "long", STOPPABLE)
    # The runner's first line echoes the command, so only a line of its own shows the handler is in place.
    wait_for(store, "long", lambda record: "working" in log_text(record).splitlines())
    started = time.monotonic()
    record = local.cancel(store, store.get("long"))
    assert time.monotonic() - started < 10
    assert record.stage == "CANCELED"
    assert record.exit_code == 143
    assert record.cancel_requested
    assert "stopping: checkpoint written" in log_text(record)


def test_timeout_ends_in_error(store, tmp_path):
    start_job(store, tmp_path, "slow", STOPPABLE, timeout_s=1)
    record = wait_for(store, "slow", ended)
    assert record.stage == "ERROR"
    assert record.message == "Job timeout"
    assert "timeout reached" in log_text(record)


def test_dead_runner_marked_error(store, tmp_path):
    import subprocess

    from ft.jobs import local
    from ft.jobs.store import JobRecord

    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    store.add(JobRecord(id="orphan", backend="local", run_name="orphan", config_path="x", stage="RUNNING",
                        pid=finished.pid))
    record = local.refresh(store, store.get("orphan"))
    assert record.stage == "ERROR"
    assert f"runner process (pid {finished.pid}) ended without recording a result" in record.message


def test_local_job_end_to_end(monkeypatch, tmp_path, tiny_model_dir, capsys):
    monkeypatch.setenv("FT_HOME", str(tmp_path / "ft-home"))
    monkeypatch.chdir(tmp_path)
    config = write_config(tmp_path, model=str(tiny_model_dir))
    result = run_ft(capsys, "submit", str(config), "--backend", "local")
    assert result.code == 0, result.out[-3000:] + result.err[-3000:]
    assert "data.train: 4 rows read, 4 used" in result.out
    assert "done: 2 steps" in result.out
    submitted = next(line for line in result.out.splitlines() if line.startswith("job ") and "submitted" in line)
    job_id = submitted.split()[1]
    assert f"job {job_id}: COMPLETED" in result.out

    logs = run_ft(capsys, "jobs", "logs", job_id, "-f")
    assert logs.code == 0
    assert "done: 2 steps" in logs.out
    assert logs.out.rstrip().endswith(f"ft job {job_id}: COMPLETED, exit code 0")

    listing = run_ft(capsys, "jobs", "ps")
    row = next(line for line in listing.out.splitlines() if line.startswith(job_id))
    assert "local" in row
    assert "COMPLETED" in row

    assert run_ft(capsys, "jobs", "wait", job_id).code == 0
    pulled = run_ft(capsys, "jobs", "pull", job_id)
    assert pulled.code == 0, pulled.err
    run = tmp_path / "runs" / job_id
    assert f"run folder: {run}" in pulled.out
    assert (run / "adapter" / "adapter_config.json").is_file()
    copied = run_ft(capsys, "jobs", "pull", job_id, "--to", "copied")
    assert copied.code == 0, copied.err
    assert (tmp_path / "copied" / "adapter" / "ft_model.json").is_file()
    assert (tmp_path / "copied" / "summary.json").is_file()


def test_local_training_canceled(monkeypatch, tmp_path, tiny_model_dir, capsys):
    monkeypatch.setenv("FT_HOME", str(tmp_path / "ft-home"))
    config = write_config(tmp_path, model=str(tiny_model_dir))
    result = run_ft(capsys, "submit", str(config), "--backend", "local", "--detach",
                    "--set", "training.max_steps=5000", "--set", "output.run_name=stoppable")
    assert result.code == 0, result.err
    from ft.jobs.store import JobStore

    store = JobStore()
    first_step = re.compile(r"step +\d+/5000 \| loss")  # the training's own step line: its stop handler is in place
    wait_for(store, "stoppable", lambda record: first_step.search(log_text(record)) or ended(record), timeout_s=300)
    started = time.monotonic()
    canceled = run_ft(capsys, "jobs", "cancel", "stoppable")
    assert canceled.code == 0, canceled.err
    assert time.monotonic() - started < 60
    record = store.get("stoppable")
    assert record.stage == "CANCELED", log_text(record)[-2000:]
    assert record.exit_code == 143
    assert "job stoppable: CANCELED" in canceled.out
    assert list((tmp_path / "runs" / "stoppable" / "checkpoints").glob("checkpoint-*")), "a checkpoint to resume from"
    waited = run_ft(capsys, "jobs", "wait", "stoppable")
    assert waited.code == 1
    assert "--resume" in waited.err


def test_ps_imports_no_torch(tmp_path):
    import os
    import subprocess

    code = ("import sys, ft.cli\n"
            "assert ft.cli.main(['jobs', 'ps']) == 0\n"
            "heavy = sorted(name for name in sys.modules if name.split('.')[0] in ('torch', 'transformers', 'peft'))\n"
            "print('heavy modules:', heavy)\n")
    env = dict(os.environ, FT_HOME=str(tmp_path / "ft-home"))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "heavy modules: []" in result.stdout
    assert f"no jobs in {tmp_path / 'ft-home' / 'jobs.db'}" in result.stdout


def test_store_finds_by_prefix(store):
    from ft.errors import FtError
    from ft.jobs.store import JobRecord

    for job_id in ("tiny-20260101-120000", "tiny-20260101-130000", "other_run"):
        store.add(JobRecord(id=job_id, backend="local", run_name=job_id, config_path="x"))
    assert store.get("other").id == "other_run"
    assert store.get("tiny-20260101-13").id == "tiny-20260101-130000"
    assert store.find("other%") is None  # LIKE wildcards in an id are matched literally
    with pytest.raises(FtError, match="is ambiguous: 2 job ids start with it"):
        store.get("tiny-")
    with pytest.raises(FtError, match="job 'missing' not found"):
        store.get("missing")
    updated = store.update("other_run", stage="RUNNING", spec={"command": ["x"]}, cancel_requested=True)
    assert updated.stage == "RUNNING"
    assert updated.spec == {"command": ["x"]}
    assert updated.cancel_requested is True
