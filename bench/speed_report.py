"""FLOP counts, medians, ratios and the Markdown page of the training-speed benchmark (bench/train_speed.py).

Training FLOPs of one run come from the model's shape and from what the run computed. docs/benchmarks.md explains
each term:
  positions x (4 x linear_params + 6 x lora_params)       frozen linear layers: forward and input gradients; LoRA:
                                                          forward, input gradients and weight gradients
  + 12 x layers x attention_width x sum(row width^2)     attention scores and weighted sums, forward and backward,
                                                          without the causal halving (the PaLM convention)
  + 4 x hidden x vocab x lm_head_positions               the frozen LM head, forward and input gradients
Recomputation by gradient checkpointing is not counted: this is model FLOPs utilisation, not hardware utilisation.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

METRICS = ("trained_tokens_per_s", "tokens_per_s", "positions_per_s", "train_time_s", "time_to_first_step_s",
           "launch_to_first_step_s", "peak_memory_gb", "achieved_tflops", "mfu", "mfu_vs_float32",
           "mfu_after_first_step")
ARM_TITLES = {
    "ft": "ft default path (`ft train`)",
    "ft-compile": "ft with `training.compile: true`",
    "trl": "TRL SFTTrainer defaults",
    "guide": "original guide's recipe",
}


@dataclass
class ModelShape:
    layers: int
    hidden: int
    vocab: int
    attention_width: int  # query heads x head dimension
    linear_params: int  # weights of the linear layers in the decoder blocks (no embeddings, no LM head)
    lora_params: int  # LoRA A and B of every such layer at the benchmark's rank


def model_shape(model_folder: Path, lora_r: int) -> ModelShape:
    """Count the parameters from the architecture built on the meta device: no weights load."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_folder)
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config)
    lm_head = skeleton.get_output_embeddings()
    linear_params = lora_params = 0
    for module in skeleton.modules():
        # PEFT's `all-linear` targets every linear layer except the output layer, as counted here.
        if isinstance(module, torch.nn.Linear) and module is not lm_head:
            linear_params += module.in_features * module.out_features
            lora_params += lora_r * (module.in_features + module.out_features)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return ModelShape(layers=config.num_hidden_layers, hidden=config.hidden_size, vocab=config.vocab_size,
                      attention_width=config.num_attention_heads * head_dim, linear_params=linear_params,
                      lora_params=lora_params)


def training_flops(shape: ModelShape, run: dict) -> float:
    linear = run["positions"] * (4 * shape.linear_params + 6 * shape.lora_params)
    attention = 12 * shape.layers * shape.attention_width * run["attention_width_sq"]
    lm_head = 4 * shape.hidden * shape.vocab * run["lm_head_positions"]
    return float(linear + attention + lm_head)


def add_rates(run: dict, shape: ModelShape, trained_tokens: int, matmul: dict[str, float]) -> None:
    """Add throughput, FLOP/s and MFU to a finished run, in place."""
    seconds = run["train_time_s"]
    flops = training_flops(shape, run)
    reference = matmul.get(run["compute_dtype"], matmul["float32"])
    run["trained_tokens"] = run.get("ft_trained_tokens", trained_tokens)
    run["trained_tokens_per_s"] = round(run["trained_tokens"] / seconds, 1)
    run["tokens_per_s"] = round(run["tokens"] / seconds, 1)
    run["positions_per_s"] = round(run["positions"] / seconds, 1)
    run["training_flops"] = flops
    run["achieved_tflops"] = round(flops / seconds / 1e12, 4)
    run["mfu"] = round(flops / seconds / reference, 4)
    run["mfu_vs_float32"] = round(flops / seconds / matmul["float32"], 4)
    if run.get("seconds_after_first_step"):
        # The rows of each step are not recorded, so the later steps get the run's FLOPs times their share of tokens.
        later_flops = flops * run["tokens_after_first_step"] / run["tokens"]
        run["mfu_after_first_step"] = round(later_flops / run["seconds_after_first_step"] / reference, 4)


def summarize_arm(runs: list[dict]) -> dict:
    done = [run for run in runs if "error" not in run]
    summary = {"runs_ok": len(done), "runs_failed": len(runs) - len(done)}
    if not done:
        return summary
    for metric in METRICS:
        values = [run[metric] for run in done if run.get(metric) is not None]
        if values:
            summary[metric] = {"median": round(statistics.median(values), 4), "min": min(values), "max": max(values)}
    summary["compute_dtype"] = done[0]["compute_dtype"]
    summary["threads"] = done[0]["threads"]
    summary["settings"] = done[0].get("settings")
    return summary


def median(arms: dict, arm: str, metric: str) -> float | None:
    value = arms.get(arm, {}).get(metric)
    return value["median"] if value else None


def ratios_to_trl(arms: dict) -> dict:
    """Divide each arm's median by TRL's median, per metric (above 1: more of it than TRL)."""
    ratios = {}
    for arm in arms:
        ratios[arm] = {}
        for metric in METRICS:
            value, base = median(arms, arm, metric), median(arms, "trl", metric)
            ratios[arm][metric] = round(value / base, 3) if value is not None and base else None
    return ratios


def acceptance_checks(arms: dict, startup: list[dict]) -> list[dict]:
    """Compare the measured values with the targets the benchmark exists to check, one row per target."""
    def check(text: str, value, passed) -> dict:
        return {"check": text, "value": value, "passed": passed}

    ft_rate = median(arms, "ft", "trained_tokens_per_s")
    trl_rate = median(arms, "trl", "trained_tokens_per_s")
    guide_rate = median(arms, "guide", "trained_tokens_per_s")
    ft_memory, trl_memory = median(arms, "ft", "peak_memory_gb"), median(arms, "trl", "peak_memory_gb")
    ft_mfu = median(arms, "ft", "mfu")
    checks = [
        check("ft trained tokens/s >= 1.5 x TRL defaults", ratio(ft_rate, trl_rate),
              None if ratio(ft_rate, trl_rate) is None else ft_rate >= 1.5 * trl_rate),
        check("ft peak memory <= TRL defaults", ratio(ft_memory, trl_memory),
              None if ratio(ft_memory, trl_memory) is None else ft_memory <= trl_memory),
        check("ft trained tokens/s >= 3 x original guide", ratio(ft_rate, guide_rate),
              None if ratio(ft_rate, guide_rate) is None else ft_rate >= 3 * guide_rate),
        check("ft MFU >= 0.5 of the measured matmul rate", ft_mfu, None if ft_mfu is None else ft_mfu >= 0.5),
    ]
    for item in startup:
        if not item["available"]:
            checks.append(check(f"`{item['command']}` imports no torch", "not available", None))
            continue
        checks.append(check(f"`{item['command']}` imports no torch", item["heavy_imports"],
                            "torch" not in item["heavy_imports"]))
        if item["command"] == "ft --help":
            checks.append(check("`ft --help` under 0.5 s", item["median_s"], item["median_s"] < 0.5))
    return checks


def ratio(value: float | None, base: float | None) -> float | None:
    return round(value / base, 3) if value is not None and base else None


def build_report(args, subset, shape: ModelShape, machine: dict, matmul: dict, runs: list[dict],
                 startup: list[dict], model_dtype: str, ft_executable: str) -> dict:
    trained_tokens = sum(subset.trained)
    for run in runs:
        if "error" not in run:
            add_rates(run, shape, trained_tokens, matmul)
    arm_names = list(dict.fromkeys(run["arm"] for run in runs))
    arms = {arm: summarize_arm([run for run in runs if run["arm"] == arm]) for arm in arm_names}
    return {
        "benchmark": "training speed: ft default path vs TRL SFTTrainer defaults vs the original guide's recipe",
        "created": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "quick": args.quick,
        "command": args.command_line,
        "machine": machine,
        "settings": {
            "model": "HuggingFaceTB/SmolLM2-135M-Instruct", "data": str(args.data),
            "rows": len(subset.lines), "rows_skipped_too_long": subset.skipped_too_long,
            "row_selection": f"the first {len(subset.lines)} rows whose rendered conversation has at most "
                             f"{args.max_length} tokens; longer rows are skipped, so no arm truncates",
            "tokens": sum(subset.lengths), "trained_tokens": trained_tokens,
            "max_length": args.max_length, "batch_size": args.batch_size, "steps": args.rows // args.batch_size,
            "repeats": args.repeats, "learning_rate": args.learning_rate, "lr_scheduler": "constant",
            "lora": {"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": "all-linear"},
            "model_dtype_ft_and_guide": model_dtype,
        },
        "model_shape": asdict(shape),
        "matmul_flops_per_s": {name: round(rate, 1) for name, rate in matmul.items()},
        "arms": arms,
        "ratio_to_trl": ratios_to_trl(arms),
        "checks": acceptance_checks(arms, startup),
        "startup": startup,
        "startup_executable": f"{ft_executable} (the environment's console script; uv's own start-up not timed)",
        "runs": runs,
        "notes": [
            "trained tokens are ft's count for every arm: the assistant tokens of the same rows, from ft's own data "
            "preparation. TRL's defaults take loss on every non-padding token; the guide's recipe takes loss on every "
            "position, padding included.",
            "tokens are the rows' real (non-padding) tokens; positions include the padding each arm computes.",
            "peak memory: CUDA max allocated on a GPU, else the peak resident memory (ru_maxrss) of the arm's process.",
            "time to first step: from the start of training to the end of the first optimizer step; launch to first "
            "step: from starting the process to the first-step line on its stdout.",
        ],
    }


def render_markdown(report: dict) -> str:
    lines = [f"# Training speed{' (quick check, not a benchmark result)' if report['quick'] else ''}", "",
             f"Created {report['created']} by `{report['command']}`.", ""]
    lines += machine_lines(report)
    lines += arm_table(report)
    lines += check_lines(report)
    lines += startup_lines(report)
    lines += run_lines(report)
    lines += ["## Notes", ""] + [f"- {note}" for note in report["notes"]] + [""]
    return "\n".join(lines)


def machine_lines(report: dict) -> list[str]:
    machine, settings, shape = report["machine"], report["settings"], report["model_shape"]
    matmul = report["matmul_flops_per_s"]
    return [
        "## Machine and settings", "",
        f"- CPU: {machine['cpu']}, {machine['cores']} cores ({machine['cores_usable']} usable), "
        f"{machine['ram_gb']} GB RAM; GPU: {machine['gpu'] or 'none'}; torch threads {machine['torch_threads']}",
        f"- load average at start {fmt_load(machine['load_average_start'])}, at end "
        f"{fmt_load(machine.get('load_average_end'))}",
        f"- Python {machine['python']}, torch {machine['torch']}, transformers {machine['transformers']}, "
        f"trl {machine['trl']}, peft {machine['peft']}",
        f"- matmul reference (torch.matmul 2048x2048, best of 5, before and after the arms): "
        f"float32 {matmul['float32'] / 1e12:.3f} TFLOP/s, bfloat16 {matmul['bfloat16'] / 1e12:.3f} TFLOP/s",
        f"- model {settings['model']}: {shape['layers']} layers, hidden {shape['hidden']}, vocab {shape['vocab']}, "
        f"{shape['linear_params']:,} linear weights, {shape['lora_params']:,} LoRA weights",
        f"- data: {settings['row_selection']} ({settings['rows_skipped_too_long']} skipped); "
        f"{settings['tokens']:,} tokens, {settings['trained_tokens']:,} trained",
        f"- batch {settings['batch_size']} rows, {settings['steps']} optimizer steps (one epoch), "
        f"{settings['repeats']} runs per arm alternated, learning rate {settings['learning_rate']} constant",
        "",
    ]


def fmt_load(values) -> str:
    return "/".join(f"{value:.2f}" for value in values) if values else "?"


def arm_table(report: dict) -> list[str]:
    lines = ["## Results (medians; x TRL in brackets)", "",
             "| arm | trained tok/s | tok/s | train time s | first step s | launch to first step s "
             "| peak memory GB | TFLOP/s | MFU | MFU after the first step | compute dtype |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for arm, summary in report["arms"].items():
        ratios = report["ratio_to_trl"][arm]
        if not summary["runs_ok"]:
            lines.append(f"| {ARM_TITLES[arm]} | failed | | | | | | | | | |")
            continue

        def cell(metric: str, digits: int, with_ratio: bool = True) -> str:
            value = summary.get(metric, {}).get("median")
            if value is None:
                return "?"
            shown = f"{value:,.{digits}f}"
            if with_ratio and arm != "trl" and ratios.get(metric) is not None:
                shown += f" ({ratios[metric]:.2f}x)"
            return shown

        lines.append(f"| {ARM_TITLES[arm]} | {cell('trained_tokens_per_s', 1)} | {cell('tokens_per_s', 1)} | "
                     f"{cell('train_time_s', 1)} | {cell('time_to_first_step_s', 1)} | "
                     f"{cell('launch_to_first_step_s', 1)} | {cell('peak_memory_gb', 2)} | "
                     f"{cell('achieved_tflops', 3, False)} | {cell('mfu', 3, False)} | "
                     f"{cell('mfu_after_first_step', 3, False) if 'mfu_after_first_step' in summary else '-'} | "
                     f"{summary['compute_dtype']} |")
    lines += ["", "MFU divides the achieved FLOP/s by the measured matmul rate in the arm's compute dtype. "
              "MFU after the first step (ft arms, from their per-step metrics) leaves out the first step's one-off "
              "costs, such as compiling with training.compile. "
              "The guide's recipe trains on every position, padding included; its trained tokens/s counts only "
              "the assistant tokens.", ""]
    trl_settings = report["arms"].get("trl", {}).get("settings")
    if trl_settings:
        lines += ["TRL defaults as resolved: " + ", ".join(f"{key} {value}" for key, value in trl_settings.items()), ""]
    return lines


def check_lines(report: dict) -> list[str]:
    marks = {True: "met", False: "NOT met", None: "not measured"}
    lines = ["## Targets", "", "| target | value | result |", "|---|---|---|"]
    for item in report["checks"]:
        lines.append(f"| {item['check']} | {item['value']} | {marks[item['passed']]} |")
    return lines + [""]


def startup_lines(report: dict) -> list[str]:
    lines = ["## Start-up", "", f"Median of 5 runs of {report['startup_executable']}.", "",
             "| command | median s | exit code | heavy modules imported |", "|---|---|---|---|"]
    for item in report["startup"]:
        if not item["available"]:
            lines.append(f"| `{item['command']}` | not available | | |")
            continue
        imported = ", ".join(item["heavy_imports"]) or "none"
        lines.append(f"| `{item['command']}` | {item['median_s']:.3f} | {item['exit_code']} | {imported} |")
    return lines + [""]


def run_lines(report: dict) -> list[str]:
    lines = ["## Every run", "", "| run | trained tok/s | train time s | first step s | launch to first step s "
             "| peak memory GB | MFU | first loss | last loss |", "|---|---|---|---|---|---|---|---|---|"]
    for run in report["runs"]:
        name = f"{run['arm']}-{run['repeat']}"
        if "error" in run:
            error = run["error"].replace("|", "\\|")  # a bar would end the Markdown table cell
            lines.append(f"| {name} | failed: {error} | | | | | | | |")
            continue
        lines.append(f"| {name} | {run['trained_tokens_per_s']:,.1f} | {run['train_time_s']:.1f} | "
                     f"{run['time_to_first_step_s']:.1f} | {run['launch_to_first_step_s']} | "
                     f"{run['peak_memory_gb']:.2f} | {run['mfu']:.3f} | {fmt_loss(run.get('first_loss'))} | "
                     f"{fmt_loss(run.get('last_loss'))} |")
    return lines + [""]


def fmt_loss(value) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "-"
