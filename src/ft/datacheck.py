"""`ft data check`: show exactly what will be trained on, before any money is spent."""

from __future__ import annotations

import json
import sys

from ft.config import LoadedConfig
from ft.data.prepare import IGNORE, MAX_REPORTED, PreparedData
from ft.errors import FtError

GREEN, RESET = "\033[32m", "\033[0m"


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
    report = {side: side_report(data, tokenizer) for side, data in sides.items()}
    report["tool_call_style"] = traits.style
    report["end_of_turn_token"] = tokenizer.convert_ids_to_tokens(end_token_id)

    if as_json:
        out.write(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    else:
        print_report(report, sides, tokenizer, out)
    usable = all(data.examples and not data.problems for data in sides.values())
    return 0 if usable else 2


def side_report(data: PreparedData, tokenizer) -> dict:
    lengths = sorted(len(e.input_ids) for e in data.examples)
    return {
        "rows_read": data.rows_read,
        "shapes": dict(data.shapes),
        "rows_used": len(data.examples),
        "rows_cut_at_prompt_side": data.truncated,
        "rows_dropped": dict(data.dropped),
        "bad_rows": len(data.problems),
        "bad_row_examples": data.problems[:MAX_REPORTED],
        "tokens": data.tokens,
        "trained_tokens": data.trained_tokens,
        "trained_share": round(data.trained_tokens / data.tokens, 4) if data.tokens else 0.0,
        "length_percentiles": {f"p{p}": percentile(lengths, p) for p in (50, 90, 99, 100)} if lengths else {},
    }


def percentile(sorted_values: list[int], pct: int) -> int:
    index = min(len(sorted_values) - 1, max(0, round(pct / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


def print_report(report: dict, sides: dict[str, PreparedData], tokenizer, out) -> None:
    for side, data in sides.items():
        r = report[side]
        out.write(f"== data.{side}\n")
        for path, count in r["rows_read"].items():
            out.write(f"  {path}: {count} rows read\n")
        out.write(f"  shapes: {', '.join(f'{k} ({v})' for k, v in r['shapes'].items()) or 'none'}\n")
        out.write(f"  rows used: {r['rows_used']}; cut at the prompt side: {r['rows_cut_at_prompt_side']}\n")
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
            out.write("  nothing to train on: every row was dropped or bad (see above)\n")
    out.write(f"tool calls written in {report['tool_call_style']} style; end-of-turn token {report['end_of_turn_token']}\n")
    train = sides["train"]
    if train.examples:
        colour = hasattr(out, "isatty") and out.isatty()
        out.write(f"== example ({train.examples[0].where}); trained tokens {'in green' if colour else 'inside [[ ]]'}\n")
        out.write(mark_trained(train.examples[0], tokenizer, colour) + "\n")


def mark_trained(example, tokenizer, colour: bool) -> str:
    """Decode an example with its trained runs of tokens highlighted."""
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
