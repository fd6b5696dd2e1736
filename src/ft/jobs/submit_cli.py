"""Entry point of `ft submit` for `ft.cli.PLUGGED_COMMANDS`."""

from __future__ import annotations

from ft.jobs.cli import add_submit_arguments as add_arguments
from ft.jobs.cli import run_submit as run

__all__ = ["add_arguments", "run"]
