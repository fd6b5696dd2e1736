"""Arguments of `ft submit` and `ft jobs`, and their hand-over to the library. Imports nothing heavy at the top."""

from __future__ import annotations

import argparse


def add_submit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML config file")
    parser.add_argument("--flavor", default="auto", metavar="FLAVOR",
                        help="Hugging Face Jobs hardware (t4-small, a10g-small, l4x1, a100-large, a10g-largex2, ...); "
                             "`auto` (default): the cheapest flavor that fits, from `ft plan`")
    parser.add_argument("--backend", choices=("hf", "local"), default="hf",
                        help="hf (default): a Hugging Face Job; local: a background process on this machine")
    parser.add_argument("--timeout", default="auto", metavar="auto|DURATION",
                        help="maximum run time: seconds or a number with unit s/m/h/d (90m, 1.5h); `auto` (default): "
                             "the estimated training time x1.5 plus 10 minutes (hf); no limit (local)")
    parser.add_argument("--namespace", default=None, metavar="NAME",
                        help="user or organization that runs the job and owns its inputs repo (default: the "
                             "token's user)")
    parser.add_argument("--detach", action="store_true",
                        help="return once the job is submitted instead of following its log to the end")
    parser.add_argument("--dry-run", action="store_true",
                        help="run the offline checks and print the exact job spec; upload and submit nothing")
    parser.add_argument("--check", action="store_true",
                        help="first run `ft doctor` in the job's image on cpu-basic (about a cent), and stop if it "
                             "fails")
    parser.add_argument("--emit-script", default=None, metavar="FILE",
                        help="write a self-contained uv script (PEP 723) that runs this training, and the ft wheel "
                             "beside it; submit nothing")
    parser.add_argument("--ft-source", default=None, metavar="URL",
                        help="with --emit-script: where the script installs ft from (a PEP 508 URL such as "
                             "git+https://...); default: the wheel written beside the script")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set training.max_steps=20 (repeatable)")


def run_submit(args: argparse.Namespace) -> int:
    from ft.jobs.hf import hub_errors
    from ft.jobs.submit import SubmitOptions, submit

    options = SubmitOptions(config=args.config, overrides=args.overrides, backend=args.backend, flavor=args.flavor,
                            timeout=args.timeout, namespace=args.namespace, detach=args.detach,
                            dry_run=args.dry_run, check=args.check, emit_script=args.emit_script,
                            ft_source=args.ft_source)
    with hub_errors():
        return submit(options)


def add_jobs_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="jobs_command", metavar="SUBCOMMAND")

    ps = commands.add_parser("ps", help="list the jobs submitted from this machine, newest first")
    ps.add_argument("--limit", type=int, default=20, metavar="N", help="show at most N jobs (default 20)")
    ps.add_argument("--json", action="store_true", help="print the records as JSON")

    inspect = commands.add_parser("inspect", help="show a job's record, spec and current stage")
    inspect.add_argument("--json", action="store_true", help="print the record as JSON")

    logs = commands.add_parser("logs", help="print a job's log")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing until the job ends")

    cancel = commands.add_parser("cancel", help="stop a job (a local job writes a checkpoint first)")

    wait = commands.add_parser("wait", help="wait until a job ends; exit code 0 only when it completed")
    wait.add_argument("--interval", type=float, default=10.0, metavar="SECONDS",
                      help="seconds between two stage queries for a Hub job (default 10)")

    pull = commands.add_parser("pull", help="download a job's run folder (with adapter/) for `ft eval`")
    pull.add_argument("--to", default=None, metavar="FOLDER",
                      help="run folder to create (default: runs/RUN_NAME; a local job's own run folder)")
    pull.add_argument("--checkpoints", action="store_true", help="include the checkpoints")

    for sub in (inspect, logs, cancel, wait, pull):
        sub.add_argument("job_id", metavar="ID", help="job id, or a unique start of it")
        sub.add_argument("--namespace", default=None, metavar="NAME",
                         help="namespace of a Hub job not submitted from this machine (default: the token's user)")


def run_jobs(args: argparse.Namespace) -> int:
    from ft.jobs.hf import hub_errors

    with hub_errors():
        return dispatch_jobs(args)


def dispatch_jobs(args: argparse.Namespace) -> int:
    from ft.jobs import manage
    from ft.jobs.store import JobStore

    store = JobStore()
    command = args.jobs_command
    if command == "ps":
        return manage.ps(store, args.limit, args.json)
    if command == "inspect":
        return manage.inspect(store, args.job_id, args.namespace, args.json)
    if command == "logs":
        return manage.logs(store, args.job_id, args.namespace, args.follow)
    if command == "cancel":
        return manage.cancel(store, args.job_id, args.namespace)
    if command == "wait":
        return manage.wait(store, args.job_id, args.namespace, args.interval)
    if command == "pull":
        return manage.pull(store, args.job_id, args.namespace, args.to, args.checkpoints)
    print("usage: ft jobs {ps,inspect,logs,cancel,wait,pull} ...; see `ft jobs --help`")
    return 2
