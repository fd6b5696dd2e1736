"""Turn configured sources into tokenized, masked training examples, with counts of what was dropped and why.

Steps: read each source (sources.py) and convert every row to messages (shapes.py), then mix the sources by weight.
Render each row with the chat template and find its trained character spans (render.py). Tokenize all rows in one
batch call and label the tokens that overlap a trained span. Check that every trained run ends with the end-of-turn
token, and apply `data.max_length`.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ft.config import DataSection, SourceSection
from ft.data.render import NO_ASSISTANT, TemplateTraits, prepare_messages, render_text_row, render_with_spans
from ft.data.shapes import Conversation, RowError, column_map, to_conversation
from ft.data.sources import MAX_REPORTED, RawRow, read_source
from ft.errors import FtError
from ft.toolcalls import parse_tool_calls

IGNORE = -100
# Reasons a row is dropped, as counted in PreparedData.dropped and shown by `ft data check`.
NO_TRAINED_TOKEN = "no trained token"
TOO_LONG = "longer than max_length"
ANSWER_TOO_LONG = "answer longer than max_length"


@dataclass
class Example:
    where: str
    input_ids: list[int]
    labels: list[int]  # IGNORE where no loss is taken
    cut: bool = False  # the start of the conversation was cut to fit data.max_length
    tool_calls: int = 0  # tool calls made in the conversation's assistant turns

    @property
    def trained_tokens(self) -> int:
        return len(self.labels) - self.labels.count(IGNORE)


@dataclass
class PreparedData:
    examples: list[Example]
    rows_read: dict[str, int] = field(default_factory=dict)  # source label -> rows read
    shapes: Counter = field(default_factory=Counter)  # shape -> rows, over all sources
    shapes_by_source: dict[str, Counter] = field(default_factory=dict)
    rows_mixed: dict[str, int] = field(default_factory=dict)  # source label -> rows drawn, when sources are mixed
    dropped: Counter = field(default_factory=Counter)  # reason -> rows
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


def source_label(source: SourceSection) -> str:
    """Name a source in reports: its path, plus the split for folders and Hub data sets."""
    return source.path if Path(source.path).expanduser().is_file() else f"{source.path}[{source.split}]"


def row_mapping(data: DataSection, source: SourceSection) -> tuple[str, dict]:
    """Return the shape named for a source (or `auto`) and its column mapping; a source's own entries win."""
    shape = source.shape or data.shape
    columns = dict(data.columns)
    columns.update(source.columns or {})
    return shape, columns


def load_conversations(sources: list[SourceSection], data: DataSection, seed: int, max_rows: int | None,
                       result: PreparedData, problems: list[str]) -> list[Conversation]:
    """Read and convert every source into `result` (rows read, shapes) and `problems`; return the conversations."""
    per_source = []
    for source in sources:
        label = source_label(source)
        raw = read_source(source.path, source.split or "train", source.name, source.revision)
        result.rows_read[label] = len(raw)
        shape, columns = row_mapping(data, source)
        try:
            column_map(source.messages_column, data.tools_column, columns)
        except ValueError as err:
            raise FtError(f"data.columns: {err}.") from None
        conversations = converted(raw, source.messages_column, data.tools_column, shape, columns, problems)
        result.shapes_by_source[label] = Counter(c.shape for c in conversations)
        result.shapes.update(result.shapes_by_source[label])
        per_source.append((label, source.weight, conversations))
    if len(per_source) > 1:
        conversations, result.rows_mixed = mix(per_source, seed)
    else:
        conversations = per_source[0][2]
    return conversations[:max_rows] if max_rows else conversations


def converted(raw: list[RawRow], messages_column: str | None, tools_column: str, shape: str, columns: dict,
              problems: list[str]) -> list[Conversation]:
    out = []
    for item in raw:
        try:
            out.append(to_conversation(item.where, item.row, messages_column, tools_column, shape, columns))
        except RowError as err:
            problems.append(f"{item.where}: {err}")
    return out


def mix(per_source: list[tuple[str, float, list[Conversation]]],
        seed: int) -> tuple[list[Conversation], dict[str, int]]:
    """Mix sources so that each fills weight / sum(weights) of the result, which has as many rows as all sources.

    A source with fewer rows than its share is repeated and a larger one sampled: each row is drawn a whole number
    of times, differing by at most one between rows of a source. The order is shuffled with `seed`, so the same
    seed gives the same rows in the same order. Returns the rows and the number drawn from each source.
    """
    rng = random.Random(seed)
    usable = [(label, weight, rows) for label, weight, rows in per_source if rows]
    total = sum(len(rows) for _, _, rows in usable)
    quotas = shares(total, [weight for _, weight, _ in usable])
    mixed: list[Conversation] = []
    counts = {label: 0 for label, _, _ in per_source}
    for (label, _, rows), quota in zip(usable, quotas):
        order: list[int] = []
        while len(order) < quota:
            one_pass = list(range(len(rows)))
            rng.shuffle(one_pass)
            order.extend(one_pass)
        mixed.extend(rows[i] for i in order[:quota])
        counts[label] = quota
    rng.shuffle(mixed)
    return mixed, counts


def shares(total: int, weights: list[float]) -> list[int]:
    """Split `total` rows in proportion to `weights` (largest remainder), so the parts add up to `total`."""
    if not weights:
        return []
    exact = [total * weight / sum(weights) for weight in weights]
    parts = [int(value) for value in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: exact[i] - parts[i], reverse=True)
    for i in by_remainder[: total - sum(parts)]:
        parts[i] += 1
    return parts


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
    result = PreparedData(examples=[])
    problems: list[str] = []
    conversations = load_conversations(sources, data, seed, max_rows, result, problems)

    rendered = render_all(conversations, tokenizer, traits, data.train_on, result, problems)
    if problems and strict:
        raise FtError(problem_message(f"data.{which}", problems))
    tokenize_all(rendered, tokenizer, data, end_token_id, result, problems)
    if problems and strict:
        raise FtError(problem_message(f"data.{which}", problems))
    result.problems = problems
    return result


@dataclass
class Rendered:
    where: str
    text: str
    spans: list[tuple[int, int]]
    tool_calls: int
    plain_text: bool


def render_all(conversations: list[Conversation], tokenizer, traits: TemplateTraits, train_on: str,
               result: PreparedData, problems: list[str]) -> list[Rendered]:
    rendered = []
    control_tokens = [token.content for token in tokenizer.added_tokens_decoder.values() if token.special]
    for conv in conversations:
        try:
            if conv.shape == "text":
                # Plain text may use special tokens on purpose, `<|endoftext|>` between documents for example.
                text, spans = render_text_row(tokenizer, conv.messages[0]["content"])
            else:
                check_control_tokens(conv, control_tokens)
                messages, tools = prepare_messages(conv, traits)
                text, spans = render_with_spans(tokenizer, messages, tools, train_on)
        except RowError as err:
            if str(err).startswith(NO_ASSISTANT):
                result.dropped[NO_ASSISTANT] += 1
            else:
                problems.append(f"{conv.where}: {err}")
            continue
        calls = sum(count_calls(m) for m in conv.messages if m["role"] == "assistant")
        rendered.append(Rendered(conv.where, text, spans, calls, conv.shape == "text"))
    return rendered


def check_control_tokens(conv: Conversation, control_tokens: list[str]) -> None:
    """Raise RowError when a message's text contains a special token such as `<|im_end|>`.

    The tokenizer reads such text as the token itself, so a user message could end its turn early and the trained
    spans would no longer match the conversation.
    """
    for index, message in enumerate(conv.messages):
        content = message.get("content") or ""
        for token in control_tokens:
            if token in content:
                raise RowError(f"message {index} ({message['role']}) contains the special token {token!r} as text, "
                               "which the tokenizer reads as the token itself; remove or rewrite it")


def count_calls(message: dict) -> int:
    """Count an assistant message's tool calls: structured ones, else calls already written in its text."""
    if message.get("tool_calls"):
        return len(message["tool_calls"])
    return len(parse_tool_calls(message.get("content") or "").calls)


def tokenize_all(rendered: list[Rendered], tokenizer, data: DataSection, end_token_id: int, result: PreparedData,
                 problems: list[str]) -> None:
    """Tokenize every rendered row in one batch call, label the trained tokens and apply data.max_length."""
    if not rendered:
        return
    encodings = encode_batch(tokenizer, [row.text for row in rendered])
    for row, encoding in zip(rendered, encodings):
        check_end = data.train_on != "all" and not row.plain_text
        labels = trained_labels(encoding, row.spans, end_token_id if check_end else None)
        if labels is None:
            problems.append(f"{row.where}: an assistant turn does not end with the end-of-turn token "
                            f"(id {end_token_id}); the model would not learn to stop. Check model.chat_template")
            continue
        example = fit_length(Example(row.where, encoding.ids, labels, tool_calls=row.tool_calls), data, result)
        if example is not None:
            result.examples.append(example)
            result.texts.append(row.text)


def encode_batch(tokenizer, texts: list[str]) -> list:
    """Tokenize the texts with the fast tokenizer's backend, which returns `tokenizers.Encoding` objects.

    The backend gives ids and character-to-token lookups without the Python offset list per token that
    `tokenizer(..., return_offsets_mapping=True)` builds. On the tool-use seed set, building those lists and
    labelling token by token took longer than the tokenization itself.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise FtError(f"the tokenizer ({type(tokenizer).__name__}) has no fast `tokenizers` backend, which ft needs "
                      "to map trained characters to tokens; use a model that ships a tokenizer.json")
    if backend.truncation is not None or backend.padding is not None:
        # tokenizer.json may switch truncation or padding on; data.max_length does the cutting here instead.
        from tokenizers import Tokenizer

        backend = Tokenizer.from_str(backend.to_str())
        backend.no_truncation()
        backend.no_padding()
    return backend.encode_batch(texts, add_special_tokens=False)


def trained_labels(encoding, spans: list[tuple[int, int]], end_token_id: int | None) -> list[int] | None:
    """Label the tokens that overlap a trained character span; every other position gets IGNORE.

    With end_token_id, each span's labels stop at its last end-of-turn token: templates add a newline after it,
    and training on that would teach nothing, since generation stops at the end-of-turn token. Returns None when a
    span contains no end-of-turn token, because the model would then never learn to stop.
    """
    ids = encoding.ids
    labels = [IGNORE] * len(ids)
    for span_start, span_end in spans:
        first = token_at(encoding, range(span_start, span_end))
        last = token_at(encoding, range(span_end - 1, span_start - 1, -1))
        if first is None or last is None:
            continue
        last += 1
        if end_token_id is not None:
            run = ids[first:last]
            if end_token_id not in run:
                return None
            last = first + len(run) - run[::-1].index(end_token_id)
        labels[first:last] = ids[first:last]
    return labels


def token_at(encoding, positions: range) -> int | None:
    """Return the token holding the first of `positions` that belongs to a token (normalizers may drop characters)."""
    for position in positions:
        token = encoding.char_to_token(position)
        if token is not None:
            return token
    return None


def fit_length(example: Example, data: DataSection, result: PreparedData) -> Example | None:
    """Apply data.max_length and data.overlong; return None (and count why) for a row that cannot be used.

    `truncate_prompt` keeps the last `max_length` tokens up to the end of the last trained run, so the start of the
    conversation is cut (the system prompt and tool list first). A trained run cut in two loses its labels, so no
    answer is trained without its beginning.
    """
    if example.trained_tokens == 0:
        result.dropped[NO_TRAINED_TOKEN] += 1
        return None
    if len(example.input_ids) <= data.max_length:
        return example
    if data.overlong == "drop":
        result.dropped[TOO_LONG] += 1
        return None
    last = max(i for i, label in enumerate(example.labels) if label != IGNORE) + 1
    start = max(0, last - data.max_length)
    if run_start(example.labels, last) < start:
        result.dropped[ANSWER_TOO_LONG] += 1
        return None
    labels = example.labels[start:last]
    if start > 0 and example.labels[start - 1] != IGNORE:
        position = 0
        while labels[position] != IGNORE:
            labels[position] = IGNORE
            position += 1
    result.truncated += 1
    return Example(example.where, example.input_ids[start:last], labels, cut=True, tool_calls=example.tool_calls)


def run_start(labels: list[int], end: int) -> int:
    """Return the first position of the trained run that ends just before `end`."""
    start = end - 1
    while start > 0 and labels[start - 1] != IGNORE:
        start -= 1
    return start


def problem_message(key: str, problems: list[str]) -> str:
    shown = "\n".join(f"  {p}" for p in problems[:MAX_REPORTED])
    more = f"\n  ... and {len(problems) - MAX_REPORTED} more" if len(problems) > MAX_REPORTED else ""
    return (f"{key}: {len(problems)} row(s) cannot be used:\n{shown}{more}\n"
            "Fix those rows, or run `ft data check CONFIG` to see every problem.")


def no_rows_hint(prepared: PreparedData, data: DataSection) -> str:
    """Name the setting to change when no row is left, from the reasons rows were dropped."""
    dropped = prepared.dropped
    if dropped[TOO_LONG] or dropped[ANSWER_TOO_LONG]:
        if data.overlong == "drop":
            return (f"raise data.max_length (now {data.max_length}) or set data.overlong: truncate_prompt "
                    "to cut long prompts")
        return f"raise data.max_length (now {data.max_length}): the last assistant turns alone are longer"
    if dropped[NO_ASSISTANT]:
        return ("the rows hold prompts but no assistant turn to learn from (evaluation sets such as BFCL question "
                "files look like this: score a model on them with `ft eval`); train on rows that include the "
                "assistant's answers")
    if dropped[NO_TRAINED_TOKEN]:
        return "check data.train_on and that the assistant turns are not empty"
    return ("check data.train (a path or Hub id) and the column mapping (data.messages_column); "
            "`ft data check CONFIG` lists every problem")


def require_examples(prepared: PreparedData, key: str, data: DataSection) -> None:
    """Stop before training when no row has a trained token, naming the setting to change."""
    if prepared.examples:
        return
    reasons = ", ".join(f"{count} {reason}" for reason, count in prepared.dropped.items()) or "no rows"
    raise FtError(f"{key}: no row is left to train on ({reasons}). Fix: {no_rows_hint(prepared, data)}.")
