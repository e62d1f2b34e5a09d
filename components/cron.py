"""Kubernetes CronJob schedules: what the API server accepts, and when they fire.

One parser serves the stack config (`backupSchedule`) and the operator command
(`backups status --schedule`). :func:`parse` accepts exactly what Kubernetes'
CronJob validation accepts, and refuses the rest with a sentence saying why.

What Kubernetes accepts (kubernetes/kubernetes, pkg/apis/batch/validation/validation.go,
``validateCronJobSpec`` -> ``validateScheduleFormat``; Kubernetes vendors
github.com/robfig/cron/v3 v3.0.1):

- an empty ``.spec.schedule`` is refused (``field.Required``);
- ``cron.ParseStandard(schedule)`` must succeed;
- a schedule that contains ``TZ`` anywhere is refused on create
  (``!allowTZInSchedule && strings.Contains(schedule, "TZ")``: "cannot use TZ or
  CRON_TZ in schedule, use timeZone field instead"); only an update of a CronJob
  that already had one may keep it, which never applies to this program.

robfig/cron v3.0.1 ``ParseStandard`` (parser.go, the line numbers below are of that tag):

- L217-219, L229-231: the standard parser takes Minute | Hour | Dom | Month | Dow | Descriptor.
- L89-91: an empty spec is an error. L93-103: a ``TZ=``/``CRON_TZ=`` prefix (refused above).
- L106-111, L365-434 ``parseDescriptor``: a spec starting with ``@`` must be exactly one of
  ``@yearly @annually @monthly @weekly @daily @midnight @hourly`` (L366-421), or
  ``@every <d>`` where ``<d>`` is a Go ``time.ParseDuration`` string (L424-431); nothing
  else (L433). No trimming: ``@daily `` is refused.
- L114 ``strings.Fields``: fields are split on Go's ``unicode.IsSpace`` runes.
- L160-215 ``normalizeFields``: exactly 5 fields (L185-190).
- L236-247 ``getField``: a field is a comma-separated list of ranges, split with
  ``strings.FieldsFunc`` (L238), so empty ranges are dropped (``1,,2`` is ``1,2``; ``,``
  matches nothing and is still accepted).
- L252-318 ``getRange``: ``range[/step]`` (``strings.Split`` on ``/``, L255, then on ``-``,
  L256); ``*`` or ``?`` is the whole range in any field and sets the star bit (L262-265;
  anything after a ``-`` is then ignored); otherwise ``number`` or ``number-number``
  (L266-282, more hyphens refused L279-280); a step: ``N/step`` runs from N to the
  field's maximum (L293-296), and a step above 1 clears the star bit (L297-299); more
  than one ``/`` refused (L300-301); then start >= min (L304), end <= max (L307),
  start <= end (L310) and step > 0 (L313).
- L321-328 ``parseIntOrName``: a name (months, days of the week) is looked up after
  ``strings.ToLower``; L331-341 ``mustParseInt``: ``strconv.Atoi`` (an optional sign and
  ASCII digits, within int64), negative refused.

spec.go v3.0.1:

- L21-49: minute 0-59, hour 0-23, day of month 1-31, month 1-12 (jan-dec), day of week
  **0-6** (sun-sat): ``0 3 * * 7`` is refused.
- L53 ``starBit``; L179-188 ``dayMatches``: when the day of month or the day of week
  has the star bit, a day must match both; otherwise either.
- L58-175 ``Next``: the first second after t that matches (the standard parser fixes the
  second at 0); no firing within five years gives the zero time (L87-93).

constantdelay.go v3.0.1 L14-21 ``Every``: ``@every`` runs at a constant delay, rounded up
to one second and truncated to whole seconds; L25-27 ``Next`` is t + delay. Kubernetes
counts it from the CronJob's last schedule time (or its creation).

Go ``time.ParseDuration`` (golang/go src/time/format.go, ``leadingInt``,
``leadingFraction``, ``unitMap``, ``ParseDuration``) is ported byte for byte in
:func:`parse_go_duration`, overflow rules included.

Times are UTC: the CronJobs of this program set no ``timeZone``, and backups run on UTC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Optional, Union

__all__ = [
    "CronError",
    "EverySchedule",
    "FIELDS",
    "Field",
    "MACROS",
    "Schedule",
    "SpecSchedule",
    "interval",
    "next_runs",
    "parse",
    "parse_go_duration",
    "problem",
]


class CronError(ValueError):
    """A schedule Kubernetes would refuse (or, for :meth:`SpecSchedule.interval`, one that
    fires too rarely to have an interval); ``str()`` is one line saying why."""


@dataclass(frozen=True)
class Field:
    """One of the five fields: its name, its bounds and the names it takes (spec.go L21-49)."""

    name: str
    low: int
    high: int
    names: tuple[tuple[str, int], ...] = ()

    def describe(self) -> str:
        named = f"; or {self.names[0][0]}-{self.names[-1][0]}" if self.names else ""
        return f"{self.low}-{self.high}{named}"


_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
FIELDS = (
    Field("minute", 0, 59),
    Field("hour", 0, 23),
    Field("day of month", 1, 31),
    Field("month", 1, 12, tuple((name, index + 1) for index, name in enumerate(_MONTH_NAMES))),
    # spec.go L40-48: 0-6 only. 7 (Sunday in some crons) is refused by Kubernetes.
    Field("day of week", 0, 6, tuple((name, index) for index, name in enumerate(_DAY_NAMES))),
)
MINUTE, HOUR, DAY, MONTH, WEEKDAY = FIELDS

# parser.go L366-421: the descriptors and the 5-field schedules they equal.
MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_EVERY = "@every "  # parser.go L424

# Go's unicode.IsSpace: the Latin-1 spaces, then the White_Space property (U+1680,
# U+2000-U+200A, U+2028, U+2029, U+202F, U+205F, U+3000). Python's str.split() also splits
# on U+001C-U+001F, which Go does not.
_GO_SPACE = frozenset("\t\n\v\f\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000" + "".join(map(chr, range(0x2000, 0x200B))))
_INT64_MAX = 2**63 - 1

_DAYS_IN_MONTH = {1: 31, 2: 28, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31, 11: 30, 12: 31}


def _quote(text: str, limit: int = 60) -> str:
    """`text` quoted for a message, cut when long (a schedule may be anything)."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} characters)"


class _Refused(Exception):
    """Why one range of a field is refused (robfig's reason, reworded)."""


def _go_fields(text: str) -> list[str]:
    """strings.Fields: the runs of text between Go whitespace."""
    fields, current = [], []
    for char in text:
        if char in _GO_SPACE:
            if current:
                fields.append("".join(current))
                current = []
        else:
            current.append(char)
    if current:
        fields.append("".join(current))
    return fields


def _go_lower(text: str) -> str:
    """strings.ToLower, as far as it can make a name: ASCII, and the two runes whose simple
    lowercase is ASCII (U+0130 -> i, U+212A Kelvin -> k); other runes never match a name."""
    return "".join("i" if c == "\u0130" else "k" if c == "\u212a" else c.lower() if c.isascii() else c for c in text)


def _atoi(text: str) -> int:
    """strconv.Atoi: an optional sign and ASCII digits, within int64 (no underscores, no spaces)."""
    match = re.fullmatch(r"([+-]?)([0-9]+)", text)
    if not match:
        raise _Refused(f"{_quote(text)} is not a number")
    digits = match.group(2).lstrip("0") or "0"
    # The length test first: int() refuses strings of more than 4300 digits.
    limit = _INT64_MAX + (1 if match.group(1) == "-" else 0)
    if len(digits) > 19 or int(digits) > limit:
        raise _Refused(f"{_quote(text)} is out of range")
    return -int(digits) if match.group(1) == "-" else int(digits)


def _number(text: str, field: Optional[Field]) -> int:
    """parseIntOrName, then mustParseInt's sign check (parser.go L321-341)."""
    if field is not None and field.names:
        named = dict(field.names).get(_go_lower(text))
        if named is not None:
            return named
    number = _atoi(text)
    if number < 0:
        raise _Refused(f"negative number ({number}) not allowed")
    return number


def _range(expr: str, field: Field) -> tuple[frozenset[int], bool]:
    """getRange (parser.go L252-318): the values of one range and whether it sets the star bit."""
    range_and_step = expr.split("/")
    low_and_high = range_and_step[0].split("-")
    single = len(low_and_high) == 1
    star = False
    if low_and_high[0] in ("*", "?"):
        start, end, star = field.low, field.high, True
    else:
        start = _number(low_and_high[0], field)
        if len(low_and_high) == 1:
            end = start
        elif len(low_and_high) == 2:
            end = _number(low_and_high[1], field)
        else:
            raise _Refused("too many hyphens")
    if len(range_and_step) == 1:
        step = 1
    elif len(range_and_step) == 2:
        step = _number(range_and_step[1], None)
        if single:  # "N/step" means "N-max/step"
            end = field.high
        if step > 1:
            star = False
    else:
        raise _Refused("too many slashes")
    if start < field.low:
        raise _Refused(f"beginning of range ({start}) below minimum ({field.low})")
    if end > field.high:
        raise _Refused(f"end of range ({end}) above maximum ({field.high})")
    if start > end:
        raise _Refused(f"beginning of range ({start}) beyond end of range ({end})")
    if step == 0:
        raise _Refused("step of range should be a positive number")
    return frozenset(range(start, end + 1, step)), star


def _field(text: str, field: Field, schedule: str) -> tuple[frozenset[int], bool]:
    """getField (parser.go L236-247): the union of the comma-separated ranges; empty ones are skipped."""
    values: frozenset[int] = frozenset()
    star = False
    for expr in (part for part in text.split(",") if part):
        try:
            part_values, part_star = _range(expr, field)
        except _Refused as why:
            raise CronError(f"{_quote(schedule)}: {_quote(expr)} is not a valid {field.name} ({field.describe()}): {why}") from None
        values |= part_values
        star = star or part_star
    return values, star


# ---------------------------------------------------------------- Go's time.ParseDuration

_UNITS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
_UNIT_BYTES = {unit.encode(): size for unit, size in _UNITS.items()}
_UINT64 = 2**64


_DIGITS = b"0123456789"


def parse_go_duration(text: str) -> int:
    """Go's time.ParseDuration, in nanoseconds; ValueError when Go refuses the text.

    Works on the UTF-8 bytes as Go does (units ns, us, µs, μs, ms, s, m, h; a sign;
    fractions; "0" alone), with Go's uint64 arithmetic and overflow checks.
    """
    data = text.encode("utf-8", "surrogatepass")
    invalid = ValueError(f"time: invalid duration {_quote(text)}")
    neg = False
    if data[:1] in (b"-", b"+"):
        neg = data[:1] == b"-"
        data = data[1:]
    if data == b"0":
        return 0
    if not data:
        raise invalid
    total = 0
    while data:
        value, data = _duration_term(data, text, invalid)
        total = (total + value) % _UINT64  # Go's uint64 addition wraps
        if total > 1 << 63:
            raise invalid
    if neg:
        return -total
    if total > _INT64_MAX:
        raise invalid
    return total


def _duration_term(data: bytes, text: str, invalid: ValueError) -> tuple[int, bytes]:
    """One `<number>[.<fraction>]<unit>` of a duration: its nanoseconds, and the bytes after it."""
    if not (data[0] == ord(".") or data[0] in _DIGITS):
        raise invalid
    whole, count = _leading_int(data, invalid)
    pre = count > 0
    data = data[count:]
    fraction, scale, post = 0, 1.0, False
    if data[:1] == b".":
        fraction, scale, count = _leading_fraction(data[1:])
        post = count > 0
        data = data[1 + count:]
    if not pre and not post:
        raise invalid
    unit, data = _leading_unit(data, text)
    if whole > (1 << 63) // unit:
        raise invalid
    whole *= unit
    if fraction > 0:
        whole += int(float(fraction) * (float(unit) / scale))
        if whole > 1 << 63:
            raise invalid
    return whole, data


def _leading_int(data: bytes, invalid: ValueError) -> tuple[int, int]:
    """Go's leadingInt: the value of the leading digits ([0-9]*) and their count; an error past 1<<63."""
    index, whole = 0, 0
    while index < len(data) and data[index] in _DIGITS:
        if whole > (1 << 63) // 10:
            raise invalid
        whole = whole * 10 + data[index] - ord("0")
        if whole > 1 << 63:
            raise invalid
        index += 1
    return whole, index


def _leading_fraction(data: bytes) -> tuple[int, float, int]:
    """Go's leadingFraction: (the digits' value, its scale, their count); stops accumulating
    precision on overflow, never fails."""
    index, fraction, scale, overflow = 0, 0, 1.0, False
    while index < len(data) and data[index] in _DIGITS:
        if not overflow:
            if fraction > ((1 << 63) - 1) // 10:
                overflow = True
            else:
                candidate = fraction * 10 + data[index] - ord("0")
                if candidate > 1 << 63:
                    overflow = True
                else:
                    fraction, scale = candidate, scale * 10
        index += 1
    return fraction, scale, index


def _leading_unit(data: bytes, text: str) -> tuple[int, bytes]:
    """The unit after a number (everything up to the next digit or '.'), in nanoseconds, and the bytes after it."""
    index = 0
    while index < len(data) and not (data[index] == ord(".") or data[index] in _DIGITS):
        index += 1
    if index == 0:
        raise ValueError(f"time: missing unit in duration {_quote(text)}")
    unit_bytes, rest = data[:index], data[index:]
    unit = _UNIT_BYTES.get(unit_bytes)
    if unit is None:
        raise ValueError(f"time: unknown unit {_quote(unit_bytes.decode('utf-8', 'replace'), 20)} in duration {_quote(text)}")
    return unit, rest


# ---------------------------------------------------------------- schedules


@dataclass(frozen=True)
class SpecSchedule:
    """A 5-field schedule (or a macro), expanded; weekdays 0 = Sunday."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    days_star: bool  # the day-of-month field has robfig's star bit (`*`, `?`, `*/1`)
    weekdays_star: bool  # the day-of-week field has it

    def fires_on(self, day: date) -> bool:
        """Whether the schedule fires on this day (spec.go dayMatches, L179-188, and the month)."""
        if day.month not in self.months:
            return False
        by_day = day.day in self.days
        by_weekday = (day.weekday() + 1) % 7 in self.weekdays
        if self.days_star or self.weekdays_star:
            return by_day and by_weekday
        return by_day or by_weekday

    def times(self) -> list[tuple[int, int]]:
        """(hour, minute) of each firing within a day, in order."""
        return sorted((hour, minute) for hour in self.hours for minute in self.minutes)

    def firing_problem(self) -> Optional[str]:
        """Why the schedule never fires (Kubernetes accepts it all the same), or fires only on
        29 February; None when it fires at least once a year."""
        for values, field in ((self.minutes, MINUTE), (self.hours, HOUR), (self.months, MONTH)):
            if not values:
                return f"never fires: its {field.name} field matches no {field.name}"

        def some_day(february: int) -> bool:
            return any(day <= (february if month == 2 else _DAYS_IN_MONTH[month]) for day in self.days for month in self.months)

        # With a star on either day field a day must match both, and the starred one matches every day.
        both = self.days_star or self.weekdays_star
        if both:
            common, leap = some_day(28) and bool(self.weekdays), some_day(29) and bool(self.weekdays)
        else:
            common, leap = some_day(28) or bool(self.weekdays), some_day(29) or bool(self.weekdays)
        if common:
            return None
        if leap:
            return "fires only in leap years (on 29 February)"
        if not self.weekdays:
            return "never fires: its day-of-week field matches no day"
        return f"never fires: none of its months has day {min(self.days)}" if self.days else "never fires: its day-of-month field matches no day"

    def next(self, after: datetime) -> Optional[datetime]:
        """The first firing strictly after `after` (UTC; a naive time is read as UTC), or None
        when there is none within five years (spec.go Next, L58-175)."""
        moment = _utc(after)
        start = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
        times = self.times()
        day = start.date()
        while day.year <= moment.year + 5:
            if self.fires_on(day):
                for hour, minute in times:
                    candidate = datetime(day.year, day.month, day.day, hour, minute, tzinfo=timezone.utc)
                    if candidate >= start:
                        return candidate
            day += timedelta(days=1)
        return None

    def firings(self, start: datetime, end: datetime) -> list[datetime]:
        """Every firing in [start, end) (UTC)."""
        start, end = _utc(start), _utc(end)
        times = self.times()
        found = []
        day = start.date()
        while day <= end.date():
            if self.fires_on(day):
                for hour, minute in times:
                    moment = datetime(day.year, day.month, day.day, hour, minute, tzinfo=timezone.utc)
                    if start <= moment < end:
                        found.append(moment)
            day += timedelta(days=1)
        return found

    def interval(self, start: date = date(2024, 1, 1), years: int = 29) -> timedelta:
        """The longest gap between two consecutive firings over `years` years from `start`.

        29 years: from 1901 to 2099 the calendar's weekdays repeat every 28 years, so
        every gap the schedule ever has appears in that window. CronError when the
        schedule fires less than twice in it.
        """
        times = [hour * 60 + minute for hour, minute in self.times()]
        within = max((b - a for a, b in zip(times, times[1:])), default=0)
        days = (date(start.year + years, start.month, start.day) - start).days
        firing_days = [n for n in range(days) if self.fires_on(start + timedelta(days=n))]
        if not times or not firing_days or (len(firing_days) < 2 and len(times) < 2):
            raise CronError(f"the schedule fires less than twice in {years} years")
        across = max(((b - a) * 1440 + times[0] - times[-1] for a, b in zip(firing_days, firing_days[1:])), default=0)
        return timedelta(minutes=max(within, across))


@dataclass(frozen=True)
class EverySchedule:
    """`@every <duration>`: a constant delay of whole seconds, at least one (constantdelay.go L14-21)."""

    delay: timedelta

    def firing_problem(self) -> Optional[str]:
        return None

    def next(self, after: datetime) -> datetime:
        """`after`, cut to the second, plus the delay (constantdelay.go L25-27). Kubernetes counts
        from the CronJob's last schedule time, or its creation."""
        return _utc(after).replace(microsecond=0) + self.delay

    def firings(self, start: datetime, end: datetime) -> list[datetime]:
        """The firings in [start, end) of a CronJob last scheduled at `start`."""
        found, moment, end = [], self.next(start), _utc(end)
        while moment < end:
            found.append(moment)
            moment = self.next(moment)
        return found

    def interval(self, start: date = date(2024, 1, 1), years: int = 29) -> timedelta:
        return self.delay


Schedule = Union[SpecSchedule, EverySchedule]


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def _every(schedule: str) -> EverySchedule:
    text = schedule[len(_EVERY):]
    try:
        nanoseconds = parse_go_duration(text)
    except ValueError as error:
        raise CronError(
            f"{_quote(schedule)}: {_quote(text)} is not a Go duration (e.g. 90m, 1h30m, 45s; units h, m, s, ms, us, ns): {error}"
        ) from None
    # constantdelay.go Every: below a second is one second; otherwise whole seconds.
    seconds = nanoseconds // 10**9 if nanoseconds >= 10**9 else 1
    return EverySchedule(timedelta(seconds=seconds))


def parse(schedule: str) -> Schedule:
    """The schedule, if Kubernetes accepts it as a CronJob's ``.spec.schedule``; CronError otherwise.

    No trimming and no case folding beyond robfig's: what passes here passes the API server.
    """
    if not isinstance(schedule, str) or schedule == "":
        raise CronError("the schedule is empty")
    if "TZ" in schedule:
        # validateScheduleFormat: strings.Contains(schedule, "TZ") is refused on create.
        return _raise(f"{_quote(schedule)}: Kubernetes refuses TZ= and CRON_TZ= in a schedule (and any 'TZ'); backups run on UTC")
    if schedule.startswith("@"):
        if schedule in MACROS:
            return parse(MACROS[schedule])
        if schedule.startswith(_EVERY):
            return _every(schedule)
        return _raise(
            f"{_quote(schedule)} is not a cron descriptor: {', '.join(MACROS)} or '@every <duration>' "
            "(exactly, lowercase, nothing around it)"
        )
    fields = _go_fields(schedule)
    if len(fields) != 5:
        return _raise(
            f"{_quote(schedule)} is not a cron schedule: it needs 5 fields (minute hour day-of-month month day-of-week), "
            f"found {len(fields)}"
        )
    (minutes, _), (hours, _), (days, days_star), (months, _), (weekdays, weekdays_star) = (
        _field(text, field, schedule) for text, field in zip(fields, FIELDS)
    )
    return SpecSchedule(minutes, hours, days, months, weekdays, days_star, weekdays_star)


def _raise(message: str):
    raise CronError(message)


def problem(schedule: str) -> Optional[str]:
    """Why Kubernetes refuses `schedule` as a CronJob schedule, or None when it accepts it."""
    try:
        parse(schedule)
    except CronError as error:
        return str(error)
    return None


def interval(schedule: str) -> timedelta:
    """The longest time between two firings of `schedule` (the delay of `@every`); CronError when
    Kubernetes refuses it or it fires less than twice in 29 years."""
    return parse(schedule).interval()


def next_runs(schedule: str, after: datetime, count: int = 1) -> list[datetime]:
    """The next `count` firings after `after` (UTC); fewer when the schedule stops firing within
    five years of one of them (robfig's limit). For `@every`, counted from `after`."""
    parsed = parse(schedule)
    runs: list[datetime] = []
    moment: Optional[datetime] = after
    while len(runs) < count and moment is not None:
        moment = parsed.next(moment)
        if moment is not None:
            runs.append(moment)
    return runs
