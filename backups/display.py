"""What the command prints for people: sizes, ages, durations, progress, the listing; and redaction.

Every message passes through :func:`redact_text` before it is printed, and endpoints are
shown with :func:`redact_url`: a `user:password@` part is never printed.
"""

from __future__ import annotations

import re
import threading
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Callable, Sequence, TextIO

from backups.layout import CLOCK_TOLERANCE, LONGEST_BACKUP

if TYPE_CHECKING:  # for the annotations only: the catalog itself prints through this module
    from backups.catalog import Inventory


def redact_url(url: str) -> str:
    """`url` without its userinfo: `http://user:pw@host:9000` -> `http://***@host:9000`.

    Works on URLs that do not parse, and takes everything up to the last `@` (a password
    may hold an unescaped `/` or `@`).
    """
    if "@" not in url:
        return url
    scheme, separator, rest = url.partition("://")
    if not separator:
        scheme, rest = "", url
    return f"{scheme}{separator}***@{rest.rsplit('@', 1)[1]}"


_USERINFO = re.compile(r"""(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^\s'"`]*@""")


def redact_text(text: str) -> str:
    """Every `scheme://user:password@` in a message, redacted (the last guard before printing)."""
    return _USERINFO.sub(lambda match: f"{match.group('scheme')}***@", text)


def joined(words: Sequence[str]) -> str:
    """`a`, `a and b`, `a, b and c`."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def human_size(size: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def human_age(moment: datetime, now: datetime) -> str:
    """How long ago, e.g. '3d 4h', '25m'."""
    return human_span(now - moment)


def human_span(delta: timedelta) -> str:
    """A length of time, e.g. '3d 4h', '1h 5m', '25m' (0m for a negative one)."""
    seconds = int(delta.total_seconds())
    if seconds < 3600:
        return f"{max(seconds, 0) // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h {seconds % 3600 // 60}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600}h"


def human_duration(delta: timedelta) -> str:
    """A duration as an operator writes it: 48h, 7d, 15m, 1h 30m, 45s."""
    seconds = int(delta.total_seconds())
    if seconds % 86400 == 0 and seconds >= 3 * 86400:
        return f"{seconds // 86400}d"
    if seconds % 3600 == 0 and seconds >= 3600:
        return f"{seconds // 3600}h"
    if seconds < 3600:
        return f"{seconds // 60}m" if seconds % 60 == 0 else f"{seconds}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60}m"


def clock_window() -> str:
    """How far a stamp may be from the server's time, in words: 'more than 10m ahead of, or 6h 10m behind,'."""
    return f"more than {human_duration(CLOCK_TOLERANCE)} ahead of, or {human_duration(LONGEST_BACKUP + CLOCK_TOLERANCE)} behind,"


class Progress:
    """Thread-safe download progress, printed at most twice a second."""

    def __init__(self, total: int, stream: TextIO, clock: Callable[[], float] = time.monotonic):
        self.total, self.stream, self.clock = total, stream, clock
        self.done = 0
        self.started = clock()
        self.last_report = 0.0
        self.reported = -1
        self.lock = threading.Lock()

    def __call__(self, chunk: int) -> None:
        """Counts `chunk` more bytes; prints when half a second has passed since the last report."""
        with self.lock:
            self.done += chunk
            now = self.clock()
            if now - self.last_report >= 0.5:
                self.last_report = now
                self._report(now)

    def finish(self) -> None:
        """The final report (when the last one was not of every byte), and the end of the line."""
        with self.lock:
            if self.reported != self.done:
                self._report(self.clock())
            self.stream.write("\n")
            self.stream.flush()

    def _report(self, now: float) -> None:
        self.reported = self.done
        elapsed = max(now - self.started, 1e-6)
        percent = 100.0 * self.done / self.total if self.total else 100.0
        rate = self.done / elapsed
        self.stream.write(f"\r{percent:5.1f}%  {human_size(self.done)} of {human_size(self.total)}  {human_size(rate)}/s")
        self.stream.flush()


def print_listing(inv: "Inventory", now: datetime, out: TextIO) -> None:
    """`list`: one row per backup, newest first, then the clock warning and the latest good one."""
    location = inv.location
    if not inv.entries:
        out.write(f"no backups under {location.url(location.root)}\n")
        return
    latest = inv.latest()
    rows = [("STAMP", "AGE", "SIZE", "HOLDS", "REASON", "STATE")]
    for entry in inv.entries:
        state = entry.flagged_state() + (" (latest)" if entry is latest else "")
        size = human_size(entry.size) if entry.size is not None else "-"
        rows.append((entry.stamp, human_age(entry.taken, now), size, entry.holds(), entry.reason or "-", state))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        out.write("  ".join([row[0].ljust(widths[0]), row[1].rjust(widths[1]), row[2].rjust(widths[2]),
                             row[3].ljust(widths[3]), row[4].ljust(widths[4]), row[5]]).rstrip() + "\n")
    flagged = inv.clock_flagged()
    if flagged:
        out.write(f"CLOCK: {len(flagged)} stamp{'s' if len(flagged) > 1 else ''} {clock_window()} the server's time of the "
                  "backup: the clock of the pod that took it was wrong; ages and latest follow the server's time\n")
    if latest:
        out.write(f"latest good: {latest.stamp} ({location.url(latest.manifest_key or latest.dump_key or '')})\n")
    else:
        out.write(f"no good backup under {location.url(location.root)}\n")


def listing_document(inv: "Inventory", now: datetime) -> dict:
    """`list --json`: where the backups are (the endpoint without credentials), the latest good one, every entry."""
    latest = inv.latest()
    return {
        "bucket": inv.location.bucket,
        "root": inv.location.root,
        "endpoint": redact_url(inv.location.endpoint_url),
        "latest": latest.stamp if latest else None,
        "backups": [entry.as_json(now) for entry in inv.entries],
    }
