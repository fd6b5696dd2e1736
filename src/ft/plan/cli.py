"""`ft plan CONFIG`: print the plan; `--calibrate` first measures this machine with a few real training steps."""

from __future__ import annotations

import argparse
import json
import sys

from ft.errors import FtError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML config file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set training.batch_size=4 (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    parser.add_argument("--calibrate", action="store_true",
                        help="first measure this machine: a matmul rate and a few real training steps of the "
                             "config's model (loads torch and the weights; about a minute), stored for later plans")
    parser.add_argument("--flavor", metavar="NAME",
                        help="show one flavor (or `local` for this machine) with its memory by part")


def run(args) -> int:
    from ft.config import load_config
    from ft.plan.estimate import plan_run
    from ft.plan.report import format_report, report_json

    loaded = load_config(args.config, args.overrides)
    if args.calibrate:
        from ft.plan.measure import calibrate, describe_calibration

        result = calibrate(loaded)
        print(describe_calibration(result), file=sys.stderr if args.json else sys.stdout, flush=True)
    report = plan_run(loaded)
    if args.flavor is not None:
        known = [e.flavor for e in report.estimates]
        if args.flavor not in known:
            raise FtError(f"--flavor {args.flavor!r} is not a known flavor. Known flavors: {', '.join(known)}.")
    if args.json:
        data = report_json(report)
        if args.flavor is not None:
            data["estimates"] = [e for e in data["estimates"] if e["flavor"] == args.flavor]
        print(json.dumps(data, indent=2, allow_nan=False))
    else:
        print(format_report(report, args.flavor))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run `ft plan` on its own, as `python -m ft.plan.cli`, with ft's error handling."""
    from ft.cli import quiet_libraries

    parser = argparse.ArgumentParser(prog="ft plan", description="Estimate memory, time and cost per hardware flavor.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    quiet_libraries()
    try:
        return run(args)
    except FtError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code


if __name__ == "__main__":
    sys.exit(main())
