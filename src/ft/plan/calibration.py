"""How fast this machine and each GPU model train: stored measurements, and what past runs teach.

`~/.cache/ft/plan/calibration.json` stores, per machine, the measured matmul rate of each dtype the CPU trains in
(float32, and bfloat16 where it has native instructions), the training efficiency (achieved training FLOP/s divided
by the matmul rate of the dtype the calibration run trained in, "peak") and the resident memory of a training process
before the model loads. Per GPU model calibrated on a GPU machine, it stores the efficiency against the data-sheet
peak.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from ft.errors import FtError
from ft.plan.memory import ResidentTerms
from ft.plan.tool_eval import DEFAULT_CPU_DECODE_STEP_S_PER_LAYER

DEFAULT_GPU_EFFICIENCY = 0.35
# Uncalibrated CPU: a guess from the core count, clock and vector width, at this share of that peak.
# NOTE: a guess until `ft plan CONFIG --calibrate` measures this machine.
DEFAULT_CPU_EFFICIENCY = 0.4
DEFAULT_CPU_BASE_MEMORY_GB = 0.85  # measured: Python with torch, transformers and peft imported, 2 cores, Linux
# Resident memory beyond the live tensors for a machine not yet calibrated (see ft.plan.memory.ResidentTerms).
# NOTE: measured once, by `ft plan configs/quickstart.yaml --calibrate` on a 2-core Xeon with glibc 2.36
# (SmolLM2-135M, LoRA, bfloat16); other machines, allocators and models differ.
DEFAULT_CPU_RESIDENT = ResidentTerms(retained_bytes=0.33e9, activation_factor=2.0)
RUNS_CONSIDERED = 20
CALIBRATION_VERSION = 1


# Uncalibrated bfloat16 matmul rate over the float32 one, per CPU flag. NOTE: a guess (measured 5.0 with AMX on one
# 2-core Xeon), which `ft plan --calibrate` replaces with this machine's figure.
BF16_SPEEDUP_GUESS = {"amx_bf16": 4.0, "avx512_bf16": 2.0}


@dataclass
class CpuSpeed:
    """This machine's training rate: a matmul peak in FLOP/s per dtype and the share of it training achieves."""

    peak_flops: float  # the matmul rate of `peak_dtype`, which `efficiency` is measured against
    efficiency: float
    base_memory_gb: float
    source: str  # how the numbers were found, for the report
    calibrated: bool
    resident: ResidentTerms = DEFAULT_CPU_RESIDENT
    peak_dtype: str = "float32"
    matmul_flops: dict[str, float] | None = None  # matmul rate per dtype; None: only peak_dtype is known
    warmup_s: float = 0.0  # a run's first step beyond the steady rate (kernels built, memory first touched)
    decode_step_s_per_layer: float = DEFAULT_CPU_DECODE_STEP_S_PER_LAYER  # see ft.plan.tool_eval
    forward_speedup: float = 1.0  # evaluation's FLOP/s over training's; 1.0 until calibrated

    def flops_per_s(self, dtype: str) -> float:
        """Sustained training FLOP/s in `dtype`: its matmul rate times the measured efficiency."""
        # NOTE: assumes training reaches the same share of the matmul rate in every dtype.
        rates = self.matmul_flops or {self.peak_dtype: self.peak_flops}
        return rates.get(dtype, rates.get("float32", self.peak_flops)) * self.efficiency


def calibration_path() -> Path:
    from ft.model import ft_cache_dir

    return ft_cache_dir() / "plan" / "calibration.json"


def read_calibration() -> dict:
    try:
        stored = json.loads(calibration_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"version": CALIBRATION_VERSION, "machines": {}, "accelerators": {}}
    stored.setdefault("machines", {})
    stored.setdefault("accelerators", {})
    return stored


def write_calibration(stored: dict) -> None:
    from ft.outputs import write_json_atomic

    write_json_atomic(calibration_path(), stored)


def machine_key() -> str:
    """This machine's CPU model and logical core count, which decide its training rate."""
    return f"cpu|{cpu_model_name()}|{os.cpu_count() or 1}"


def cpu_model_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def estimated_cpu_peak() -> float:
    """Return a float32 FLOP/s guess: logical cores x clock x FLOPs per cycle of the widest vector unit."""
    flags, mhz = set(), 0.0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
            elif line.startswith("cpu MHz") and not mhz:
                mhz = float(line.split(":", 1)[1])
    except (OSError, ValueError):
        pass
    # Two FMA units of 16 (AVX-512), 8 (AVX2) or 4 (SSE) float32 lanes, two FLOPs per lane and cycle.
    per_cycle = 16
    if "avx512f" in flags:
        per_cycle = 64
    elif "fma" in flags:
        per_cycle = 32
    ghz = mhz / 1000 if mhz else 2.5
    return (os.cpu_count() or 1) * ghz * 1e9 * per_cycle


def estimated_matmul_flops() -> dict[str, float]:
    """Return guessed matmul FLOP/s per dtype this CPU trains in, for a machine not yet calibrated."""
    from ft.model import CPU_BF16_FLAGS, cpu_flags, cpu_supports_bf16

    rates = {"float32": estimated_cpu_peak()}
    if cpu_supports_bf16():
        flags = cpu_flags()
        speedup = next(BF16_SPEEDUP_GUESS[flag] for flag in CPU_BF16_FLAGS if flag in flags)
        rates["bfloat16"] = rates["float32"] * speedup
    return rates


def machine_peaks() -> tuple[dict[str, float], str]:
    """Return this machine's matmul FLOP/s per dtype and the dtype its stored efficiency is measured against."""
    entry = read_calibration()["machines"].get(machine_key())
    if not entry:
        return estimated_matmul_flops(), "float32"
    dtype = entry.get("peak_dtype", "float32")  # entries written before ft measured bfloat16 contain float32 only
    return entry.get("matmul_flops") or {dtype: entry["peak_flops"]}, dtype


def cpu_speed(run_efficiencies: list[float] | None = None) -> CpuSpeed:
    """Return this machine's calibrated speed, refined by the efficiency of past runs, or the uncalibrated guess.

    `run_efficiencies` are measured against the matmul rate of each run's own dtype, as the stored one is.
    """
    entry = read_calibration()["machines"].get(machine_key())
    samples = list(run_efficiencies or [])
    rates, dtype = machine_peaks()
    if entry:
        efficiency = statistics.median([entry["efficiency"]] + samples)
        runs = f", refined with {len(samples)} past run(s)" if samples else ""
        return CpuSpeed(entry["peak_flops"], efficiency, entry.get("base_memory_gb", DEFAULT_CPU_BASE_MEMORY_GB),
                        f"calibrated {entry.get('measured_at', '?')}{runs}", True,
                        stored_resident(entry), dtype, rates, entry.get("warmup_s", 0.0),
                        entry.get("decode_step_s_per_layer", DEFAULT_CPU_DECODE_STEP_S_PER_LAYER),
                        entry.get("forward_speedup", 1.0))
    if samples:
        return CpuSpeed(rates[dtype], statistics.median(samples), DEFAULT_CPU_BASE_MEMORY_GB,
                        f"from {len(samples)} past run(s); not calibrated", False, matmul_flops=rates)
    return CpuSpeed(rates[dtype], DEFAULT_CPU_EFFICIENCY, DEFAULT_CPU_BASE_MEMORY_GB,
                    "not calibrated: a guess from the CPU's cores, clock and vector units", False,
                    matmul_flops=rates)


def stored_warmup_s() -> float:
    entry = read_calibration()["machines"].get(machine_key()) or {}
    return entry.get("warmup_s", 0.0)


def stored_resident(entry: dict) -> ResidentTerms:
    """Return a calibration entry's resident-memory terms; entries written before ft measured two row lengths
    hold one factor on the activations."""
    if "activation_factor" in entry:
        return ResidentTerms(entry.get("retained_memory_gb", 0.0) * 1e9, entry["activation_factor"])
    if "allocator_factor" in entry:
        return ResidentTerms(0.0, entry["allocator_factor"])
    return DEFAULT_CPU_RESIDENT


def gpu_efficiency(accelerator: str) -> tuple[float, str]:
    entry = read_calibration()["accelerators"].get(accelerator)
    if entry:
        return entry["efficiency"], f"calibrated {entry.get('measured_at', '?')}"
    return DEFAULT_GPU_EFFICIENCY, "default"


def past_runs(output_dir: str, model_name: str) -> list[dict]:
    """Return the summaries of this model's newest finished runs under `output.dir`, with their config."""
    from ft.config import load_config

    root = Path(output_dir)
    if not root.is_dir():
        return []
    folders = sorted((p for p in root.iterdir() if (p / "summary.json").is_file() and (p / "config.yaml").is_file()),
                     key=lambda p: (p / "summary.json").stat().st_mtime, reverse=True)
    runs = []
    for folder in folders[:RUNS_CONSIDERED]:
        try:
            summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
            loaded = load_config(folder / "config.yaml")
        except (OSError, ValueError, FtError):
            continue  # a damaged or foreign run folder teaches nothing
        # A run of several processes counts all their tokens, so its rate is not this machine's single-process rate.
        one_process = summary.get("processes", 1) == 1
        if loaded.config.model.name == model_name and summary.get("train_time_s") and summary.get("tokens_seen") and one_process:
            runs.append({"folder": str(folder), "summary": summary, "config": loaded.config})
    return runs


def record(entry: dict, accelerator: str | None) -> None:
    """Store a calibration result for this machine, or for a GPU model."""
    stored = read_calibration()
    entry = {**entry, "measured_at": time.strftime("%Y-%m-%d %H:%M")}
    if accelerator:
        stored["accelerators"][accelerator] = entry
    else:
        stored["machines"][machine_key()] = entry
    stored["version"] = CALIBRATION_VERSION
    write_calibration(stored)
