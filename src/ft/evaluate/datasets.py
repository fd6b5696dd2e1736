"""Held-out rows turned into evaluation items: a conversation, the assistant turn under test, and its reference.

Two kinds of data are read:
- chat rows of any shape that training reads (ft.data.shapes). The reference of a turn is its `tool_calls`, or the
  calls that parse_tool_calls reads in its text when it has none, so guide-style `<tool_call>` text works as well.
- Berkeley Function Calling Leaderboard (BFCL) files: JSON Lines rows {"id", "question", "function"} whose ground
  truth sits in `possible_answer/<same file name>` next to the data file, matched by id. Irrelevance files have no
  answer file, and every row there expects no call.

Prompts are rendered exactly as training renders them: prepare_messages with the model's template traits on the
whole conversation, then the chat template over the messages before the turn, with the generation prompt.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ft.data.render import TemplateTraits, prepare_messages, render
from ft.data.shapes import Conversation, RowError, normalize_message, to_conversation
from ft.data.sources import MAX_REPORTED, RawRow, read_jsonl, read_source, read_utf8
from ft.errors import FtError
from ft.scoring import bfcl_to_json_schema
from ft.toolcalls import ToolCall, normalize_tool_calls, parse_tool_calls

TURNS = ("first", "all")
BFCL_ANSWER_FOLDER = "possible_answer"


@dataclass
class EvalItem:
    """One assistant turn to generate and score.

    turn counts assistant turns from 0. For chat rows, reference holds the expected calls (empty: no call expected).
    For BFCL rows, functions contains the offered functions in BFCL form and ground_truth the acceptable calls, or None
    when no call is expected.
    """

    where: str
    conversation: Conversation
    turn: int = 0
    row_id: str | None = None
    reference: list[ToolCall] = field(default_factory=list)
    functions: list[dict] | None = None
    ground_truth: list[dict] | None = None

    @property
    def is_bfcl(self) -> bool:
        return self.functions is not None

    def reference_json(self) -> list[dict]:
        """Return the expected calls as JSON: ToolCall fields, or the BFCL ground-truth entries."""
        if self.is_bfcl:
            return list(self.ground_truth or [])
        return [{"name": call.name, "arguments": call.arguments} for call in self.reference]


@dataclass
class EvalData:
    """Items read from one data source, with what was read and skipped."""

    items: list[EvalItem]
    kind: str  # "calls" for chat rows, "bfcl" for BFCL rows
    rows_read: int
    rows_without_assistant: int = 0


# ---------------------------------------------------------------------------------------------------------------
# Reading


def read_eval_data(path: str, split: str, messages_column: str | None, tools_column: str, turns: str,
                   limit: int | None) -> EvalData:
    """Read a data file, folder or Hub data set into evaluation items. Raise FtError naming bad rows and the fix."""
    raw_rows = read_source(path, split)
    if limit:
        raw_rows = raw_rows[:limit]
    if raw_rows and is_bfcl_row(raw_rows[0].row):
        return EvalData(bfcl_items(Path(path), raw_rows), "bfcl", len(raw_rows))

    conversations, problems = [], []
    for raw in raw_rows:
        try:
            conversations.append(to_conversation(raw.where, raw.row, messages_column, tools_column))
        except RowError as err:
            problems.append(f"{raw.where}: {err}")
    if problems:
        raise FtError(rows_message(path, problems, "Fix those rows, or name the message column with --messages-column"))

    items, skipped = items_from_conversations(conversations, turns)
    if not items:
        raise FtError(f"{path}: no row has an assistant turn to score ({len(raw_rows)} rows read), and the rows are "
                      "not BFCL rows (id, question, function). Give held-out conversations that end with or contain "
                      "the reference assistant turn, or name their column with --messages-column.")
    return EvalData(items, "calls", len(raw_rows), skipped)


def items_from_conversations(conversations: list[Conversation], turns: str = "first") -> tuple[list[EvalItem], int]:
    """Return one item per scored assistant turn, and the number of conversations without an assistant turn.

    turns="first" scores the first assistant turn of each conversation and "all" every assistant turn. Raise FtError
    listing the rows whose reference turn attempts a call that cannot be read.
    """
    if turns not in TURNS:
        raise FtError(f"--turns {turns!r}: expected one of {', '.join(TURNS)}.")
    items, problems = [], []
    skipped = 0
    for conversation in conversations:
        assistant_messages = [m for m in conversation.messages if m["role"] == "assistant"]
        if not assistant_messages:
            skipped += 1
            continue
        if turns == "first":
            assistant_messages = assistant_messages[:1]
        for turn, message in enumerate(assistant_messages):
            try:
                reference = reference_calls(message)
            except RowError as err:
                problems.append(f"{conversation.where}: assistant turn {turn}: {err}")
                continue
            items.append(EvalItem(conversation.where, conversation, turn, reference=reference))
    if problems:
        raise FtError(rows_message("data", problems, "Fix the reference tool calls in those rows"))
    return items, skipped


def reference_calls(message: dict) -> list[ToolCall]:
    """Return the calls an assistant message makes: its tool_calls, else the calls written in its text."""
    if message.get("tool_calls"):
        return normalize_tool_calls(message["tool_calls"])
    parsed = parse_tool_calls(message.get("content") or "")
    if parsed.malformed:
        raise RowError(f"the reference text attempts a tool call that cannot be read: {message['content'][:120]!r}")
    return parsed.calls


# ---------------------------------------------------------------------------------------------------------------
# BFCL


def is_bfcl_row(row: dict) -> bool:
    return isinstance(row.get("question"), list) and isinstance(row.get("function"), list)


def bfcl_items(path: Path, raw_rows: list[RawRow]) -> list[EvalItem]:
    """Build one item per BFCL row: the user turn, the offered functions as tools, and the ground truth."""
    answers = read_bfcl_answers(path)
    no_call_expected = answers is None and "irrelevance" in path.name
    if answers is None and not no_call_expected:
        raise FtError(f"{path}: BFCL rows need their ground truth in {path.parent / BFCL_ANSWER_FOLDER / path.name} "
                      "(rows matched by id), which is missing. Put the possible_answer folder next to the data file; "
                      "only irrelevance files, where no call is expected, have none.")

    items, problems = [], []
    for raw in raw_rows:
        try:
            items.append(bfcl_item(raw, answers, no_call_expected))
        except RowError as err:
            problems.append(f"{raw.where}: {err}")
    if problems:
        raise FtError(rows_message(str(path), problems, "Fix those rows or the matching answer rows"))
    return items


def bfcl_item(raw: RawRow, answers: dict[str, list[dict]] | None, no_call_expected: bool) -> EvalItem:
    row = raw.row
    row_id = str(row.get("id", ""))
    turns = row["question"]
    # NOTE: multi-turn BFCL categories need a tool executor between turns, so only single-turn rows are read.
    if len(turns) != 1 or not isinstance(turns[0], list):
        raise RowError(f"BFCL row {row_id!r} has {len(turns)} question turns; only single-turn rows are supported")
    messages = [normalize_message(message, index) for index, message in enumerate(turns[0])]
    functions = row["function"]
    if not all(isinstance(function, dict) and function.get("name") for function in functions):
        raise RowError(f"BFCL row {row_id!r}: every entry of `function` needs a name")

    ground_truth = None
    if not no_call_expected:
        if row_id not in answers:
            raise RowError(f"BFCL row {row_id!r} has no ground truth in the possible_answer file")
        ground_truth = answers[row_id]
    tools = [bfcl_to_json_schema(function) for function in functions]
    # The empty assistant turn marks where the reply goes, so BFCL and chat rows render through the same path.
    conversation = Conversation(raw.where, messages + [{"role": "assistant", "content": ""}], tools, "bfcl")
    return EvalItem(raw.where, conversation, 0, row_id=row_id, functions=functions, ground_truth=ground_truth)


def read_bfcl_answers(path: Path) -> dict[str, list[dict]] | None:
    """Return the ground truth of each row id from possible_answer/<file name>, or None when there is no such file."""
    answer_path = path.parent / BFCL_ANSWER_FOLDER / path.name
    if not answer_path.is_file():
        return None
    answers, bad = {}, []
    # read_jsonl raises FtError naming the line for invalid JSON; only the row shape is checked here.
    for raw in read_jsonl(answer_path, read_utf8(answer_path)):
        row = raw.row
        if "id" not in row or not isinstance(row.get("ground_truth"), list):
            bad.append(f"line {raw.where.rsplit(':', 1)[-1]}: expected an object with `id` and a `ground_truth` list")
            continue
        answers[str(row["id"])] = row["ground_truth"]
    if bad:
        raise FtError(rows_message(str(answer_path), bad, "Fix those lines of the answer file"))
    return answers


# ---------------------------------------------------------------------------------------------------------------
# Prompts


def render_prompt(item: EvalItem, tokenizer, traits: TemplateTraits) -> str:
    """Render the conversation before the item's turn as training renders it, ending with the generation prompt.

    Raise RowError when the chat template rejects the conversation.
    """
    messages, tools = prepare_messages(item.conversation, traits)
    assistant_positions = [index for index, message in enumerate(messages) if message["role"] == "assistant"]
    return render(tokenizer, messages[: assistant_positions[item.turn]], tools, add_generation_prompt=True)


def rows_message(where: str, problems: list[str], fix: str) -> str:
    listed = "\n".join(f"  {problem}" for problem in problems[:MAX_REPORTED])
    more = f"\n  ... and {len(problems) - MAX_REPORTED} more" if len(problems) > MAX_REPORTED else ""
    return f"{where}: {len(problems)} row(s) cannot be evaluated:\n{listed}{more}\n{fix}."
