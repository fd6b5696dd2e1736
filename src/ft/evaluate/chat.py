"""Talk to a model: a conversation kept in memory and rendered as training rendered its rows.

`ft chat` streams each reply to the terminal and `ft generate` prints one reply. Tool calls in a reply are read
with parse_tool_calls and shown as `tool call: name({...})`. The model never runs a tool: in the chat, `/tool TEXT`
sends a tool result back to it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from ft.data.shapes import Conversation, RowError, parse_tools
from ft.errors import FtError
from ft.evaluate.datasets import EvalItem, render_prompt
from ft.toolcalls import ParsedCalls, ToolCall, parse_tool_calls

HELP = "/reset clears the history, /tool TEXT sends a tool result, /exit or Ctrl-D quits, Ctrl-C stops a reply"


def read_tools_file(path: str) -> list[dict]:
    """Read a JSON list of OpenAI tool definitions. Raise FtError naming the file and the fix."""
    tools_path = Path(path)
    try:
        value = json.loads(tools_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FtError(f"--tools {path}: file not found. Give a JSON file holding a list of tool definitions.") from None
    except (OSError, UnicodeDecodeError) as err:
        raise FtError(f"--tools {path}: cannot read the file ({err}).") from None
    except json.JSONDecodeError as err:
        raise FtError(f"--tools {path}: invalid JSON ({err.msg} at line {err.lineno}, column {err.colno}).") from None
    try:
        tools = parse_tools(value)
    except RowError as err:
        raise FtError(f"--tools {path}: {err}. Expected a JSON list of "
                      '{"type": "function", "function": {"name", "description", "parameters"}} objects.') from None
    if not tools:
        raise FtError(f"--tools {path}: the list is empty. Give at least one tool definition, or leave out --tools.")
    return tools


def format_call(call: ToolCall) -> str:
    return f"{call.name}({json.dumps(call.arguments, ensure_ascii=False)})"


def describe_calls(parsed: ParsedCalls) -> list[str]:
    """Return one `tool call: ...` line per call read, plus a line when an attempted call could not be read."""
    lines = [f"tool call: {format_call(call)}" for call in parsed.calls]
    if parsed.malformed:
        lines.append("tool call: (malformed, could not be read)")
    return lines


@dataclass
class ChatSession:
    """A conversation with a loaded model: the system text, the tools and the turns so far."""

    loaded: object  # ft.evaluate.loading.LoadedModel
    system: str | None = None
    tools: list[dict] | None = None
    max_new_tokens: int = 512
    temperature: float = 0.0
    history: list[dict] = field(default_factory=list)

    def reset(self) -> None:
        self.history = []

    def prompt_ids(self) -> list[int]:
        """Render the conversation so far with the generation prompt, as training renders a row."""
        messages = [{"role": "system", "content": self.system}] if self.system else []
        # The empty assistant turn marks where the reply goes; render_prompt renders what comes before it.
        messages = messages + self.history + [{"role": "assistant", "content": ""}]
        turn = sum(1 for message in messages if message["role"] == "assistant") - 1
        item = EvalItem("chat", Conversation("chat", messages, self.tools), turn)
        loaded = self.loaded
        try:
            text = render_prompt(item, loaded.tokenizer, loaded.traits)
        except RowError as err:
            raise FtError(f"chat: {err}. Try /reset, or leave out --system if the template rejects it.") from None
        return loaded.tokenizer(text, add_special_tokens=False)["input_ids"]

    def reply(self, message: dict, on_text: Callable[[str], None] | None = None):
        """Add a user or tool message, generate the assistant's reply, keep it in the history and return it.

        With on_text, the reply is streamed to it piece by piece.
        """
        from ft.evaluate.generation import generate_batch, generate_streaming, stop_token_ids

        self.history.append(message)
        loaded = self.loaded
        prompt = self.prompt_ids()
        stop_ids = stop_token_ids(loaded.tokenizer, loaded.end_token_id)
        if on_text is None:
            generation = generate_batch(loaded.model, loaded.tokenizer, [prompt], stop_ids, self.max_new_tokens,
                                        self.temperature)[0]
        else:
            generation = generate_streaming(loaded.model, loaded.tokenizer, prompt, stop_ids, self.max_new_tokens,
                                            self.temperature, on_text)
        self.history.append({"role": "assistant", "content": generation.text})
        return generation


def run_chat(session: ChatSession, read_line: Callable[[str], str] = input, out: TextIO = sys.stdout) -> None:
    """Read user lines until /exit or end of input, and stream each reply to out."""
    target = session.loaded.target
    out.write(f"chat with {target.name} ({session.loaded.traits.style} tool call style). {HELP}.\n")
    while True:
        try:
            line = read_line("> ").strip()
        except EOFError:
            out.write("\n")
            return
        if not line:
            continue
        if line in ("/exit", "/quit"):
            return
        if line == "/reset":
            session.reset()
            out.write("history cleared\n")
            continue
        if line.startswith("/tool"):
            message = {"role": "tool", "content": line.removeprefix("/tool").strip()}
        elif line.startswith("/"):
            out.write(f"unknown command {line.split()[0]}. {HELP}.\n")
            continue
        else:
            message = {"role": "user", "content": line}
        show_reply(session, message, out)


def show_reply(session: ChatSession, message: dict, out: TextIO) -> None:
    def write(piece: str) -> None:
        out.write(piece)
        out.flush()

    generation = session.reply(message, write)
    out.write("\n")
    for line in describe_calls(parse_tool_calls(generation.text)):
        out.write(line + "\n")
    if not generation.ended and generation.new_tokens >= session.max_new_tokens:
        out.write(f"[cut off at --max-new-tokens {session.max_new_tokens}]\n")
    elif not generation.ended:
        out.write("[stopped by Ctrl-C]\n")
    out.flush()
