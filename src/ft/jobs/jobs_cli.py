"""Entry point of `ft jobs` for `ft.cli.PLUGGED_COMMANDS`."""

from __future__ import annotations

from ft.jobs.cli import add_jobs_arguments as add_arguments
from ft.jobs.cli import run_jobs as run

__all__ = ["add_arguments", "run"]
