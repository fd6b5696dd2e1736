"""`ft generate`: one reply from a run, adapter or model, printed as text or JSON, for scripts.

Only argparse is imported at the top, because the `ft` parser imports this module on every call.
"""

from __future__ import annotations

import argparse
import json
import sys

from ft.evaluate.chat_cli import add_conversation_arguments, open_session


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_conversation_arguments(parser, max_new_tokens=256)
    parser.add_argument("--prompt", required=True, metavar="TEXT", help="the user message; `-` reads it from stdin")
    parser.add_argument("--json", action="store_true",
                        help="print {text, calls, malformed, ended, new_tokens} as JSON instead of the text")


def run(args: argparse.Namespace) -> int:
    from ft.errors import FtError
    from ft.evaluate.chat import describe_calls
    from ft.toolcalls import parse_tool_calls

    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    if not prompt.strip():
        raise FtError("--prompt: the message is empty. Pass the text, or `-` with the text on stdin.")
    session = open_session(args)
    generation = session.reply({"role": "user", "content": prompt})
    parsed = parse_tool_calls(generation.text)
    if args.json:
        print(json.dumps({
            "text": generation.text,
            "calls": [{"name": call.name, "arguments": call.arguments} for call in parsed.calls],
            "malformed": parsed.malformed,
            "ended": generation.ended,
            "new_tokens": generation.new_tokens,
        }, indent=2, ensure_ascii=False))
        return 0
    print(generation.text)
    for line in describe_calls(parsed):
        print(line)
    return 0
