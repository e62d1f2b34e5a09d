"""backup.sh and restore.sh against a real PostgreSQL 15 and a real S3-compatible server.

The helpers these tests share with the other tests of the pod scripts are in support/backup_scripts.py.
"""

import hashlib
import os
import re
import signal
import subprocess
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from components.backups import RESTORE_REFUSED
from support.backup_scripts import (  # noqa: F401  (fixtures)
    ASSETS,
    MANIFESTS,
    PREFIX,
    STAMP_PATTERN,
    accepts_connections,
    assert_nothing_incomplete_is_visible,
    aws_both_ways,
    backup_is_good,
    backups,
    database,
    database_comment,
    days_ago,
    dump_keys,
    dump_of,
    env_for,
    filled,
    filled_dump,
    fresh_database,
    keys,
    manifest_keys,
    moment_of,
    moto,
    no_s3,
    preloaded_commands,
    put_backup,
    read_manifest,
    run,
    script_env,
    seed_backup,
    snapshot,
    stored_at,
    table_count,
)

# Runs the pod scripts against the real servers (conftest: the tiers).
pytestmark = pytest.mark.integration


# ----- backups -------------------------------------------------------------------------


def test_round_trip_restores_every_row_and_sequence(postgres, moto, filled, backups, database):
    result = run("backup.sh", env_for(postgres, moto, filled, backups, CVAT_VERSION="v2.73.0"))
    assert result.returncode == 0, result.stderr
    bucket = backups["BACKUP_BUCKET"]
    (dump,) = dump_keys(moto, bucket)
    (manifest_key,) = manifest_keys(moto, bucket)
    # Nothing else: the upload under .incoming/ is gone.
    assert keys(moto, bucket) == sorted([dump, manifest_key])
    stamp = dump[len(PREFIX):-len(".dump")]
    assert manifest_key == f"{MANIFESTS}{stamp}.json"
    manifest = read_manifest(moto, bucket, manifest_key)
    body = moto.shared_client().get_object(Bucket=bucket, Key=dump)
    content = body["Body"].read()
    assert manifest == {
        "format": 1, "stamp": stamp, "workspace": "acme", "cvatVersion": "v2.73.0", "reason": "scheduled",
        "database": {"key": dump, "size": len(content), "sha256": hashlib.sha256(content).hexdigest()}, "data": None,
    }
    # The stamp: the time, and a random suffix (docs/backups.md); the run that wrote it, in the metadata.
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{8}", stamp), stamp
    assert body["Metadata"] == {"sha256": hashlib.sha256(content).hexdigest(), "backup-run": body["Metadata"]["backup-run"]}
    assert body["Metadata"]["backup-run"].startswith(stamp + "-")
    assert f"backup {stamp} complete" in result.stdout

    fresh = fresh_database(postgres)
    result = run("restore.sh", env_for(postgres, moto, fresh, backups, RESTORE_FROM="latest"))
    assert result.returncode == 0, result.stderr
    assert snapshot(postgres, fresh) == snapshot(postgres, filled)
    assert "voiture 🚗" in postgres.admin("SELECT string_agg(name, ',') FROM labels", fresh["PGDATABASE"])
    assert database_comment(postgres, fresh).endswith(f"s3://{bucket}/{manifest_key}")
    assert accepts_connections(postgres, fresh)
    assert not Path("/tmp/pwned").exists()


def test_steps_run_apart_like_in_the_cronjob_and_restore_job(postgres, moto, filled, backups, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    dump = run("backup.sh", env_for(postgres, moto, filled, backups, BACKUP_STEP="dump", BACKUP_DIR=shared))
    assert dump.returncode == 0, dump.stderr
    assert keys(moto, backups["BACKUP_BUCKET"]) == []
    # The upload step needs no database tools or credentials.
    upload_env = {**moto.environment(), **backups, "RETENTION_DAYS": "30", "_PGBIN": "/nonexistent"}
    upload = run("backup.sh", upload_env, BACKUP_STEP="upload", BACKUP_DIR=shared, BACKUP_REASON="manual")
    assert upload.returncode == 0, upload.stderr
    (key,) = dump_keys(moto, backups["BACKUP_BUCKET"])
    (manifest_key,) = manifest_keys(moto, backups["BACKUP_BUCKET"])
    assert read_manifest(moto, backups["BACKUP_BUCKET"], manifest_key)["reason"] == "manual"
    # What data-backup.sh prune keeps: the backups that remain, this one included.
    assert (shared / "keep-stamps").read_text().split() == [(shared / "stamp").read_text().strip()]

    fresh = fresh_database(postgres)
    restore_dir = tmp_path / "restore"
    restore_dir.mkdir()
    fetch_env = {**moto.environment(), **backups, "_PGBIN": "/nonexistent"}
    fetch = run("restore.sh", fetch_env, RESTORE_STEP="fetch", RESTORE_DIR=restore_dir, RESTORE_FROM=key)
    assert fetch.returncode == 0, fetch.stderr
    restore_env = {"_PGBIN": str(postgres.bindir), **fresh}
    restore = run("restore.sh", restore_env, RESTORE_STEP="restore", RESTORE_DIR=restore_dir, RESTORE_FROM=key)
    assert restore.returncode == 0, restore.stderr
    assert snapshot(postgres, fresh) == snapshot(postgres, filled)


def test_a_dump_sent_in_parts_is_checked_and_named_the_same(postgres, moto, filled, backups):
    """Dumps of SINGLE_PUT_BYTES and more go through `aws s3 cp` (parts) and a HEAD request."""
    result = run("backup.sh", env_for(postgres, moto, filled, backups, SINGLE_PUT_BYTES=1))
    assert result.returncode == 0, result.stderr
    (manifest_key,) = manifest_keys(moto, backups["BACKUP_BUCKET"])
    assert backup_is_good(moto, backups["BACKUP_BUCKET"], manifest_key)
    assert keys(moto, backups["BACKUP_BUCKET"], PREFIX + ".incoming/") == []


def test_an_empty_database_is_skipped_when_asked(postgres, moto, database, backups):
    """The backup before an upgrade of a brand-new stack: no tables, nothing uploaded, success."""
    result = run("backup.sh", env_for(postgres, moto, database, backups, BACKUP_SKIP_EMPTY="true", BACKUP_REASON="before-upgrade"))
    assert result.returncode == 0, result.stderr
    assert "holds no tables yet" in result.stdout
    assert keys(moto, backups["BACKUP_BUCKET"]) == []
    # Once it holds tables, the same Job does back it up.
    postgres.admin("CREATE TABLE t (id int)", database["PGDATABASE"])
    result = run("backup.sh", env_for(postgres, moto, database, backups, BACKUP_SKIP_EMPTY="true", BACKUP_REASON="before-upgrade"))
    assert result.returncode == 0, result.stderr
    (manifest_key,) = manifest_keys(moto, backups["BACKUP_BUCKET"])
    assert read_manifest(moto, backups["BACKUP_BUCKET"], manifest_key)["reason"] == "before-upgrade"


def test_retention_keeps_the_newest_three_good_backups_whatever_their_age(postgres, moto, filled, backups, tmp_path):
    bucket = backups["BACKUP_BUCKET"]
    body = dump_of(postgres, filled, tmp_path)
    old = [days_ago(days) for days in (40, 50, 60, 70)]
    for stamp in old:
        put_backup(moto, bucket, stamp, body)
    # Newer than those but broken: its dump lost its checksum. It does not count as good.
    broken = days_ago(35)
    put_backup(moto, bucket, broken, body, metadata={})
    result = run("backup.sh", env_for(postgres, moto, filled, backups, RETENTION_DAYS=30))
    assert result.returncode == 0, result.stderr
    remaining = manifest_keys(moto, bucket)
    # The new one, then the two newest good old ones; the broken one and the oldest two go.
    assert len(remaining) == 3
    assert remaining[:2] == sorted(MANIFESTS + s + ".json" for s in old[:2])
    assert sorted(dump_keys(moto, bucket)) == sorted(k.replace("backups/", "database/").replace(".json", ".dump") for k in remaining)
    assert "3 backup(s) older than 30 days deleted" in result.stdout
    assert_nothing_incomplete_is_visible(moto, bucket)


def test_retention_never_deletes_the_backup_just_made_and_keeps_young_ones(postgres, moto, filled, backups, tmp_path):
    bucket = backups["BACKUP_BUCKET"]
    body = dump_of(postgres, filled, tmp_path)
    young = [days_ago(0, seconds=3600 * h) for h in (1, 2, 3, 4, 5)]
    for stamp in young:
        put_backup(moto, bucket, stamp, body)
    result = run("backup.sh", env_for(postgres, moto, filled, backups, RETENTION_DAYS=1))
    assert result.returncode == 0, result.stderr
    assert len(manifest_keys(moto, bucket)) == 6
    assert "0 backup(s)" in result.stdout


def test_retention_of_dumps_without_manifest_and_of_abandoned_uploads(postgres, moto, filled, backups):
    s3 = moto.shared_client()
    bucket = backups["BACKUP_BUCKET"]
    legacy_old = [f"{PREFIX}{days_ago(d)}.dump" for d in (31, 45, 400)]
    legacy_kept = [f"{PREFIX}{days_ago(d)}.dump" for d in (1, 29)]
    others = [f"{PREFIX}notes.txt", f"{PREFIX}manual-before-upgrade.dump", f"beta/database/{days_ago(90)}.dump",
              f"{days_ago(90)}.dump", f"acme/data/keys/{'0' * 64}", "acme/data-password"]
    abandoned = f"{PREFIX}.incoming/{days_ago(2)}.dump"
    in_progress = f"{PREFIX}.incoming/{days_ago(0, seconds=60)}.dump"
    for key in legacy_old + legacy_kept + others + [abandoned, in_progress]:
        stamp = re.search(STAMP_PATTERN, key)
        # Stored when their stamp says; the others (no stamp) 400 days ago: old, but never touched.
        with stored_at(moto, moment_of(stamp.group(0)) if stamp else datetime.now(timezone.utc) - timedelta(days=400)):
            s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    result = run("backup.sh", env_for(postgres, moto, filled, backups, RETENTION_DAYS=30))
    assert result.returncode == 0, result.stderr
    remaining = set(keys(moto, bucket))
    # Among themselves the newest 3 stay (the 31-day-old one too), older ones beyond the retention go.
    assert set(legacy_kept + legacy_old[:1] + others + [in_progress]) <= remaining
    assert not {legacy_old[1], legacy_old[2], abandoned} & remaining
    assert "2 backup(s) older than 30 days deleted" in result.stdout


def test_bad_retention_is_refused_before_anything_is_uploaded(postgres, moto, filled, backups):
    # One check of the settings, before anything else: every bad value, one database and bucket.
    for days in ["0", "x", "", "-1", "3651", "99999999999999999999", "1e3", "007"]:
        result = run("backup.sh", env_for(postgres, moto, filled, backups, RETENTION_DAYS=days))
        assert result.returncode != 0 and "RETENTION_DAYS" in result.stderr and "3650" in result.stderr, days
        assert keys(moto, backups["BACKUP_BUCKET"]) == [], days


def test_the_largest_retention_deletes_nothing_recent(postgres, moto, filled, backups, tmp_path):
    """A huge retention used to wrap the date arithmetic and delete every backup."""
    bucket = backups["BACKUP_BUCKET"]
    body = dump_of(postgres, filled, tmp_path)
    for days in (5, 400, 3000):
        put_backup(moto, bucket, days_ago(days), body)
    result = run("backup.sh", env_for(postgres, moto, filled, backups, RETENTION_DAYS=3650))
    assert result.returncode == 0, result.stderr
    assert len(manifest_keys(moto, bucket)) == 4


def test_unreachable_database_fails_and_uploads_nothing(postgres, moto, database, backups):
    from support.servers import free_port

    env = env_for(postgres, moto, database, backups)
    env["PGPORT"] = str(free_port())
    result = run("backup.sh", env)
    assert result.returncode != 0
    assert "pg_dump failed" in result.stderr
    assert keys(moto, backups["BACKUP_BUCKET"]) == []


def test_wrong_s3_credentials_fail_and_upload_nothing(postgres, moto_with_auth, filled):
    bucket = f"backups-{uuid.uuid4().hex[:10]}"
    moto_with_auth.shared_client().create_bucket(Bucket=bucket)
    env = env_for(postgres, moto_with_auth, filled, {"BACKUP_BUCKET": bucket, "BACKUP_PREFIX": PREFIX})
    env["AWS_SECRET_ACCESS_KEY"] = "not-the-secret-key"
    result = run("backup.sh", env)
    assert result.returncode != 0
    assert "cannot upload" in result.stderr
    assert keys(moto_with_auth, bucket) == []
    # The right keys work against the same server.
    good = run("backup.sh", env_for(postgres, moto_with_auth, filled, {"BACKUP_BUCKET": bucket, "BACKUP_PREFIX": PREFIX}))
    assert good.returncode == 0, good.stderr
    assert len(dump_keys(moto_with_auth, bucket)) == 1 and len(manifest_keys(moto_with_auth, bucket)) == 1


def test_missing_bucket_fails_and_uploads_nothing(postgres, moto, filled):
    missing = {"BACKUP_BUCKET": f"missing-{uuid.uuid4().hex[:10]}", "BACKUP_PREFIX": PREFIX}
    result = run("backup.sh", env_for(postgres, moto, filled, missing))
    assert result.returncode != 0
    assert "NoSuchBucket" in result.stderr or "does not exist" in result.stderr
    assert missing["BACKUP_BUCKET"] not in {b["Name"] for b in moto.shared_client().list_buckets()["Buckets"]}


def test_a_broken_dump_is_never_uploaded(postgres, moto, filled, backups, tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    # A pg_dump that exits 0 but writes a truncated archive.
    (fake / "pg_dump").write_text(
        f'#!/bin/sh\n"{postgres.bindir}/pg_dump" "$@" && f=$(echo "$@" | sed "s/.*--file=//") && head -c 300 "$f" > "$f.cut" && mv "$f.cut" "$f"\n'
    )
    (fake / "pg_dump").chmod(0o755)
    env = env_for(postgres, moto, filled, backups)
    env["_PGBIN"] = f"{fake}{os.pathsep}{postgres.bindir}"
    result = run("backup.sh", env)
    assert result.returncode != 0
    assert "nothing was uploaded" in result.stderr
    assert keys(moto, backups["BACKUP_BUCKET"]) == []


# ----- restores ------------------------------------------------------------------------


def test_restore_refuses_a_database_with_tables_and_changes_nothing(postgres, moto, filled, backups):
    seed_backup(postgres, moto, filled, backups)
    postgres.admin("INSERT INTO labels (name) VALUES ('added after the backup')", filled["PGDATABASE"])
    before = snapshot(postgres, filled)
    result = run("restore.sh", env_for(postgres, moto, filled, backups, RESTORE_FROM="latest"))
    assert result.returncode == 3
    assert "refusing to restore" in result.stderr and "restoreForce" in result.stderr
    assert snapshot(postgres, filled) == before

    forced = run("restore.sh", env_for(postgres, moto, filled, backups, RESTORE_FROM="latest", RESTORE_FORCE="true"))
    assert forced.returncode == 0, forced.stderr
    assert "added after the backup" not in postgres.admin("SELECT string_agg(name, ',') FROM labels", filled["PGDATABASE"])


def test_a_request_restores_once_and_a_new_request_restores_again(postgres, moto, filled, backups):
    seed_backup(postgres, moto, filled, backups)
    fresh = fresh_database(postgres)
    first = env_for(postgres, moto, fresh, backups, RESTORE_FROM="latest", RESTORE_REQUEST="r1")
    assert run("restore.sh", dict(first)).returncode == 0
    again = run("restore.sh", dict(first))
    assert again.returncode == 0, again.stderr
    assert "nothing to do" in again.stdout

    # A later backup of the restored database, then a loss, then a forced restore of "latest".
    postgres.admin("INSERT INTO labels (name) VALUES ('added after the restore')", fresh["PGDATABASE"])
    seed_backup(postgres, moto, fresh, backups, stamp=days_ago(0, seconds=-5))
    postgres.admin("DELETE FROM frames; DELETE FROM labels", fresh["PGDATABASE"])
    second = env_for(postgres, moto, fresh, backups, RESTORE_FROM="latest", RESTORE_REQUEST="r2", RESTORE_FORCE="true")
    result = run("restore.sh", second)
    assert result.returncode == 0, result.stderr
    assert "added after the restore" in postgres.admin("SELECT string_agg(name, ',') FROM labels", fresh["PGDATABASE"])
    assert int(postgres.admin("SELECT count(*) FROM frames", fresh["PGDATABASE"])) == 500


@pytest.mark.parametrize("step", ["all", "check"])
def test_a_refusal_comes_before_any_download_and_at_once(postgres, moto, no_s3, filled, backups, step):
    seed_backup(postgres, moto, filled, backups)
    before = snapshot(postgres, filled)
    env = {**env_for(postgres, moto, filled, backups), **no_s3.environment}
    started = time.monotonic()
    result = run("restore.sh", env, RESTORE_FROM="latest", RESTORE_REQUEST="r1", RESTORE_STEP=step)
    assert result.returncode == RESTORE_REFUSED == 3, result.stderr
    assert time.monotonic() - started < 20
    assert "refusing to restore" in result.stderr and "set restoreForce to true" in result.stderr
    assert no_s3.requests == []  # not even the listing behind "latest"
    assert snapshot(postgres, filled) == before and database_comment(postgres, filled) == ""


def test_the_stand_in_sees_the_requests_of_a_download(postgres, moto, no_s3, database, backups):
    # What the tests of "no download" rely on: a fetch against the stand-in reaches it.
    env = {**env_for(postgres, moto, database, backups), **no_s3.environment}
    result = run("restore.sh", env, RESTORE_FROM="latest")
    assert result.returncode == 1 and "cannot list" in result.stderr
    assert no_s3.requests != []
    assert table_count(postgres, database) == 0


def test_a_retried_request_downloads_nothing_and_changes_nothing(postgres, moto, no_s3, filled, backups, tmp_path):
    seed_backup(postgres, moto, filled, backups)
    fresh = fresh_database(postgres)
    first = run("restore.sh", env_for(postgres, moto, fresh, backups, RESTORE_FROM="latest", RESTORE_REQUEST="r1"))
    assert first.returncode == 0, first.stderr
    restored, marker = snapshot(postgres, fresh), database_comment(postgres, fresh)
    assert marker.startswith("labeling-restore: r1 s3://")

    # Retried in one process ...
    env = {**env_for(postgres, moto, fresh, backups), **no_s3.environment}
    again = run("restore.sh", dict(env), RESTORE_FROM="latest", RESTORE_REQUEST="r1")
    assert again.returncode == 0, again.stderr
    assert "nothing to download" in again.stdout
    # ... and as the Job's steps, which share only RESTORE_DIR.
    shared = tmp_path / "shared"
    shared.mkdir()
    for step in ("check", "fetch", "restore"):
        result = run("restore.sh", dict(env), RESTORE_FROM="latest", RESTORE_REQUEST="r1", RESTORE_STEP=step, RESTORE_DIR=shared)
        assert result.returncode == 0, (step, result.stderr)
    assert not (shared / "restore.dump").exists()
    assert no_s3.requests == []
    assert snapshot(postgres, fresh) == restored and database_comment(postgres, fresh) == marker

    # A new request does go to the bucket (here the stand-in, which refuses it).
    other = run("restore.sh", dict(env), RESTORE_FROM="latest", RESTORE_REQUEST="r2", RESTORE_FORCE="true")
    assert other.returncode != 0 and no_s3.requests != []
    assert snapshot(postgres, fresh) == restored and database_comment(postgres, fresh) == marker


def test_the_restore_step_checks_again_for_tables(postgres, moto, filled, backups, tmp_path):
    seed_backup(postgres, moto, filled, backups)
    fresh = fresh_database(postgres)
    env = env_for(postgres, moto, fresh, backups, RESTORE_FROM="latest", RESTORE_REQUEST="r1", RESTORE_DIR=tmp_path)
    assert run("restore.sh", dict(env), RESTORE_STEP="check").returncode == 0
    assert run("restore.sh", dict(env), RESTORE_STEP="fetch").returncode == 0
    assert (tmp_path / "restore.dump").stat().st_size > 0
    # Between the check and the restore, someone writes into the database.
    postgres.admin("CREATE TABLE written_meanwhile (id int)", fresh["PGDATABASE"])
    result = run("restore.sh", dict(env), RESTORE_STEP="restore")
    assert result.returncode == RESTORE_REFUSED, result.stderr
    assert "set restoreForce to true" in result.stderr
    assert table_count(postgres, fresh) == 1 and database_comment(postgres, fresh) == ""


def test_the_restore_step_checks_again_for_the_marker(postgres, moto, filled, backups, tmp_path):
    seed_backup(postgres, moto, filled, backups)
    fresh = fresh_database(postgres)
    env = env_for(postgres, moto, fresh, backups, RESTORE_FROM="latest", RESTORE_REQUEST="r1")
    assert run("restore.sh", dict(env)).returncode == 0
    steps = {**env, "RESTORE_DIR": str(tmp_path)}
    assert run("restore.sh", dict(steps), RESTORE_STEP="check").returncode == 0
    assert run("restore.sh", dict(steps), RESTORE_STEP="fetch").returncode == 0
    assert not (tmp_path / "restore.dump").exists()
    # Between the check and the restore, the marker goes (another restore, by hand).
    postgres.admin(f'COMMENT ON DATABASE "{fresh["PGDATABASE"]}" IS NULL')
    before = snapshot(postgres, fresh)
    result = run("restore.sh", dict(steps), RESTORE_STEP="restore")
    assert result.returncode == RESTORE_REFUSED, result.stderr
    assert snapshot(postgres, fresh) == before


def test_latest_without_backups_names_bucket_and_prefix(postgres, moto, database, backups):
    result = run("restore.sh", env_for(postgres, moto, database, backups, RESTORE_FROM="latest"))
    assert result.returncode != 0
    assert f"no backup found under s3://{backups['BACKUP_BUCKET']}/{PREFIX}" in result.stderr


def test_restore_from_another_bucket(postgres, moto, filled, backups):
    seed_backup(postgres, moto, filled, backups)
    (manifest_key,) = manifest_keys(moto, backups["BACKUP_BUCKET"])
    (dump,) = dump_keys(moto, backups["BACKUP_BUCKET"])
    other = {"BACKUP_BUCKET": f"new-{uuid.uuid4().hex[:10]}", "BACKUP_PREFIX": "newstack/database/"}
    for key in (manifest_key, dump):
        fresh = fresh_database(postgres)
        source = f"s3://{backups['BACKUP_BUCKET']}/{key}"
        result = run("restore.sh", env_for(postgres, moto, fresh, other, RESTORE_FROM=source))
        assert result.returncode == 0, result.stderr
        assert snapshot(postgres, fresh) == snapshot(postgres, filled)
        assert database_comment(postgres, fresh).endswith(source)


def test_latest_skips_backups_whose_size_or_checksum_do_not_match(postgres, moto, filled, backups, tmp_path):
    """What a fault left behind in the past (a truncated dump under the real name) or a
    manifest whose dump is not the one it names: `latest` takes the newest good backup."""
    bucket = backups["BACKUP_BUCKET"]
    good = dump_of(postgres, filled, tmp_path)
    good_stamp = days_ago(3)
    put_backup(moto, bucket, good_stamp, good)
    postgres.admin("INSERT INTO labels (name) VALUES ('only in the bad ones')", filled["PGDATABASE"])
    newer = dump_of(postgres, filled, tmp_path)
    s3 = moto.shared_client()
    # Truncated after its manifest was written: the size no longer matches.
    key = put_backup(moto, bucket, days_ago(2), newer)
    s3.put_object(Bucket=bucket, Key=key, Body=newer[: len(newer) // 2], Metadata={"sha256": hashlib.sha256(newer).hexdigest()})
    # Same size, other bytes and checksum metadata.
    key = put_backup(moto, bucket, days_ago(1), newer)
    s3.put_object(Bucket=bucket, Key=key, Body=newer[::-1], Metadata={"sha256": hashlib.sha256(newer[::-1]).hexdigest()})
    # A manifest whose dump is gone, and one that is not JSON.
    gone = days_ago(0, seconds=60)
    put_backup(moto, bucket, gone, newer)
    s3.delete_object(Bucket=bucket, Key=f"{PREFIX}{gone}.dump")
    s3.put_object(Bucket=bucket, Key=f"{MANIFESTS}{days_ago(0, seconds=30)}.json", Body=b"{not json")

    fresh = fresh_database(postgres)
    result = run("restore.sh", env_for(postgres, moto, fresh, backups, RESTORE_FROM="latest"))
    assert result.returncode == 0, result.stderr
    assert "only in the bad ones" not in postgres.admin("SELECT string_agg(name, ',') FROM labels", fresh["PGDATABASE"])
    assert database_comment(postgres, fresh).endswith(f"s3://{bucket}/{MANIFESTS}{good_stamp}.json")
    assert result.stderr.count("skipping") == 4


def test_a_named_backup_that_is_not_good_is_refused(postgres, moto, filled, backups, tmp_path):
    bucket = backups["BACKUP_BUCKET"]
    body = dump_of(postgres, filled, tmp_path)
    stamp = days_ago(1)
    key = put_backup(moto, bucket, stamp, body)
    moto.shared_client().put_object(Bucket=bucket, Key=key, Body=body[:-10], Metadata={"sha256": hashlib.sha256(body).hexdigest()})
    fresh = fresh_database(postgres)
    for source in (f"{MANIFESTS}{stamp}.json", key):
        result = run("restore.sh", env_for(postgres, moto, fresh, backups, RESTORE_FROM=source))
        assert result.returncode != 0, result.stdout
        assert table_count(postgres, fresh) == 0 and accepts_connections(postgres, fresh)


def test_legacy_dumps_without_metadata_stay_usable(postgres, moto, filled, backups, tmp_path):
    """Dumps of the former layout: no manifest, no sha256. Accepted when pg_restore reads them."""
    bucket = backups["BACKUP_BUCKET"]
    body = dump_of(postgres, filled, tmp_path)
    s3 = moto.shared_client()
    key = f"{PREFIX}{days_ago(2)}.dump"
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    for source in ("latest", key):
        fresh = fresh_database(postgres)
        result = run("restore.sh", env_for(postgres, moto, fresh, backups, RESTORE_FROM=source))
        assert result.returncode == 0, result.stderr
        assert "no sha256 metadata" in result.stdout
        assert snapshot(postgres, fresh) == snapshot(postgres, filled)
    # One that pg_restore cannot read is refused, and changes nothing.
    s3.put_object(Bucket=bucket, Key=key, Body=body[:200])
    fresh = fresh_database(postgres)
    result = run("restore.sh", env_for(postgres, moto, fresh, backups, RESTORE_FROM=key))
    assert result.returncode != 0 and "not a readable pg_dump archive" in result.stderr
    assert table_count(postgres, fresh) == 0


def test_a_corrupt_backup_leaves_the_database_untouched(postgres, moto, filled, backups, database):
    seed_backup(postgres, moto, filled, backups)
    (key,) = dump_keys(moto, backups["BACKUP_BUCKET"])
    s3 = moto.shared_client()
    body = s3.get_object(Bucket=backups["BACKUP_BUCKET"], Key=key)["Body"].read()
    broken_key = key.replace(".dump", "") + "9.dump"  # not a backup name: restored only when named
    s3.put_object(Bucket=backups["BACKUP_BUCKET"], Key=broken_key, Body=body[: len(body) * 2 // 3])
    fresh = fresh_database(postgres)
    result = run("restore.sh", env_for(postgres, moto, fresh, backups, RESTORE_FROM=broken_key))
    assert result.returncode != 0
    assert table_count(postgres, fresh) == 0


def test_bad_settings_are_refused(postgres, moto, filled, backups):
    result = run("restore.sh", env_for(postgres, moto, filled, backups, RESTORE_FROM="it's"))
    assert result.returncode != 0 and "quotes" in result.stderr
    result = run("restore.sh", env_for(postgres, moto, filled, backups, RESTORE_FROM="latest", RESTORE_REQUEST="a b"))
    assert result.returncode != 0 and "spaces" in result.stderr
    result = run("restore.sh", env_for(postgres, moto, filled, backups, RESTORE_FROM="latest", RESTORE_STEP="everything"))
    assert result.returncode != 0 and "RESTORE_STEP" in result.stderr
    result = run("backup.sh", env_for(postgres, moto, filled, backups, BACKUP_STEP="everything"))
    assert result.returncode != 0 and "BACKUP_STEP" in result.stderr
    result = run("backup.sh", env_for(postgres, moto, filled, backups, BACKUP_COMPRESSION="fast"))
    assert result.returncode != 0 and "BACKUP_COMPRESSION" in result.stderr
    result = run("backup.sh", env_for(postgres, moto, filled, backups, BACKUP_REASON="because"))
    assert result.returncode != 0 and "BACKUP_REASON" in result.stderr
    result = run("backup.sh", env_for(postgres, moto, filled, backups, CVAT_VERSION='v2"}'))
    assert result.returncode != 0 and "CVAT_VERSION" in result.stderr
    result = run("backup.sh", env_for(postgres, moto, filled, {**backups, "BACKUP_PREFIX": "acme/dumps/"}))
    assert result.returncode != 0 and "BACKUP_PREFIX" in result.stderr
    assert keys(moto, backups["BACKUP_BUCKET"]) == []


@pytest.mark.parametrize("script", ["backup.sh", "restore.sh", "data-backup.sh", "data-restore.sh", "ensure-buckets.sh", "s3-cli.sh"])
def test_scripts_are_posix_sh(script):
    import shutil

    dash = shutil.which("dash") or "/bin/sh"
    assert subprocess.run([dash, "-n", str(ASSETS / script)]).returncode == 0
    busybox = shutil.which("busybox")
    if busybox:  # the restic image's shell
        assert subprocess.run([busybox, "sh", "-n", str(ASSETS / script)]).returncode == 0


# ----- the harness: the preloaded AWS CLI ------------------------------------------------
# The scripts' `aws` in these tests (script_env) is the installed AWS CLI run from a process that
# loaded it once (servers.AwsCliServer): it must answer as the installed command does.


def test_the_preloaded_aws_cli_answers_as_the_installed_one(moto, tmp_path):
    bucket = f"cli-{uuid.uuid4().hex[:10]}"
    moto.shared_client().create_bucket(Bucket=bucket)
    moto.shared_client().put_object(Bucket=bucket, Key="big", Body=os.urandom(200_000), Metadata={"sha256": "x"})
    cases = {
        "a query on an answer": f"aws s3api head-object --bucket {bucket} --key big --query '[ContentLength, Metadata.sha256]' --output text",
        "an error from the server": f"aws s3api head-object --bucket {bucket} --key missing",
        "a usage error": "aws s3api head-object --bucket",
        "a body from standard input, a relative path": f"echo hello > body && aws s3api put-object --bucket {bucket} --key in --body body "
                                                        f"--query 'ETag' --output text && aws s3 cp s3://{bucket}/in - && cat /dev/null | aws s3 cp - s3://{bucket}/empty",
        "the umask and a file size limit": f"umask 077; ulimit -f 128; aws s3api get-object --bucket {bucket} --key big out; "
                                           "echo $?; ls -l out | cut -c1-10; wc -c < out",
        "the environment, the configuration file": f"printf '[default]\\noutput = json\\n' > config; AWS_CONFIG_FILE=$PWD/config "
                                                   f"aws s3api list-objects-v2 --bucket {bucket} --query 'length(Contents)'",
    }
    answers = {}
    for name, shell in cases.items():
        installed, preloaded = aws_both_ways(moto, tmp_path / uuid.uuid4().hex[:6], shell)
        assert preloaded == installed, name
        answers[name] = installed
    # The cases did what they say: the limit stopped the download, the umask made the file.
    code, out, err = answers["the umask and a file size limit"]
    assert "File too large" in err and out.split() == ["255", "-rw-------", "65536"], (out, err)
    assert (answers["a usage error"][0], answers["an error from the server"][0]) == (2, 255), answers


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT])
def test_the_preloaded_aws_cli_passes_signals_on_and_dies_with_its_script(moto, number):
    """A command that waits (on a server that never answers) gets the signal its client gets and
    ends as the installed one does; when its script is killed, the command it was running goes
    too (no process forked from the preloaded CLI is left)."""
    import socket

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        silent.settimeout(120)
        codes = []
        for installed in (True, False):
            env = script_env({**moto.environment(), "AWS_ENDPOINT_URL": f"http://127.0.0.1:{silent.getsockname()[1]}",
                              "_PGBIN": "/nonexistent"}, installed_aws=installed)
            command = subprocess.Popen(["aws", "s3api", "list-buckets"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            waiting, _ = silent.accept()  # the command has started and waits for the answer
            command.send_signal(number)
            command.communicate(timeout=30)
            waiting.close()
            codes.append(command.returncode)
        assert codes[0] == codes[1], codes

        script = subprocess.Popen(["/bin/sh", "-c", "aws s3api list-buckets --cli-read-timeout 0"], env=env, start_new_session=True)
        waiting, _ = silent.accept()
        os.killpg(script.pid, signal.SIGKILL)
        script.wait(timeout=10)
        deadline = time.monotonic() + 10
        while preloaded_commands() and time.monotonic() < deadline:
            time.sleep(0.1)
        waiting.close()
        assert preloaded_commands() == []
