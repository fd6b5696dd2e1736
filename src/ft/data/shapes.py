"""Turn raw rows of any common shape into one form: OpenAI chat messages plus an optional tools list.

Shapes: OpenAI messages (in any column), ShareGPT `conversations` with `from`/`value` (including `function_call` and
`observation` turns), instruction/input/output, prompt/completion, and plain text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ft.toolcalls import normalize_tool_calls

MESSAGE_COLUMNS = ("messages", "conversations", "conversation", "trace", "chat", "dialog")
SHAREGPT_ROLES = {
    "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "model": "assistant",
    "system": "system", "function_call": "assistant", "observation": "tool", "tool": "tool",
    "function_response": "tool", "ipython": "tool",
}
ROLES = ("system", "user", "assistant", "tool")


class RowError(ValueError):
    """A row that cannot be read; the message says what is wrong in it."""


@dataclass
class Conversation:
    where: str
    messages: list[dict]
    tools: list[dict] | None = None
    shape: str = "messages"
    extra: dict = field(default_factory=dict)


def detect_shape(row: dict, messages_column: str | None) -> str:
    """Name the row's shape, or raise RowError listing the columns found and the ones expected."""
    if messages_column:
        if messages_column not in row:
            raise RowError(f"no column {messages_column!r} (data.messages_column); columns are {sorted(row)}")
        return "messages"
    for column in MESSAGE_COLUMNS:
        if isinstance(row.get(column), list):
            return "messages"
    if "instruction" in row and "output" in row:
        return "instruction"
    if "prompt" in row and "completion" in row:
        return "prompt_completion"
    if isinstance(row.get("text"), str):
        return "text"
    raise RowError(f"unrecognised shape: columns are {sorted(row)}. Expected a message list "
                   f"({', '.join(MESSAGE_COLUMNS)}), instruction/output, prompt/completion, or text; "
                   "name another message column with data.messages_column")


def to_conversation(raw_where: str, row: dict, messages_column: str | None, tools_column: str) -> Conversation:
    shape = detect_shape(row, messages_column)
    tools = parse_tools(row.get(tools_column))
    if shape == "instruction":
        prompt = row["instruction"] if not row.get("input") else f"{row['instruction']}\n\n{row['input']}"
        messages = [{"role": "user", "content": str(prompt)}, {"role": "assistant", "content": str(row["output"])}]
    elif shape == "prompt_completion":
        messages = prompt_completion_messages(row["prompt"], row["completion"])
    elif shape == "text":
        messages = [{"role": "assistant", "content": row["text"]}]
    else:
        column = messages_column or next(c for c in MESSAGE_COLUMNS if isinstance(row.get(c), list))
        value = row[column]
        if isinstance(value, str):
            value = parse_json_field(value, column)
        if not isinstance(value, list) or not value:
            raise RowError(f"column {column!r} must be a non-empty list of messages")
        messages = [normalize_message(message, index) for index, message in enumerate(value)]
        shape = "sharegpt" if isinstance(value[0], dict) and "from" in value[0] else "messages"
    return Conversation(raw_where, messages, tools, shape)


def prompt_completion_messages(prompt, completion) -> list[dict]:
    prompt_msgs = prompt if isinstance(prompt, list) else [{"role": "user", "content": str(prompt)}]
    completion_msgs = completion if isinstance(completion, list) else [{"role": "assistant", "content": str(completion)}]
    return [normalize_message(m, i) for i, m in enumerate(prompt_msgs + completion_msgs)]


def normalize_message(message, index: int) -> dict:
    if not isinstance(message, dict):
        raise RowError(f"message {index} is a {type(message).__name__}, expected an object with role and content")
    if "from" in message and "role" not in message:
        return sharegpt_message(message, index)
    role = message.get("role")
    if role not in ROLES:
        raise RowError(f"message {index}: role {role!r} is not one of {', '.join(ROLES)}")
    content = message.get("content")
    if content is not None and not isinstance(content, str):
        content = content_text(content, index)
    out = {"role": role, "content": content or ""}
    if role == "assistant" and message.get("tool_calls"):
        out["tool_calls"] = calls_to_openai(message["tool_calls"], index)
    if role == "tool":
        for key in ("tool_call_id", "name"):
            if message.get(key):
                out[key] = message[key]
    return out


def content_text(content, index: int) -> str:
    """Join OpenAI content parts of type text; other part types cannot be trained on by a text model."""
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        return "".join(p.get("text", "") for p in content)
    raise RowError(f"message {index}: content must be text or a list of text parts, got {type(content).__name__}")


def sharegpt_message(message: dict, index: int) -> dict:
    role = SHAREGPT_ROLES.get(str(message["from"]).lower())
    if role is None:
        raise RowError(f"message {index}: ShareGPT role {message['from']!r} is not one of {', '.join(SHAREGPT_ROLES)}")
    value = message.get("value") or ""
    if str(message["from"]).lower() == "function_call":
        call = parse_json_field(value, f"message {index} function_call") if isinstance(value, str) else value
        return {"role": "assistant", "content": "", "tool_calls": calls_to_openai(call if isinstance(call, list) else [call], index)}
    return {"role": role, "content": value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)}


def calls_to_openai(raw_calls, index: int) -> list[dict]:
    """Normalise tool calls to OpenAI form with `arguments` as an object, whatever their input encoding."""
    try:
        calls = normalize_tool_calls(raw_calls if isinstance(raw_calls, list) else [raw_calls])
    except ValueError as err:
        raise RowError(f"message {index}: bad tool call: {err}") from None
    return [{"type": "function", "function": {"name": c.name, "arguments": c.arguments}} for c in calls]


def parse_tools(value) -> list[dict] | None:
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, str):
        value = parse_json_field(value, "tools")
    if not isinstance(value, list):
        raise RowError(f"tools must be a list of function definitions, got {type(value).__name__}")
    tools = []
    for index, tool in enumerate(value):
        if not isinstance(tool, dict):
            raise RowError(f"tools[{index}] is a {type(tool).__name__}, expected an object")
        function = tool.get("function", tool) if tool.get("type", "function") == "function" else tool
        if not isinstance(function, dict) or not function.get("name"):
            raise RowError(f"tools[{index}] has no name")
        tools.append({"type": "function", "function": function})
    return tools or None


def parse_json_field(text: str, what: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise RowError(f"{what}: invalid JSON ({err.msg} at character {err.pos}): {text[:60]!r}") from None
