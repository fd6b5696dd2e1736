"""The one exception type for problems the user can fix (bad config, bad data, bad flag)."""


class FtError(Exception):
    """A problem in the user's input. The CLI prints its message and exits with code 2, without a traceback.

    The message names the file, row or key at fault and says how to fix it.
    """

    exit_code = 2
