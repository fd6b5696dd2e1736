"""`ft eval`: measure tool calling of a run, adapter or model on held-out data, optionally against a baseline.

Only argparse is imported at the top, because the `ft` parser imports this module on every call.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ft.toolcalls import STYLES

# The values of model.tool_call_style in the config.
TOOL_CALL_STYLES = ("auto", "template", *STYLES)
PRECISIONS = ("auto", "float32", "bfloat16", "float16")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options that choose how a model loads, shared by eval, chat and generate."""
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="weights dtype; auto: bfloat16 where the GPU or CPU computes it natively, else float32 (default: auto)")
    parser.add_argument("--tool-call-style", choices=TOOL_CALL_STYLES, default=None,
                        help="tool call format asked of a base model (a run always uses the style it was trained "
                             "with); default: the model family's style")
    parser.add_argument("--threads", type=positive_int, default=None, metavar="N",
                        help="CPU threads for torch (default: torch's choice, one per core); on a machine shared "
                             "with other jobs, fewer threads than cores can be much faster")


def apply_threads(args: argparse.Namespace) -> None:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL_OR_RUN",
                        help="run folder (runs/NAME), adapter folder, model folder, .gguf file or Hub model id")
    parser.add_argument("--data", required=True, metavar="FILE",
                        help="held-out data: JSONL/JSON/CSV/Parquet file, save_to_disk folder, Hub data set id, or a "
                             "BFCL file (BFCL_v4_*.json, answers read from possible_answer/ next to it)")
    parser.add_argument("--baseline", metavar="BASE_MODEL", default=None,
                        help="also evaluate this model and report the difference; `auto`: the run's base model")
    parser.add_argument("--max-new-tokens", type=positive_int, default=128, metavar="N",
                        help="maximum generated tokens per scored turn (default: 128)")
    parser.add_argument("--batch-size", type=positive_int, default=8, metavar="N",
                        help="rows generated together, left-padded (default: 8)")
    parser.add_argument("--limit", type=positive_int, default=None, metavar="N",
                        help="evaluate only the first N rows")
    parser.add_argument("--turns", choices=("first", "all"), default="first",
                        help="score the first assistant turn of each row, or every assistant turn (default: first)")
    parser.add_argument("--split", default="test",
                        help="split read from a save_to_disk folder or Hub data set (default: test)")
    parser.add_argument("--messages-column", default=None, metavar="NAME",
                        help="column holding the messages, when not found automatically")
    parser.add_argument("--tools-column", default="tools", metavar="NAME",
                        help="column holding the tool definitions (default: tools)")
    add_model_arguments(parser)
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="folder for eval.json, report.md and eval.png (default: RUN/eval for a run folder, "
                             "else eval-TIMESTAMP)")
    parser.add_argument("--json", action="store_true",
                        help="print the metrics as JSON instead of a table (per-row records stay in eval.json)")


def run(args: argparse.Namespace) -> int:
    from ft.evaluate.report import console_table, summary_of
    from ft.evaluate.runner import run_eval

    apply_threads(args)
    result, out_dir = run_eval(
        args.model, args.data, baseline=args.baseline, split=args.split, messages_column=args.messages_column,
        tools_column=args.tools_column, turns=args.turns, limit=args.limit, max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size, precision=args.precision, tool_call_style=args.tool_call_style,
        out_dir=args.out,
    )
    if args.json:
        print(json.dumps({**summary_of(result), "out": str(out_dir)}, indent=2, ensure_ascii=False))
    else:
        print(console_table(result))
        print(f"reports: {out_dir / 'eval.json'}, {out_dir / 'report.md'}, {out_dir / 'eval.png'}")
    return 0
