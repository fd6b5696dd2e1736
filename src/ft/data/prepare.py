"""Turn configured sources into tokenized, masked training examples, with counts of what was dropped and why."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

from ft.config import DataSection, SourceSection
from ft.data.render import TemplateTraits, prepare_messages, render_with_spans
from ft.data.shapes import Conversation, RowError, to_conversation
from ft.data.sources import MAX_REPORTED, RawRow, read_source
from ft.errors import FtError

IGNORE = -100
NO_ASSISTANT = "no assistant turn"


@dataclass
class Example:
    where: str
    input_ids: list[int]
    labels: list[int]  # IGNORE where no loss is taken

    @property
    def trained_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE)


@dataclass
class PreparedData:
    examples: list[Example]
    rows_read: dict[str, int] = field(default_factory=dict)
    shapes: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    truncated: int = 0
    problems: list[str] = field(default_factory=list)  # rows that could not be used, with their location
    texts: list[str] = field(default_factory=list)  # rendered text of each example, for `ft data check`

    @property
    def tokens(self) -> int:
        return sum(len(e.input_ids) for e in self.examples)

    @property
    def trained_tokens(self) -> int:
        return sum(e.trained_tokens for e in self.examples)


def source_list(value, split: str, messages_column: str | None) -> list[SourceSection]:
    if isinstance(value, str):
        return [SourceSection(path=value, split=split, messages_column=messages_column)]
    return [s.model_copy(update={"split": s.split or split, "messages_column": s.messages_column or messages_column})
            for s in value]


def load_conversations(sources: list[SourceSection], tools_column: str, seed: int,
                       max_rows: int | None) -> tuple[list[Conversation], dict[str, int], list[str]]:
    """Read and convert every source; return conversations, rows read per source, and row problems."""
    per_source, rows_read, problems = [], {}, []
    for source in sources:
        raw = read_source(source.path, source.split or "train", source.name, source.revision)
        rows_read[source.path] = len(raw)
        per_source.append((source, converted(raw, source.messages_column, tools_column, problems)))
    conversations = mix(per_source, seed) if len(per_source) > 1 else per_source[0][1]
    return conversations[:max_rows] if max_rows else conversations, rows_read, problems


def converted(raw: list[RawRow], messages_column: str | None, tools_column: str, problems: list[str]) -> list[Conversation]:
    out = []
    for item in raw:
        try:
            out.append(to_conversation(item.where, item.row, messages_column, tools_column))
        except RowError as err:
            problems.append(f"{item.where}: {err}")
    return out


def mix(per_source: list[tuple[SourceSection, list[Conversation]]], seed: int) -> list[Conversation]:
    """Mix sources by weight: each source contributes weight/min_weight times its rows (sampled), shuffled."""
    rng = random.Random(seed)
    smallest = min(source.weight for source, _ in per_source)
    mixed = []
    for source, rows in per_source:
        if not rows:
            continue
        want = round(len(rows) * source.weight / smallest)
        mixed.extend(rows[i % len(rows)] for i in range(want))
    rng.shuffle(mixed)
    return mixed


def prepare(data: DataSection, tokenizer, traits: TemplateTraits, end_token_id: int, seed: int,
            which: str = "train", strict: bool = True) -> PreparedData:
    """Read, render, tokenize and mask one side (`train` or `eval`) of the data config.

    With strict=True, rows that cannot be read stop the run with FtError listing them; `ft data check` passes False
    and reports them instead.
    """
    value = data.train if which == "train" else data.eval
    split = data.split if which == "train" else data.eval_split
    max_rows = data.max_rows if which == "train" else data.eval_max_rows
    sources = source_list(value, split, data.messages_column)
    conversations, rows_read, problems = load_conversations(sources, data.tools_column, seed, max_rows)
    result = PreparedData(examples=[], rows_read=rows_read)
    result.shapes.update(c.shape for c in conversations)

    rendered = render_all(conversations, tokenizer, traits, data.train_on, result, problems)
    if problems and strict:
        raise FtError(problem_message(f"data.{which}", problems))
    tokenize_all(rendered, tokenizer, data, end_token_id, result, problems)
    if problems and strict:
        raise FtError(problem_message(f"data.{which}", problems))
    result.problems = problems
    return result


def render_all(conversations, tokenizer, traits, train_on, result: PreparedData, problems: list[str]):
    rendered = []
    for conv in conversations:
        try:
            messages, tools = prepare_messages(conv, traits)
            text, spans = render_with_spans(tokenizer, messages, tools, train_on)
        except RowError as err:
            if str(err).startswith(NO_ASSISTANT):
                result.dropped[NO_ASSISTANT] += 1
            else:
                problems.append(f"{conv.where}: {err}")
            continue
        rendered.append((conv.where, text, spans))
    return rendered


def tokenize_all(rendered, tokenizer, data: DataSection, end_token_id: int, result: PreparedData, problems: list[str]):
    if not rendered:
        return
    encoded = tokenizer([text for _, text, _ in rendered], add_special_tokens=False, return_offsets_mapping=True)
    for (where, text, spans), ids, offsets in zip(rendered, encoded["input_ids"], encoded["offset_mapping"]):
        labels = mask_labels(ids, offsets, spans)
        if data.train_on != "all" and not end_runs_at_end_token(ids, labels, end_token_id):
            problems.append(f"{where}: an assistant turn does not end with the end-of-turn token "
                            f"(id {end_token_id}); the model would not learn to stop. Check model.chat_template")
            continue
        example = fit_length(Example(where, ids, labels), data, result)
        if example is not None:
            result.examples.append(example)
            result.texts.append(text)


def mask_labels(ids: list[int], offsets, spans: list[tuple[int, int]]) -> list[int]:
    """Label a token when its characters overlap a trained span; every other position gets IGNORE."""
    labels = [IGNORE] * len(ids)
    span_index = 0
    for position, (start, end) in enumerate(offsets):
        while span_index < len(spans) and spans[span_index][1] <= start:
            span_index += 1
        if span_index == len(spans):
            break
        span_start, span_end = spans[span_index]
        if end > span_start and start < span_end:
            labels[position] = ids[position]
    return labels


def end_runs_at_end_token(ids: list[int], labels: list[int], end_token_id: int) -> bool:
    """Make each run of trained tokens stop at its last end-of-turn token, in place.

    Templates add a newline after the end-of-turn token; training on it would teach nothing, since generation stops
    at the end-of-turn token. Return False when some run holds no end-of-turn token: the model would never learn
    to stop.
    """
    position = 0
    while position < len(ids):
        if labels[position] == IGNORE:
            position += 1
            continue
        run_end = position
        while run_end < len(ids) and labels[run_end] != IGNORE:
            run_end += 1
        ends = [i for i in range(position, run_end) if ids[i] == end_token_id]
        if not ends:
            return False
        for i in range(ends[-1] + 1, run_end):
            labels[i] = IGNORE
        position = run_end
    return True


def fit_length(example: Example, data: DataSection, result: PreparedData) -> Example | None:
    """Apply data.max_length and data.overlong; return None (and count why) for a row that cannot be used."""
    if example.trained_tokens == 0:
        result.dropped["no trained token"] += 1
        return None
    if len(example.input_ids) <= data.max_length:
        return example
    if data.overlong == "drop":
        result.dropped["longer than max_length"] += 1
        return None
    last = max(i for i, label in enumerate(example.labels) if label != IGNORE) + 1
    start = max(0, last - data.max_length)
    answer_start = last_answer_start(example.labels, last)
    if answer_start < start:
        result.dropped["answer longer than max_length"] += 1
        return None
    result.truncated += 1
    return Example(example.where, example.input_ids[start:last], example.labels[start:last])


def last_answer_start(labels: list[int], last: int) -> int:
    start = last - 1
    while start > 0 and labels[start - 1] != IGNORE:
        start -= 1
    return start


def problem_message(key: str, problems: list[str]) -> str:
    shown = "\n".join(f"  {p}" for p in problems[:MAX_REPORTED])
    more = f"\n  ... and {len(problems) - MAX_REPORTED} more" if len(problems) > MAX_REPORTED else ""
    return (f"{key}: {len(problems)} row(s) cannot be used:\n{shown}{more}\n"
            "Fix those rows, or run `ft data check CONFIG` to see every problem.")


def require_examples(prepared: PreparedData, key: str, data: DataSection) -> None:
    """Stop before training when no row has a trained token, naming the setting to change."""
    if prepared.examples:
        return
    reasons = ", ".join(f"{count} {reason}" for reason, count in prepared.dropped.items()) or "no rows"
    hint = ("raise data.max_length or set data.overlong: truncate_prompt" if "longer" in reasons
            else "check that the rows hold assistant turns (data.messages_column names the message column)")
    raise FtError(f"{key}: no row is left to train on ({reasons}). {hint}.")
