"""Run folders and files written atomically: a temporary file in the same folder, synced, then renamed."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from ft.errors import FtError


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, value) -> None:
    write_text_atomic(path, json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def replace_folder_atomic(staging: Path, target: Path) -> None:
    """Move a fully written folder into place; an older folder at `target` is removed only after the move."""
    fsync_tree(staging)
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())


def staging_folder(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))


def new_run_dir(output_dir: str, run_name: str | None, config_path: Path) -> Path:
    """Create the run folder `output.dir/run_name` (default: config stem plus a timestamp); never reuse one."""
    name = run_name or f"{config_path.stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    root = Path(output_dir)
    if root.exists() and not root.is_dir():
        raise FtError(f"output.dir: {output_dir} is a file, not a folder. Point output.dir at a folder.")
    run_dir = root / name
    suffix = 1
    while run_dir.exists():
        suffix += 1
        run_dir = Path(output_dir) / f"{name}-{suffix}"
    try:
        run_dir.mkdir(parents=True)
    except OSError as err:
        raise FtError(f"output.dir: cannot create {run_dir} ({err.strerror}). Choose a writable folder.") from None
    return run_dir


def plot_losses(metrics_path: Path, png_path: Path) -> None:
    """Draw train and eval loss against the optimizer step into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train, evals = [], []
    for line in metrics_path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if "loss" in row:
            train.append((row["step"], row["loss"]))
        if "eval_loss" in row:
            evals.append((row["step"], row["eval_loss"]))
    figure, axes = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        axes.plot(*zip(*train), label="train loss")
    if evals:
        axes.plot(*zip(*evals), marker="o", label="eval loss")
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("loss (mean cross-entropy per trained token)")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    temp = png_path.with_name(f".{png_path.name}.tmp.png")
    figure.savefig(temp)
    plt.close(figure)
    os.replace(temp, png_path)
