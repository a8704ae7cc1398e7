"""The one user-facing exception type and the exit codes of DESIGN.md."""

EXIT_OK = 0
EXIT_DATA = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class RadlensError(Exception):
    """A problem the user can fix; printed as one line, never a traceback.

    The message should name the file, case or column at fault.
    """

    exit_code = EXIT_DATA

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(RadlensError):
    """Bad options or arguments (exit 2)."""

    exit_code = EXIT_USAGE


class Terminated(KeyboardInterrupt):
    """SIGTERM (scancel, a job's time limit): unwinds like Ctrl-C, so temporaries are removed."""
