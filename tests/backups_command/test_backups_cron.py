"""Schedules for `backups status`: the longest gap between firings, for every form Kubernetes accepts.

The parser and expander live in components/cron.py (one for the config and the operator
command); this file holds their intervals against tables and an hour-by-hour oracle, and the
operator command's own duration helpers.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from components import cron
from backups.display import human_duration
from backups.errors import BackupsError
from backups.schedule import cron_interval, parse_duration

H, D = timedelta(hours=1), timedelta(days=1)

KNOWN_INTERVALS = [
    ("0 3 * * *", 24 * H),  # the default: daily
    ("@daily", 24 * H),
    ("@midnight", 24 * H),
    ("@hourly", H),
    ("*/15 * * * *", timedelta(minutes=15)),
    ("5,35 * * * *", timedelta(minutes=30)),
    ("0 9-17 * * *", 16 * H),  # 17:00 to 09:00 the next day
    ("0 */6 * * *", 6 * H),
    ("0 3 * * 1-5", 3 * D),  # Friday to Monday
    ("0 3 * * mon-fri", 3 * D),
    ("0 3 * * 0", 7 * D),
    ("0 3 * * SUN", 7 * D),
    ("@weekly", 7 * D),
    ("0 0 1 * *", 31 * D),  # the longest month apart
    ("@monthly", 31 * D),
    ("0 3 1,15 * *", 17 * D),  # the 15th to the 1st of a 31-day month
    ("0 0 31 * *", 61 * D),  # Jul 31 to Aug 31 is 31 days; Aug 31 to Oct 31 is 61
    ("0 0 1 1 *", 366 * D),  # across a leap year
    ("@yearly", 366 * D),
    ("@annually", 366 * D),
    ("0 0 */2 * *", 2 * D),  # odd days: the 31st to the 1st is one day, the 29th to the 1st two
    ("0 0 1 * 1", 7 * D),  # both day fields restricted: the 1st OR Mondays
    ("0 0 */2 * 1", 2 * D),  # `*/2` restricts the day of month (robfig/cron): odd days OR Mondays
    ("0 0 * * */1", D),  # `*/1` is unrestricted
    ("0 0 * * 1/2", 3 * D),  # Mon, Wed, Fri: `1/2` ends at 6 (Saturday), so not Sunday; Fri to Mon
    ("0 0 * * 5/1", 6 * D),  # Fri, Sat (not Sunday): Sat to Fri
    ("0 12 * jan,jul *", 154 * D),  # Jul 31 to Jan 1
    ("0 3 ? * *", D),  # `?` is `*`
    ("0 3 * * ?", D),
    ("0 3 1,,15 * *", 17 * D),  # robfig drops empty ranges
]


@pytest.mark.parametrize("schedule,interval", KNOWN_INTERVALS + [
    ("@every 1h", H),
    ("@every 90m", timedelta(minutes=90)),
    ("@every 1h30m10.5s", timedelta(minutes=90, seconds=10)),  # whole seconds (constantdelay.go Every)
    ("@every 0.5s", timedelta(seconds=1)),  # at least one second
    ("@every -5m", timedelta(seconds=1)),  # Go parses it; robfig rounds it up to a second
])
def test_known_intervals(schedule, interval):
    assert cron.interval(schedule) == interval


@pytest.mark.parametrize("schedule,interval", KNOWN_INTERVALS[:12])
def test_the_operator_command_reads_the_same_intervals(schedule, interval):
    assert cron_interval(schedule) == interval


def test_the_operator_command_reads_every_form():
    assert cron_interval("@every 2h") == 2 * H


def test_firings_of_a_day():
    schedule = cron.parse("0 3 * * *")
    start = datetime(2026, 11, 29, tzinfo=timezone.utc)
    assert schedule.firings(start, start + 2 * D) == [start + 3 * H, start + 27 * H]


def test_next_runs_for_every_form():
    after = datetime(2026, 11, 29, 3, 0, tzinfo=timezone.utc)
    assert cron.next_runs("0 3 * * *", after, 2) == [after + D, after + 2 * D]  # strictly after
    assert cron.next_runs("@weekly", after, 1) == [datetime(2026, 12, 6, tzinfo=timezone.utc)]  # a Sunday
    assert cron.next_runs("@every 90m", after + timedelta(microseconds=5), 2) == [after + 1.5 * H, after + 3 * H]
    assert cron.next_runs("0 3 29 2 *", after, 1) == [datetime(2028, 2, 29, 3, tzinfo=timezone.utc)]
    # 30 February never comes: robfig gives up after five years, and so does next().
    assert cron.next_runs("0 3 30 2 *", after, 1) == []


@pytest.mark.parametrize("schedule", ["0 3 * *", "61 * * * *", "TZ=UTC 0 3 * * *", "0 3 * * 7", "@every 1d", ""])
def test_bad_schedules_are_refused(schedule):
    with pytest.raises(cron.CronError):
        cron.interval(schedule)
    with pytest.raises(BackupsError, match="bad schedule"):
        cron_interval(schedule)


def test_schedules_that_fire_less_than_twice_have_no_interval():
    with pytest.raises(cron.CronError, match="less than twice"):
        cron.interval("0 0 31 2 *")


def test_durations():
    assert parse_duration("3600") == H and parse_duration("90s") == timedelta(seconds=90)
    assert parse_duration("1h30m") == timedelta(minutes=90) and parse_duration("2d") == 2 * D
    for text in ("", "1x", "h", "-5"):
        with pytest.raises(Exception):
            parse_duration(text)
    assert [human_duration(x) for x in (48 * H, 24 * H, 7 * D, timedelta(minutes=15), timedelta(seconds=45), timedelta(minutes=90))] == [
        "48h", "24h", "7d", "15m", "45s", "1h 30m"]


# An independent oracle: firings found by testing every hour of two years against the fields, as
# robfig/cron (Kubernetes) reads them; the expander's longest gap must equal the oracle's.

def _values(field: str, low: int, high: int) -> tuple[set[int], bool]:
    values, star = set(), False
    for part in field.split(","):
        base, _, step = part.partition("/")
        if base == "*":
            first, last = low, high
            star = star or step in ("", "1")
        elif "-" in base:
            first, last = (int(x) for x in base.split("-"))
        else:
            first = int(base)
            last = high if step else first
        values |= set(range(first, last + 1, int(step or 1)))
    return values, star


def _oracle_gap(hour: str, dom: str, month: str, dow: str, start: date, days: int) -> timedelta:
    hours, _ = _values(hour, 0, 23)
    doms, dom_star = _values(dom, 1, 31)
    months, _ = _values(month, 1, 12)
    dows, dow_star = _values(dow, 0, 6)
    firings = []
    moment = datetime(start.year, start.month, start.day)
    end = moment + timedelta(days=days)
    while moment < end:
        day_ok = (moment.day in doms, (moment.weekday() + 1) % 7 in dows)
        fires = moment.month in months and moment.hour in hours and (
            all(day_ok) if dom_star or dow_star else any(day_ok))
        if fires:
            firings.append(moment)
        moment += H
    return max(b - a for a, b in zip(firings, firings[1:]))


def _field(low: int, high: int):
    number = st.integers(low, high)
    single = number.map(str)
    span = st.tuples(number, number).map(lambda t: f"{min(t)}-{max(t)}")
    stepped = st.tuples(st.sampled_from(["*"]) | single | span, st.integers(1, 5)).map(lambda t: f"{t[0]}/{t[1]}")
    part = st.sampled_from(["*"]) | single | span | stepped
    return st.lists(part, min_size=1, max_size=3).map(",".join)


@settings(max_examples=40, deadline=None)
@given(hour=_field(0, 23), dom=_field(1, 28), month=_field(1, 12), dow=_field(0, 6))
def test_the_longest_gap_matches_an_hour_by_hour_oracle(hour, dom, month, dow):
    schedule = f"0 {hour} {dom} {month} {dow}"
    start, years = date(2024, 1, 1), 2
    days = (date(2026, 1, 1) - start).days
    expected = _oracle_gap(hour, dom, month, dow, start, days)
    assert cron.parse(schedule).interval(start, years) == expected, schedule
