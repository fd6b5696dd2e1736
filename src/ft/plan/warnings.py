"""Warnings of a plan: each names the setting or flavor concerned and what to do."""

from __future__ import annotations

import math

from ft.plan.estimate import LOCAL, FlavorEstimate, PlanReport, choose, estimates_for
from ft.plan.hardware import PriceList

JOB_DEFAULT_TIMEOUT_S = 30 * 60  # HF Jobs stop a job after 30 minutes unless it was given a timeout
TIMEOUT_MARGIN = 1.5
ACTIVATION_SHARE_FOR_ADVICE = 0.5
MASK_SHARE_FOR_ADVICE = 0.2


def collect_warnings(report: PlanReport, price_list: PriceList) -> list[str]:
    workload = report.workload
    warnings = data_warnings(report) + model_warnings(report)
    warnings += precision_warnings(report)
    warnings += timeout_warnings(report)
    warnings += memory_warnings(report, price_list)
    if workload.cfg.training.compile:
        # NOTE: measured on one 2-core CPU only (docs/benchmarks.md); no GPU figure exists for it yet.
        warnings.append("training.compile: these times are for the plain decoder blocks (`ft plan --calibrate` "
                        "times those too); compiled, the steps after the first took 10% to 25% less time on a "
                        "2-core CPU, and the first step adds the compiling (about half a minute there with an empty cache).")
    if price_list.skipped:
        warnings.append(f"no speed figures for {', '.join(price_list.skipped)}; those flavors are left out.")
    if not workload.cpu.calibrated:
        warnings.append(f"this machine is not calibrated, so its time is a guess; run `ft plan "
                        f"{workload.loaded.path} --calibrate` once to measure it.")
    return warnings


def data_warnings(report: PlanReport) -> list[str]:
    out = []
    for side, counts in report.workload.counts.items():
        if counts.problems:
            out.append(f"data.{side}: {counts.problems} row(s) cannot be used (first: {counts.first_problem}); "
                       f"ft train stops on them. Run `ft data check {report.workload.loaded.path}` to see them all.")
        if counts.method == "characters":
            out.append(f"data.{side}: token counts are estimated from characters (about 20% off for trained tokens), "
                       f"because the tokenizer of {report.workload.cfg.model.name} is not available offline. "
                       "Download its tokenizer.json once for exact counts.")
        elif counts.method == "sampled":
            out.append(f"data.{side}: token counts come from the first {len(counts.lengths)} used rows, scaled to "
                       f"{counts.rows_used} rows.")
    return out


def model_warnings(report: PlanReport) -> list[str]:
    model = report.workload.model
    arch = model.architecture
    out = []
    if arch.approximate:
        out.append(f"model.name: model type {arch.model_type!r} is counted as a Llama-like decoder (ft plan knows "
                   "llama, mistral, qwen2, qwen3, gemma and smollm3 layouts exactly).")
    counted = arch.parameter_count()
    stored = model.stored_parameters
    if stored and abs(stored - counted) > 0.001 * counted:
        out.append(f"model.name: the weights hold {stored:,} parameters but the shapes give {counted:,}; the "
                   "difference (a vision tower, extra heads) is left out of the estimate.")
    return out


def precision_warnings(report: PlanReport) -> list[str]:
    blocked = [e for e in report.estimates if e.blocked and e.flavor != LOCAL]
    reasons: dict[str, list[str]] = {}
    for estimate in blocked:
        reasons.setdefault(estimate.blocked, []).append(estimate.flavor)
    out = []
    for reason, names in reasons.items():
        if reason.startswith("no bfloat16"):
            out.append(f"model.precision is bfloat16, but {', '.join(names)} have {reason}: ft train stops there. "
                       "Set model.precision: auto (float32 on those GPUs) or float16 to use them.")
        else:
            out.append(f"{', '.join(names)}: {reason}; ft train cannot run this config there.")
    return out


def timeout_warnings(report: PlanReport) -> list[str]:
    out = []
    for name in dict.fromkeys(n for n in (report.cheapest, report.fastest) if n):
        estimate = report.estimate(name)
        if estimate.time_s > JOB_DEFAULT_TIMEOUT_S:
            minutes = math.ceil(estimate.time_s * TIMEOUT_MARGIN / 60)
            out.append(f"{name}: the estimate is {format_duration(estimate.time_s)}, longer than the 30 minutes after "
                       f"which HF Jobs stop a job that has no timeout. Give the job a timeout of at least {minutes} "
                       "min (`ft submit --timeout auto` sizes one from this estimate).")
    return out


def memory_warnings(report: PlanReport, price_list: PriceList) -> list[str]:
    out = []
    flavors = [e for e in report.estimates if e.flavor != LOCAL and not e.blocked]
    if flavors and not any(e.fits for e in flavors):
        out.append("no flavor fits this run in memory: lower training.batch_size or data.max_length, turn on "
                   "training.gradient_checkpointing, or use training.method: qlora.")
    out += checkpointing_advice(report, price_list)
    out += mask_advice(report)
    return out


def checkpointing_advice(report: PlanReport, price_list: PriceList) -> list[str]:
    """Advise gradient checkpointing when activations dominate and it would make a cheaper flavor fit."""
    workload = report.workload
    cfg = workload.cfg
    if cfg.training.gradient_checkpointing or cfg.training.method == "full":
        return []
    gpus = [e for e in report.estimates if e.gpus and not e.blocked]
    if report.cheapest:
        reference = report.estimate(report.cheapest)
    elif gpus:
        reference = max(gpus, key=lambda e: (e.device_memory_gb, -e.cost_usd))  # the largest GPU
    else:
        return []
    activations = reference.memory_gb["activations"] + reference.memory_gb["logits"]
    if activations < ACTIVATION_SHARE_FOR_ADVICE * reference.peak_memory_gb:
        return []

    from ft.plan.estimate import Workload

    variant_cfg = cfg.model_copy(deep=True)
    variant_cfg.training.gradient_checkpointing = True
    variant_loaded = type(workload.loaded)(variant_cfg, workload.loaded.path, workload.loaded.sources)
    variant = Workload(variant_loaded, workload.model, workload.counts, workload.cpu)
    variant_estimates = estimates_for(variant, price_list)
    cheaper, _ = choose(variant_estimates)
    if cheaper is None:
        return []
    variant_estimate = next(e for e in variant_estimates if e.flavor == cheaper)
    if report.cheapest and variant_estimate.cost_usd >= reference.cost_usd:
        return []
    was = f"instead of {report.cheapest} at ${reference.cost_usd:.2f}" if report.cheapest else "where nothing fits now"
    return [f"training.gradient_checkpointing: activations take {activations:.1f} of the {reference.peak_memory_gb:.1f} "
            f"GB peak on {reference.flavor}. Turned on, {cheaper} fits (peak {variant_estimate.peak_memory_gb:.1f} GB, "
            f"about ${variant_estimate.cost_usd:.2f}) {was}."]


def mask_advice(report: PlanReport) -> list[str]:
    """Point at flash_attention_2 when packed rows make sdpa keep a square attention mask per layer."""
    cfg = report.workload.cfg
    if not cfg.data.packing or cfg.model.attn_implementation.startswith("flash") or cfg.training.batch_size < 2:
        return []
    gpu = [e for e in report.estimates if e.gpus and not e.blocked]
    if not gpu:
        return []
    estimate = min(gpu, key=lambda e: e.peak_memory_gb)
    mask_gb = mask_share_gb(report, estimate)
    if mask_gb < MASK_SHARE_FOR_ADVICE * estimate.peak_memory_gb:
        return []
    return [f"model.attn_implementation: with {cfg.training.batch_size} packed rows per micro-batch, {cfg.model.attn_implementation} "
            f"keeps a square attention mask per layer on a GPU (about {mask_gb:.1f} GB of the {estimate.peak_memory_gb:.1f} GB "
            "peak). flash_attention_2 (needs the flash-attn package) packs rows without it; or lower training.batch_size "
            "and raise training.grad_accum."]


def mask_share_gb(report: PlanReport, estimate: FlavorEstimate) -> float:
    from ft.plan.batches import make_micro_batch
    from ft.plan.memory import mask_bytes
    from ft.plan.settings import run_settings

    workload = report.workload
    s = run_settings(workload.cfg, True, estimate.supports_bf16)
    rows = sorted(workload.rows("train"), reverse=True)[: s.rows_per_micro_batch]
    if not rows:
        return 0.0
    return mask_bytes(workload.arch, s, make_micro_batch(rows, workload.arch, s)) / 1e9


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "-"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
