"""`ft plan --calibrate`: measure this machine with a matmul and a few real training steps of the config's model.

This is the one part of `ft plan` that imports torch and loads weights. It runs ft's own training path (prepare_run,
load_model, apply_lora, build_trainer) for CALIBRATION_STEPS optimizer steps, times all but the first (which pays
for warm-up), and stores achieved training FLOP/s divided by the peak. On a CPU the peak is the measured matmul
rate in the dtype training used. On a GPU it is the data-sheet peak of its model, so the result applies to every
flavor with that GPU. On a CPU it also stores the first step's warm-up, the resident-memory terms, evaluation's
speed and a decoding step's time (see ft.plan.probes).
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from ft.config import LoadedConfig
from ft.errors import FtError

CALIBRATION_STEPS = 4
MATMUL_SIZE = 1024
MATMUL_SECONDS = 1.5
MAX_ACTIVATION_FACTOR = 4.0


def calibrate(loaded: LoadedConfig) -> dict:
    """Measure, store and return this machine's (or this GPU model's) training speed for the config's model."""
    import torch

    from ft.plan.calibration import calibration_path, record
    from ft.plan.hardware import ACCELERATORS
    from ft.plan.memory import HOST_BYTES_PER_DATA_TOKEN
    from ft.train import prepare_run

    short = short_config(loaded)
    if short.config.training.threads:
        torch.set_num_threads(short.config.training.threads)
    accelerator = gpu_model(torch) if torch.cuda.is_available() else None
    prepared = prepare_run(short)
    data_bytes = prepared.train.tokens * HOST_BYTES_PER_DATA_TOKEN
    base_bytes = max(current_rss_bytes() - data_bytes, 0.0)

    steps = timed_steps(short, prepared)
    settings, arch = plan_inputs(short, torch)
    flops = sum(training_flops_of(rows, arch, settings) for rows in steps["micro_batches"])
    first_flops = sum(training_flops_of(rows, arch, settings) for rows in steps["first_micro_batches"])
    # The first step also builds kernels and touches fresh memory: its time beyond the steady rate, once per run.
    warmup_s = max(steps["first_step_seconds"] - first_flops * steps["seconds"] / flops, 0.0)
    matmul = {} if accelerator else cpu_matmul_rates(torch)
    peak = ACCELERATORS[accelerator].peak_tflops[settings.dtype] * 1e12 if accelerator else matmul[settings.dtype]
    entry = {
        "device": accelerator or "cpu", "peak_flops": round(peak), "peak_dtype": settings.dtype,
        "efficiency": round(flops / steps["seconds"] / peak, 4), "model": short.config.model.name,
        "tokens_per_s": round(steps["tokens"] / steps["seconds"], 1), "timed_steps": CALIBRATION_STEPS - 1,
        "threads": torch.get_num_threads(), "measured_peak_memory_gb": round(steps["peak_bytes"] / 1e9, 3),
        "warmup_s": round(warmup_s, 2),
    }
    if accelerator is None:
        entry["decode_step_s_per_layer"] = round(steps["decode_step_s"] / arch.num_layers, 6)
        forward_flops = sum(evaluation_flops_of(rows, arch, settings) for rows in steps["forward"]["micro_batches"])
        # Evaluation reaches a higher share of the peak than training: no backward pass, whose CPU attention is slow.
        entry["forward_speedup"] = round(forward_flops / steps["forward"]["seconds"] / (flops / steps["seconds"]), 3)
    if accelerator is None:
        entry["matmul_flops"] = {dtype: round(rate) for dtype, rate in matmul.items()}
        entry["base_memory_gb"] = round(base_bytes / 1e9, 3)
        terms = allocator_terms(arch, settings, steps, base_bytes + data_bytes)
        entry["retained_memory_gb"] = round(terms["retained_bytes"] / 1e9, 3)
        entry["activation_factor"] = round(terms["activation_factor"], 3)
    record(entry, accelerator)
    return {**entry, "path": str(calibration_path())}


def allocator_terms(arch, settings, steps: dict, overhead: float) -> dict[str, float]:
    """Return the resident memory the process held beyond the live tensors the plan counts, as a fixed part (bytes)
    and a factor on the activations, from the timed steps and, where measured, one longest row."""
    points = [resident_extra(arch, settings, steps["all_micro_batches"], steps["peak_bytes"], overhead)]
    if steps.get("long_row"):
        long_row = steps["long_row"]
        points.append(resident_extra(arch, settings, [long_row["rows"]], long_row["peak_bytes"], overhead))
    (short_activations, short_extra), *rest = points
    # Two points closer than this in activations give no usable slope.
    if rest and rest[0][0] > short_activations * 1.2:
        long_activations, long_extra = rest[0]
        growth = (long_extra - short_extra) / (long_activations - short_activations)
        factor = min(max(1 + growth, 1.0), MAX_ACTIVATION_FACTOR)
        retained = max(short_extra - (factor - 1) * short_activations, 0.0)
        return {"retained_bytes": retained, "activation_factor": factor}

    # One point only: the whole extra is put on the activations.
    factor = 1.0
    if short_activations:
        factor = min(max(1 + short_extra / short_activations, 1.0), MAX_ACTIVATION_FACTOR)
    return {"retained_bytes": 0.0, "activation_factor": factor}


def resident_extra(arch, settings, micro_batches: list, peak_bytes: float, overhead: float) -> tuple[float, float]:
    """Return (activations, measured peak minus the planned peak) for the largest of these micro-batches."""
    from ft.plan.batches import make_micro_batch
    from ft.plan.memory import memory_parts

    batches = [make_micro_batch(rows, arch, settings) for rows in micro_batches]
    parts = max((memory_parts(arch, settings, b, overhead) for b in batches), key=lambda p: p.peak)
    return parts.activations, peak_bytes - parts.peak


def short_config(loaded: LoadedConfig) -> LoadedConfig:
    """Return the config cut to a few steps, with no evaluation, checkpoints or reporting."""
    config = loaded.config.model_copy(deep=True)
    config.training.max_steps = CALIBRATION_STEPS
    config.training.eval_every_steps = None
    config.training.save_every_steps = None
    if hasattr(config.training, "save_every_minutes"):
        config.training.save_every_minutes = None
    config.training.report_to = "none"
    config.data.eval = None
    return LoadedConfig(config, loaded.path, dict(loaded.sources))


def gpu_model(torch) -> str | None:
    from ft.plan.hardware import ACCELERATORS

    name = torch.cuda.get_device_name().upper()
    for known in sorted(ACCELERATORS, key=len, reverse=True):  # L40S before L4
        if known in name:
            return known
    raise FtError(f"ft plan --calibrate: the GPU {name!r} is not one ft plan has figures for "
                  f"({', '.join(ACCELERATORS)}); its estimates could not use the result.")


def timed_steps(loaded: LoadedConfig, prepared) -> dict:
    """Train CALIBRATION_STEPS steps; return the seconds, tokens and micro-batches of all steps but the first, and
    the seconds and micro-batches of the first."""
    import torch
    from transformers import TrainerCallback

    from ft.model import apply_lora, choose_dtype, load_model
    from ft.plan import probes
    from ft.train import build_trainer, micro_batching
    from ft.trainer import peak_memory_bytes

    cfg = loaded.config
    dtype = choose_dtype(cfg.model.precision)
    model = load_model(prepared.source, dtype, cfg.model.attn_implementation)
    if cfg.training.method != "full":
        model = apply_lora(model, cfg.lora, cfg.training.gradient_checkpointing)

    step_ends: list[float] = []
    collated: list[list[tuple[int, int]]] = []
    _, accumulation = micro_batching(cfg)

    class StepTimer(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            step_ends.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kwargs):
            step_ends.append(time.perf_counter())

    with tempfile.TemporaryDirectory(prefix="ft-calibrate-") as run_dir:
        trainer = build_trainer(cfg, model, prepared, Path(run_dir), [StepTimer()], dtype)
        collator = trainer.data_collator
        trainer.data_collator = recording(collator, collated)
        trainer.train()
        peak_bytes = peak_memory_bytes()
        trainer.data_collator = collator
        long_row, forward, decode_step_s = None, None, None
        if not torch.cuda.is_available():  # These probes feed the CPU estimates only.
            longest = max(length for rows in collated for length, _ in rows)
            long_row = probes.long_row_peak(trainer, prepared, min(cfg.data.max_length, 4 * longest))
            forward = probes.forward_seconds(trainer, prepared)
            decode_step_s = probes.decode_step_seconds(trainer.model, prepared)

    timed = collated[accumulation:accumulation * CALIBRATION_STEPS]
    if len(step_ends) < 3 or not timed:
        raise FtError("ft plan --calibrate: training stopped before two steps; give data.train more rows.")
    return {
        "seconds": step_ends[-1] - step_ends[1],
        "first_step_seconds": step_ends[1] - step_ends[0],
        "first_micro_batches": collated[:accumulation],
        "micro_batches": timed,
        "all_micro_batches": collated,
        "tokens": sum(length for rows in timed for length, _ in rows),
        "peak_bytes": peak_bytes,
        "long_row": long_row,
        "decode_step_s": decode_step_s,
        "forward": forward,
    }


def recording(collator, collated: list):
    """Wrap a collator to note each micro-batch's rows as (tokens, trained tokens)."""
    from ft.data.prepare import IGNORE

    def collate(features):
        collated.append([(len(f["input_ids"]), sum(1 for label in f["labels"] if label != IGNORE)) for f in features])
        return collator(features)

    return collate


def plan_inputs(loaded: LoadedConfig, torch):
    from ft.plan.model_files import find_model
    from ft.plan.settings import run_settings

    from ft.model import cpu_supports_bf16

    on_gpu = torch.cuda.is_available()
    bf16 = torch.cuda.is_bf16_supported(including_emulation=False) if on_gpu else cpu_supports_bf16()
    settings = run_settings(loaded.config, on_gpu, bf16)
    return settings, find_model(loaded.config.model.name, loaded.config.model.revision).architecture


def training_flops_of(rows: list[tuple[int, int]], arch, settings) -> float:
    from ft.plan.batches import make_micro_batch
    from ft.plan.flops import training_flops

    return training_flops(arch, settings, make_micro_batch(rows, arch, settings))


def evaluation_flops_of(rows: list[tuple[int, int]], arch, settings) -> float:
    from ft.plan.batches import make_micro_batch
    from ft.plan.flops import evaluation_flops

    return evaluation_flops(arch, settings, make_micro_batch(rows, arch, settings))


def cpu_matmul_rates(torch) -> dict[str, float]:
    """Return the matmul FLOP/s of each dtype this CPU trains in: float32, and bfloat16 where it is native."""
    from ft.model import cpu_supports_bf16

    dtypes = ["float32"] + (["bfloat16"] if cpu_supports_bf16() else [])
    return {dtype: matmul_rate(torch, getattr(torch, dtype)) for dtype in dtypes}


def matmul_rate(torch, dtype) -> float:
    """Return the FLOP/s of a square matmul in `dtype` with torch's thread setting, a CPU "peak"."""
    a = torch.randn(MATMUL_SIZE, MATMUL_SIZE, dtype=dtype)
    b = torch.randn(MATMUL_SIZE, MATMUL_SIZE, dtype=dtype)
    for _ in range(3):
        a @ b
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < MATMUL_SECONDS:
        a @ b
        count += 1
    return 2 * MATMUL_SIZE ** 3 * count / (time.perf_counter() - start)


def current_rss_bytes() -> float:
    """Resident memory now (Linux), else the peak so far."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        scale = 1 if sys.platform == "darwin" else 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def describe_calibration(result: dict) -> str:
    device = "this machine" if result["device"] == "cpu" else f"GPU model {result['device']}"
    peak = f"{result.get('peak_dtype', 'float32')} matmul" if result["device"] == "cpu" else "data-sheet peak"
    return (f"calibrated {device}: {peak} {result['peak_flops'] / 1e9:.0f} GFLOP/s; {result['timed_steps']} timed "
            f"training steps of {result['model']} at {result['tokens_per_s']:.0f} tokens/s reach "
            f"{result['efficiency']:.2f} of it; peak memory {result['measured_peak_memory_gb']:.2f} GB"
            f"{cpu_terms(result)}. Stored in {result['path']}.")


def cpu_terms(result: dict) -> str:
    """Return the figures only a CPU calibration measures, in words."""
    if "activation_factor" not in result:
        return ""
    return (f" (resident beyond live tensors: {result['retained_memory_gb']:.2f} GB + {result['activation_factor']:.2f}"
            f" x activations); evaluation {result['forward_speedup']:.2f}x training's rate, decoding "
            f"{result['decode_step_s_per_layer'] * 1000:.1f} ms per layer and step, first-step warm-up "
            f"{result['warmup_s']:.1f} s")
