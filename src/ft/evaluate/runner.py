"""Generate the turn under test for every item, read the tool calls in it and score them against the reference."""

from __future__ import annotations

import dataclasses
import gc
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from ft.data.shapes import Conversation, RowError
from ft.errors import FtError
from ft.evaluate.datasets import EvalItem, items_from_conversations, render_prompt, rows_message
from ft.scoring import aggregate, bfcl_score, score_turn
from ft.toolcalls import ParsedCalls, parse_tool_calls

DEFAULT_MAX_NEW_TOKENS = 128
DEFAULT_BATCH_SIZE = 8

log = logging.getLogger("ft")


def tokenize_prompts(items: list[EvalItem], tokenizer, traits) -> list[list[int]]:
    """Render and tokenize the prompt of every item. Raise FtError listing the rows the chat template rejects.

    The text is tokenized without added special tokens, as training tokenizes it, because the chat template writes
    them itself.
    """
    texts, problems = [], []
    for item in items:
        try:
            texts.append(render_prompt(item, tokenizer, traits))
        except RowError as err:
            problems.append(f"{item.where}: {err}")
    if problems:
        raise FtError(rows_message("data", problems, "Fix those rows, or give the model a chat template that accepts them"))
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


def evaluate_items(model, tokenizer, items: list[EvalItem], prompts: list[list[int]], end_token_id: int,
                   max_new_tokens: int, batch_size: int, label: str = "model") -> dict:
    """Generate and score every item; return {"metrics", "timing", "records"} with one record per item."""
    from ft.evaluate.generation import generate_batched, stop_token_ids

    started = time.perf_counter()
    stop_ids = stop_token_ids(tokenizer, end_token_id)
    generations = generate_batched(model, tokenizer, prompts, stop_ids, max_new_tokens, batch_size, label)
    wall_time_s = time.perf_counter() - started

    records = []
    for item, prompt, generation in zip(items, prompts, generations):
        parsed = parse_tool_calls(generation.text)
        record = {
            "where": item.where, "id": item.row_id, "turn": item.turn, "prompt_tokens": len(prompt),
            "new_tokens": generation.new_tokens, "generation": generation.text,
            "calls": [{"name": call.name, "arguments": call.arguments} for call in parsed.calls],
            **score_item(item, parsed), "ended": generation.ended,
        }
        records.append(record)

    new_tokens = sum(generation.new_tokens for generation in generations)
    timing = {
        "wall_time_s": round(wall_time_s, 2),
        "new_tokens": new_tokens,
        "new_tokens_per_s": round(new_tokens / max(wall_time_s, 1e-9), 1),
        "rows_per_s": round(len(items) / max(wall_time_s, 1e-9), 3),
    }
    return {"metrics": aggregate(records), "timing": timing, "records": records}


def score_item(item: EvalItem, parsed: ParsedCalls) -> dict:
    """Score one generation: score_turn for chat rows, bfcl_score plus a tool-name check for BFCL rows."""
    if not item.is_bfcl:
        return score_turn(item.reference, parsed)
    record = bfcl_score(parsed, item.ground_truth, item.functions or [])
    # bfcl_score decides correctness as a whole; the name check adds the tool-name accuracy that chat rows report.
    if item.ground_truth is not None:
        expected_names = sorted(next(iter(entry)) for entry in item.ground_truth)
        record["name_correct"] = expected_names == sorted(call.name for call in parsed.calls)
    return record


def evaluate_loaded(model, tokenizer, conversations: list[Conversation], traits, end_token_id: int,
                    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, batch_size: int = DEFAULT_BATCH_SIZE,
                    turns: str = "first") -> dict:
    """Evaluate tool calling of an in-memory model (a PEFT-wrapped one works) on held-out conversations.

    The conversations are ft.data.shapes.Conversation objects as training reads them, and traits and end_token_id
    are the ones training used, so prompts render as in training. Returns {"metrics", "timing", "records"}, with
    the metrics of ft.scoring.aggregate. Conversations without an assistant turn are skipped. Raise FtError when
    none is left or a row cannot be rendered. The model's training mode is restored afterwards.
    """
    items, _ = items_from_conversations(conversations, turns)
    if not items:
        raise FtError("data.eval: no conversation has an assistant turn to score; give held-out conversations "
                      "that contain the reference assistant turn.")
    prompts = tokenize_prompts(items, tokenizer, traits)
    return evaluate_items(model, tokenizer, items, prompts, end_token_id, max_new_tokens, batch_size, "tuned")


# ---------------------------------------------------------------------------------------------------------------
# `ft eval`: one model, or a baseline and a model, on one data source


def run_eval(model_or_run: str, data_path: str, *, baseline: str | None = None, split: str = "test",
             messages_column: str | None = None, tools_column: str = "tools", turns: str = "first",
             limit: int | None = None, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
             batch_size: int = DEFAULT_BATCH_SIZE, precision: str = "auto", tool_call_style: str | None = None,
             out_dir: Path | None = None) -> tuple[dict, Path]:
    """Evaluate a run, adapter or model (and optionally a baseline) and write the reports; return (result, folder).

    Every check on the input (model, baseline, data rows, chat template, output folder) runs before weights load.
    baseline is None, "auto" (the base model of the run) or any MODEL_OR_RUN. A base-model baseline is asked for
    the tool call style of the evaluated model, so both see the same prompt format.
    """
    from ft.evaluate.datasets import read_eval_data
    from ft.evaluate.loading import check_style_override, default_output_dir, find_target, resolve_dtype
    from ft.evaluate.report import build_result, write_reports
    target = find_target(model_or_run)
    check_style_override(target, tool_call_style)
    baseline_target = find_baseline(target, baseline)
    dtype = resolve_dtype(precision)
    data = read_eval_data(data_path, split, messages_column, tools_column, turns, limit)
    out_dir = out_dir or default_output_dir(target)
    if out_dir.exists() and not out_dir.is_dir():
        raise FtError(f"--out {out_dir}: exists and is not a folder. Give a folder path.")
    log.info("eval: %d turn(s) from %s (%d rows read); model %s%s", len(data.items), data_path, data.rows_read,
             target.name, f"; baseline {baseline_target.name}" if baseline_target else "")

    model_side = prepare_side(target, data.items, tool_call_style)
    sides = [model_side]
    if baseline_target is not None:
        shares_tokenizer = baseline_target.tokenizer_source is target.tokenizer_source
        style = model_side.traits.style if baseline_target.kind == "model" else None
        baseline_side = (model_side.with_target(baseline_target) if shares_tokenizer
                         else prepare_side(baseline_target, data.items, style, fall_back=True))
        baseline_side.label = "base" if target.kind != "model" else "baseline"
        sides = [baseline_side, model_side]

    runs = run_sides(sides, data.items, dtype, max_new_tokens, batch_size)
    data_info = {"path": data_path, "kind": data.kind, "rows_read": data.rows_read, "items": len(data.items),
                 "rows_without_assistant": data.rows_without_assistant}
    settings = {"turns": turns, "max_new_tokens": max_new_tokens, "batch_size": batch_size, "decoding": "greedy",
                "dtype": str(dtype).removeprefix("torch."), "limit": limit}
    result = build_result(runs, data.items, data_info, settings)
    write_reports(result, out_dir)
    return result, out_dir


@dataclass
class Side:
    """One model of an evaluation, with its report label and its prompts, prepared before any weights load."""

    target: object  # ft.evaluate.loading.ModelTarget
    label: str
    tokenizer: object
    traits: object
    end_token_id: int
    prompts: list[list[int]]

    def with_target(self, target) -> Side:
        return dataclasses.replace(self, target=target)


def find_baseline(target, baseline: str | None):
    """Return the ModelTarget of --baseline: None, "auto" (the base model of a run or adapter) or a MODEL_OR_RUN."""
    from ft.evaluate.loading import ModelTarget, find_target

    if baseline is None:
        return None
    if baseline != "auto":
        return find_target(baseline)
    if target.kind == "model":
        raise FtError(f"--baseline auto: {target.name} is a base model, so there is no base model to compare with. "
                      "Name the baseline model instead, e.g. --baseline HuggingFaceTB/SmolLM2-135M-Instruct.")
    # The base model reads the run's tokenizer and style, so both models get exactly the same prompts.
    return ModelTarget(target.base.name, "model", target.base, target.tokenizer_source,
                       tool_call_style=target.tool_call_style, end_token_id=target.end_token_id)


def prepare_side(target, items: list[EvalItem], tool_call_style: str | None, fall_back: bool = False) -> Side:
    """Load the tokenizer of a model, probe its template and render every prompt, without loading weights.

    With fall_back, a tool_call_style that the template cannot honour (`template` for a template that ignores tool
    calls) gives way to the model's own style instead of raising FtError.
    """
    from ft.evaluate.loading import load_tokenizer_traits

    try:
        tokenizer, traits, end_token_id = load_tokenizer_traits(target, tool_call_style)
    except FtError:
        if tool_call_style is None or not fall_back:
            raise
        tokenizer, traits, end_token_id = load_tokenizer_traits(target, None)
    prompts = tokenize_prompts(items, tokenizer, traits)
    return Side(target, target.label, tokenizer, traits, end_token_id, prompts)


def run_sides(sides: list[Side], items: list[EvalItem], dtype, max_new_tokens: int,
              batch_size: int) -> list[tuple[str, str, dict]]:
    """Evaluate each side in turn, loading its weights and freeing them afterwards.

    When the baseline is the base model under the evaluated adapter, the base weights load once: the baseline runs
    first, then the adapter is attached to the same model.
    """
    from ft.evaluate.loading import attach_adapter, load_base_weights

    runs = []
    model = None
    for position, side in enumerate(sides):
        target = side.target
        reuse = model is not None and target.adapter_dir is not None and sides[position - 1].target.base is target.base
        if not reuse:
            model = None
            release_memory()
            model = load_base_weights(target, dtype)
        model = attach_adapter(model, target)
        result = evaluate_items(model, side.tokenizer, items, side.prompts, side.end_token_id, max_new_tokens,
                                batch_size, side.label)
        runs.append((side.label, target.name, result))
    return runs


def release_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
