"""The local tools the command runs (pulumi, kubectl, restic, pg_restore): finding them, reading what they print."""

from __future__ import annotations

import json
import shutil

from backups.errors import BackupsError


def installed(binary: str) -> bool:
    """Whether `binary` is on PATH (or is an executable path)."""
    return shutil.which(binary) is not None


def last_line(text: str) -> str:
    """The last non-blank line of a tool's output: where its error message is."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def json_object(text: str, what: str) -> dict:
    """The JSON object a tool printed (nothing printed is an empty one); `what` names the tool's command."""
    try:
        value = json.loads(text or "{}")
    except ValueError as error:
        raise BackupsError(f"`{what}` did not print JSON: {error}") from error
    if not isinstance(value, dict):
        raise BackupsError(f"`{what}` did not print a JSON object")
    return value
