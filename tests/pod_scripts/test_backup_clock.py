"""A wrong pod clock neither freezes `latest` nor makes retention delete the newest backups.

A backup's time is the server's time of its manifest (LastModified: the manifest is written
last, in one request); its stamp (the pod's clock when it started) only breaks ties. The
pods' clocks are set through a fake `date` (tests/support/fake_clock.py), the server's through the
clocked S3 server (tests/support/clocked_s3.py). A stamp more than 10 minutes off the server's time
is flagged where the scripts log.
"""

import re
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from support.fake_clock import clocked, fake_bin
from support.backup_scripts import (  # noqa: F401  (fixtures)
    MANIFESTS,
    PREFIX,
    assert_nothing_incomplete_is_visible,
    backup_is_good,
    backups,
    database,
    database_comment,
    dump_of,
    env_for,
    filled,
    fresh_database,
    manifest_keys,
    moment_of,
    moto,
    put_backup,
    run,
    stamp_of,
    stored_at,
)

# Runs the pod scripts against the real servers (conftest: the tiers).
pytestmark = pytest.mark.integration

YEAR = timedelta(days=365)


@pytest.fixture(scope="module")
def clock_bin(tmp_path_factory):
    return fake_bin(tmp_path_factory.mktemp("clock"))


def stamp_in(result):
    return next(line.split()[1] for line in result.stdout.splitlines() if line.startswith("backup ") and " complete: " in line)


def labels(postgres, database):
    return postgres.admin("SELECT coalesce(string_agg(name, ','), '') FROM labels", database["PGDATABASE"])


def restore_latest(postgres, moto, backups, extra=None):
    target = fresh_database(postgres)
    result = run("restore.sh", env_for(postgres, moto, target, backups, RESTORE_FROM="latest", **(extra or {})))
    assert result.returncode == 0, result.stderr
    return target, result


def test_a_backup_taken_with_the_clock_a_year_ahead_is_not_latest_over_a_newer_one(clock_bin, postgres, moto, filled, backups):
    bucket = backups["BACKUP_BUCKET"]
    # Stored an hour ago by the server's clock, stamped a year ahead by the pod's.
    moto.set_clock(-timedelta(hours=1))
    try:
        ahead = run("backup.sh", clocked(env_for(postgres, moto, filled, backups), clock_bin, offset=YEAR - timedelta(hours=1)))
    finally:
        moto.set_clock(timedelta(0))
    assert ahead.returncode == 0, ahead.stderr
    ahead_stamp = stamp_in(ahead)
    assert abs(moment_of(ahead_stamp) - (datetime.now(timezone.utc) + YEAR)) < timedelta(hours=3)
    # Flagged by the run that made it.
    assert re.search(rf"warning: CLOCK: backup {ahead_stamp}: this pod's clock is 36[45]d \d+h ahead of the server's time", ahead.stderr), ahead.stderr

    postgres.admin("INSERT INTO labels (name) VALUES ('made after the clock went wrong')", filled["PGDATABASE"])
    right = run("backup.sh", env_for(postgres, moto, filled, backups))
    assert right.returncode == 0, right.stderr
    right_stamp = stamp_in(right)
    assert right_stamp < ahead_stamp
    # The next run's retention names it too.
    assert "warning: CLOCK: 1 backup(s) whose stamp is more than 10 minutes ahead of, or more than 370 minutes behind," in right.stderr and ahead_stamp in right.stderr

    target, restored = restore_latest(postgres, moto, backups)
    assert "made after the clock went wrong" in labels(postgres, target)
    assert database_comment(postgres, target).endswith(f"s3://{bucket}/{MANIFESTS}{right_stamp}.json")
    assert "CLOCK" not in restored.stderr  # the backup restored has a right stamp


def test_a_backup_taken_with_the_clock_30_days_behind_is_latest_and_flagged(clock_bin, postgres, moto, filled, backups):
    bucket = backups["BACKUP_BUCKET"]
    first = run("backup.sh", env_for(postgres, moto, filled, backups))
    assert first.returncode == 0, first.stderr
    postgres.admin("INSERT INTO labels (name) VALUES ('the newest data')", filled["PGDATABASE"])
    moto.set_clock(timedelta(seconds=5))  # stored after the first one, whatever the second
    try:
        behind = run("backup.sh", clocked(env_for(postgres, moto, filled, backups, RETENTION_DAYS=7), clock_bin,
                                          offset=-timedelta(days=30)))
    finally:
        moto.set_clock(timedelta(0))
    assert behind.returncode == 0, behind.stderr
    behind_stamp = stamp_in(behind)
    assert "this pod's clock is 30d 0h behind the server's time" in behind.stderr
    # Retention (7 days) by the server's time: the first backup is not "37 days old".
    assert len(manifest_keys(moto, bucket)) == 2

    target, restored = restore_latest(postgres, moto, backups)
    assert "the newest data" in labels(postgres, target)
    assert database_comment(postgres, target).endswith(f"{MANIFESTS}{behind_stamp}.json")
    assert f"warning: CLOCK: backup {behind_stamp}: stamp 30d 0h behind the server's time" in restored.stderr


@pytest.mark.parametrize("pod_clock", ["a year ahead", "30 days behind", "right"])
def test_retention_goes_by_the_servers_time_whatever_the_stamps_say(clock_bin, postgres, moto, filled, backups, pod_clock, tmp_path):
    """Backups whose stamps are wrong either way, some old and some young by the server's time,
    and a pod clock that is wrong now: with a retention of 7 days, exactly those the server
    stored more than 7 days ago go, and never the newest 3 good ones by the server's time."""
    bucket = backups["BACKUP_BUCKET"]
    body = dump_of(postgres, filled, tmp_path)
    now = datetime.now(timezone.utc)

    def backup(stamp_moment, stored_days):
        stamp = f"{stamp_of(stamp_moment)}-{uuid.uuid4().hex[:8]}"
        put_backup(moto, bucket, stamp, body, stored=now - timedelta(days=stored_days))
        return f"{MANIFESTS}{stamp}.json"

    young = {
        "stamped 60 days back, stored an hour ago": backup(now - timedelta(days=60), 1 / 24),
        "stamped right, stored 2 days ago": backup(now - timedelta(days=2), 2),
        "stamped a year ahead, stored 3 days ago": backup(now + YEAR - timedelta(days=3), 3),
    }
    old = {
        "stamped a year ahead, stored 40 days ago": backup(now + YEAR - timedelta(days=40), 40),
        "stamped yesterday, stored 30 days ago": backup(now - timedelta(days=1), 30),
        "stamped right, stored 50 days ago": backup(now - timedelta(days=50), 50),
    }
    offset = {"a year ahead": YEAR, "30 days behind": -timedelta(days=30), "right": timedelta(0)}[pod_clock]
    result = run("backup.sh", clocked(env_for(postgres, moto, filled, backups, RETENTION_DAYS=7), clock_bin, offset=offset))
    assert result.returncode == 0, result.stderr
    made = f"{MANIFESTS}{stamp_in(result)}.json"
    remaining = set(manifest_keys(moto, bucket))
    assert remaining == {made, *young.values()}, (remaining - {made}) ^ set(young.values())
    assert "3 backup(s) older than 7 days deleted" in result.stdout
    assert all(backup_is_good(moto, bucket, key) for key in remaining)
    assert_nothing_incomplete_is_visible(moto, bucket)
    # `latest` is the backup just made (the server stored it last), whatever its stamp.
    fetch = run("restore.sh", {**moto.environment(), **backups, "_PGBIN": "/nonexistent"}, RESTORE_STEP="fetch",
                RESTORE_DIR=tmp_path, RESTORE_FROM="latest")
    assert fetch.returncode == 0, fetch.stderr
    assert (tmp_path / "source").read_text().strip() == f"s3://{bucket}/{made}"


def test_the_newest_good_backups_by_the_servers_time_are_kept_even_when_old(clock_bin, postgres, moto, filled, backups, tmp_path):
    """Everything older than the retention: the newest 3 good by the server's time stay (the one
    just made and the 2 stored last), not the 2 with the newest stamps."""
    bucket = backups["BACKUP_BUCKET"]
    body = dump_of(postgres, filled, tmp_path)
    now = datetime.now(timezone.utc)
    stored_last = []
    for days in (20, 21):  # stamped long ago by pods 60 days behind
        stamp = stamp_of(now - timedelta(days=days + 60))
        put_backup(moto, bucket, stamp, body, stored=now - timedelta(days=days))
        stored_last.append(f"{MANIFESTS}{stamp}.json")
    newest_stamps = []
    for days in (30, 31):  # stamped a year ahead, stored before those
        stamp = stamp_of(now + YEAR - timedelta(days=days))
        put_backup(moto, bucket, stamp, body, stored=now - timedelta(days=days))
        newest_stamps.append(f"{MANIFESTS}{stamp}.json")
    result = run("backup.sh", env_for(postgres, moto, filled, backups, RETENTION_DAYS=7))
    assert result.returncode == 0, result.stderr
    assert set(manifest_keys(moto, bucket)) == {f"{MANIFESTS}{stamp_in(result)}.json", *stored_last}


def test_legacy_dumps_without_manifest_are_dated_by_the_server_too(postgres, moto, filled, backups, tmp_path):
    """Without any manifest, `latest` is the dump the server stored last, not the one with the newest stamp."""
    bucket = backups["BACKUP_BUCKET"]
    s3 = moto.shared_client()
    now = datetime.now(timezone.utc)
    postgres.admin("INSERT INTO labels (name) VALUES ('stored last')", filled["PGDATABASE"])
    stored_last = f"{PREFIX}{stamp_of(now - timedelta(days=40))}.dump"
    ahead = f"{PREFIX}{stamp_of(now + YEAR)}.dump"
    with stored_at(moto, now - timedelta(days=2)):
        s3.put_object(Bucket=bucket, Key=ahead, Body=b"not even a dump")
    with stored_at(moto, now - timedelta(hours=1)):
        s3.put_object(Bucket=bucket, Key=stored_last, Body=dump_of(postgres, filled, tmp_path))
    target, restored = restore_latest(postgres, moto, backups)
    assert "stored last" in labels(postgres, target)
    assert database_comment(postgres, target).endswith(f"s3://{bucket}/{stored_last}")


@pytest.mark.parametrize("ran, flagged", [(timedelta(hours=3), False), (timedelta(hours=7), True)])
def test_a_long_backup_is_not_taken_for_a_wrong_clock(moto, backups, postgres, filled, tmp_path, ran, flagged):
    """A stamp is the backup's start, the server's time its end: a backup that ran 3 hours trails
    by 3 hours and is not flagged; one stamped 7 hours back is more than the longest backup (6 h,
    the scheduled Job's deadline) and 10 minutes: the pod's clock was wrong."""
    bucket = backups["BACKUP_BUCKET"]
    now = datetime.now(timezone.utc)
    stamp = f"{stamp_of(now - ran)}-{uuid.uuid4().hex[:8]}"
    put_backup(moto, bucket, stamp, dump_of(postgres, filled, tmp_path), stored=now + timedelta(minutes=1))
    fetch = run("restore.sh", {**moto.environment(), **backups, "_PGBIN": "/nonexistent"}, RESTORE_STEP="fetch",
                RESTORE_DIR=tmp_path, RESTORE_FROM="latest")
    assert fetch.returncode == 0, fetch.stderr
    assert (tmp_path / "source").read_text().strip() == f"s3://{bucket}/{MANIFESTS}{stamp}.json"
    warning = f"warning: CLOCK: backup {stamp}: stamp {int(ran.total_seconds() // 3600)}h 1m behind the server's time"
    assert (warning in fetch.stderr) is flagged, fetch.stderr
