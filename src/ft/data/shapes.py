"""Turn raw rows of any common shape into one form: OpenAI chat messages plus an optional tools list.

Shapes (the values of SHAPES), each read from standard column names that a column mapping can rename:
  messages           `messages` (or `conversations`, `conversation`, `trace`, `chat`, `dialog`, or any column holding
                     a list of {role, content} objects): OpenAI chat messages, roles system, user, assistant, tool,
                     assistant `tool_calls`, optional `tools` list or JSON string
  sharegpt           the same columns holding {from, value} turns: human, gpt, system, function_call, observation
  instruction        `instruction`, optional `input`, `output` (Alpaca), optional `system` and `history`
  prompt_completion  `prompt` and `completion`, each a string or a list of messages
  text               `text`: plain text, trained on every token
  bfcl               `question` (a list of turns, each a list of messages) and `function` (BFCL function entries)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ft.toolcalls import normalize_tool_calls

SHAPES = ("messages", "sharegpt", "instruction", "prompt_completion", "text", "bfcl")
MESSAGE_COLUMNS = ("messages", "conversations", "conversation", "trace", "chat", "dialog")
# Standard field name -> the column read when no mapping renames it. `messages` is searched in MESSAGE_COLUMNS.
FIELDS = ("messages", "tools", "system", "history", "instruction", "input", "output", "prompt", "completion", "text",
          "question", "function")
SHAREGPT_ROLES = {
    "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "model": "assistant",
    "system": "system", "function_call": "assistant", "observation": "tool", "tool": "tool",
    "function_response": "tool", "ipython": "tool",
}
ROLES = ("system", "user", "assistant", "tool")
# Roles of other APIs that mean one of ROLES: OpenAI's legacy `function` results, Llama's `ipython` results.
ROLE_ALIASES = {"function": "tool", "ipython": "tool", "model": "assistant", "human": "user", "gpt": "assistant"}


class RowError(ValueError):
    """A row that cannot be read. The message states what is wrong in it."""


@dataclass
class Conversation:
    where: str
    messages: list[dict]
    tools: list[dict] | None = None
    shape: str = "messages"
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ColumnMap:
    """Column names of the standard fields in the user's rows: `{"instruction": "question", "output": "answer"}`."""

    columns: dict = field(default_factory=dict)

    def name(self, standard: str) -> str:
        return self.columns.get(standard, standard)

    def value(self, row: dict, standard: str):
        return row.get(self.name(standard))

    def has(self, row: dict, standard: str) -> bool:
        return self.value(row, standard) not in (None, "")


def column_map(messages_column: str | None, tools_column: str | None, columns: dict | None) -> ColumnMap:
    """Merge data.messages_column and data.tools_column into the mapping; an entry in `columns` wins."""
    merged = {}
    if messages_column:
        merged["messages"] = messages_column
    if tools_column and tools_column != "tools":
        merged["tools"] = tools_column
    merged.update(columns or {})
    unknown = sorted(set(merged) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)} in the column mapping; "
                         f"the fields are {', '.join(FIELDS)}")
    return ColumnMap(merged)


def to_conversation(raw_where: str, row: dict, messages_column: str | None, tools_column: str,
                    shape: str = "auto", columns: dict | None = None) -> Conversation:
    """Convert one row to a Conversation. Raise RowError naming what is wrong and how to map the columns."""
    try:
        mapping = column_map(messages_column, tools_column, columns)
    except ValueError as err:
        raise RowError(str(err)) from None
    detected = detect_shape(row, mapping) if shape == "auto" else check_named_shape(row, shape, mapping)
    if detected == "bfcl":
        return bfcl_conversation(raw_where, row, mapping)

    tools = parse_tools(mapping.value(row, "tools"))
    if detected == "instruction":
        messages = instruction_messages(row, mapping)
    elif detected == "prompt_completion":
        messages = prompt_completion_messages(mapping.value(row, "prompt"), mapping.value(row, "completion"))
    elif detected == "text":
        messages = [{"role": "assistant", "content": str(mapping.value(row, "text"))}]
    else:
        messages, detected = message_list(row, mapping)
    system = mapping.value(row, "system")
    if isinstance(system, str) and system.strip() and messages[0]["role"] != "system" and detected != "text":
        messages = [{"role": "system", "content": system}] + messages
    return Conversation(raw_where, messages, tools, detected)


def detect_shape(row: dict, mapping: ColumnMap) -> str:
    """Name the row's shape from its columns, or raise RowError listing the columns found and the ones expected."""
    if "messages" in mapping.columns:
        if mapping.columns["messages"] not in row:
            raise RowError(f"no column {mapping.columns['messages']!r} (the mapped message column); "
                           f"columns are {sorted(row)}")
        return "messages"
    if standard_message_column(row) is not None:
        return "messages"
    if is_list(mapping.value(row, "question")) and is_list(mapping.value(row, "function")):
        return "bfcl"
    if mapping.name("instruction") in row and mapping.name("output") in row:
        return "instruction"
    if mapping.name("prompt") in row and mapping.name("completion") in row:
        return "prompt_completion"
    if find_message_column(row) is not None:
        return "messages"
    if isinstance(mapping.value(row, "text"), str):
        return "text"
    raise RowError(unknown_shape_message(row))


def unknown_shape_message(row: dict) -> str:
    return (f"unrecognised shape: columns are {sorted(row)}. Expected one of: a message list in "
            f"{' / '.join(MESSAGE_COLUMNS)} (OpenAI {{role, content}} or ShareGPT {{from, value}} turns); "
            "instruction + output (+ input); prompt + completion; text; question + function (BFCL). "
            "To map your columns, set data.columns, e.g. `data.columns: {messages: dialogue}` or "
            "`data.columns: {instruction: question, output: answer}` (data.messages_column names a message column)")


def check_named_shape(row: dict, shape: str, mapping: ColumnMap) -> str:
    """Check that a row has the columns of the shape named in the config; return the shape."""
    required = {
        "messages": [], "sharegpt": [], "instruction": ["instruction", "output"],
        "prompt_completion": ["prompt", "completion"], "text": ["text"], "bfcl": ["question", "function"],
    }.get(shape)
    if required is None:
        raise RowError(f"data.shape {shape!r} is not one of auto, {', '.join(SHAPES)}")
    if shape in ("messages", "sharegpt") and "messages" not in mapping.columns and find_message_column(row) is None:
        raise RowError(f"data.shape is {shape} but no column contains a message list; columns are {sorted(row)}. "
                       "Name the column with `data.columns: {messages: YOUR_COLUMN}`")
    missing = [standard for standard in required if mapping.name(standard) not in row]
    if missing:
        wanted = ", ".join(f"{standard}: YOUR_COLUMN" for standard in missing)
        names = ", ".join(repr(mapping.name(standard)) for standard in missing)
        raise RowError(f"data.shape is {shape} but the row has no column {names}; "
                       f"columns are {sorted(row)}. Map them with `data.columns: {{{wanted}}}`")
    return "messages" if shape == "sharegpt" else shape


def is_list(value) -> bool:
    return isinstance(value, list) and bool(value)


def standard_message_column(row: dict) -> str | None:
    for column in MESSAGE_COLUMNS:
        if column in row and as_message_list(row[column]) is not None:
            return column
    return None


def find_message_column(row: dict) -> str | None:
    """Return the column holding the message list: a standard name first, then any list of message objects."""
    standard = standard_message_column(row)
    if standard is not None:
        return standard
    for column, value in row.items():
        if column not in MESSAGE_COLUMNS and looks_like_messages(value):
            return column
    return None


def as_message_list(value):
    """Return the value as a list, parsing a JSON string (CSV cells hold text); None when it is not a list."""
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return None
    return value if isinstance(value, list) else None


def looks_like_messages(value) -> bool:
    return (isinstance(value, list) and bool(value) and isinstance(value[0], dict)
            and ("role" in value[0] or "from" in value[0]))


def message_list(row: dict, mapping: ColumnMap) -> tuple[list[dict], str]:
    """Return the normalised messages of a message-list row and the shape name (`messages` or `sharegpt`)."""
    column = mapping.columns.get("messages") or find_message_column(row)
    value = row.get(column)
    if isinstance(value, str):
        value = parse_json_field(value, f"column {column!r}")
    if not isinstance(value, list) or not value:
        raise RowError(f"column {column!r} must be a non-empty list of messages, got {short(value)}")
    messages = [normalize_message(message, index) for index, message in enumerate(value)]
    shape = "sharegpt" if isinstance(value[0], dict) and "from" in value[0] else "messages"
    return messages, shape


def instruction_messages(row: dict, mapping: ColumnMap) -> list[dict]:
    """Alpaca rows: instruction and input make the user turn, output the assistant turn, after any history pairs."""
    instruction = str(mapping.value(row, "instruction") or "")
    extra_input = mapping.value(row, "input")
    prompt = f"{instruction}\n\n{extra_input}" if extra_input not in (None, "") else instruction
    messages = []
    history = mapping.value(row, "history") or []
    for index, pair in enumerate(history):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
            raise RowError(f"history[{index}] must be a [user, assistant] pair, got {short(pair)}")
        messages += [{"role": "user", "content": str(pair[0])}, {"role": "assistant", "content": str(pair[1])}]
    output = mapping.value(row, "output")
    answer = "" if output is None else str(output)
    return messages + [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]


def prompt_completion_messages(prompt, completion) -> list[dict]:
    prompt_msgs = prompt if isinstance(prompt, list) else [{"role": "user", "content": str(prompt)}]
    completion_msgs = (completion if isinstance(completion, list)
                       else [{"role": "assistant", "content": str(completion)}])
    return [normalize_message(m, i) for i, m in enumerate(prompt_msgs + completion_msgs)]


def bfcl_conversation(raw_where: str, row: dict, mapping: ColumnMap) -> Conversation:
    """BFCL question rows: the user turns of every question turn, and the functions as JSON Schema tools.

    These rows hold no answer, so they are prompts without an assistant turn: training drops them with the reason
    `no assistant turn`, and evaluation reads them itself with their ground truth.
    """
    from ft.scoring import bfcl_to_json_schema

    messages = []
    for turn, turn_messages in enumerate(mapping.value(row, "question")):
        if not isinstance(turn_messages, list):
            raise RowError(f"question[{turn}] must be a list of messages, got {short(turn_messages)}")
        messages += [normalize_message(message, len(messages) + i) for i, message in enumerate(turn_messages)]
    functions = mapping.value(row, "function")
    for index, function in enumerate(functions):
        if not isinstance(function, dict) or not function.get("name"):
            raise RowError(f"function[{index}] has no name: {short(function)}")
    tools = [bfcl_to_json_schema(function) for function in functions]
    return Conversation(raw_where, messages, tools, "bfcl")


def normalize_message(message, index: int) -> dict:
    """Return an OpenAI message (role, content, and tool_calls or tool_call_id/name) from any accepted spelling."""
    if not isinstance(message, dict):
        raise RowError(f"message {index} is a {type(message).__name__}, expected an object with role and content")
    if "from" in message and "role" not in message:
        return sharegpt_message(message, index)
    role = message.get("role")
    role = ROLE_ALIASES.get(role, role)
    if role not in ROLES:
        raise RowError(f"message {index}: role {message.get('role')!r} is not one of {', '.join(ROLES)}")
    content = message.get("content")
    if content is not None and not isinstance(content, str):
        content = content_text(content, index, role)
    out = {"role": role, "content": content or ""}
    if role == "assistant":
        calls = message.get("tool_calls") or ([message["function_call"]] if message.get("function_call") else None)
        if calls:
            out["tool_calls"] = calls_to_openai(calls, index)
    if role == "tool":
        for key in ("tool_call_id", "name"):
            if message.get(key):
                out[key] = message[key]
    return out


def content_text(content, index: int, role: str) -> str:
    """Join OpenAI content parts of type text; other part types cannot be trained on by a text model."""
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        return "".join(p.get("text", "") for p in content)
    if role == "tool" and isinstance(content, (dict, list, int, float, bool)):
        # Tool results stored as JSON values are shown to the model as the JSON text.
        return json.dumps(content, ensure_ascii=False)
    raise RowError(f"message {index}: content must be text or a list of text parts, got {short(content)}")


def sharegpt_message(message: dict, index: int) -> dict:
    source_role = str(message["from"]).lower()
    role = SHAREGPT_ROLES.get(source_role)
    if role is None:
        raise RowError(f"message {index}: ShareGPT role {message['from']!r} is not one of {', '.join(SHAREGPT_ROLES)}")
    value = message.get("value")
    value = "" if value is None else value
    if source_role == "function_call":
        call = parse_json_field(value, f"message {index} (function_call)") if isinstance(value, str) else value
        calls = call if isinstance(call, list) else [call]
        return {"role": "assistant", "content": "", "tool_calls": calls_to_openai(calls, index)}
    return {"role": role, "content": value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)}


def calls_to_openai(raw_calls, index: int) -> list[dict]:
    """Normalise tool calls to OpenAI form with `arguments` as an object, whatever their input encoding.

    An object is what chat templates expect (they serialise it themselves), so a JSON string in one row and an
    object in the next render the same. Call ids are kept for templates that print them.
    """
    entries = raw_calls if isinstance(raw_calls, list) else [raw_calls]
    try:
        calls = normalize_tool_calls(entries)
    except ValueError as err:
        raise RowError(f"message {index}: invalid tool call: {err}") from None
    out = []
    for entry, call in zip(entries, calls):
        converted = {"type": "function", "function": {"name": call.name, "arguments": call.arguments}}
        if isinstance(entry, dict) and isinstance(entry.get("id"), str):
            converted["id"] = entry["id"]
        out.append(converted)
    return out


def parse_tools(value) -> list[dict] | None:
    """Return the tool list as OpenAI entries; the value may be a list or a JSON string holding one."""
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, str):
        value = parse_json_field(value, "tools")
    if not isinstance(value, list):
        raise RowError(f"tools must be a list of function definitions, got {short(value)}")
    tools = []
    for index, tool in enumerate(value):
        if not isinstance(tool, dict):
            raise RowError(f"tools[{index}] is a {type(tool).__name__}, expected an object")
        function = tool["function"] if isinstance(tool.get("function"), dict) else tool
        if not isinstance(function.get("name"), str) or not function["name"]:
            raise RowError(f"tools[{index}] has no name: {short(tool)}")
        tools.append({"type": "function", "function": function})
    return tools or None


def parse_json_field(text: str, what: str):
    try:
        return json.loads(text)
    except RecursionError:
        raise RowError(f"{what}: JSON nested too deeply to read") from None
    except json.JSONDecodeError as err:
        raise RowError(f"{what}: invalid JSON ({err.msg} at character {err.pos}): {text[:60]!r}") from None


def short(value, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=repr)
    return repr(text if len(text) <= limit else text[:limit] + "...")
