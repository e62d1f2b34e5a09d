"""components/cron.py against the sources it ports: robfig/cron v3.0.1's own tests, Go's
time.ParseDuration tests, and Kubernetes' CronJob validation (what the API server accepts)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from components import cron

UTC = timezone.utc


def bits(values: frozenset[int], star: bool) -> int:
    """robfig's bit set of a field: a bit per value, and bit 63 for the star."""
    return sum(1 << value for value in values) | ((1 << 63) if star else 0)


# robfig/cron v3.0.1 parser_test.go TestRange (expr, min, max, expected bits, error words).
STAR = 1 << 63


@pytest.mark.parametrize(
    "expr, low, high, expected, error",
    [
        ("5", 0, 7, 1 << 5, ""),
        ("0", 0, 7, 1 << 0, ""),
        ("7", 0, 7, 1 << 7, ""),
        ("5-5", 0, 7, 1 << 5, ""),
        ("5-6", 0, 7, 1 << 5 | 1 << 6, ""),
        ("5-7", 0, 7, 1 << 5 | 1 << 6 | 1 << 7, ""),
        ("5-6/2", 0, 7, 1 << 5, ""),
        ("5-7/2", 0, 7, 1 << 5 | 1 << 7, ""),
        ("5-7/1", 0, 7, 1 << 5 | 1 << 6 | 1 << 7, ""),
        ("*", 1, 3, 1 << 1 | 1 << 2 | 1 << 3 | STAR, ""),
        ("*/2", 1, 3, 1 << 1 | 1 << 3, ""),
        ("5--5", 0, 0, 0, "too many hyphens"),
        ("jan-x", 0, 0, 0, "not a number"),
        ("2-x", 1, 5, 0, "not a number"),
        ("*/-12", 0, 0, 0, "negative number"),
        ("*//2", 0, 0, 0, "too many slashes"),
        ("1", 3, 5, 0, "below minimum"),
        ("6", 3, 5, 0, "above maximum"),
        ("5-3", 3, 5, 0, "beyond end of range"),
        ("*/0", 0, 0, 0, "should be a positive number"),
        # And what follows from the code rather than the tests:
        ("*-5", 0, 7, 0xFF | STAR, ""),  # after `*`, a `-...` is ignored (parser.go L262-265)
        ("?/1", 0, 7, 0xFF | STAR, ""),  # `?` is `*`; a step of 1 keeps the star (L297-299)
        ("+5", 0, 7, 1 << 5, ""),  # strconv.Atoi takes a sign
        ("-0", 0, 7, 0, "not a number"),  # split on '-' first: '' is no number
        ("007", 0, 7, 1 << 7, ""),
        ("1_0", 0, 59, 0, "not a number"),  # Atoi in base 10 takes no underscores
        ("99999999999999999999", 0, 59, 0, "out of range"),
        ("9223372036854775807", 0, 59, 0, "above maximum"),
    ],
)
def test_ranges_as_robfig_reads_them(expr, low, high, expected, error):
    field = cron.Field("test", low, high)
    if error:
        with pytest.raises(cron._Refused, match=re.escape(error)):
            cron._range(expr, field)
    else:
        assert bits(*cron._range(expr, field)) == expected


@pytest.mark.parametrize(
    "expr, expected",
    [("5", 1 << 5), ("5,6", 1 << 5 | 1 << 6), ("5,6,7", 1 << 5 | 1 << 6 | 1 << 7), ("1,5-7/2,3", 1 << 1 | 1 << 5 | 1 << 7 | 1 << 3),
     (",5,,6,", 1 << 5 | 1 << 6), (",", 0)],  # strings.FieldsFunc drops empty ranges
)
def test_fields_as_robfig_reads_them(expr, expected):
    assert bits(*cron._field(expr, cron.Field("test", 1, 7), expr)) == expected


def moment(text: str) -> datetime:
    """robfig's getTime: "Mon Jul 9 15:00 2012" (UTC here)."""
    for layout in ("%a %b %d %H:%M %Y", "%a %b %d %H:%M:%S %Y"):
        try:
            return datetime.strptime(text, layout).replace(tzinfo=UTC)
        except ValueError:
            pass
    raise ValueError(text)


# spec_test.go TestActivation: does the schedule fire at that minute?
@pytest.mark.parametrize(
    "when, spec, expected",
    [
        ("Mon Jul 9 15:00 2012", "0/15 * * * *", True),
        ("Mon Jul 9 15:45 2012", "0/15 * * * *", True),
        ("Mon Jul 9 15:40 2012", "0/15 * * * *", False),
        ("Mon Jul 9 15:05 2012", "5/15 * * * *", True),
        ("Mon Jul 9 15:20 2012", "5/15 * * * *", True),
        ("Mon Jul 9 15:50 2012", "5/15 * * * *", True),
        ("Sun Jul 15 15:00 2012", "0/15 * * Jul *", True),
        ("Sun Jul 15 15:00 2012", "0/15 * * Jun *", False),
        ("Sun Jul 15 08:30 2012", "30 08 ? Jul Sun", True),
        ("Sun Jul 15 08:30 2012", "30 08 15 Jul ?", True),
        ("Mon Jul 16 08:30 2012", "30 08 ? Jul Sun", False),
        ("Mon Jul 16 08:30 2012", "30 08 15 Jul ?", False),
        ("Mon Jul 9 15:00 2012", "@hourly", True),
        ("Mon Jul 9 15:04 2012", "@hourly", False),
        ("Mon Jul 9 15:00 2012", "@daily", False),
        ("Mon Jul 9 00:00 2012", "@daily", True),
        ("Mon Jul 9 00:00 2012", "@weekly", False),
        ("Sun Jul 8 00:00 2012", "@weekly", True),
        ("Sun Jul 8 01:00 2012", "@weekly", False),
        ("Sun Jul 8 00:00 2012", "@monthly", False),
        ("Sun Jul 1 00:00 2012", "@monthly", True),
        ("Sun Jul 15 00:00 2012", "* * 1,15 * Sun", True),
        ("Fri Jun 15 00:00 2012", "* * 1,15 * Sun", True),
        ("Wed Aug 1 00:00 2012", "* * 1,15 * Sun", True),
        ("Sun Jul 15 00:00 2012", "* * */10 * Sun", True),
        ("Sun Jul 15 00:00 2012", "* * * * Mon", False),
        ("Mon Jul 9 00:00 2012", "* * 1,15 * *", False),
        ("Sun Jul 15 00:00 2012", "* * 1,15 * *", True),
        ("Sun Jul 15 00:00 2012", "* * */2 * Sun", True),
    ],
)
def test_activation_as_robfig_tests_it(when, spec, expected):
    at = moment(when)
    assert (cron.parse(spec).next(at - timedelta(seconds=1)) == at) is expected


# spec_test.go TestNext, the cases whose seconds field is 0 (the standard parser has none), in UTC.
@pytest.mark.parametrize(
    "when, spec, expected",
    [
        ("Mon Jul 9 14:45 2012", "0/15 * * * *", "Mon Jul 9 15:00 2012"),
        ("Mon Jul 9 14:59 2012", "0/15 * * * *", "Mon Jul 9 15:00 2012"),
        ("Mon Jul 9 14:59:59 2012", "0/15 * * * *", "Mon Jul 9 15:00 2012"),
        ("Mon Jul 9 15:45 2012", "20-35/15 * * * *", "Mon Jul 9 16:20 2012"),
        ("Mon Jul 9 23:46 2012", "*/15 * * * *", "Tue Jul 10 00:00 2012"),
        ("Mon Jul 9 23:45 2012", "20-35/15 * * * *", "Tue Jul 10 00:20 2012"),
        ("Mon Jul 9 23:35 2012", "0 0 9 Apr-Oct ?", "Thu Aug 9 00:00 2012"),
        ("Mon Jul 9 23:35 2012", "0 0 */5 Apr,Aug,Oct Mon", "Tue Aug 1 00:00 2012"),
        ("Mon Jul 9 23:35 2012", "0 0 */5 Oct Mon", "Mon Oct 1 00:00 2012"),
        ("Mon Jul 9 23:35 2012", "0 0 * Feb Mon", "Mon Feb 4 00:00 2013"),
        ("Mon Jul 9 23:35 2012", "0 0 * Feb Mon/2", "Fri Feb 1 00:00 2013"),
        ("Mon Dec 31 23:59:45 2012", "* * * * *", "Tue Jan 1 00:00:00 2013"),
        ("Mon Jul 9 23:35 2012", "0 0 29 Feb ?", "Mon Feb 29 00:00 2016"),
    ],
)
def test_next_as_robfig_tests_it(when, spec, expected):
    assert cron.parse(spec).next(moment(when)) == moment(expected)


def test_macros_are_their_five_fields():
    for macro, fields in cron.MACROS.items():
        assert cron.parse(macro) == cron.parse(fields), macro


# Kubernetes: validateScheduleFormat refuses any "TZ" on create; ParseStandard the rest.
@pytest.mark.parametrize(
    "schedule",
    ["", "TZ=UTC 0 3 * * *", "CRON_TZ=Europe/Paris 0 3 * * *", "0 3 * * * TZ", "TZ=UTC", "@every 1h TZ",
     "0 3 * * 7", "0 3 * * 0-7", "0 24 * * *", "60 * * * *", "0 0 0 * *", "0 0 32 * *", "0 0 * 0 *", "0 0 * 13 *",
     "0 3 * *", "0 3 * * * *", "@daily ", " @daily", "@Daily", "@every", "@every ", "@every 1h ", "@every  1h",
     "@every 1d", "@every 1", "@every h", "@every .s", "@every 9223372036854775808ns", "@reboot",
     "0 3 * * mon-", "0 3 * * monday", "0 3 * * 1.5", "0 3 * * ١", "0 3 * * ³", "x 3 * * *", "0 3 L * *",
     "0 3 * * 5#3", "0 3 W * *"],
)
def test_what_kubernetes_refuses(schedule):
    with pytest.raises(cron.CronError):
        cron.parse(schedule)
    assert cron.problem(schedule)


@pytest.mark.parametrize(
    "schedule",
    ["0 3 * * *", "* * * * ?", "0 3 ? * MON-FRI", "0 3 * jan-DEC sun", "0 3 * * FRİ",  # Go's ToLower: İ is i
     "0\t3\n*\u3000*\u2003*", "  0 3 * * *  ", "0 3 1,,15 * *", "0 , * * *", "*-9 3 * * *", "0 3 * * */8",
     "0 3 30 2 *", "@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly",
     "@every 5m", "@every 1h30m", "@every 1.5h", "@every 300ms", "@every 0", "@every -1h", "@every +2h",
     "@every 1µs", "@every 1μs", "@every 9223372036854775807ns",
     "@every 9223372036854775808ns9223372036854775808ns"],  # Go's uint64 sum wraps to 0: accepted
)
def test_what_kubernetes_accepts(schedule):
    assert cron.problem(schedule) is None
    cron.parse(schedule)


def test_go_spaces_split_fields_and_python_only_spaces_do_not():
    # U+001C..U+001F are whitespace to str.split(), not to Go's unicode.IsSpace.
    assert cron.problem("0\x1c3 * * * *") is not None
    assert cron.problem("0\u00853 * * *") is None  # NEL is a Go space


def test_every_rounds_as_robfig_does():
    assert cron.parse("@every 1.9s").delay == timedelta(seconds=1)
    assert cron.parse("@every 0").delay == timedelta(seconds=1)
    assert cron.parse("@every 2h").firings(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 7, tzinfo=UTC)) == [
        datetime(2026, 1, 1, h, tzinfo=UTC) for h in (2, 4, 6)]


# Go's time_test.go parseDurationTests (nanoseconds), and its error cases.
@pytest.mark.parametrize(
    "text, nanoseconds",
    [
        ("0", 0), ("5s", 5 * 10**9), ("30s", 30 * 10**9), ("1478s", 1478 * 10**9), ("-5s", -5 * 10**9),
        ("+5s", 5 * 10**9), ("-0", 0), ("+0", 0), ("5.0s", 5 * 10**9), ("5.6s", 5600 * 10**6), ("5.s", 5 * 10**9),
        (".5s", 500 * 10**6), ("1.0s", 10**9), ("1.00s", 10**9), ("1.004s", 1004 * 10**6), ("1.0040s", 1004 * 10**6),
        ("100.00100s", 100001 * 10**6), ("10ns", 10), ("11us", 11000), ("12µs", 12000), ("12μs", 12000),
        ("13ms", 13 * 10**6), ("14s", 14 * 10**9), ("15m", 15 * 60 * 10**9), ("16h", 16 * 3600 * 10**9),
        ("3h30m", 210 * 60 * 10**9), ("10.5s4m", 4 * 60 * 10**9 + 10500 * 10**6), ("-2m3.4s", -(123400 * 10**6)),
        ("1h2m3s4ms5us6ns", 3723004005006), ("39h9m14.425s", 140954425 * 10**6), ("52763797000ns", 52763797000),
        ("0.3333333333333333333h", 20 * 60 * 10**9), ("9007199254740993ns", 9007199254740993),
        ("9223372036854775807ns", 2**63 - 1), ("9223372036854775.807us", 2**63 - 1),
        ("9223372036854.775807ms", 2**63 - 1), ("-9223372036854775808ns", -(2**63)),
        ("-9223372036854775.808us", -(2**63)), ("0.100000000000000000000h", 6 * 60 * 10**9),
        ("0.830103483285477580700h", 49 * 60 * 10**9 + 48372539827),
    ],
)
def test_go_durations(text, nanoseconds):
    assert cron.parse_go_duration(text) == nanoseconds


@pytest.mark.parametrize(
    "text",
    ["", "3", "-", "s", ".", "-.", ".s", "+.s", "1d", "\x85\x85", "\xffff", "hello \xffff world",
     "9223372036854775808ns", "9223372036854775.808us", "9223372036854ms775808ns", "-9223372036854775809ns", "1h "],
)
def test_go_duration_errors(text):
    with pytest.raises(ValueError):
        cron.parse_go_duration(text)


# ---------------------------------------------------------------- an independent grammar oracle
# Written from the grammar rather than from the parser: a range is `*` or `?` (anything after a
# '-' ignored), or N or N-M (N, M: a sign and ASCII digits, or a field name), with at most one
# /STEP (a positive number); N/STEP runs to the field's end; bounds and order checked.

NAMES = {3: dict(zip("jan feb mar apr may jun jul aug sep oct nov dec".split(), range(1, 13))),
         4: dict(zip("sun mon tue wed thu fri sat".split(), range(7)))}
BOUNDS = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 6)]


def oracle_number(text, index):
    if text.lower() in NAMES.get(index, {}):
        return NAMES[index][text.lower()]
    if re.fullmatch(r"\+?[0-9]+", text) and int(text) < 2**63:
        return int(text)
    return None


def oracle_range(expr, index):
    low, high = BOUNDS[index]
    head, slash, step = expr.partition("/")
    if "/" in step or (slash and not step):  # robfig mustParseInt("") fails: `*/` has no step
        return False
    if step:
        number = oracle_number(step, None)
        if number is None or number == 0:
            return False
    if head.split("-")[0] in ("*", "?"):
        return True
    parts = head.split("-")
    if len(parts) > 2:
        return False
    first = oracle_number(parts[0], index)
    last = oracle_number(parts[1], index) if len(parts) == 2 else (high if step else first)
    return first is not None and last is not None and low <= first <= last <= high


def oracle_accepts(schedule):
    if not schedule or "TZ" in schedule:
        return False
    fields = schedule.split(" ")
    fields = [f for f in fields if f]
    return len(fields) == 5 and all(oracle_range(r, i) for i, f in enumerate(fields) for r in f.split(",") if r)


TOKENS = st.sampled_from(["*", "?", "0", "1", "5", "6", "7", "12", "13", "23", "24", "31", "32", "59", "60", "-", "/",
                          ",", "sun", "SAT", "jan", "Dec", "+", "0/0", "*/2", "1-", "x", "TZ", "٣"])
FIELD = st.lists(TOKENS, min_size=1, max_size=4).map("".join)


@settings(max_examples=3000, deadline=None)
@given(st.lists(FIELD, min_size=4, max_size=6).map(" ".join))
def test_acceptance_matches_the_grammar_oracle(schedule):
    assert (cron.problem(schedule) is None) == oracle_accepts(schedule), (schedule, cron.problem(schedule))


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 23), st.integers(0, 59), st.sampled_from(["7", "0-7", "6-7", "7/1", "sun,7", "7,mon", "5-7/2"]))
def test_day_of_week_7_is_always_refused(hour, minute, weekday):
    assert "not a valid day of week" in cron.problem(f"{minute} {hour} * * {weekday}")
