"""`ft data check`: show exactly what will be trained on, before any money is spent.

The report runs the same preparation as `ft train` (same template probe, transforms, masking and length rules), but
collects bad rows instead of stopping at them. Exit code 0 means `ft train` would start on this data; 2 means it
would stop, and the report gives the reason.
"""

from __future__ import annotations

import json
import os
import sys

from ft.config import LoadedConfig
from ft.data.prepare import IGNORE, MAX_REPORTED, Example, PreparedData, no_rows_hint
from ft.errors import FtError

GREEN, RESET = "\033[32m", "\033[0m"
PERCENTILES = (50, 90, 99, 100)
TRAIN_ON_WORDS = {"assistant": "every assistant turn", "last_assistant": "the last assistant turn", "all": "all tokens"}


def run_data_check(loaded: LoadedConfig, as_json: bool = False, out=None) -> int:
    """Print the data report; return 0 when training could start, 2 when rows are bad or none is left."""
    from ft.data.prepare import prepare
    from ft.data.render import find_end_token, probe_template
    from ft.model import load_tokenizer, read_model_config, resolve_model

    out = out or sys.stdout
    cfg = loaded.config
    source = resolve_model(cfg.model.name, cfg.model.revision)
    tokenizer = load_tokenizer(source, cfg.model.chat_template)
    model_type = read_model_config(source).model_type
    try:
        traits = probe_template(tokenizer, cfg.model.tool_call_style, model_type, cfg.model.name)
        end_token_id = find_end_token(tokenizer)
    except ValueError as err:
        raise FtError(f"model.chat_template: {err}") from None

    sides = {"train": prepare(cfg.data, tokenizer, traits, end_token_id, cfg.training.seed, "train", strict=False)}
    if cfg.data.eval:
        sides["eval"] = prepare(cfg.data, tokenizer, traits, end_token_id, cfg.training.seed, "eval", strict=False)
    ready = all(data.examples and not data.problems for data in sides.values())
    report = build_report(sides, cfg.data, tokenizer, traits.style, end_token_id, ready)

    if as_json:
        out.write(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    else:
        print_report(report, sides, tokenizer, use_colour(out), out)
    return 0 if ready else 2


def build_report(sides: dict[str, PreparedData], data_config, tokenizer, style: str, end_token_id: int,
                 ready: bool) -> dict:
    report: dict = {side: side_report(data, data_config) for side, data in sides.items()}
    report["max_length"] = data_config.max_length
    report["train_on"] = data_config.train_on
    report["tool_call_style"] = style
    report["end_of_turn_token"] = tokenizer.convert_ids_to_tokens(end_token_id)
    example = pick_example(sides["train"].examples)
    if example is not None:
        report["example"] = {"where": example.where, "text": mark_trained(example, tokenizer, colour=False)}
    report["ready"] = ready
    return report


def side_report(data: PreparedData, data_config) -> dict:
    lengths = sorted(len(e.input_ids) for e in data.examples)
    report = {
        "rows_read": data.rows_read,
        "shapes": {label: dict(counts) for label, counts in data.shapes_by_source.items()},
        "rows_drawn": data.rows_mixed,
        "rows_used": len(data.examples),
        "rows_with_tool_calls": sum(1 for e in data.examples if e.tool_calls),
        "rows_cut_at_prompt_side": data.truncated,
        "rows_dropped": dict(data.dropped),
        "bad_rows": len(data.problems),
        "bad_row_examples": data.problems[:MAX_REPORTED],
        "tokens": data.tokens,
        "trained_tokens": data.trained_tokens,
        "trained_share": round(data.trained_tokens / data.tokens, 4) if data.tokens else 0.0,
        "length_percentiles": {f"p{p}": percentile(lengths, p) for p in PERCENTILES} if lengths else {},
    }
    if not data.examples:
        report["fix"] = no_rows_hint(data, data_config)
    return report


def percentile(sorted_values: list[int], pct: int) -> int:
    """Nearest-rank percentile of an ascending list; p100 is the maximum."""
    index = min(len(sorted_values) - 1, max(0, round(pct / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


def pick_example(examples: list[Example]) -> Example | None:
    """Choose the example to show: the first whole row with a tool call, else the first whole row, else the first."""
    whole = [e for e in examples if not e.cut]
    with_calls = [e for e in whole if e.tool_calls]
    for candidates in (with_calls, whole, examples):
        if candidates:
            return candidates[0]
    return None


def use_colour(out) -> bool:
    return hasattr(out, "isatty") and out.isatty() and not os.environ.get("NO_COLOR")


def print_report(report: dict, sides: dict[str, PreparedData], tokenizer, colour: bool, out) -> None:
    for side, data in sides.items():
        print_side(side, report[side], data, report["max_length"], out)
    out.write(f"tool calls written in {report['tool_call_style']} style; end-of-turn token "
              f"{report['end_of_turn_token']}; trained: {TRAIN_ON_WORDS[report['train_on']]}\n")
    example = pick_example(sides["train"].examples)
    if example is not None:
        marking = "in green" if colour else "inside [[ ]]"
        out.write(f"== example ({example.where}); trained tokens {marking}\n")
        out.write(mark_trained(example, tokenizer, colour) + "\n")
    out.write("ready: training can start\n" if report["ready"] else "not ready: `ft train` would stop (see above)\n")


def print_side(side: str, r: dict, data: PreparedData, max_length: int, out) -> None:
    out.write(f"== data.{side}\n")
    for label, count in r["rows_read"].items():
        shapes = ", ".join(f"{shape} ({n})" for shape, n in r["shapes"].get(label, {}).items()) or "none"
        drawn = f"; {r['rows_drawn'][label]} drawn for the mix" if label in r["rows_drawn"] else ""
        out.write(f"  {label}: {count} rows read; shape: {shapes}{drawn}\n")
    out.write(f"  rows used: {r['rows_used']} ({r['rows_with_tool_calls']} with tool calls); "
              f"cut at the prompt side to fit max_length {max_length}: {r['rows_cut_at_prompt_side']}\n")
    dropped = ", ".join(f"{n} {reason}" for reason, n in r["rows_dropped"].items()) or "none"
    out.write(f"  rows dropped: {dropped}\n")
    if r["length_percentiles"]:
        pct = ", ".join(f"{k} {v}" for k, v in r["length_percentiles"].items())
        out.write(f"  tokens per row: {pct}\n")
    out.write(f"  tokens: {r['tokens']}, trained: {r['trained_tokens']} ({r['trained_share']:.1%})\n")
    if data.problems:
        out.write(f"  bad rows: {len(data.problems)}\n")
        for problem in data.problems[:MAX_REPORTED]:
            out.write(f"    {problem}\n")
        if len(data.problems) > MAX_REPORTED:
            out.write(f"    ... and {len(data.problems) - MAX_REPORTED} more\n")
    if not data.examples:
        out.write(f"  nothing to train on. Fix: {r['fix']}\n")


def mark_trained(example: Example, tokenizer, colour: bool) -> str:
    """Decode an example with its trained runs of tokens highlighted (green, or inside [[ ]])."""
    pieces, run, trained = [], [], False
    for token, label in zip(example.input_ids, example.labels):
        is_trained = label != IGNORE
        if is_trained != trained and run:
            pieces.append(wrap(tokenizer.decode(run), trained, colour))
            run = []
        run.append(token)
        trained = is_trained
    if run:
        pieces.append(wrap(tokenizer.decode(run), trained, colour))
    return "".join(pieces)


def wrap(text: str, trained: bool, colour: bool) -> str:
    if not trained:
        return text
    return f"{GREEN}{text}{RESET}" if colour else f"[[{text}]]"
