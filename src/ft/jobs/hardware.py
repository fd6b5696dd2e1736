"""Flavor choice, precision and memory checks, and the job timeout, from the planner's estimates (`ft.plan`)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ft.config import LoadedConfig
from ft.errors import FtError

# Installing the locked packages (torch with its CUDA libraries is about 3 GB) and pulling the image take minutes
# before the first step. The estimate covers training only, so the timeout adds this and a 1.5x margin.
TIMEOUT_FACTOR = 1.5
STARTUP_S = 600
TIMEOUT_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass
class TimeoutChoice:
    """The job's timeout in seconds, how it was chosen, and a warning when it looks too short."""

    seconds: int
    reason: str
    warning: str | None = None


def flavor_table() -> dict:
    try:
        from ft.plan import FLAVORS
    except ImportError:
        raise FtError("ft's planner (ft.plan) is not installed, and the flavor table comes from it. Run `uv sync`, "
                      "or use --backend local.") from None
    return FLAVORS


def flavor_info(name: str):
    """Return the planner's entry for a flavor name. Raise FtError listing the known names when it is unknown."""
    table = flavor_table()
    if name not in table:
        raise FtError(f"--flavor {name!r} is not a Hugging Face Jobs flavor. Known flavors: {', '.join(table)}, "
                      "or `auto` for the cheapest one that fits.")
    return table[name]


def is_gpu_flavor(name: str) -> bool:
    return flavor_info(name).gpus > 0


def estimate(loaded: LoadedConfig, flavor: str):
    from ft.plan import estimate_for_flavor

    return estimate_for_flavor(loaded, flavor)


def choose_flavor(loaded: LoadedConfig):
    """Return (flavor, estimate) of the cheapest flavor that fits and can run the config (`--flavor auto`).

    That is `ft plan`'s cheapest flavor (by training cost, start-up not counted), unless the config's precision or
    method rules it out. Then the cheapest of the remaining estimates wins, CPU flavors included.
    """
    from ft.plan import plan_run

    report = plan_run(loaded)
    by_name = {guess.flavor: guess for guess in report.estimates}
    cheapest = getattr(report, "cheapest", None)
    if cheapest in by_name and precision_problem(loaded, cheapest) is None:
        return cheapest, by_name[cheapest]
    candidates = [guess for guess in report.estimates
                  if guess.flavor in flavor_table() and guess.fits and getattr(guess, "blocked", None) is None
                  and precision_problem(loaded, guess.flavor) is None
                  and guess.time_s is not None and math.isfinite(guess.time_s)]
    if not candidates:
        raise FtError(f"{loaded.path}: no Jobs flavor fits this run in memory (see `ft plan {loaded.path}`). Lower "
                      "training.batch_size or data.max_length, turn on training.gradient_checkpointing, or use "
                      "training.method: qlora.")
    best = min(candidates, key=lambda guess: (guess.cost_usd, guess.time_s))
    return best.flavor, best


def precision_problem(loaded: LoadedConfig, flavor: str) -> str | None:
    """Return why the config's precision or method cannot run on the flavor, or None."""
    cfg = loaded.config
    info = flavor_info(flavor)
    if cfg.model.precision == "bfloat16" and info.gpus > 0 and not info.supports_bf16:
        return (f"model.precision: bfloat16 is not supported by the GPU of {flavor}. Set model.precision to "
                "`float16` or `auto`, or pick a flavor whose GPU has bfloat16 (a10g-small, l4x1, a100-large).")
    if cfg.model.precision == "float16" and info.gpus == 0:
        return (f"model.precision: float16 needs a CUDA GPU, and {flavor} has none. Set model.precision to `auto` "
                "or `float32`, or pick a GPU flavor.")
    if cfg.training.method == "qlora" and info.gpus == 0:
        return (f"training.method: qlora needs a CUDA GPU, and {flavor} has none. Pick a GPU flavor "
                "(`--flavor auto` picks one) or use training.method: lora.")
    return None


def check_fits(loaded: LoadedConfig, flavor: str, guess) -> None:
    """Raise FtError when the planner says the run cannot run on the flavor, or does not fit in its memory."""
    blocked = getattr(guess, "blocked", None)
    if blocked:
        raise FtError(f"{loaded.path}: the run cannot use {flavor}: {blocked}. Pick another flavor (`--flavor auto` "
                      "picks the cheapest that can run it).")
    if not guess.fits:
        available = getattr(guess, "device_memory_gb", None)
        has = f"{available:.0f} GB" if available else "the memory"
        raise FtError(f"{loaded.path}: the run needs about {guess.peak_memory_gb:.1f} GB per device, more than "
                      f"{flavor}'s {has}. Pick a larger flavor (`--flavor auto` picks the cheapest that fits), or "
                      "lower training.batch_size or data.max_length.")


def parse_timeout(text: str) -> int:
    """Return seconds from `3600`, `90m`, `1.5h` or `2d`. Raise FtError on anything else."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match or float(match.group(1)) <= 0:
        raise FtError(f"--timeout {text!r}: expected `auto`, seconds (`5400`) or a number with a unit "
                      "(`90m`, `1.5h`, `2d`).")
    return int(float(match.group(1)) * TIMEOUT_UNITS[match.group(2) or "s"])


def choose_timeout(requested: str, estimate_s: float | None) -> TimeoutChoice:
    """Return the job timeout: the estimate with a margin for `auto`, else the requested one (warned if short)."""
    if requested == "auto":
        if estimate_s is None:
            raise FtError("--timeout auto needs a time estimate, and the planner could not make one for this "
                          "config. Pass --timeout explicitly, e.g. --timeout 2h.")
        seconds = int(estimate_s * TIMEOUT_FACTOR + STARTUP_S)
        seconds = -(-seconds // 60) * 60  # whole minutes, rounded up
        return TimeoutChoice(seconds, f"estimate {estimate_s:.0f} s x {TIMEOUT_FACTOR} + {STARTUP_S} s for "
                             "image pull, install and model download")
    seconds = parse_timeout(requested)
    warning = None
    if estimate_s is not None and seconds < estimate_s + STARTUP_S:
        warning = (f"--timeout {requested} ({seconds} s) is shorter than the estimated {estimate_s:.0f} s of training "
                   f"plus about {STARTUP_S} s of start-up; the platform may stop the job before it ends. Checkpoints "
                   "pushed before then are kept.")
    return TimeoutChoice(seconds, f"--timeout {requested}", warning)


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s" if seconds else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def format_usd(amount: float) -> str:
    return "under $0.01" if amount < 0.005 else f"${amount:.2f}"
