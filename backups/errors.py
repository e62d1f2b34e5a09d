"""The command's errors: each is reported in one `error:` line, and carries its exit code."""

from __future__ import annotations


class BackupsError(Exception):
    """A problem to report to the operator in one line, without a traceback (exit 1)."""

    code = 1


class Interrupted(BackupsError):
    """Ctrl-C, with what is left behind (exit 130, as a shell reports SIGINT)."""

    code = 130


class UsageError(BackupsError):
    """A bad option or argument (exit 2, the exit code of argparse's own usage errors)."""

    code = 2


class StaleBackups(BackupsError):
    """`status`: the newest good backup is older than the schedule allows (exit 3; 2 before usage errors had it)."""

    code = 3
