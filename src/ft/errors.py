"""The one exception type for problems the user can fix (bad config, bad data, bad flag)."""


class FtError(Exception):
    """A problem in the user's input. The CLI prints its message and exits with code 2, without a traceback.

    The message names the file, row or key at fault and gives the fix.
    """

    exit_code = 2


STOP_EXIT_CODE = 143  # 128 + SIGTERM, what shells and job runners expect from a process stopped by SIGTERM
PUSH_FAILED_EXIT_CODE = 3


class TrainingStopped(Exception):
    """Training stopped on SIGTERM or SIGINT after writing a checkpoint. The message gives the resume command."""


class PushFailed(Exception):
    """The final push to the Hub failed. The message contains the command that retries it."""
