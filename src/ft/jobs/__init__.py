"""`ft submit` and `ft jobs`: run a config as a Hugging Face Job or as a local background job, then follow it.

Modules:
- `store`: job records in SQLite.
- `spec`: the job's config, files, command and labels; `pins`: locked dependency versions and the ft wheel.
- `hardware`: flavor, precision and timeout from the planner; `checks`: what is verified before a job is submitted.
- `submit`: the `ft submit` flow; `manage`: the `ft jobs` subcommands.
- `hf` and `local`: the two backends; `local_runner`: the detached process that runs a local job.
- `script`: the self-contained uv script; `cli`: the arguments of both commands.
"""

from ft.errors import FtError


class JobFailed(FtError):
    """A job that ended in ERROR or CANCELED, or a check job that failed: exit code 1, not a usage error."""

    exit_code = 1
