"""Checkpoints that are never half-written, exact resume, and a clean stop on SIGTERM or SIGINT.

A checkpoint is written by the Trainer into a staging folder, synced, marked complete with a manifest of its files
and their sizes, then renamed to `checkpoints/checkpoint-<step>`. Resume takes the newest checkpoint whose manifest
matches its files and reports the ones it skipped. The Trainer restores the optimizer, scheduler, RNG states and the
position in the data order, so the resumed run logs the same learning rate at every step and sees the same rows.
"""

from __future__ import annotations

import json
import os
import re
import signal
import shutil
import time
from pathlib import Path

from transformers import TrainerCallback

from ft.errors import STOP_EXIT_CODE, FtError  # noqa: F401  (STOP_EXIT_CODE is re-exported for callers)
from ft.outputs import fsync_tree, write_json_atomic

MANIFEST = "ft_checkpoint.json"
CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d+)$")


def finish_checkpoint(staging: Path, target: Path, counters: dict) -> None:
    """Sync a checkpoint written into `staging`, write its manifest, and rename it to `target`."""
    write_json_atomic(staging / "ft_counters.json", counters)
    files = {str(p.relative_to(staging)): p.stat().st_size for p in sorted(staging.rglob("*")) if p.is_file()}
    fsync_tree(staging)
    write_json_atomic(staging / MANIFEST, {"files": files, "written_at": time.time()})
    if target.exists():
        shutil.rmtree(target)
    os.replace(staging, target)


def checkpoint_problem(folder: Path) -> str | None:
    """Return why a checkpoint folder cannot be resumed from, or None when it is complete."""
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        return "no manifest (written partly, or not by ft)"
    try:
        files = json.loads(manifest_path.read_text())["files"]
    except (json.JSONDecodeError, KeyError, OSError):
        return "unreadable manifest"
    for name, size in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != size:
            return f"{name} has {path.stat().st_size} bytes, the manifest says {size}"
    return None


def complete_checkpoints(checkpoints_dir: Path, report=print) -> list[Path]:
    """Return the complete checkpoints, oldest first; report each incomplete one that is skipped."""
    found = []
    if not checkpoints_dir.is_dir():
        return found
    for folder in checkpoints_dir.iterdir():
        match = CHECKPOINT_NAME.match(folder.name)
        if not match or not folder.is_dir():
            continue
        problem = checkpoint_problem(folder)
        if problem:
            report(f"checkpoint {folder} skipped: {problem}")
            continue
        found.append((int(match.group(1)), folder))
    return [folder for _, folder in sorted(found)]


def rotate(checkpoints_dir: Path, keep: int) -> None:
    for folder in complete_checkpoints(checkpoints_dir, report=lambda _: None)[:-keep]:
        shutil.rmtree(folder, ignore_errors=True)


def resolve_resume(resume: str, output_dir: str, run_name: str | None, config_stem: str) -> tuple[Path, Path]:
    """Find (run folder, checkpoint) for `--resume auto|PATH`; raise FtError with the fix when there is none.

    `auto` takes the newest run folder of this config (`output.run_name`, or `<config stem>-<timestamp>`) that contains
    a complete checkpoint. PATH is a run folder or one of its checkpoint folders.
    """
    if resume != "auto":
        path = Path(resume)
        if CHECKPOINT_NAME.match(path.name) and path.parent.name == "checkpoints":
            problem = checkpoint_problem(path)
            if problem:
                raise FtError(f"--resume {resume}: this checkpoint cannot be used ({problem}). "
                              "Pass its run folder to take the newest complete checkpoint.")
            return path.parent.parent, path
        return path, newest_checkpoint(path, f"--resume {resume}")
    root = Path(output_dir)
    pattern = re.compile(rf"^{re.escape(run_name)}$" if run_name else rf"^{re.escape(config_stem)}-\d{{8}}-\d{{6}}(-\d+)?$")
    runs = sorted((p for p in root.glob("*") if p.is_dir() and pattern.match(p.name)),
                  key=lambda p: p.stat().st_mtime, reverse=True) if root.is_dir() else []
    for run in runs:
        checkpoints = complete_checkpoints(run / "checkpoints")
        if checkpoints:
            return run, checkpoints[-1]
    raise FtError(f"--resume auto: no run of this config under {root} has a complete checkpoint. "
                  "Start without --resume, or pass a run folder with --resume PATH.")


def newest_checkpoint(run_dir: Path, flag: str) -> Path:
    if not run_dir.is_dir():
        raise FtError(f"{flag}: {run_dir} is not a run folder.")
    checkpoints = complete_checkpoints(run_dir / "checkpoints")
    if not checkpoints:
        raise FtError(f"{flag}: {run_dir} has no complete checkpoint to resume from. "
                      "Set training.save_every_steps (or save_every_minutes) so that runs write checkpoints.")
    return checkpoints[-1]


def drop_metrics_after(metrics_path: Path, step: int) -> None:
    """Remove metrics rows logged after `step`: the resumed run logs those steps again."""
    if not metrics_path.is_file():
        return
    kept = [line for line in metrics_path.read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line)["step"] <= step]
    from ft.outputs import write_text_atomic

    write_text_atomic(metrics_path, "".join(line + "\n" for line in kept))


class StopOnSignal(TrainerCallback):
    """On SIGTERM or SIGINT: finish the current optimizer step, save a checkpoint, stop.

    A second signal of the same kind raises KeyboardInterrupt at once, for a user who does not want to wait.
    """

    def __init__(self):
        self.received: int | None = None
        self.previous: dict[int, object] = {}

    def install(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            self.previous[signum] = signal.signal(signum, self.handle)

    def restore(self) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def handle(self, signum, frame) -> None:
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signum
        print(f"\nreceived {signal.Signals(signum).name}: finishing this step, then saving a checkpoint", flush=True)

    def on_step_end(self, args, state, control, **kwargs):
        if self.received is not None:
            control.should_save = True
            control.should_training_stop = True


class SaveEveryMinutes(TrainerCallback):
    def __init__(self, minutes: float):
        self.interval_s = minutes * 60
        self.last = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        if time.monotonic() - self.last >= self.interval_s:
            control.should_save = True

    def on_save(self, args, state, control, **kwargs):
        self.last = time.monotonic()
