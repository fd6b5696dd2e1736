"""The local backend: the same job as a detached background process on this machine.

`ft submit --backend local` writes a config snapshot and starts `python -m ft.jobs.local_runner ID` in a new session,
its output going to `$FT_HOME/jobs/<id>/log.txt`. The runner records the stages in the job database, so `ft jobs`
follows, cancels and pulls a local job the way it does a Hugging Face Job.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from ft.config import LoadedConfig
from ft.errors import FtError
from ft.jobs.spec import dump_config, rewrite_data_paths
from ft.jobs.store import TERMINAL_STAGES, JobRecord, JobStore, job_folder

LOG_POLL_S = 0.5
CANCEL_WAIT_S = 75.0  # longer than the runner's grace period before it kills the training


def new_job_id(store: JobStore, loaded: LoadedConfig) -> str:
    """Return an id that is also a free run folder name: `output.run_name`, else config stem plus a timestamp."""
    cfg = loaded.config
    base = cfg.output.run_name or f"{loaded.path.stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    used_ids = store.ids()
    output_dir = Path(cfg.output.dir).expanduser()
    candidate, suffix = base, 1
    while candidate in used_ids or (output_dir / candidate).exists() or job_folder(candidate).exists():
        suffix += 1
        candidate = f"{base}-{suffix}"
    return candidate


def build_local_config(loaded: LoadedConfig, job_id: str) -> str:
    """Return the job's config snapshot: paths made absolute, the run folder named after the job."""
    tree = loaded.config.model_dump()
    rewrite_data_paths(tree, lambda key, path: str(path))
    model_path = Path(tree["model"]["name"]).expanduser()
    if model_path.exists():
        tree["model"]["name"] = str(model_path.resolve())
    template = tree["model"].get("chat_template")
    if template and "\n" not in template and Path(template).expanduser().is_file():
        tree["model"]["chat_template"] = str(Path(template).expanduser().resolve())
    tree["output"].update(dir=str(Path(tree["output"]["dir"]).expanduser().resolve()), run_name=job_id)
    return dump_config(tree, f"ft submit --backend local {loaded.path}: config snapshot of job {job_id}.")


def train_command(config_path: Path) -> list[str]:
    return [sys.executable, "-m", "ft.cli", "train", str(config_path)]


def prepare_record(store: JobStore, loaded: LoadedConfig, timeout_s: int | None) -> tuple[JobRecord, str]:
    """Return the job's record and config snapshot, before anything is written."""
    job_id = new_job_id(store, loaded)
    folder = job_folder(job_id)
    config_text = build_local_config(loaded, job_id)
    run_dir = Path(loaded.config.output.dir).expanduser().resolve() / job_id
    record = JobRecord(id=job_id, backend="local", run_name=job_id, config_path=str(loaded.path), flavor="local",
                       timeout_s=timeout_s, run_dir=str(run_dir), log_path=str(folder / "log.txt"),
                       spec={"command": train_command(folder / "config.yaml"), "cwd": os.getcwd()})
    return record, config_text


def start(store: JobStore, record: JobRecord, config_text: str) -> JobRecord:
    """Write the snapshot, store the record and start the detached runner; return the stored record."""
    from ft.outputs import write_text_atomic

    folder = job_folder(record.id)
    write_text_atomic(folder / "config.yaml", config_text)
    store.add(record)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(record.log_path, "ab") as log_file:
        runner = subprocess.Popen([sys.executable, "-m", "ft.jobs.local_runner", record.id], cwd=record.spec["cwd"],
                                  env=env, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    return store.update(record.id, pid=runner.pid)


def runner_alive(pid: int | None) -> bool:
    """Return whether `pid` is a live local runner (a zombie or a reused pid does not count)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():
        return b"ft.jobs.local_runner" in cmdline.read_bytes()
    return True


def refresh(store: JobStore, record: JobRecord) -> JobRecord:
    """Mark an active job whose runner is gone as ERROR (killed, or the machine restarted); return the record."""
    record = store.get(record.id)
    if record.active and record.pid and not runner_alive(record.pid):
        record = store.get(record.id)  # the runner may have finished between the two reads
        if record.active:
            return store.update(record.id, stage="ERROR", finished_at=time.time(),
                                message=f"the runner process (pid {record.pid}) ended without recording a result")
    return record


def follow_log(store: JobStore, record: JobRecord, write=print, follow: bool = True) -> str:
    """Print the job's log; with `follow`, until the job ends. Return the last stage seen."""
    path = Path(record.log_path)
    pending = b""
    offset = 0
    while True:
        chunk = b""
        if path.exists():
            with open(path, "rb") as handle:
                handle.seek(offset)
                chunk = handle.read()
            offset += len(chunk)
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            write(line.decode("utf-8", errors="replace"))
        if chunk:
            continue
        record = refresh(store, record)
        if not follow or record.stage in TERMINAL_STAGES:
            if path.exists() and path.stat().st_size > offset:
                continue  # lines written just before the stage changed
            if pending:
                write(pending.decode("utf-8", errors="replace"))
            return record.stage
        time.sleep(LOG_POLL_S)


def cancel(store: JobStore, record: JobRecord, wait_s: float = CANCEL_WAIT_S) -> JobRecord:
    """Ask the training to stop (SIGTERM to its process group) and wait until the runner records the end."""
    record = refresh(store, record)
    if record.stage in TERMINAL_STAGES:
        return record
    store.update(record.id, cancel_requested=True)
    if not runner_alive(record.pid):
        return store.update(record.id, stage="CANCELED", message="canceled before its runner started",
                            finished_at=time.time())
    target = record.child_pgid
    try:
        if target:
            os.killpg(target, signal.SIGTERM)
        else:
            os.kill(record.pid, signal.SIGTERM)  # the runner forwards it, or never starts the training
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        record = refresh(store, record)
        if record.stage in TERMINAL_STAGES:
            return record
        time.sleep(LOG_POLL_S)
    return record


def pull(record: JobRecord, target: Path | None, include_checkpoints: bool) -> Path:
    """Return the run folder, copied to `target` when one is given (`ft eval` reads `adapter/` in it)."""
    from ft.outputs import replace_folder_atomic, staging_folder

    run_dir = Path(record.run_dir or "")
    if not (run_dir / "adapter").is_dir():
        checkpoints = run_dir / "checkpoints"
        hint = (f" Its checkpoints are in {checkpoints}; continue with `ft train CONFIG --resume {run_dir}`."
                if checkpoints.is_dir() and any(checkpoints.iterdir()) else "")
        raise FtError(f"job {record.id} ({record.stage}) has no adapter in {run_dir} yet.{hint}")
    if target is None or target.resolve() == run_dir.resolve():
        return run_dir
    if target.exists():
        raise FtError(f"{target} already exists. Pass --to a new folder, or remove it first.")
    staging = staging_folder(target)
    ignore = None if include_checkpoints else shutil.ignore_patterns("checkpoints")
    try:
        shutil.copytree(run_dir, staging, dirs_exist_ok=True, ignore=ignore)
        replace_folder_atomic(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
