"""backup.sh and restore.sh against a real PostgreSQL 15 and a real S3-compatible server."""

import os
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from components.database import RESTORE_REFUSED

ASSETS = Path(__file__).resolve().parent.parent / "components" / "assets"
BIN = Path(sys.executable).parent
# Shell metacharacters of every kind: the scripts must pass it through untouched.
NASTY_PASSWORD = "p@ss w'o\"rd $(touch /tmp/pwned) `id` ;|&<>*?\\!#"
NAME_PATTERN = r"^\d{8}T\d{6}Z\.dump$"

SCHEMA = """
CREATE SEQUENCE invoice_numbers START 1000 INCREMENT 7;
CREATE TABLE labels (
    id serial PRIMARY KEY,
    name text NOT NULL,
    color bytea,
    created timestamptz NOT NULL DEFAULT '2026-01-02 03:04:05+00'
);
CREATE INDEX labels_name ON labels (lower(name));
CREATE TABLE frames (
    id bigserial PRIMARY KEY,
    label_id integer REFERENCES labels (id),
    payload bytea NOT NULL,
    note text
);
INSERT INTO labels (name, color) VALUES
    ('voiture 🚗', '\\x00ff7f'), ('Straße', '\\xdeadbeef00'), ('猫', NULL), ('emoji 😀 and ''quotes''', '\\x');
INSERT INTO frames (label_id, payload, note)
    SELECT 1 + (n % 4), decode(md5(n::text), 'hex') || '\\x00'::bytea, 'frame ' || n FROM generate_series(1, 500) AS n;
SELECT nextval('invoice_numbers'), nextval('invoice_numbers'), nextval('invoice_numbers');
"""
SNAPSHOT = """
SELECT 'labels', md5(string_agg(t::text, '|' ORDER BY id)) FROM labels t
UNION ALL SELECT 'frames', md5(string_agg(t::text, '|' ORDER BY id)) FROM frames t
UNION ALL SELECT 'invoice_numbers', last_value::text FROM invoice_numbers
UNION ALL SELECT 'labels_id_seq', last_value::text FROM labels_id_seq
UNION ALL SELECT 'frames_id_seq', last_value::text FROM frames_id_seq
UNION ALL SELECT 'index', indexdef FROM pg_indexes WHERE indexname = 'labels_name'
ORDER BY 1
"""


def run(script, env, **extra):
    environment = {
        "PATH": f"{BIN}{os.pathsep}{env.pop('_PGBIN')}{os.pathsep}{os.environ['PATH']}",
        "HOME": "/tmp",
        **env,
        **{key: str(value) for key, value in extra.items()},
    }
    return subprocess.run(["/bin/sh", str(ASSETS / script)], env=environment, capture_output=True, text=True, timeout=300)


@pytest.fixture
def database(postgres):
    """A fresh database with its owner (whose password is full of shell metacharacters)."""
    suffix = uuid.uuid4().hex[:8]
    return postgres.create_database(f"cvat_{suffix}", f"cvat_{suffix}", NASTY_PASSWORD)


@pytest.fixture
def filled(postgres, database):
    postgres.admin(SCHEMA, database["PGDATABASE"])
    return database


@pytest.fixture
def backups(moto):
    """An empty backup bucket and this test's prefix."""
    bucket = f"backups-{uuid.uuid4().hex[:10]}"
    moto.client().create_bucket(Bucket=bucket)
    return {"BACKUP_BUCKET": bucket, "BACKUP_PREFIX": "acme/database/"}


@pytest.fixture
def no_s3():
    """An S3 endpoint that records every request and refuses it (403): a test that expects no
    download points the scripts here and asserts that nothing came."""
    from s3_stub import StubS3Server

    with StubS3Server("access-denied") as server:
        server.environment = {
            "AWS_ENDPOINT_URL": server.url, "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "test-access-key", "AWS_SECRET_ACCESS_KEY": "test-secret-key",
        }
        yield server


def env_for(postgres, moto, database, backups, **extra):
    env = {"_PGBIN": str(postgres.bindir), **moto.environment(), **database, **backups, "RETENTION_DAYS": "30"}
    return {**env, **{key: str(value) for key, value in extra.items()}}


def keys(moto, bucket, prefix=""):
    return sorted(o["Key"] for o in moto.client().list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []))


def snapshot(postgres, database):
    return postgres.admin(SNAPSHOT, database["PGDATABASE"])


def table_count(postgres, database):
    return int(postgres.admin("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'", database["PGDATABASE"]))


def test_round_trip_restores_every_row_and_sequence(postgres, moto, filled, backups, database):
    result = run("backup.sh", env_for(postgres, moto, filled, backups))
    assert result.returncode == 0, result.stderr
    stored = keys(moto, backups["BACKUP_BUCKET"])
    assert len(stored) == 1 and stored[0].startswith("acme/database/")
    assert __import__("re").match(NAME_PATTERN, stored[0].rsplit("/", 1)[1])
    assert "read back completely" in result.stdout

    fresh = postgres.create_database(f"fresh_{uuid.uuid4().hex[:8]}", f"fresh_{uuid.uuid4().hex[:8]}", NASTY_PASSWORD)
    result = run("restore.sh", env_for(postgres, moto, fresh, backups, RESTORE_FROM="latest"))
    assert result.returncode == 0, result.stderr
    assert snapshot(postgres, fresh) == snapshot(postgres, filled)
    assert "voiture 🚗" in postgres.admin("SELECT string_agg(name, ',') FROM labels", fresh["PGDATABASE"])
    assert not Path("/tmp/pwned").exists()


def test_steps_run_apart_like_in_the_cronjob_and_restore_job(postgres, moto, filled, backups, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    dump = run("backup.sh", env_for(postgres, moto, filled, backups, BACKUP_STEP="dump", BACKUP_DIR=shared))
    assert dump.returncode == 0, dump.stderr
    assert keys(moto, backups["BACKUP_BUCKET"]) == []
    # The upload step needs no database tools or credentials.
    upload_env = {**moto.environment(), **backups, "RETENTION_DAYS": "30", "_PGBIN": "/nonexistent"}
    upload = run("backup.sh", upload_env, BACKUP_STEP="upload", BACKUP_DIR=shared)
    assert upload.returncode == 0, upload.stderr
    (key,) = keys(moto, backups["BACKUP_BUCKET"])

    fresh = postgres.create_database(f"fresh_{uuid.uuid4().hex[:8]}", f"fresh_{uuid.uuid4().hex[:8]}", NASTY_PASSWORD)
    restore_dir = tmp_path / "restore"
    restore_dir.mkdir()
    fetch_env = {**moto.environment(), **backups, "_PGBIN": "/nonexistent"}
    fetch = run("restore.sh", fetch_env, RESTORE_STEP="fetch", RESTORE_DIR=restore_dir, RESTORE_FROM=key)
    assert fetch.returncode == 0, fetch.stderr
    restore_env = {"_PGBIN": str(postgres.bindir), **fresh}
    restore = run("restore.sh", restore_env, RESTORE_STEP="restore", RESTORE_DIR=restore_dir, RESTORE_FROM=key)
    assert restore.returncode == 0, restore.stderr
    assert snapshot(postgres, fresh) == snapshot(postgres, filled)


def test_retention_deletes_only_old_backups_under_the_prefix(postgres, moto, filled, backups):
    s3 = moto.client()
    bucket = backups["BACKUP_BUCKET"]
    now = datetime.now(timezone.utc)

    def stamp(days_ago):
        return (now - timedelta(days=days_ago)).strftime("%Y%m%dT%H%M%SZ") + ".dump"

    old = [f"acme/database/{stamp(31)}", f"acme/database/{stamp(400)}"]
    kept = [
        f"acme/database/{stamp(29)}",
        f"acme/database/{stamp(1)}",
        "acme/database/notes.txt",
        "acme/database/manual-before-upgrade.dump",
        f"beta/database/{stamp(90)}",
        f"{stamp(90)}",
    ]
    for key in old + kept:
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    result = run("backup.sh", env_for(postgres, moto, filled, backups, RETENTION_DAYS=30))
    assert result.returncode == 0, result.stderr
    remaining = keys(moto, bucket)
    assert not set(old) & set(remaining)
    assert set(kept) <= set(remaining)
    assert len(remaining) == len(kept) + 1  # plus the new backup
    assert "2 backup(s) older than 30 days deleted" in result.stdout


def test_unreachable_database_fails_and_uploads_nothing(postgres, moto, database, backups):
    from servers import free_port

    env = env_for(postgres, moto, database, backups)
    env["PGPORT"] = str(free_port())
    result = run("backup.sh", env)
    assert result.returncode != 0
    assert "pg_dump failed" in result.stderr
    assert keys(moto, backups["BACKUP_BUCKET"]) == []


def test_wrong_s3_credentials_fail_and_upload_nothing(postgres, moto_with_auth, filled):
    bucket = f"backups-{uuid.uuid4().hex[:10]}"
    moto_with_auth.client().create_bucket(Bucket=bucket)
    env = env_for(postgres, moto_with_auth, filled, {"BACKUP_BUCKET": bucket, "BACKUP_PREFIX": "acme/database/"})
    env["AWS_SECRET_ACCESS_KEY"] = "not-the-secret-key"
    result = run("backup.sh", env)
    assert result.returncode != 0
    assert "cannot upload" in result.stderr
    assert keys(moto_with_auth, bucket) == []
    # The right keys work against the same server.
    good = run("backup.sh", env_for(postgres, moto_with_auth, filled, {"BACKUP_BUCKET": bucket, "BACKUP_PREFIX": "acme/database/"}))
    assert good.returncode == 0, good.stderr
    assert len(keys(moto_with_auth, bucket)) == 1


def test_missing_bucket_fails_and_uploads_nothing(postgres, moto, filled):
    missing = {"BACKUP_BUCKET": f"missing-{uuid.uuid4().hex[:10]}", "BACKUP_PREFIX": "acme/database/"}
    result = run("backup.sh", env_for(postgres, moto, filled, missing))
    assert result.returncode != 0
    assert "NoSuchBucket" in result.stderr or "does not exist" in result.stderr
    assert missing["BACKUP_BUCKET"] not in {b["Name"] for b in moto.client().list_buckets()["Buckets"]}


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


def test_restore_refuses_a_database_with_tables_and_changes_nothing(postgres, moto, filled, backups):
    assert run("backup.sh", env_for(postgres, moto, filled, backups)).returncode == 0
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
    assert run("backup.sh", env_for(postgres, moto, filled, backups)).returncode == 0
    fresh = postgres.create_database(f"fresh_{uuid.uuid4().hex[:8]}", f"fresh_{uuid.uuid4().hex[:8]}", NASTY_PASSWORD)
    first = env_for(postgres, moto, fresh, backups, RESTORE_FROM="latest", RESTORE_REQUEST="r1")
    assert run("restore.sh", dict(first)).returncode == 0
    again = run("restore.sh", dict(first))
    assert again.returncode == 0, again.stderr
    assert "nothing to do" in again.stdout

    # A later backup of the restored database, then a loss, then a forced restore of "latest".
    postgres.admin("INSERT INTO labels (name) VALUES ('added after the restore')", fresh["PGDATABASE"])
    assert run("backup.sh", env_for(postgres, moto, fresh, backups)).returncode == 0
    postgres.admin("DELETE FROM frames; DELETE FROM labels", fresh["PGDATABASE"])
    second = env_for(postgres, moto, fresh, backups, RESTORE_FROM="latest", RESTORE_REQUEST="r2", RESTORE_FORCE="true")
    result = run("restore.sh", second)
    assert result.returncode == 0, result.stderr
    assert "added after the restore" in postgres.admin("SELECT string_agg(name, ',') FROM labels", fresh["PGDATABASE"])
    assert int(postgres.admin("SELECT count(*) FROM frames", fresh["PGDATABASE"])) == 500


def database_comment(postgres, database):
    return postgres.admin(
        "SELECT coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database WHERE datname = current_database()",
        database["PGDATABASE"],
    )


@pytest.mark.parametrize("step", ["all", "check"])
def test_a_refusal_comes_before_any_download_and_at_once(postgres, moto, no_s3, filled, backups, step):
    assert run("backup.sh", env_for(postgres, moto, filled, backups)).returncode == 0
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
    assert run("backup.sh", env_for(postgres, moto, filled, backups)).returncode == 0
    fresh = postgres.create_database(f"fresh_{uuid.uuid4().hex[:8]}", f"fresh_{uuid.uuid4().hex[:8]}", NASTY_PASSWORD)
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
    assert run("backup.sh", env_for(postgres, moto, filled, backups)).returncode == 0
    fresh = postgres.create_database(f"fresh_{uuid.uuid4().hex[:8]}", f"fresh_{uuid.uuid4().hex[:8]}", NASTY_PASSWORD)
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
    assert run("backup.sh", env_for(postgres, moto, filled, backups)).returncode == 0
    fresh = postgres.create_database(f"fresh_{uuid.uuid4().hex[:8]}", f"fresh_{uuid.uuid4().hex[:8]}", NASTY_PASSWORD)
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
    assert f"no backup found under s3://{backups['BACKUP_BUCKET']}/acme/database/" in result.stderr


def test_restore_from_another_bucket(postgres, moto, filled, backups):
    assert run("backup.sh", env_for(postgres, moto, filled, backups)).returncode == 0
    (key,) = keys(moto, backups["BACKUP_BUCKET"])
    fresh = postgres.create_database(f"fresh_{uuid.uuid4().hex[:8]}", f"fresh_{uuid.uuid4().hex[:8]}", NASTY_PASSWORD)
    other = {"BACKUP_BUCKET": f"new-{uuid.uuid4().hex[:10]}", "BACKUP_PREFIX": "newstack/database/"}
    source = f"s3://{backups['BACKUP_BUCKET']}/{key}"
    result = run("restore.sh", env_for(postgres, moto, fresh, other, RESTORE_FROM=source))
    assert result.returncode == 0, result.stderr
    assert snapshot(postgres, fresh) == snapshot(postgres, filled)


def test_a_corrupt_backup_leaves_the_database_untouched(postgres, moto, filled, backups, database):
    assert run("backup.sh", env_for(postgres, moto, filled, backups)).returncode == 0
    (key,) = keys(moto, backups["BACKUP_BUCKET"])
    s3 = moto.client()
    body = s3.get_object(Bucket=backups["BACKUP_BUCKET"], Key=key)["Body"].read()
    broken_key = key.replace(".dump", "") + "9.dump"  # a later name, so "latest" picks it
    s3.put_object(Bucket=backups["BACKUP_BUCKET"], Key=broken_key, Body=body[: len(body) * 2 // 3])
    fresh = postgres.create_database(f"fresh_{uuid.uuid4().hex[:8]}", f"fresh_{uuid.uuid4().hex[:8]}", NASTY_PASSWORD)
    result = run("restore.sh", env_for(postgres, moto, fresh, backups, RESTORE_FROM=broken_key))
    assert result.returncode != 0
    assert table_count(postgres, fresh) == 0


def test_bad_settings_are_refused(postgres, moto, filled, backups):
    for days in ("0", "x", ""):
        result = run("backup.sh", env_for(postgres, moto, filled, backups, RETENTION_DAYS=days))
        assert result.returncode != 0 and "RETENTION_DAYS" in result.stderr
        assert keys(moto, backups["BACKUP_BUCKET"]) == []
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
    assert keys(moto, backups["BACKUP_BUCKET"]) == []


@pytest.mark.parametrize("script", ["backup.sh", "restore.sh", "ensure-buckets.sh", "s3-cli.sh"])
def test_scripts_are_posix_sh(script):
    import shutil

    dash = shutil.which("dash") or "/bin/sh"
    assert subprocess.run([dash, "-n", str(ASSETS / script)]).returncode == 0
