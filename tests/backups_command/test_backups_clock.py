"""Stamps and clocks in the backups command (issue 15, items 2 and 3, the reading side).

- Both stamp forms, `YYYYmmddTHHMMSSZ` and `YYYYmmddTHHMMSSZ-xxxxxxxx`, are listed,
  downloaded, verified, dated and taken as `latest`.
- A backup is dated by its manifest's LastModified (the server's time): `latest` and
  ages follow it, the stamp only breaks ties; a stamp more than 10 minutes ahead of it, or
  more than the longest backup (6 h) and 10 minutes behind, is
  flagged in `list` and `status`.

The S3 server's clock is set per upload (tests/support/clocked_s3.py), so a manifest can be
stored "3 days ago" with a stamp a year ahead of that, or 30 days behind it.
"""

from __future__ import annotations

import json
from pathlib import Path
from datetime import datetime, timedelta, timezone

from backups.catalog import Entry
from support.backups_command import archive, command, layout, moto, one_error, postgres_tools, rows  # noqa: F401  (fixtures)

YEAR = timedelta(days=365)


def lines_of(err: str, start: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith(start)]


# ---------------------------------------------------------------- item 2: both stamp forms


def test_both_stamp_forms_are_listed_downloaded_verified_and_dated(moto, layout, archive, tmp_path):
    bare = layout.backup(timedelta(hours=3), archive)
    suffixed = layout.backup(timedelta(hours=2), archive, suffix=True, reason="manual")
    orphan = layout.orphan(timedelta(hours=1), archive, suffix=True)
    incoming = layout.incoming(timedelta(minutes=5), archive[:10], suffix=True)
    assert len(suffixed) == len(bare) + 9 and suffixed[16] == "-"

    code, out, err = command(moto, layout.bucket, "list")
    assert code == 0, err
    by_stamp = rows(out)
    assert list(by_stamp) == [incoming, orphan, suffixed, bare]
    assert by_stamp[suffixed].endswith("ok (latest)") and " 2h 0m " in by_stamp[suffixed] and " manual " in by_stamp[suffixed]
    assert by_stamp[bare].endswith(" ok") and " 3h 0m " in by_stamp[bare]
    assert "INCOMPLETE: no manifest" in by_stamp[orphan]
    assert "INCOMPLETE: upload in progress" in by_stamp[incoming]
    assert "CLOCK" not in out
    assert out.splitlines()[-1] == f"latest good: {suffixed} (s3://{layout.bucket}/acme/backups/{suffixed}.json)"

    code, out, err = command(moto, layout.bucket, "list", "--json")
    document = json.loads(out)
    assert document["latest"] == suffixed
    entry = next(item for item in document["backups"] if item["stamp"] == suffixed)
    assert entry["good"] and entry["dump"] == f"acme/database/{suffixed}.dump" and entry["clock"] is None
    assert 7100 < entry["ageSeconds"] < 7300 and abs(entry["clockSkewSeconds"]) <= 2

    code, out, err = command(moto, layout.bucket, "download", "latest", "-o", str(tmp_path))
    assert code == 0, err
    assert (tmp_path / f"{suffixed}.dump").read_bytes() == archive
    for reference in (suffixed, f"{suffixed}.dump", f"acme/backups/{suffixed}.json", f"acme/database/{suffixed}.dump",
                      f"s3://{layout.bucket}/acme/backups/{suffixed}.json", suffixed[:16]):
        target = tmp_path / "by-reference.dump"
        code, out, err = command(moto, layout.bucket, "download", reference, "-o", str(target), "--force")
        assert code == 0, (reference, err)
        assert target.read_bytes() == archive and f"downloaded {suffixed} " in out, reference
        assert "SHA-256 match the manifest" in out, reference

    code, out, err = command(moto, layout.bucket, "verify", suffixed)
    assert code == 0, err
    assert out.startswith("database: ok, ") and f"acme/database/{suffixed}.dump" in out

    code, out, err = command(moto, layout.bucket, "status", "--max-age", "3h")
    assert code == 0, err
    assert out.startswith(f"newest good backup: {suffixed} (manual), 2h 0m old")


def test_a_bare_stamp_naming_two_suffixed_backups_is_refused(moto, layout, archive):
    at = (datetime.now(timezone.utc) - timedelta(hours=1)).replace(microsecond=0)
    first = layout.backup(timedelta(0), archive, at=at, suffix="0a1b2c3d")
    second = layout.backup(timedelta(0), archive, at=at, suffix="ffff0000")
    code, _, err = command(moto, layout.bucket, "download", first[:16])
    assert code == 2
    one_error(err, f"{first[:16]} names 2 backups ({first}, {second})", "give the whole stamp")


def test_in_the_same_second_the_stamp_breaks_the_tie(moto, layout, archive, tmp_path):
    at = (datetime.now(timezone.utc) - timedelta(hours=1)).replace(microsecond=0)
    # Stored in the same second: the suffixed stamp sorts after the bare one, whatever the upload order.
    winner = layout.backup(timedelta(0), archive, at=at, suffix="0a1b2c3d")
    bare = layout.backup(timedelta(0), archive, at=at)
    low = layout.backup(timedelta(0), archive, at=at, suffix="00000000")
    # Stored a second before, stamped 5 minutes later (within the clock tolerance): older all the same.
    early = layout.backup(timedelta(0), archive, at=at - timedelta(seconds=1), skew=timedelta(minutes=5))
    assert early > winner > low > bare
    code, out, err = command(moto, layout.bucket, "list")
    assert code == 0, err
    assert list(rows(out)) == [winner, low, bare, early]
    assert rows(out)[winner].endswith("ok (latest)") and "CLOCK" not in out
    code, out, err = command(moto, layout.bucket, "download", "latest", "-o", str(tmp_path))
    assert code == 0, err
    assert f"downloaded {winner} " in out


# ---------------------------------------------------------------- item 3: the server's time, not the pod's


def test_a_stamp_a_year_ahead_is_flagged_and_does_not_stay_latest(moto, layout, archive, tmp_path):
    ahead = layout.backup(timedelta(days=3), archive, skew=YEAR)
    normal = layout.backup(timedelta(hours=1), archive)
    code, out, err = command(moto, layout.bucket, "list")
    assert code == 0, err
    by_stamp = rows(out)
    assert list(by_stamp) == [normal, ahead]
    assert by_stamp[normal].endswith("ok (latest)")
    assert " 3d 0h " in by_stamp[ahead]
    assert by_stamp[ahead].endswith("ok; CLOCK: stamp 365d 0h ahead of the server's time")
    assert any(line.startswith("CLOCK: 1 stamp more than 10m ahead of, or 6h 10m behind, the server's time") for line in out.splitlines())

    code, out, _ = command(moto, layout.bucket, "list", "--json")
    document = json.loads(out)
    assert document["latest"] == normal
    flagged = next(item for item in document["backups"] if item["stamp"] == ahead)
    assert flagged["clock"] == "stamp 365d 0h ahead of the server's time"
    assert abs(flagged["clockSkewSeconds"] - YEAR.total_seconds()) <= 2
    assert abs(flagged["ageSeconds"] - timedelta(days=3).total_seconds()) <= 60
    assert flagged["taken"].startswith(ahead[:4]) and flagged["completed"] < flagged["taken"]

    code, out, err = command(moto, layout.bucket, "download", "latest", "-o", str(tmp_path))
    assert code == 0, err
    assert f"downloaded {normal} " in out


def test_status_dates_a_backup_stamped_in_the_future_by_the_server(moto, layout, archive):
    ahead = layout.backup(timedelta(days=3), archive, skew=YEAR)
    code, out, err = command(moto, layout.bucket, "status", "--schedule", "0 3 * * *")
    assert code == 3, err  # stale: three days without a backup, whatever the stamp says
    assert out.startswith(f"newest good backup: {ahead} (scheduled), 3d 0h old;") and "0m old" not in out
    (warning,) = lines_of(err, "warning:")
    assert f"the newest good backup {ahead}" in warning and "stamp 365d 0h ahead of the server's time" in warning
    one_error(err, f"the newest good backup ({ahead}) is 3d 0h old, more than 48h")


def test_a_stamp_30_days_behind_is_flagged_and_still_latest(moto, layout, archive, tmp_path):
    older = layout.backup(timedelta(days=1), archive)
    behind = layout.backup(timedelta(hours=1), archive, skew=-timedelta(days=30))
    code, out, err = command(moto, layout.bucket, "list")
    assert code == 0, err
    by_stamp = rows(out)
    assert list(by_stamp) == [behind, older]
    assert " 1h 0m " in by_stamp[behind]
    assert by_stamp[behind].endswith("ok; CLOCK: stamp 30d 0h behind the server's time (latest)")
    assert by_stamp[older].endswith(" ok")

    code, out, err = command(moto, layout.bucket, "download", "latest", "-o", str(tmp_path))
    assert code == 0, err
    assert (tmp_path / f"{behind}.dump").read_bytes() == archive

    code, out, err = command(moto, layout.bucket, "status", "--schedule", "0 3 * * *")
    assert code == 0, err
    assert out.startswith(f"newest good backup: {behind} (scheduled), 1h 0m old;")
    (warning,) = lines_of(err, "warning:")
    assert "stamp 30d 0h behind the server's time" in warning and err.count("\n") == 1


def test_status_counts_other_backups_whose_stamps_are_off(moto, layout, archive):
    layout.backup(timedelta(days=2), archive, skew=YEAR)
    layout.legacy(timedelta(days=4), archive, skew=-timedelta(hours=8))  # dumps without a manifest: the dump's time
    newest = layout.backup(timedelta(hours=1), archive)
    code, out, err = command(moto, layout.bucket, "status", "--schedule", "0 3 * * *")
    assert code == 0, err
    assert out.startswith(f"newest good backup: {newest} (scheduled), 1h 0m old;")
    assert lines_of(err, "warning:") == [
        "warning: CLOCK: 2 other backup stamps are more than 10m ahead of, or 6h 10m behind, the server's time (see `list`)"
    ]


def test_a_stamp_may_lead_by_ten_minutes_and_trail_by_the_longest_backup_and_ten_minutes():
    stored = datetime(2026, 11, 30, 3, 5, tzinfo=timezone.utc)

    def entry(stamp: str, kind: str = "backup") -> Entry:
        return Entry(stamp, kind, modified=stored)

    # A stamp is the start of the backup, the server's time its end: a long backup trails, never leads.
    assert entry("20261130T025500Z").clock_problem() == ""
    assert entry("20261130T031500Z-0a1b2c3d").clock_problem() == ""
    assert entry("20261130T031501Z").clock_problem() == "stamp 10m ahead of the server's time"
    assert entry("20261130T025459Z").clock_problem() == ""  # ran 10 minutes
    assert entry("20261130T010500Z", "legacy").clock_problem() == ""  # ran 2 hours
    assert entry("20261129T205500Z").clock_problem() == ""  # ran 6 hours and 10 minutes: the longest a backup can
    assert entry("20261129T205459Z").clock_problem() == "stamp 6h 10m behind the server's time"
    assert entry("20271130T030500Z").clock_problem() == "stamp 365d 0h ahead of the server's time"
    assert entry("20200101T000000Z", "incoming").clock_problem() == ""  # an upload is no backup
    assert Entry("20261130T010500Z", "backup").clock_problem() == ""  # no server time known: nothing to compare
    assert entry("20261130T010500Z").taken == stored and Entry("20261130T010500Z-0a1b2c3d", "backup").taken.hour == 1


def test_the_longest_backup_is_the_scheduled_jobs_deadline_everywhere():
    from backups.layout import LONGEST_BACKUP
    from components.backups import SCHEDULED_DEADLINE_SECONDS

    script = (Path(__file__).resolve().parents[2] / "components" / "assets" / "s3-cli.sh").read_text()
    assert LONGEST_BACKUP.total_seconds() == SCHEDULED_DEADLINE_SECONDS
    assert f"\nLONGEST_BACKUP_SECONDS={SCHEDULED_DEADLINE_SECONDS}\n" in script
