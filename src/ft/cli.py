"""The `ft` command: parse arguments and hand over to the library.

Nothing heavy is imported at the top: `ft --help`, `ft plan` and `ft jobs` must start without torch.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

import importlib

from ft import __version__
from ft.errors import FtError


# Commands whose module defines `add_arguments(parser)` and `run(args) -> int`. The modules must import neither
# torch nor transformers at the top: the parser is built on every `ft` call.
PLUGGED_COMMANDS: list[tuple[str, str, str]] = [
    ("doctor", "ft.doctor", "check the libraries, device, disk, Hub token, and a config's model and data"),
    ("eval", "ft.evaluate.cli", "measure tool calling of a run or model on held-out data"),
    ("chat", "ft.evaluate.chat_cli", "chat with a run or model in the terminal"),
    ("generate", "ft.evaluate.generate_cli", "print one reply of a run or model"),
    ("plan", "ft.plan.cli", "estimate memory, time and cost per hardware flavor before training"),
    ("submit", "ft.jobs.submit_cli", "run a config as a Hugging Face Job or a local background job"),
    ("jobs", "ft.jobs.jobs_cli", "follow, cancel and pull submitted jobs"),
]


def add_set(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set training.max_steps=20 (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ft", description="Fine-tune small open language models for tool use.")
    parser.add_argument("--version", action="version", version=f"ft {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    train = commands.add_parser("train", help="fine-tune a model from a config file")
    train.add_argument("config", help="YAML config file")
    add_set(train)
    train.add_argument("--resume", nargs="?", const="auto", default=None, metavar="auto|PATH",
                       help="continue from the newest checkpoint of the run folder (auto) or from PATH")
    train.add_argument("--nproc", type=int, default=1, metavar="N",
                       help="training processes on this machine, one per GPU (launched through torchrun)")
    train.add_argument("--nnodes", type=int, default=1, metavar="N", help="machines taking part (default 1)")
    train.add_argument("--node-rank", type=int, default=0, metavar="I", help="this machine's index, 0 to nnodes-1")
    train.add_argument("--master-addr", default=None, metavar="HOST", help="address of the machine with node rank 0")
    train.add_argument("--master-port", type=int, default=29500, metavar="PORT", help="port on the node-rank-0 machine")
    train.set_defaults(handler=cmd_train)

    data = commands.add_parser("data", help="inspect training data")
    data_commands = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    check = data_commands.add_parser("check", help="show what will be trained on, and refuse bad rows")
    check.add_argument("config", help="YAML config file")
    add_set(check)
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.set_defaults(handler=cmd_data_check)

    push = commands.add_parser("push", help="push a finished run's adapter and records to the Hub")
    push.add_argument("run", help="run folder made by ft train")
    push.add_argument("--repo", required=True, help="Hub model repo, namespace/name")
    push.add_argument("--public", action="store_true", help="create the repo as public (default: private)")
    push.set_defaults(handler=cmd_push)

    config_help = commands.add_parser("config-help", help="list every config key with its default and meaning")
    config_help.set_defaults(handler=cmd_config_help)

    for name, module_name, help_text in PLUGGED_COMMANDS:
        module = importlib.import_module(module_name)
        sub = commands.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(sub)
        sub.set_defaults(handler=module.run)
    return parser


def cmd_config_help(args) -> int:
    from ft.config import schema_help

    print(schema_help())
    return 0


def cmd_train(args) -> int:
    from ft.config import load_config
    from ft.errors import PUSH_FAILED_EXIT_CODE, STOP_EXIT_CODE, PushFailed, TrainingStopped
    from ft.launch import is_worker, launch, rank

    loaded = load_config(args.config, args.overrides)
    if (args.nproc > 1 or args.nnodes > 1) and not is_worker():
        return launch(args, loaded)
    if rank() != 0:
        # Only the first process logs; the others keep stderr for their own errors.
        sys.stdout = open(os.devnull, "w")
    from ft.train import run_train

    try:
        run_train(loaded, resume=args.resume)
    except TrainingStopped as stopped:
        print(str(stopped), file=sys.stderr, flush=True)
        return STOP_EXIT_CODE
    except PushFailed as failed:
        print(f"error: {failed}", file=sys.stderr, flush=True)
        return PUSH_FAILED_EXIT_CODE
    return 0


def cmd_push(args) -> int:
    from pathlib import Path

    from ft.errors import PUSH_FAILED_EXIT_CODE, PushFailed
    from ft.hub import check_write_access, push_run

    run_dir = Path(args.run)
    if not (run_dir / "adapter").is_dir():
        raise FtError(f"{run_dir}: not a finished run folder (no adapter/). Pass a folder made by `ft train`.")
    check_write_access(args.repo)
    try:
        push_run(run_dir, args.repo, private=not args.public)
    except PushFailed as failed:
        print(f"error: {failed}", file=sys.stderr)
        return PUSH_FAILED_EXIT_CODE
    print(f"pushed {run_dir} to https://huggingface.co/{args.repo}")
    return 0


def cmd_data_check(args) -> int:
    from ft.config import load_config
    from ft.datacheck import run_data_check

    loaded = load_config(args.config, args.overrides)
    return run_data_check(loaded, as_json=args.json)


def quiet_libraries() -> None:
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in ("transformers", "datasets", "huggingface_hub", "httpx", "urllib3", "filelock"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if not sys.stderr.isatty():
        # Progress bars written to a log file (a background job, CI) are noise; the step lines carry the progress.
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TQDM_DISABLE", "1")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    quiet_libraries()
    try:
        return args.handler(args)
    except FtError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
