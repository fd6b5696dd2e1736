"""Training speed: ft's default path against TRL's SFTTrainer defaults and the original guide's recipe.

Full run (the numbers in docs/benchmarks.md):  uv run --no-sync python bench/train_speed.py
Quick check that every arm runs:                 uv run --no-sync python bench/train_speed.py --quick

Each arm trains the same LoRA adapter (r 16, alpha 32, all linear layers, no dropout; AdamW, constant learning rate)
on the same model and the same rows for one epoch, in its own process; the arms alternate over the repeats:
  ft     the real `ft train` command on a generated config (ft's defaults otherwise);
  trl    TRL's SFTTrainer with its defaults (bench/speed_arms.py);
  guide  the original guide's recipe: rows padded to max_length, labels = input ids (bench/speed_arms.py).
Results go to bench/results/train_speed.json and .md (with --quick: train_speed_quick.*). docs/benchmarks.md
explains how every number is computed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

from ft.errors import FtError  # noqa: E402
from speed_arms import FIRST_STEP_MARKER  # noqa: E402
from speed_report import (  # noqa: E402
    ModelShape, build_report, model_shape, render_markdown,
)

MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
DEFAULT_DATA = REPO.parent / "shared" / "data" / "tool-use-finetuning" / "train.jsonl"
ARMS = ("ft", "ft-compile", "trl", "guide")
DEFAULT_ARMS = ("ft", "trl", "guide")  # ft-compile: ft with training.compile, on request
FT_FIRST_STEP = re.compile(r"^step\s+1/\d+ \|")
STARTUP_COMMANDS = (("ft --help", ["--help"]), ("ft jobs ps", ["jobs", "ps"]),
                    ("ft plan configs/quickstart.yaml", ["plan", "configs/quickstart.yaml"]))
HEAVY_MODULES = ("torch", "transformers", "peft", "datasets")


@dataclass
class Subset:
    """The benchmark rows, as raw JSON lines, with ft's token counts for each."""

    lines: list[str]
    lengths: list[int]
    trained: list[int]
    skipped_too_long: int


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Compare training speed: ft's default path, TRL's SFTTrainer "
                                     "defaults and the original guide's recipe.")
    parser.add_argument("--rows", type=int, default=8, help="training rows, the same in every arm (default 8)")
    parser.add_argument("--batch-size", type=int, default=4, help="rows per optimizer step (default 4)")
    parser.add_argument("--max-length", type=int, default=1024,
                        help="max_length in tokens; only rows that fit are used, so no arm truncates (default 1024)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each arm, alternated (default 2)")
    parser.add_argument("--learning-rate", type=float, default=2e-4, help="constant learning rate (default 2e-4)")
    parser.add_argument("--arms", default=",".join(DEFAULT_ARMS),
                        help=f"comma-separated arms to run, from {', '.join(ARMS)} (default {','.join(DEFAULT_ARMS)})")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="JSONL rows with a `trace` message column")
    parser.add_argument("--out-dir", type=Path, default=REPO / "bench" / "results", help="folder for the results")
    parser.add_argument("--timeout-s", type=int, default=1200, help="limit for one arm's run, in seconds (default 1200)")
    parser.add_argument("--quick", action="store_true",
                        help="a quick check that every arm runs: 4 rows, batch 2, 1 repeat; writes train_speed_quick.*")
    parser.add_argument("--name", help="file name of the results, without extension (default train_speed, or "
                        "train_speed_quick with --quick)")
    args = parser.parse_args(argv)
    args.command_line = " ".join(["python bench/train_speed.py", *(sys.argv[1:] if argv is None else argv)])
    if args.quick:
        args.rows, args.batch_size, args.repeats = 4, 2, 1
    return args


def check_args(args: argparse.Namespace) -> list[str]:
    """Return the arms to run; raise FtError naming the flag and the fix for any bad value."""
    arms = [arm.strip() for arm in args.arms.split(",") if arm.strip()]
    unknown = [arm for arm in arms if arm not in ARMS]
    if unknown or not arms:
        raise FtError(f"--arms {args.arms!r}: unknown arm {', '.join(unknown) or '(none given)'}. "
                      f"Choose from {', '.join(ARMS)}.")
    if len(set(arms)) < len(arms):
        raise FtError(f"--arms {args.arms!r}: an arm is named twice; use --repeats for more runs of an arm.")
    if args.name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", args.name):
        raise FtError(f"--name {args.name!r}: expected a plain file name (letters, digits, `_`, `-`, `.`, no folder); "
                      "the results go to --out-dir.")
    for flag, value in (("--rows", args.rows), ("--batch-size", args.batch_size), ("--repeats", args.repeats),
                        ("--max-length", args.max_length), ("--timeout-s", args.timeout_s)):
        if value < 1:
            raise FtError(f"{flag} {value}: must be at least 1.")
    if args.rows % args.batch_size:
        raise FtError(f"--rows {args.rows} is not a multiple of --batch-size {args.batch_size}: every arm must run "
                      f"whole optimizer steps over the same rows. Use e.g. --rows {args.rows // args.batch_size * args.batch_size or args.batch_size}.")
    if not args.data.is_file():
        raise FtError(f"--data {args.data}: file not found. The benchmark reads the tool-use-finetuning train set "
                      "(JSONL with a `trace` column); pass its path with --data.")
    if args.data.suffix != ".jsonl":
        raise FtError(f"--data {args.data}: expected a .jsonl file (one JSON object with a `trace` column a line).")
    return arms


def select_rows(args: argparse.Namespace, tokenizer_source) -> Subset:
    """Take the first rows whose rendered conversation fits in max_length, with ft's token and trained-token counts.

    Rows that do not fit are skipped instead of cut, because each arm truncates differently (ft cuts the prompt side,
    TRL and the guide cut the end): with only fitting rows, every arm trains on exactly the same tokens.
    """
    from ft.config import DataSection
    from ft.data.prepare import prepare
    from ft.data.render import find_end_token, probe_template
    from ft.model import load_tokenizer, read_model_config

    tokenizer = load_tokenizer(tokenizer_source)
    model_config = read_model_config(tokenizer_source)
    traits = probe_template(tokenizer, "auto", model_config.model_type, MODEL_ID)
    section = DataSection(train=str(args.data), messages_column="trace", max_length=10**9)
    prepared = prepare(section, tokenizer, traits, find_end_token(tokenizer), 42, "train", strict=False)
    lines = args.data.read_text(encoding="utf-8").splitlines()  # `where` is "file:line", counting blank lines

    subset = Subset([], [], [], 0)
    for example in prepared.examples:
        line_number = int(example.where.rsplit(":", 1)[1])
        trace = json.loads(lines[line_number - 1])["trace"]
        template_length = len(tokenizer.apply_chat_template(trace, tokenize=True, return_dict=True)["input_ids"])
        if max(len(example.input_ids), template_length) > args.max_length:
            subset.skipped_too_long += 1
            continue
        subset.lines.append(lines[line_number - 1])
        subset.lengths.append(len(example.input_ids))
        subset.trained.append(example.trained_tokens)
        if len(subset.lines) == args.rows:
            return subset
    raise FtError(f"--rows {args.rows}: only {len(subset.lines)} rows of {args.data} fit in --max-length "
                  f"{args.max_length} tokens. Lower --rows or raise --max-length.")


def ft_config_text(args, model_folder: Path, rows_path: Path, runs_dir: Path, run_name: str, compile_: bool) -> str:
    """Return a config for `ft train` with ft's defaults, except for the settings every arm shares (and
    training.compile for the ft-compile arm)."""
    return f"""# Run: ft train this-file (generated by bench/train_speed.py)
model:
  name: {model_folder}
data:
  train: {rows_path}
  messages_column: trace
  max_length: {args.max_length}
lora:
  r: 16
  alpha: 32
  dropout: 0.0
  target_modules: all-linear
training:
  max_steps: {args.rows // args.batch_size}
  batch_size: {args.batch_size}
  learning_rate: {args.learning_rate}
  lr_scheduler: constant
  warmup_ratio: 0.0
  optimizer: {trainer_default_optimizer()}
  seed: 42
  compile: {str(compile_).lower()}
output:
  dir: {runs_dir}
  run_name: {run_name}
"""


def trainer_default_optimizer() -> str:
    """Return the default optimizer of transformers' Trainer, which TRL and the guide use, so that ft uses it too."""
    import dataclasses

    from transformers import TrainingArguments

    default = next(f.default for f in dataclasses.fields(TrainingArguments) if f.name == "optim")
    return getattr(default, "value", default)


def arm_spec(args, model_folder: Path, rows_path: Path, output_dir: Path, model_dtype: str) -> dict:
    return {"model_folder": str(model_folder), "rows_path": str(rows_path), "output_dir": str(output_dir),
            "max_length": args.max_length, "batch_size": args.batch_size, "max_steps": args.rows // args.batch_size,
            "learning_rate": args.learning_rate, "seed": 42, "model_dtype": model_dtype, "lora_r": 16,
            "lora_alpha": 32, "lora_dropout": 0.0, "lora_target_modules": "all-linear"}


def arm_environment() -> dict:
    return dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONUNBUFFERED="1",
                TOKENIZERS_PARALLELISM="false")


def run_process(command: list[str], first_step: re.Pattern, log_path: Path, timeout_s: int) -> dict:
    """Run one arm; return its exit code, wall time and the seconds from launch to its first-step line on stdout."""
    launched = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True, cwd=REPO,
                                   env=arm_environment())
        timer = threading.Timer(timeout_s, process.kill)
        timer.start()
        first_step_s = None
        for line in process.stdout:
            if first_step_s is None and first_step.search(line):
                first_step_s = round(time.perf_counter() - launched, 3)
            log.write(line)
        returncode = process.wait()
        timer.cancel()
    wall_s = round(time.perf_counter() - launched, 3)
    result = {"returncode": returncode, "process_wall_s": wall_s, "launch_to_first_step_s": first_step_s}
    if returncode != 0:
        tail = [line for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
        result["error"] = f"{exit_reason(returncode, wall_s, timeout_s)}: {tail[-1] if tail else 'no output'}"
        result["log_tail"] = tail[-15:]
    return result


def exit_reason(returncode: int, wall_s: float, timeout_s: int) -> str:
    if wall_s >= timeout_s:
        return f"killed after the {timeout_s} s limit"
    if returncode < 0:
        return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


def run_ft(args, work: Path, run_name: str, model_folder: Path, rows_path: Path, subset: Subset,
           model_dtype: str, threads: int, compile_: bool) -> dict:
    config_path = work / f"{run_name}.yaml"
    config_path.write_text(ft_config_text(args, model_folder, rows_path, work / "ft-runs", run_name, compile_),
                           encoding="utf-8")
    command = [ft_executable(), "train", str(config_path)]
    result = run_process(command, FT_FIRST_STEP, work / f"{run_name}.log", args.timeout_s)
    summary_path = work / "ft-runs" / run_name / "summary.json"
    if result["returncode"] != 0 or not summary_path.is_file():
        result.setdefault("error", f"no summary.json at {summary_path}")
        return result
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    result.update({
        "steps": summary["steps"],
        "train_time_s": summary["train_time_s"],
        "time_to_first_step_s": summary["time_to_first_step_s"],
        "peak_memory_gb": summary["peak_memory_gb"],
        "first_loss": summary["first_loss"],
        "last_loss": summary["last_loss"],
        "ft_tokens_seen": summary["tokens_seen"],
        "ft_trained_tokens": summary["trained_tokens"],
        # ft runs rows without padding (packed, or one row per micro-batch on a CPU), so every position is a real
        # token. Attention is counted per row, and the LM head runs only at trained positions.
        "positions": summary["tokens_seen"],
        "tokens": summary["tokens_seen"],
        "attention_width_sq": sum(length * length for length in subset.lengths),
        "lm_head_positions": summary["trained_tokens"],
        "compute_dtype": model_dtype,
        "threads": threads,
        **after_first_step(work / "ft-runs" / run_name / "metrics.jsonl"),
    })
    return result


def after_first_step(metrics_path: Path) -> dict:
    """Return the tokens and seconds of the steps after the first, from ft's per-step metrics rows.

    The first step carries the one-off costs (oneDNN kernel selection, and with training.compile the compiling),
    so the rate after it is the rate of a long run."""
    rows = [json.loads(line) for line in metrics_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    steps = [row for row in rows if "tokens" in row and "elapsed_s" in row]
    if len(steps) < 2 or steps[0]["step"] != 1:
        return {}
    return {"tokens_after_first_step": steps[-1]["tokens"] - steps[0]["tokens"],
            "seconds_after_first_step": round(steps[-1]["elapsed_s"] - steps[0]["elapsed_s"], 3)}


def ft_executable() -> str:
    """Return the `ft` console script of the running interpreter's environment, so that uv's start-up is not timed."""
    script = Path(sys.executable).parent / "ft"
    return str(script) if script.is_file() else "ft"


def run_other_arm(arm: str, args, work: Path, run_name: str, model_folder: Path, rows_path: Path,
                  model_dtype: str) -> dict:
    spec_path = work / f"{run_name}.spec.json"
    result_path = work / f"{run_name}.result.json"
    spec = arm_spec(args, model_folder, rows_path, work / run_name, model_dtype)
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    command = [sys.executable, str(REPO / "bench" / "speed_arms.py"), arm, str(spec_path), str(result_path)]
    result = run_process(command, re.compile(re.escape(FIRST_STEP_MARKER)), work / f"{run_name}.log", args.timeout_s)
    if result["returncode"] == 0:
        result.update(json.loads(result_path.read_text(encoding="utf-8")))
    return result


def run_all_arms(args, arms: list[str], work: Path, model_folder: Path, subset: Subset, model_dtype: str,
                 threads: int) -> list[dict]:
    rows_path = work / "rows.jsonl"
    rows_path.write_text("\n".join(subset.lines) + "\n", encoding="utf-8")
    runs = []
    for repeat in range(1, args.repeats + 1):
        for arm in arms:
            run_name = f"{arm}-{repeat}"
            print(f"[{time.strftime('%H:%M:%S')}] {run_name}: running", flush=True)
            if arm in ("ft", "ft-compile"):
                result = run_ft(args, work, run_name, model_folder, rows_path, subset, model_dtype, threads,
                                compile_=arm == "ft-compile")
            else:
                result = run_other_arm(arm, args, work, run_name, model_folder, rows_path, model_dtype)
            result.update({"arm": arm, "repeat": repeat})
            runs.append(result)
            print(f"[{time.strftime('%H:%M:%S')}] {run_name}: {describe_run(result)}", flush=True)
    return runs


def describe_run(result: dict) -> str:
    if "error" in result:
        return "FAILED, " + result["error"]
    return (f"train {result['train_time_s']:.1f} s, first step {result['time_to_first_step_s']:.1f} s after train "
            f"start ({result['launch_to_first_step_s']} s after launch), peak memory {result['peak_memory_gb']:.2f} GB")


def matmul_rates(repeats: int = 5, size: int = 2048) -> dict[str, float]:
    """Best dense matrix-multiply rate (FLOP/s) of torch.matmul on size x size matrices, per dtype, on this machine."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    rates = {}
    for name in ("float32", "bfloat16"):
        dtype = getattr(torch, name)
        a = torch.randn(size, size, dtype=dtype, device=device)
        b = torch.randn(size, size, dtype=dtype, device=device)
        torch.matmul(a, b)  # warm-up: thread pool and kernel selection
        best_s = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            torch.matmul(a, b)
            if device == "cuda":
                torch.cuda.synchronize()
            best_s = min(best_s, time.perf_counter() - started)
        rates[name] = 2 * size**3 / best_s
    return rates


def time_startup_commands(runs: int = 5) -> list[dict]:
    """Median wall time of `ft` commands that must start without torch, and whether each imported a heavy module."""
    with tempfile.TemporaryDirectory(prefix="ft-bench-startup-") as home:
        # No token and an endpoint where nothing listens: `ft jobs ps` must not reach the Hub, or find a token.
        env = {key: value for key, value in arm_environment().items() if key not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
        env.update(HF_HOME=home, HF_ENDPOINT="http://127.0.0.1:9")
        return [time_command(label, argv, env, runs) for label, argv in STARTUP_COMMANDS]


def time_command(label: str, argv: list[str], env: dict, runs: int) -> dict:
    command = [ft_executable(), *argv]
    first = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    if first.returncode == 2 and "invalid choice" in first.stderr:
        return {"command": label, "available": False}
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, capture_output=True, cwd=REPO, env=env, timeout=120)
        times.append(time.perf_counter() - started)
    return {"command": label, "available": True, "exit_code": first.returncode,
            "median_s": round(statistics.median(times), 3), "runs_s": [round(t, 3) for t in times],
            "heavy_imports": heavy_imports(argv, env)}


def heavy_imports(argv: list[str], env: dict) -> list[str]:
    """Run `ft.cli.main(argv)` in a fresh interpreter and list the heavy libraries it imported."""
    probe = ("import json, sys\nfrom ft.cli import main\ntry:\n    main(sys.argv[2:])\nexcept SystemExit:\n    pass\n"
             f"open(sys.argv[1], 'w').write(json.dumps([m for m in {HEAVY_MODULES!r} if m in sys.modules]))\n")
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run([sys.executable, "-c", probe, out.name, *argv], capture_output=True, cwd=REPO, env=env,
                       timeout=120)
        text = Path(out.name).read_text(encoding="utf-8")
    return json.loads(text) if text else ["(probe failed)"]


def describe_machine(threads: int) -> dict:
    import peft
    import torch
    import transformers
    import trl

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown")
    mem_kib = next((int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                    if line.startswith("MemTotal")), 0)
    return {
        "cpu": cpu, "cores": os.cpu_count(), "cores_usable": len(os.sched_getaffinity(0)),
        "ram_gb": round(mem_kib * 1024 / 1e9, 1), "torch_threads": threads,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "python": sys.version.split()[0], "torch": torch.__version__, "transformers": transformers.__version__,
        "trl": trl.__version__, "peft": peft.__version__, "load_average_start": list(os.getloadavg()),
    }


def warm_page_cache(model_folder: Path) -> None:
    """Read the weights once, so that the first arm does not pay the disk read the others are spared."""
    for path in model_folder.glob("*.safetensors"):
        with open(path, "rb") as handle:
            while handle.read(1 << 24):
                pass


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        arms = check_args(args)
        return run_benchmark(args, arms)
    except FtError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def run_benchmark(args, arms: list[str]) -> int:
    import torch

    from ft.model import choose_dtype, resolve_model
    from ft.outputs import write_json_atomic, write_text_atomic

    source = resolve_model(MODEL_ID)
    subset = select_rows(args, source)
    shape: ModelShape = model_shape(source.folder, lora_r=16)
    model_dtype = str(choose_dtype("auto")).removeprefix("torch.")
    threads = torch.get_num_threads()
    machine = describe_machine(threads)
    print(f"{len(subset.lines)} rows, {sum(subset.lengths)} tokens ({sum(subset.trained)} trained); "
          f"batch {args.batch_size}, {args.rows // args.batch_size} steps, max_length {args.max_length}; "
          f"arms {', '.join(arms)} x {args.repeats}", flush=True)

    warm_page_cache(source.folder)
    rates_before = matmul_rates()
    with tempfile.TemporaryDirectory(prefix="ft-bench-") as work:
        runs = run_all_arms(args, arms, Path(work), source.folder, subset, model_dtype, threads)
    rates_after = matmul_rates()
    matmul = {name: max(rates_before[name], rates_after[name]) for name in rates_before}
    startup = time_startup_commands()
    machine["load_average_end"] = list(os.getloadavg())

    report = build_report(args, subset, shape, machine, matmul, runs, startup, model_dtype, ft_executable())
    stem = args.name or ("train_speed_quick" if args.quick else "train_speed")
    write_json_atomic(args.out_dir / f"{stem}.json", report)
    write_text_atomic(args.out_dir / f"{stem}.md", render_markdown(report))
    print(render_markdown(report))
    print(f"results: {args.out_dir / stem}.json and .md")
    return 0 if all("error" not in run for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
