"""The one exception type for mistakes a user can make (bad file, bad option, refused login).

The command line turns it into a single `error: ...` line on stderr and exit
status 1; anything else that escapes is a bug and keeps its traceback.
"""

import sys


class AuditError(Exception):
    """A problem with the user's input or environment, told in one sentence."""


def reason(error: Exception) -> str:
    """What `error` says, in words for the user: int()'s refusal of a digit string past
    sys.get_int_max_str_digits() (CVE-2020-10735) without its advice to raise the limit."""
    if isinstance(error, ValueError) and "integer string conversion" in str(error):
        return f"an integer has more than {sys.get_int_max_str_digits()} digits"
    return str(error)
