"""How old the newest backup may be (`status`): a CronJob schedule's longest interval, or a duration.

Schedules are read by components/cron.py, the same parser as the stack config's
backupSchedule: what Kubernetes accepts, and nothing else.
"""

from __future__ import annotations

import argparse
import re
from datetime import timedelta

from backups.errors import BackupsError, UsageError
from components import cron


def cron_interval(schedule: str) -> timedelta:
    """The longest time between two firings of a schedule, in every form a CronJob accepts."""
    try:
        return cron.interval(schedule.strip())
    except cron.CronError as error:
        raise BackupsError(f"bad schedule: {error}") from None


def schedule_interval(schedule: str, what: str) -> timedelta:
    """The longest interval of a schedule; a bad one named by where it came from (a usage error for --schedule)."""
    try:
        return cron_interval(schedule)
    except BackupsError as error:
        raise (UsageError if what.startswith("--") else BackupsError)(f"{what} {schedule!r}: {error}") from error


def parse_duration(text: str) -> timedelta:
    """`3600`, `90s`, `15m`, `1h30m`, `2d` -> a timedelta (an argparse type: a bad one is a usage error)."""
    text = text.strip().lower()
    if re.fullmatch(r"\d+", text):
        return timedelta(seconds=int(text))
    parts = re.fullmatch(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text)
    if not text or not parts:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (e.g. 3600, 90s, 15m, 1h30m, 2d)")
    d, h, m, s = (int(value or 0) for value in parts.groups())
    return timedelta(days=d, hours=h, minutes=m, seconds=s)
