"""`ft chat`: an interactive terminal chat with a run, adapter or model, streaming each reply.

Only argparse is imported at the top, because the `ft` parser imports this module on every call.
"""

from __future__ import annotations

import argparse

from ft.evaluate.cli import add_model_arguments, apply_threads, positive_int


def add_conversation_arguments(parser: argparse.ArgumentParser, max_new_tokens: int) -> None:
    """Add the model and the options that shape the conversation, shared by chat and generate."""
    parser.add_argument("model", metavar="RUN",
                        help="run folder (runs/NAME), adapter folder, model folder, .gguf file or Hub model id")
    parser.add_argument("--tools", metavar="FILE", default=None,
                        help="JSON file with a list of OpenAI tool definitions, shown to the model as in training")
    parser.add_argument("--system", metavar="TEXT", default=None, help="system message at the start of the conversation")
    parser.add_argument("--max-new-tokens", type=positive_int, default=max_new_tokens, metavar="N",
                        help=f"maximum generated tokens per reply (default: {max_new_tokens})")
    parser.add_argument("--temperature", type=float, default=0.0,
                        help="sampling temperature; 0 picks the most likely token every time (default: 0)")
    add_model_arguments(parser)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_conversation_arguments(parser, max_new_tokens=512)


def open_session(args: argparse.Namespace):
    """Check the options, then load the model; return a ChatSession. Raise FtError on bad input."""
    from ft.errors import FtError
    from ft.evaluate.chat import ChatSession, read_tools_file
    from ft.evaluate.loading import load_for_generation

    if args.temperature < 0:
        raise FtError(f"--temperature {args.temperature}: must be 0 (greedy) or more.")
    tools = read_tools_file(args.tools) if args.tools else None
    apply_threads(args)
    loaded = load_for_generation(args.model, args.precision, args.tool_call_style)
    return ChatSession(loaded, args.system, tools, args.max_new_tokens, args.temperature)


def run(args: argparse.Namespace) -> int:
    from ft.evaluate.chat import run_chat

    session = open_session(args)
    try:
        # Line editing and history for input() when the terminal supports it.
        import readline  # noqa: F401
    except ImportError:
        pass
    run_chat(session)
    return 0
