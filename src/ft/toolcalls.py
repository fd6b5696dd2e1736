"""Write and read tool calls in the text styles that chat model families use.

Training renders calls with format_tool_calls and evaluation reads model output with parse_tool_calls, so the
parser always reads what the trainer wrote. This module imports only the standard library because fast-starting
commands import it.

Styles (the values of STYLES):
  smollm2   <tool_call>[{"name": "f", "arguments": {...}}, ...]</tool_call>  (one block, a JSON list of all calls)
  hermes    <tool_call>\\n{"name": "f", "arguments": {...}}\\n</tool_call>    (one block per call, joined by "\\n")
  guide     <tool_call>{"tool_name": "f", "args": {...}}</tool_call>       (one block per call, joined by "\\n")
  llama     {"name": "f", "parameters": {...}}                            (one JSON object per call, one per line)
  mistral   [TOOL_CALLS] [{"name": "f", "arguments": {...}}, ...]
  pythonic  [f(a=1, b="x"), g()]
"""

from __future__ import annotations

import ast
import json
import keyword
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

STYLES = ("smollm2", "hermes", "guide", "llama", "mistral", "pythonic")


@dataclass(frozen=True)
class ToolCall:
    """One function call: the function name and its arguments as a JSON object."""

    name: str
    # Left out of the hash because a dict is unhashable. Equal calls still hash equal, since names match.
    arguments: dict = field(default_factory=dict, hash=False)


@dataclass
class ParsedCalls:
    """Tool calls read from one model output.

    malformed is True when the text attempted a call that could not be read (invalid or cut-off JSON or Python),
    even when other calls in the same text were read. style is one of STYLES, "openai" for a {"tool_calls": [...]}
    object, "json" for bare JSON call objects with "arguments", or None when nothing looked like a call.
    """

    calls: list[ToolCall] = field(default_factory=list)
    malformed: bool = False
    style: str | None = None


# ---------------------------------------------------------------------------------------------------------------
# Normalising call entries

_NAME_KEYS = ("name", "tool_name")
_ARGUMENT_KEYS = ("arguments", "parameters", "args")
_PREVIEW_CHARS = 60


def normalize_tool_calls(raw: list | None) -> list[ToolCall]:
    """Convert tool call entries of any accepted shape to ToolCall objects.

    Accepts OpenAI entries {"type": "function", "function": {"name", "arguments"}}, flat {"name", "arguments"}
    entries, and the {"name", "parameters"} and {"tool_name", "args"} spellings. Arguments given as a JSON string
    are parsed, and None or an empty string becomes {}. None in place of the list means no calls, and entries
    that are already ToolCall objects are kept.
    Raises ValueError naming the call's index and quoting the bad value, so callers only add the row.
    """
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValueError(f"expected a list of tool calls, got {type(raw).__name__} {_preview(raw)}")
    return [_normalize_entry(entry, index) for index, entry in enumerate(raw)]


def _normalize_entry(entry: Any, index: int) -> ToolCall:
    if isinstance(entry, ToolCall):
        return entry
    if not isinstance(entry, dict):
        raise ValueError(f"tool call {index}: expected a JSON object, got {_preview(entry)}")

    body = entry["function"] if isinstance(entry.get("function"), dict) else entry
    name = next((body[key] for key in _NAME_KEYS if key in body), None)
    if not isinstance(name, str) or not name.strip():
        raise ValueError(
            f'tool call {index}: missing function name, expected a "name" string in {_preview(entry)}'
        )

    raw_arguments = next((body[key] for key in _ARGUMENT_KEYS if key in body), None)
    try:
        arguments = _coerce_arguments(raw_arguments)
    except ValueError as error:
        raise ValueError(f"tool call {index} ({name.strip()}): {error}") from None
    return ToolCall(name.strip(), arguments)


def _coerce_arguments(value: Any) -> dict:
    if value is None:
        return {}
    if isinstance(value, dict):
        return dict(value)
    if not isinstance(value, str):
        raise ValueError(
            f"arguments must be a JSON object or a string containing one, got {type(value).__name__} {_preview(value)}"
        )
    if not value.strip():
        return {}

    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"arguments are not valid JSON ({error.msg} at character {error.pos}): {_preview(value)}; "
            'expected a JSON object such as {"city": "Paris"}'
        ) from None
    if not isinstance(parsed, dict):
        raise ValueError(f"arguments must be a JSON object, got {type(parsed).__name__} {_preview(value)}")
    return parsed


def _preview(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=repr)
    if len(text) > _PREVIEW_CHARS:
        text = text[:_PREVIEW_CHARS] + "..."
    return repr(text)


def _as_tool_calls(calls: Sequence[ToolCall | dict]) -> list[ToolCall]:
    return normalize_tool_calls(list(calls))


# ---------------------------------------------------------------------------------------------------------------
# Writing calls


def format_tool_calls(calls: Sequence[ToolCall | dict], style: str) -> str:
    """Write the calls as assistant text in the given style (see the module docstring for each shape).

    calls may mix ToolCall objects and raw entries accepted by normalize_tool_calls. An empty list gives "".
    Non-ASCII text is written as is, not as \\u escapes. Raises ValueError for an unknown style, and in pythonic
    style for names that are not Python identifiers or values that have no Python literal (NaN, infinity).
    """
    formatter = _FORMATTERS.get(style)
    if formatter is None:
        raise ValueError(f"unknown tool call style {style!r}, expected one of: {', '.join(STYLES)}")
    normalized = _as_tool_calls(calls)
    if not normalized:
        return ""
    return formatter(normalized)


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _format_smollm2(calls: list[ToolCall]) -> str:
    payload = [{"name": call.name, "arguments": call.arguments} for call in calls]
    return f"<tool_call>{_dump(payload)}</tool_call>"


def _format_hermes(calls: list[ToolCall]) -> str:
    blocks = [_dump({"name": call.name, "arguments": call.arguments}) for call in calls]
    return "\n".join(f"<tool_call>\n{block}\n</tool_call>" for block in blocks)


def _format_guide(calls: list[ToolCall]) -> str:
    blocks = [_dump({"tool_name": call.name, "args": call.arguments}) for call in calls]
    return "\n".join(f"<tool_call>{block}</tool_call>" for block in blocks)


def _format_llama(calls: list[ToolCall]) -> str:
    # Llama 3.1 documents one call per turn. Several calls go one JSON object per line, which the parser reads back.
    return "\n".join(_dump({"name": call.name, "parameters": call.arguments}) for call in calls)


def _format_mistral(calls: list[ToolCall]) -> str:
    payload = [{"name": call.name, "arguments": call.arguments} for call in calls]
    return f"[TOOL_CALLS] {_dump(payload)}"


def _format_pythonic(calls: list[ToolCall]) -> str:
    return "[" + ", ".join(_python_call(call) for call in calls) + "]"


def _python_call(call: ToolCall) -> str:
    if not all(part.isidentifier() for part in call.name.split(".")):
        raise ValueError(f"function name {call.name!r} is not a dotted Python name, so pythonic style cannot write it")
    parts = []
    for argument, value in call.arguments.items():
        if not isinstance(argument, str) or not argument.isidentifier() or keyword.iskeyword(argument):
            raise ValueError(
                f"argument name {argument!r} of {call.name} is not a Python identifier, "
                "so pythonic style cannot write it"
            )
        parts.append(f"{argument}={_python_literal(value)}")
    return f"{call.name}({', '.join(parts)})"


def _python_literal(value: Any) -> str:
    # bool is checked before int because bool is a subclass of int.
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, int):
        return repr(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"pythonic style cannot write the non-finite number {value!r}")
        return repr(value)
    if isinstance(value, str):
        # A JSON string literal is also a valid Python string literal, double-quoted.
        return _dump(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_python_literal(item) for item in value) + "]"
    if isinstance(value, dict):
        items = [f"{_python_literal(key)}: {_python_literal(item)}" for key, item in value.items()]
        return "{" + ", ".join(items) + "}"
    raise ValueError(f"pythonic style cannot write a value of type {type(value).__name__}: {value!r}")


_FORMATTERS: dict[str, Callable[[list[ToolCall]], str]] = {
    "smollm2": _format_smollm2,
    "hermes": _format_hermes,
    "guide": _format_guide,
    "llama": _format_llama,
    "mistral": _format_mistral,
    "pythonic": _format_pythonic,
}


# ---------------------------------------------------------------------------------------------------------------
# Writing the tool list for the system prompt

_EXAMPLE_CALL = ToolCall("tool_name", {"argument_name": "value"})

_TOOLS_INTRO = (
    "You can call the tools listed below when the user's request needs them. "
    "Each line inside <tools></tools> describes one tool as a JSON object."
)

_CALL_INSTRUCTIONS = {
    "smollm2": "To call tools, write one <tool_call></tool_call> block that contains a JSON list of all calls, "
    "for example:",
    "hermes": "To call a tool, write a <tool_call></tool_call> block that contains a JSON object with the name "
    "and arguments, one block per call, for example:",
    "guide": 'To call a tool, write a <tool_call></tool_call> block that contains a JSON object with "tool_name" '
    'and "args", one block per call, for example:',
    "llama": 'To call a tool, write only a JSON object with "name" and "parameters", one line per call, '
    "for example:",
    "mistral": "To call tools, write [TOOL_CALLS] followed by a JSON list of all calls, for example:",
    "pythonic": "To call tools, write a Python list of function calls with keyword arguments, for example:",
}


def format_tools_prompt(tools: list[dict], style: str) -> str:
    """Write the system-prompt text that lists the tools and shows the call format of the style.

    For chat templates that ignore a tools= argument. Each tool is an OpenAI entry
    {"type": "function", "function": {...}} or a bare {"name", "description", "parameters"} object. The text is an
    instruction sentence, the tools inside <tools></tools> one JSON object per line, and an example call written by
    format_tool_calls. Keys are written in a fixed order, so the same tools always give the same text. An empty
    list gives "". Raises ValueError for an unknown style or a tool without a name.
    """
    if style not in _FORMATTERS:
        raise ValueError(f"unknown tool call style {style!r}, expected one of: {', '.join(STYLES)}")
    functions = [_tool_function(tool, index) for index, tool in enumerate(tools)]
    if not functions:
        return ""

    describe = _guide_tool_line if style == "guide" else _dump
    listing = "\n".join(describe(function) for function in functions)
    example = format_tool_calls([_EXAMPLE_CALL], style)
    return f"{_TOOLS_INTRO}\n<tools>\n{listing}\n</tools>\n{_CALL_INSTRUCTIONS[style]}\n{example}"


def _tool_function(tool: Any, index: int) -> dict:
    if not isinstance(tool, dict):
        raise ValueError(f"tool {index}: expected a JSON object, got {_preview(tool)}")
    body = tool["function"] if isinstance(tool.get("function"), dict) else tool
    name = body.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f'tool {index}: missing "name" string in {_preview(tool)}')

    function = {"name": name}
    if body.get("description"):
        function["description"] = body["description"]
    function["parameters"] = body.get("parameters") or {"type": "object", "properties": {}}
    return function


def _guide_tool_line(function: dict) -> str:
    # The guide data set describes each argument as "type - description" under "input_args".
    properties = function["parameters"].get("properties") or {}
    input_args = {}
    for argument, schema in properties.items():
        argument_type = schema.get("type", "any") if isinstance(schema, dict) else "any"
        description = schema.get("description", "") if isinstance(schema, dict) else ""
        input_args[argument] = f"{argument_type} - {description}" if description else str(argument_type)
    line = {"tool_name": function["name"], "description": function.get("description", ""), "input_args": input_args}
    return _dump(line)


# ---------------------------------------------------------------------------------------------------------------
# Reading calls

_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL)
_FENCE_LINE = re.compile(r"^[ \t]*```[\w+-]*[ \t]*$", re.MULTILINE)
_TOOL_CALL_OPEN = "<tool_call>"
_TOOL_CALL_CLOSE = "</tool_call>"
_MISTRAL_MARKER = "[TOOL_CALLS]"
# Start of a JSON call in prose: an object, or a list of objects, whose first key names a call.
_JSON_CALL_START = re.compile(r"""(?:\[\s*)?\{\s*["']?(?:name|tool_name|tool_calls|function|type)["']?\s*:""")
# A Python list of calls. It needs "()" or a keyword argument right after the name, so "[Note(s)]" stays prose.
_PYTHONIC_START = re.compile(r"\[\s*[A-Za-z_][\w.]*\s*\(\s*(?:\)|[A-Za-z_]\w*\s*=(?!=))")
_BARE_PYTHON_CALL = re.compile(r"[A-Za-z_][\w.]*\s*\(\s*(?:\)|[A-Za-z_]\w*\s*=(?!=))")
_GUIDE_BLOCK = re.compile(r"""\s*\{\s*["']tool_name["']""")
_DECODER = json.JSONDecoder()
_CLOSERS = {"[": "]", "{": "}", "(": ")"}
_NAMED_CONSTANTS = {"True": True, "False": False, "None": None, "true": True, "false": False, "null": None}


def parse_tool_calls(text: str) -> ParsedCalls:
    """Read the tool calls in a model output, in any style of STYLES or as OpenAI/bare JSON.

    <think> blocks and code fence lines are dropped first. <tool_call> blocks take precedence, then [TOOL_CALLS],
    then JSON call objects or pythonic call lists anywhere in the text (the first successful one in the text wins).
    Single-quoted Python-style dicts and true/false/null inside them are accepted. A block cut off at the end of
    the text still yields its call when its JSON is complete, and counts as malformed otherwise.
    Pythonic calls are read with ast and never evaluated. Text with no call gives calls=[] and malformed=False.
    """
    body = _strip_reasoning(text)
    if _TOOL_CALL_OPEN in body:
        return _parse_tagged(body)
    if _MISTRAL_MARKER in body:
        return _parse_mistral(body)

    found = [result for result in (_parse_json_calls(body), _parse_pythonic(body)) if result is not None]
    if not found:
        return ParsedCalls()
    # Prefer a reading that produced calls over a malformed one, then the one that starts first.
    _, parsed = min(found, key=lambda result: (not result[1].calls, result[0]))
    return parsed


def _strip_reasoning(text: str) -> str:
    text = _THINK_BLOCK.sub("", text)
    # Some chat templates open <think> in the prompt, so the output contains only the closing tag.
    text = text.rpartition("</think>")[2]
    # An unclosed <think> means generation stopped while reasoning, so nothing after it is part of the reply.
    text = text.partition("<think>")[0]
    return _FENCE_LINE.sub("", text)


def _parse_tagged(text: str) -> ParsedCalls:
    calls: list[ToolCall] = []
    malformed = False
    style = None
    for block in _tagged_blocks(text):
        style = style or _tagged_style(block)
        try:
            block_calls = _read_payload(block, require_arguments=False)
        except ValueError:
            block_calls = None
        if block_calls is None:
            malformed = True
        else:
            calls.extend(block_calls)
    return ParsedCalls(calls, malformed, style)


def _tagged_blocks(text: str) -> list[str]:
    """Return the bodies of the <tool_call> blocks. A last block without a closing tag runs to the end."""
    blocks = []
    position = text.find(_TOOL_CALL_OPEN)
    while position != -1:
        start = position + len(_TOOL_CALL_OPEN)
        end = text.find(_TOOL_CALL_CLOSE, start)
        if end == -1:
            blocks.append(text[start:])
            break
        blocks.append(text[start:end])
        position = text.find(_TOOL_CALL_OPEN, end + len(_TOOL_CALL_CLOSE))
    return blocks


def _tagged_style(block: str) -> str:
    stripped = block.lstrip()
    if _PYTHONIC_START.match(stripped):
        return "pythonic"
    if stripped.startswith("["):
        return "smollm2"
    if _GUIDE_BLOCK.match(stripped):
        return "guide"
    return "hermes"


def _parse_mistral(text: str) -> ParsedCalls:
    calls: list[ToolCall] = []
    malformed = False
    for segment in text.split(_MISTRAL_MARKER)[1:]:
        try:
            segment_calls = _read_payload(segment, require_arguments=False)
        except ValueError:
            segment_calls = None
        if segment_calls is None:
            malformed = True
        else:
            calls.extend(segment_calls)
    return ParsedCalls(calls, malformed, "mistral")


def _read_payload(text: str, require_arguments: bool) -> list[ToolCall] | None:
    """Read the first JSON or pythonic value in a block that should contain calls.

    Returns None when no complete value is found or the value is not call-shaped. Raises ValueError when the value
    is call-shaped but its entries are invalid.
    """
    stripped = text.strip()
    if _PYTHONIC_START.match(stripped):
        end = _balanced_end(stripped, 0)
        return None if end is None else _read_pythonic(stripped[:end])

    start = _first_bracket(stripped)
    if start is None:
        return None
    decoded = _decode_value(stripped, start)
    if decoded is None:
        return None
    return _calls_from_value(decoded[0], require_arguments)


def _first_bracket(text: str) -> int | None:
    positions = [position for position in (text.find("{"), text.find("[")) if position != -1]
    return min(positions) if positions else None


def _calls_from_value(value: Any, require_arguments: bool) -> list[ToolCall] | None:
    """Convert a decoded JSON value to calls, or return None when it is not call-shaped.

    With require_arguments, an object needs an arguments key as well as a name to count as a call, so that ordinary
    JSON in prose (a person with a "name") is not taken for one. Raises ValueError from normalize_tool_calls.
    """
    if isinstance(value, dict) and isinstance(value.get("tool_calls"), list):
        entries = value["tool_calls"]
    elif isinstance(value, dict):
        entries = [value]
    elif isinstance(value, list):
        entries = value
    else:
        return None

    if not all(_is_call_object(entry, require_arguments) for entry in entries):
        return None
    return normalize_tool_calls(entries)


def _is_call_object(entry: Any, require_arguments: bool) -> bool:
    if not isinstance(entry, dict):
        return False
    if isinstance(entry.get("function"), dict):
        return True
    has_name = any(key in entry for key in _NAME_KEYS)
    has_arguments = any(key in entry for key in _ARGUMENT_KEYS)
    return has_name and (has_arguments or not require_arguments)


def _parse_json_calls(text: str) -> tuple[int, ParsedCalls] | None:
    """Find JSON call objects in prose. Returns the start of the first attempt and what was read, or None."""
    calls: list[ToolCall] = []
    malformed = False
    style = None
    first_start = None
    position = 0
    while match := _JSON_CALL_START.search(text, position):
        start = match.start()
        decoded = _decode_value(text, start)
        if decoded is None:
            malformed = True
            first_start = start if first_start is None else first_start
            end = _balanced_end(text, start)
            if end is None:
                break
            position = end
            continue

        value, position = decoded
        try:
            value_calls = _calls_from_value(value, require_arguments=True)
        except ValueError:
            value_calls = None
            malformed = True
            first_start = start if first_start is None else first_start
        if value_calls:
            calls.extend(value_calls)
            style = style or _json_style(value)
            first_start = start if first_start is None else first_start

    if first_start is None:
        return None
    return first_start, ParsedCalls(calls, malformed, style)


def _json_style(value: Any) -> str:
    if isinstance(value, dict) and "tool_calls" in value:
        return "openai"
    entry = value[0] if isinstance(value, list) and value else value
    if isinstance(entry, dict) and "tool_name" in entry:
        return "guide"
    if isinstance(entry, dict) and "parameters" in entry and "arguments" not in entry:
        return "llama"
    return "json"


def _decode_value(text: str, start: int) -> tuple[Any, int] | None:
    """Decode the JSON (or Python literal) value that starts at text[start], returning it and its end, or None."""
    try:
        return _DECODER.raw_decode(text, start)
    except (json.JSONDecodeError, RecursionError):
        pass
    end = _balanced_end(text, start)
    if end is None:
        return None
    try:
        return _literal_from_source(text[start:end]), end
    except ValueError:
        return None


def _balanced_end(text: str, start: int) -> int | None:
    """Return the index after the bracket that closes text[start], or None when the text ends first or mismatches.

    Brackets inside single- or double-quoted strings are skipped, so this works on JSON and Python literals alike.
    """
    expected: list[str] = []
    quote = None
    index = start
    while index < len(text):
        char = text[index]
        if quote is not None:
            if char == "\\":
                index += 1
            elif char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        elif char in _CLOSERS:
            expected.append(_CLOSERS[char])
        elif char in ")]}":
            if not expected or expected.pop() != char:
                return None
            if not expected:
                return index + 1
        index += 1
    return None


def _literal_from_source(source: str) -> Any:
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError) as error:
        raise ValueError(f"not a Python literal: {_preview(source)} ({error})") from None
    return _literal(tree.body)


def _literal(node: ast.AST) -> Any:
    """Convert an AST literal to JSON-like data, reading true/false/null as well as Python's constants.

    Tuples become lists. Anything else (names, calls, operators) raises ValueError, so no code ever runs.
    """
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, int, float, bool, type(None))):
        return node.value
    if isinstance(node, ast.Name) and node.id in _NAMED_CONSTANTS:
        return _NAMED_CONSTANTS[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        operand = _literal(node.operand)
        if isinstance(operand, (int, float)) and not isinstance(operand, bool):
            return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(element) for element in node.elts]
    if isinstance(node, ast.Dict):
        return _literal_dict(node)
    raise ValueError(f"not a literal value: {ast.unparse(node)[:_PREVIEW_CHARS]!r}")


def _literal_dict(node: ast.Dict) -> dict:
    result = {}
    for key_node, value_node in zip(node.keys, node.values):
        if key_node is None:
            raise ValueError("dict unpacking (**) is not a literal value")
        key = _literal(key_node)
        if isinstance(key, (list, dict)):
            raise ValueError(f"dict key must be a string or number, got {key!r}")
        result[key] = _literal(value_node)
    return result


def _parse_pythonic(text: str) -> tuple[int, ParsedCalls] | None:
    """Find Python lists of calls in prose. Returns the start of the first attempt and what was read, or None."""
    calls: list[ToolCall] = []
    malformed = False
    first_start = None
    position = 0
    while match := _PYTHONIC_START.search(text, position):
        start = match.start()
        first_start = start if first_start is None else first_start
        end = _balanced_end(text, start)
        if end is None:
            malformed = True
            break
        position = end
        try:
            calls.extend(_read_pythonic(text[start:end]))
        except ValueError:
            malformed = True

    if first_start is None:
        return _parse_bare_python_calls(text)
    return first_start, ParsedCalls(calls, malformed, "pythonic")


def _parse_bare_python_calls(text: str) -> tuple[int, ParsedCalls] | None:
    """Read a text that is only calls without the list brackets, one per line, as in a ```tool_code fence."""
    stripped = text.strip()
    if not _BARE_PYTHON_CALL.match(stripped):
        return None
    try:
        module = ast.parse(stripped)
    except (SyntaxError, ValueError, RecursionError):
        return 0, ParsedCalls([], True, "pythonic")
    try:
        calls = []
        for statement in module.body:
            if not isinstance(statement, ast.Expr):
                raise ValueError("expected only call expressions")
            calls.extend(_calls_from_node(statement.value))
    except ValueError:
        return 0, ParsedCalls([], True, "pythonic")
    return 0, ParsedCalls(calls, False, "pythonic")


def _read_pythonic(source: str) -> list[ToolCall]:
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError) as error:
        raise ValueError(f"invalid pythonic call list {_preview(source)}: {error}") from None
    return _calls_from_node(tree.body)


def _calls_from_node(node: ast.AST) -> list[ToolCall]:
    elements = node.elts if isinstance(node, (ast.List, ast.Tuple)) else [node]
    return [_call_from_node(element) for element in elements]


def _call_from_node(node: ast.AST) -> ToolCall:
    if not isinstance(node, ast.Call):
        raise ValueError(f"expected a function call, got {ast.unparse(node)[:_PREVIEW_CHARS]!r}")
    name = _dotted_name(node.func)
    if node.args:
        raise ValueError(f"call to {name} has positional arguments, which cannot be matched to parameter names")

    arguments = {}
    for argument in node.keywords:
        if argument.arg is None:
            raise ValueError(f"call to {name} unpacks **kwargs, which is not a literal value")
        arguments[argument.arg] = _literal(argument.value)
    return ToolCall(name, arguments)


def _dotted_name(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted_name(node.value)}.{node.attr}"
    raise ValueError(f"function name must be a dotted name, got {ast.unparse(node)[:_PREVIEW_CHARS]!r}")


# ---------------------------------------------------------------------------------------------------------------
# Family defaults


def default_style(model_type: str | None, name: str | None) -> str:
    """Return the documented tool call style of a model family, for templates that ignore tool_calls.

    model_type is the config's model_type (for example "qwen2") and name the model id or path. SmolLM and SmolLM2
    use the llama architecture, so the name decides between smollm2 and llama. Unknown families get hermes.
    """
    model_type = (model_type or "").lower()
    name = (name or "").lower()

    if model_type == "smollm3" or "smollm3" in name:
        return "hermes"
    if "smollm" in name:
        return "smollm2"
    if model_type.startswith("qwen") or "qwen" in name:
        return "hermes"
    if model_type.startswith("gemma3") or "gemma-3" in name or "gemma3" in name:
        return "pythonic"
    if model_type in ("mistral", "mixtral") or "mistral" in name:
        return "mistral"
    if model_type == "llama" or "llama" in name:
        return "llama"
    return "hermes"
