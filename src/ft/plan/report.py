"""The plan as a table for people, or as JSON for scripts."""

from __future__ import annotations

import math
from dataclasses import asdict

from ft.plan.estimate import LOCAL, FlavorEstimate, PlanReport, trained_parameter_count
from ft.plan.memory import MemoryParts
from ft.plan.settings import checkpointing_applies
from ft.plan.warnings import format_duration

PART_NAMES = [name for name in MemoryParts.__dataclass_fields__ if name != "peak"]


def format_usd(value: float) -> str:
    if not math.isfinite(value):
        return "-"
    return f"{value:.2f}" if value >= 0.1 else f"{value:.4f}"


def finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def estimate_json(estimate: FlavorEstimate) -> dict:
    data = asdict(estimate)
    for key in ("time_s", "train_time_s", "eval_time_s", "cost_usd"):
        data[key] = finite_or_none(data[key])
    data["usable"] = estimate.usable
    return data


def report_json(report: PlanReport) -> dict:
    workload = report.workload
    cfg = workload.cfg
    arch = workload.arch
    return {
        "config": str(workload.loaded.path),
        "model": {
            "name": cfg.model.name, "origin": workload.model.origin, "model_type": arch.model_type,
            "parameters": arch.parameter_count(), "parameters_by_part": arch.parameter_parts(),
            "trained_parameters": trained_parameter_count(workload),
            "stored_parameters": workload.model.stored_parameters, "architecture": asdict(arch),
        },
        "training": {
            "method": cfg.training.method, "precision": cfg.model.precision, "batch_size": cfg.training.batch_size,
            "grad_accum": cfg.training.grad_accum, "max_length": cfg.data.max_length, "packing": cfg.data.packing,
            "gradient_checkpointing": checkpointing_applies(cfg), "attn_implementation": cfg.model.attn_implementation,
            "epochs": cfg.training.epochs, "max_steps": cfg.training.max_steps,
        },
        "data": {side: counts.summary() for side, counts in workload.counts.items()},
        "estimates": [estimate_json(e) for e in report.estimates],
        "cheapest": report.cheapest,
        "fastest_within_2x_cost": report.fastest,
        "warnings": report.warnings,
        "prices": report.prices_source,
        "this_machine_speed": {"peak_flops": workload.cpu.peak_flops, "peak_dtype": workload.cpu.peak_dtype,
                               "efficiency": round(workload.cpu.efficiency, 4), "source": workload.cpu.source},
    }


def format_report(report: PlanReport, only: str | None = None) -> str:
    lines = header_lines(report)
    shown = [e for e in report.estimates if only is None or e.flavor == only]
    lines += [""] + table_lines(shown)
    if only is not None:
        lines += [""] + parts_lines(shown[0])
    lines += [""] + choice_lines(report)
    if report.warnings:
        lines += ["", "warnings:"] + [f"  - {w}" for w in report.warnings]
    return "\n".join(lines)


def header_lines(report: PlanReport) -> list[str]:
    workload = report.workload
    cfg, arch = workload.cfg, workload.arch
    trained = trained_parameter_count(workload)
    total = arch.parameter_count()
    method = cfg.training.method if cfg.training.method == "full" else (
        f"{cfg.training.method} r={cfg.lora.r} on {target_text(cfg.lora.target_modules)}")
    lines = [
        f"ft plan {workload.loaded.path}",
        f"model: {cfg.model.name} ({arch.model_type}, {total:,} parameters; shapes from {workload.model.origin})",
        f"training: {method}, {trained:,} trained parameters ({trained / total:.2%}); "
        f"{cfg.training.batch_size} rows x {cfg.training.grad_accum} accumulation per device; max_length "
        f"{cfg.data.max_length}; packing {on_off(cfg.data.packing)}; gradient checkpointing "
        f"{on_off(checkpointing_applies(cfg))}",
    ]
    for side, counts in workload.counts.items():
        s = counts.summary()
        lines.append(f"data.{side}: {s['rows_used']:,} rows, {s['tokens']:,} tokens ({s['trained_tokens']:,} trained, "
                     f"{s['trained_share']:.0%}); mean {s['mean_row_tokens']:.0f}, longest {s['max_row_tokens']} "
                     f"tokens per row ({s['counted']}{', cached' if s['from_cache'] else ''})")
    return lines


def target_text(targets) -> str:
    if targets == "all-linear":
        return "all linear layers"
    if isinstance(targets, str):
        return targets
    return ", ".join(targets)


def on_off(value: bool) -> str:
    return "on" if value else "off"


def table_lines(estimates: list[FlavorEstimate]) -> list[str]:
    header = f"{'flavor':<20} {'GPUs':>4} {'dtype':<9} {'fits':<4} {'peak GB':>8} {'of GB':>7} {'steps':>6} " \
             f"{'time':>12} {'cost USD':>9}"
    lines = [header, "-" * len(header)]
    for e in estimates:
        fits = "no" if not e.fits else "yes"
        cost = "-" if e.flavor == LOCAL else format_usd(e.cost_usd)
        gpus = str(e.gpus) if e.gpus else "-"
        line = (f"{e.label:<20} {gpus:>4} {e.dtype:<9} {fits:<4} {e.peak_memory_gb:>8.2f} {e.device_memory_gb:>7.0f} "
                f"{e.steps:>6} {format_duration(e.time_s):>12} {cost:>9}")
        if e.blocked:
            line += f"  ({e.blocked})"
        lines.append(line)
    return lines


def parts_lines(estimate: FlavorEstimate) -> list[str]:
    parts = estimate.memory_gb
    lines = [f"memory per device on {estimate.label} (GB):"]
    lines += [f"  {name:<12} {parts[name]:>8.3f}" for name in PART_NAMES]
    lines.append(f"  {'peak':<12} {parts['peak']:>8.3f}  (static parts plus the larger of activations + logits "
                 "and the optimizer step)")
    lines.append(f"time: {format_duration(estimate.train_time_s)} training + {format_duration(estimate.eval_time_s)} "
                 f"evaluation, {estimate.training_flops:.3g} training FLOPs; speed: {estimate.speed_source}")
    if estimate.processes > 1:
        lines.append(f"runs {estimate.processes} processes, one per GPU, each holding the whole model "
                     "(data parallel).")
    return lines


def choice_lines(report: PlanReport) -> list[str]:
    if report.cheapest is None:
        return ["no flavor fits this run; see the warnings."]
    cheapest = report.estimate(report.cheapest)
    lines = [f"cheapest that fits: {cheapest.flavor} (about ${format_usd(cheapest.cost_usd)}, "
             f"{format_duration(cheapest.time_s)})"]
    if report.fastest and report.fastest != report.cheapest:
        fastest = report.estimate(report.fastest)
        lines.append(f"fastest within twice that cost: {fastest.flavor} (about ${format_usd(fastest.cost_usd)}, "
                     f"{format_duration(fastest.time_s)})")
    lines.append(f"prices: {report.prices_source}; times exclude the job's start-up (image, install, download).")
    return lines
