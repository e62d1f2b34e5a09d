"""A read that fails is not a bad backup: restore.sh never restores an older backup because a
read of the newest one failed in transfer.

The S3 traffic of restore.sh goes through the fault proxy, which answers the reads of the
newest backup with half the body and a Content-Length that agrees (HTTP cannot tell it from
a whole answer), cuts a HEAD answer short, or fails it with 500. A fault that lasts fails
the restore and leaves the database as it was; one that passes (once) is tried again and
the newest backup is restored. A backup the server answers completely as bad (its dump does
not match its manifest) is still skipped for the one before (test_backup_restore).
"""

import hashlib

import pytest

from support.fault_proxy import FaultProxy
from support.backup_scripts import (  # noqa: F401  (fixtures)
    MANIFESTS,
    SCHEMA,
    accepts_connections,
    backups,
    database,
    database_comment,
    days_ago,
    dump_of,
    env_for,
    fresh_database,
    moto,
    put_backup,
    run,
    table_count,
)

# Runs the pod scripts against the real servers (conftest: the tiers).
pytestmark = pytest.mark.integration

NEWEST_ROW = "only in the newest backup"
SNAPSHOT = hashlib.sha256(b"a restic snapshot").hexdigest()

# Where the newest backup is read: (operation, part of the path).
READS = {
    "manifest GET cut short": ("short", "GetObject", "/backups/"),
    "data snapshot HEAD cut short": ("short", "HeadObject", "/snapshots/"),
    "dump HEAD fails (500)": ("error", "HeadObject", "/database/"),
    "dump GET cut short": ("short", "GetObject", "/database/"),
}


@pytest.fixture(scope="module")
def proxy(moto):
    with FaultProxy(moto.url) as proxy_:
        yield proxy_


@pytest.fixture(scope="module")
def two_dumps(postgres, tmp_path_factory):
    """Dumps of a filled database before and after a row was added (made once: each test stores
    them in a bucket of its own)."""
    filled = fresh_database(postgres)
    postgres.admin(SCHEMA, filled["PGDATABASE"])
    older = dump_of(postgres, filled, tmp_path_factory.mktemp("dumps"))
    postgres.admin(f"INSERT INTO labels (name) VALUES ('{NEWEST_ROW}')", filled["PGDATABASE"])
    return older, dump_of(postgres, filled, tmp_path_factory.mktemp("dumps"))


@pytest.fixture
def two_backups(moto, two_dumps, backups):
    """An older good backup (2 days) and a newer one (1 hour, with a data snapshot) that holds a
    row the older one does not. Returns their manifest keys, newest first."""
    bucket = backups["BACKUP_BUCKET"]
    older = days_ago(2)
    put_backup(moto, bucket, older, two_dumps[0])
    newer = days_ago(0, seconds=3600)
    put_backup(moto, bucket, newer, two_dumps[1], snapshot_id=SNAPSHOT)
    # The snapshot's file in the repository (all that restore.sh looks at without restic).
    moto.shared_client().put_object(Bucket=bucket, Key=f"acme/data/snapshots/{SNAPSHOT}", Body=b"snapshot")
    return [f"{MANIFESTS}{newer}.json", f"{MANIFESTS}{older}.json"]


def restore_through(proxy, postgres, moto, target, backups, **extra):
    env = env_for(postgres, moto, target, backups, RESTORE_FROM="latest", AWS_MAX_ATTEMPTS=2, AWS_RETRY_MODE="standard", **extra)
    return run("restore.sh", proxy.environment(env))


def labels(postgres, target):
    return postgres.admin("SELECT coalesce(string_agg(name, ','), '') FROM labels", target["PGDATABASE"])


@pytest.mark.parametrize("read", sorted(READS))
def test_a_read_of_the_newest_backup_that_keeps_failing_fails_the_restore(proxy, postgres, moto, backups, two_backups, read):
    action, operation, where = READS[read]
    target = fresh_database(postgres)
    injected = proxy.inject(action, operation=operation, path_contains=where)
    try:
        result = restore_through(proxy, postgres, moto, target, backups)
    finally:
        proxy.clear()
    assert injected.hits >= 3, (injected.hits, result.returncode, result.stdout, result.stderr)
    assert result.returncode != 0, result.stdout
    assert "a read that fails is no reason to take an older backup" in result.stderr
    assert "skipping" not in result.stderr
    # Nothing restored, not the older backup either.
    assert table_count(postgres, target) == 0 and database_comment(postgres, target) == ""
    assert accepts_connections(postgres, target)


@pytest.mark.parametrize("read", sorted(READS))
def test_a_read_that_fails_once_is_tried_again(proxy, postgres, moto, backups, two_backups, read):
    action, operation, where = READS[read]
    target = fresh_database(postgres)
    # Past the AWS CLI's own retry (2 attempts here): the script's.
    injected = proxy.inject(action, operation=operation, path_contains=where, times=2)
    try:
        result = restore_through(proxy, postgres, moto, target, backups)
    finally:
        proxy.clear()
    assert injected.hits == 2
    assert result.returncode == 0, result.stderr
    assert "trying again" in result.stderr and "skipping" not in result.stderr
    assert NEWEST_ROW in labels(postgres, target)
    assert database_comment(postgres, target).endswith(f"s3://{backups['BACKUP_BUCKET']}/{two_backups[0]}")


def test_a_named_backup_whose_manifest_read_keeps_failing_says_so(proxy, postgres, moto, backups, two_backups):
    target = fresh_database(postgres)
    injected = proxy.inject("short", operation="GetObject", path_contains="/backups/")
    try:
        result = restore_through(proxy, postgres, moto, target, {**backups, "RESTORE_FROM": two_backups[0]})
    finally:
        proxy.clear()
    assert injected.hits >= 3
    assert result.returncode != 0
    assert f"cannot read s3://{backups['BACKUP_BUCKET']}/{two_backups[0]}" in result.stderr
    assert "not a good backup" not in result.stderr
    assert table_count(postgres, target) == 0


def test_a_bad_newest_backup_is_still_skipped_through_the_proxy(proxy, postgres, moto, backups, two_backups):
    """The server's complete answer that the newest backup is bad (its snapshot is gone): the
    older one is restored, as before."""
    moto.shared_client().delete_object(Bucket=backups["BACKUP_BUCKET"], Key=f"acme/data/snapshots/{SNAPSHOT}")
    target = fresh_database(postgres)
    result = restore_through(proxy, postgres, moto, target, backups)
    assert result.returncode == 0, result.stderr
    assert f"skipping s3://{backups['BACKUP_BUCKET']}/{two_backups[0]}: not a good backup" in result.stderr
    assert NEWEST_ROW not in labels(postgres, target)
    assert database_comment(postgres, target).endswith(two_backups[1])

