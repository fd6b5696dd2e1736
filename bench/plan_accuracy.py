"""Accuracy of `ft plan` on this machine: its predicted peak memory and time against real `ft train` runs.

Full run (on a quiet machine):     uv run --no-sync python bench/plan_accuracy.py
Quick check that everything runs:  uv run --no-sync python bench/plan_accuracy.py --quick

First `ft plan --calibrate` measures this machine once (on the first case). Then, for each case, `ft plan --json`
predicts this machine's row ("local": peak_memory_gb, and time_s for training plus evaluation: the eval-loss passes
and the tool-call evaluation after training). Then
`ft train` runs the same config and overrides in a subprocess. Its summary.json gives peak_memory_gb (the process's
peak resident memory on a CPU) and train_time_s. Targets: memory within 20%, time within 25%, and
`ft plan` answering in under 5 s.

Cases: the quickstart config, and the tool-use seed set (trace column, max_length 2048) at batch sizes 2 and 8,
each for a few optimizer steps. Results: bench/results/plan_accuracy.json and .md (--quick: plan_accuracy_quick.*),
with a description of the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
QUICKSTART = "configs/quickstart.yaml"
SEED_DATA = "../shared/data/tool-use-finetuning/train.jsonl"
MEMORY_TARGET = 0.20
TIME_TARGET = 0.25
PLAN_SECONDS_TARGET = 5.0
STEPS = 5

SEED_OVERRIDES = [f"data.train={SEED_DATA}", "data.messages_column=trace", "data.max_length=2048", "data.eval=null"]
FULL_CASES = {
    "quickstart": [f"training.max_steps={STEPS}"],
    "seed batch 2": SEED_OVERRIDES + [f"training.max_steps={STEPS}", "training.batch_size=2"],
    "seed batch 8": SEED_OVERRIDES + [f"training.max_steps={STEPS}", "training.batch_size=8"],
}
QUICK_CASES = {
    "quickstart (quick)": ["training.max_steps=2", "training.batch_size=2", "data.max_rows=16", "data.eval_max_rows=4"],
}


def set_flags(overrides: list[str]) -> list[str]:
    return [part for item in overrides for part in ("--set", item)]


def run_command(args: list[str], timeout_s: float) -> tuple[subprocess.CompletedProcess, float]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout_s)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"command failed ({done.returncode}): {' '.join(args)}\n{done.stderr[-3000:]}")
    return done, elapsed


def calibrate(overrides: list[str]) -> dict:
    done, elapsed = run_command(["-m", "ft.plan.cli", QUICKSTART, "--calibrate", "--json", *set_flags(overrides)], 1800)
    print(done.stderr.strip().splitlines()[-1], flush=True)
    return {"seconds": round(elapsed, 1), "message": done.stderr.strip().splitlines()[-1]}


def run_case(name: str, overrides: list[str], output_dir: Path) -> dict:
    """Plan, then train, one case; return predicted and measured numbers."""
    config_overrides = overrides + [f"output.dir={output_dir}", "output.run_name=run"]
    plan_done, plan_seconds = run_command(["-m", "ft.plan.cli", QUICKSTART, "--json", *set_flags(config_overrides)], 600)
    plan = json.loads(plan_done.stdout)
    local = next(e for e in plan["estimates"] if e["flavor"] == "local")
    print(f"{name}: plan in {plan_seconds:.1f} s predicts {local['peak_memory_gb']:.2f} GB, {local['time_s']:.0f} s",
          flush=True)

    run_command(["-m", "ft.cli", "train", QUICKSTART, *set_flags(config_overrides)], 7200)
    summary = json.loads((output_dir / "run" / "summary.json").read_text())
    print(f"{name}: ft train measured {summary['peak_memory_gb']:.2f} GB, {summary['train_time_s']:.0f} s", flush=True)
    return {
        "case": name,
        "overrides": overrides,
        "plan_seconds": round(plan_seconds, 2),
        "predicted_peak_memory_gb": local["peak_memory_gb"],
        "predicted_memory_gb": local["memory_gb"],
        "predicted_time_s": local["time_s"],
        "measured_peak_memory_gb": summary["peak_memory_gb"],
        "measured_train_time_s": summary["train_time_s"],
        "memory_error": relative_error(local["peak_memory_gb"], summary["peak_memory_gb"]),
        "time_error": relative_error(local["time_s"], summary["train_time_s"]),
        "steps": summary.get("steps"),
        "tokens_seen": summary.get("tokens_seen"),
        "speed_source": plan["this_machine_speed"]["source"],
    }


def relative_error(predicted: float, measured: float) -> float:
    return round((predicted - measured) / measured, 4) if measured else float("nan")


def describe_machine() -> dict:
    cpu = "unknown"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
        memory_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                         if line.startswith("MemTotal:"))
    except (OSError, StopIteration, ValueError):
        memory_kb = 0
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO, capture_output=True, text=True).stdout
    return {
        "cpu": cpu, "logical_cores": os.cpu_count(), "memory_gb": round(memory_kb / 1e6, 1),
        "os": platform.platform(), "python": platform.python_version(), "ft_commit": commit.strip(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def render_markdown(result: dict) -> str:
    machine = result["machine"]
    lines = [
        "# `ft plan` accuracy on this machine",
        "",
        f"Command: `uv run --no-sync python bench/plan_accuracy.py{' --quick' if result['quick'] else ''}` "
        f"({result['date']}).",
        f"Machine: {machine['cpu']}, {machine['logical_cores']} logical cores, {machine['memory_gb']} GB RAM, "
        f"{machine['os']}, Python {machine['python']}, ft {machine['ft_commit']}; load average "
        f"{machine['load_average_at_start']} at the start, {result['load_average_at_end']} at the end.",
        f"Calibration: {result['calibration']['message']}",
        "",
        "Predicted: the `local` row of `ft plan --json`. Measured: `summary.json` of `ft train` (peak resident memory, "
        "time of training and evaluation: eval loss and the tool-call evaluation). Targets: memory within "
        f"{MEMORY_TARGET:.0%}, time within "
        f"{TIME_TARGET:.0%}, `ft plan` under {PLAN_SECONDS_TARGET:.0f} s.",
        "",
        "| case | plan s | peak GB predicted | measured | error | time s predicted | measured | error |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case in result["cases"]:
        lines.append(
            f"| {case['case']} | {case['plan_seconds']:.1f} | {case['predicted_peak_memory_gb']:.2f} | "
            f"{case['measured_peak_memory_gb']:.2f} | {case['memory_error']:+.0%} | {case['predicted_time_s']:.0f} | "
            f"{case['measured_train_time_s']:.0f} | {case['time_error']:+.0%} |")
    lines += ["", "Overrides per case (on configs/quickstart.yaml):", ""]
    lines += [f"- {case['case']}: `{' '.join(case['overrides'])}`" for case in result["cases"]]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one tiny case (2 steps of 2 rows) to check the script runs")
    args = parser.parse_args()

    cases = QUICK_CASES if args.quick else FULL_CASES
    machine = describe_machine()
    first_overrides = next(iter(cases.values()))
    calibration = calibrate(first_overrides)
    results = []
    with tempfile.TemporaryDirectory(prefix="ft-plan-bench-") as scratch:
        for index, (name, overrides) in enumerate(cases.items()):
            results.append(run_case(name, overrides, Path(scratch) / f"case-{index}"))

    result = {
        "quick": args.quick, "date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()], "calibration": calibration,
        "targets": {"memory": MEMORY_TARGET, "time": TIME_TARGET, "plan_seconds": PLAN_SECONDS_TARGET},
        "cases": results,
    }
    stem = "plan_accuracy_quick" if args.quick else "plan_accuracy"
    RESULTS.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(REPO / "src"))
    from ft.outputs import write_json_atomic, write_text_atomic

    write_json_atomic(RESULTS / f"{stem}.json", result)
    write_text_atomic(RESULTS / f"{stem}.md", render_markdown(result))
    print(render_markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
