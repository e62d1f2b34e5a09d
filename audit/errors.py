"""The one exception type for mistakes a user can make (bad file, bad option, refused login).

The command line turns it into a single `error: ...` line on stderr and exit
status 1; anything else that escapes is a bug and keeps its traceback.
"""


class AuditError(Exception):
    """A problem with the user's input or environment, told in one sentence."""
