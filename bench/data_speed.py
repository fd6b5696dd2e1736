"""Measure how fast ft turns chat rows into trained examples: render, tokenize and mask, in tokens per second.

Run: uv run python bench/data_speed.py [--data PATH] [--repeats N]

The default data is the tool-use seed set (477 rows, about 780,000 SmolLM2 tokens) read from ../shared/data, with
max_length 8192 so that no row is cut. Each repeat runs the whole `ft.data.prepare.prepare` call that `ft train`
runs; the stage times come from one extra pass through the same steps. Results go to bench/results/data_speed.json
and bench/results/data_speed.md, with a description of the machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

# As the `ft` command does: one tokenizer thread, so the figure does not depend on idle cores.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "tool-use-finetuning" / "train.jsonl"
RESULTS = REPO / "bench" / "results"
TARGET_TOKENS_PER_S = 300_000


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="data file or folder (default: the seed train set)")
    parser.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct", help="model whose tokenizer is used")
    parser.add_argument("--max-length", type=int, default=8192, help="data.max_length, in tokens")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of the whole preparation")
    parser.add_argument("--no-write", action="store_true", help="print the results without writing bench/results/")
    return parser.parse_args()


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        cpu = names[0] if names else cpu
    import tokenizers
    import transformers

    return {
        "cpu": cpu,
        "logical_cores": os.cpu_count(),
        "load_average_1min_at_start": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "tokenizers_parallelism": os.environ["TOKENIZERS_PARALLELISM"],
    }


def stage_times(data, tokenizer, traits, end_token_id: int) -> dict:
    """Time the steps of one preparation separately: read and convert, render with spans, tokenize and mask."""
    from ft.data.prepare import PreparedData, load_conversations, render_all, source_list, tokenize_all

    result, problems = PreparedData(examples=[]), []
    started = time.perf_counter()
    conversations = load_conversations(source_list(data.train, data.split, None), data, 0, None, result, problems)
    read_s = time.perf_counter() - started
    started = time.perf_counter()
    rendered = render_all(conversations, tokenizer, traits, data.train_on, result, problems)
    render_s = time.perf_counter() - started
    started = time.perf_counter()
    tokenize_all(rendered, tokenizer, data, end_token_id, result, problems)
    tokenize_s = time.perf_counter() - started
    return {"read_and_convert_s": round(read_s, 3), "render_s": round(render_s, 3),
            "tokenize_and_mask_s": round(tokenize_s, 3)}


def run(args: argparse.Namespace) -> dict:
    from transformers import AutoTokenizer

    from ft.config import DataSection
    from ft.data.prepare import prepare
    from ft.data.render import find_end_token, probe_template
    from ft.model import read_model_config, resolve_model

    source = resolve_model(args.model)
    tokenizer = AutoTokenizer.from_pretrained(source.load_id)
    traits = probe_template(tokenizer, "auto", read_model_config(source).model_type, args.model)
    end_token_id = find_end_token(tokenizer)
    data = DataSection(train=args.data, max_length=args.max_length)

    seconds, cpu_seconds, prepared = [], [], None
    for _ in range(args.repeats):
        started, cpu_started = time.perf_counter(), time.process_time()
        prepared = prepare(data, tokenizer, traits, end_token_id, seed=0)
        seconds.append(time.perf_counter() - started)
        cpu_seconds.append(time.process_time() - cpu_started)
    tokens = prepared.tokens
    median_s = statistics.median(seconds)
    return {
        "data": os.path.relpath(args.data, REPO),
        "model": args.model,
        "max_length": args.max_length,
        "rows": len(prepared.examples),
        "tokens": tokens,
        "trained_tokens": prepared.trained_tokens,
        "repeats": args.repeats,
        "seconds": [round(s, 3) for s in seconds],
        "cpu_seconds": [round(s, 3) for s in cpu_seconds],
        "tokens_per_s_median": round(tokens / median_s),
        "tokens_per_s_best": round(tokens / min(seconds)),
        # The preparation runs on one thread, so tokens per CPU second is the speed on an otherwise idle core.
        "tokens_per_cpu_s_median": round(tokens / statistics.median(cpu_seconds)),
        "target_tokens_per_s": TARGET_TOKENS_PER_S,
        "stages": stage_times(data, tokenizer, traits, end_token_id),
        "machine": machine(),
    }


def markdown(result: dict) -> str:
    m, stages = result["machine"], result["stages"]
    verdict = "meets" if result["tokens_per_s_median"] >= result["target_tokens_per_s"] else "is below"
    return f"""# Data preparation speed

Command: `uv run python bench/data_speed.py` (render with the chat template, tokenize, mask; the whole
`ft.data.prepare.prepare` call of `ft train`).

| | |
|---|---|
| data | `{result['data']}`: {result['rows']} rows, {result['tokens']:,} tokens ({result['trained_tokens']:,} trained) |
| tokenizer | {result['model']}, max_length {result['max_length']} |
| tokens/s, median of {result['repeats']} | **{result['tokens_per_s_median']:,}** ({verdict} the target of {result['target_tokens_per_s']:,}) |
| tokens/s, best | {result['tokens_per_s_best']:,} |
| tokens per CPU second, median (the speed on an idle core: the preparation uses one thread) | {result['tokens_per_cpu_s_median']:,} |
| seconds per run (wall) | {', '.join(str(s) for s in result['seconds'])} |
| CPU seconds per run | {', '.join(str(s) for s in result['cpu_seconds'])} |
| stages of one run | read and convert {stages['read_and_convert_s']} s, render {stages['render_s']} s, tokenize and mask {stages['tokenize_and_mask_s']} s |

Machine: {m['cpu']}, {m['logical_cores']} logical cores (shared; 1-minute load average {m['load_average_1min_at_start']} at
the start), Python {m['python']}, transformers {m['transformers']}, tokenizers {m['tokenizers']},
TOKENIZERS_PARALLELISM={m['tokenizers_parallelism']}.
"""


def main() -> int:
    args = parse_args()
    if not Path(args.data).exists():
        print(f"error: {args.data} not found; pass --data with a data file", file=sys.stderr)
        return 2
    result = run(args)
    text = markdown(result)
    print(text)
    if not args.no_write:
        from ft.outputs import write_json_atomic, write_text_atomic

        write_json_atomic(RESULTS / "data_speed.json", result)
        write_text_atomic(RESULTS / "data_speed.md", text)
        print(f"wrote {RESULTS / 'data_speed.json'} and {RESULTS / 'data_speed.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
