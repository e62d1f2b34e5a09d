"""A backup is complete or invisible, whatever goes wrong on the way to the bucket.

The S3 traffic of backup.sh goes through a proxy (fault_proxy.py) that cuts, damages, drops
or fails requests; the script is also killed mid-upload and run out of disk. After each
fault: nothing incomplete is visible (every manifest names a good backup, every dump holds
the bytes its checksum says), `latest` still finds the newest good backup, and the backups
that were there are all still there (retention never empties the prefix).
"""

import os
import signal
import subprocess
import time
import uuid

import pytest

from support.fault_proxy import FaultProxy
from support.backup_scripts import (  # noqa: F401  (fixtures)
    ASSETS,
    MANIFESTS,
    PREFIX,
    accepts_connections,
    assert_nothing_incomplete_is_visible,
    backup_is_good,
    backups,
    database,
    days_ago,
    dump_keys,
    dump_of,
    env_for,
    filled,
    filled_dump,
    fresh_database,
    manifest_keys,
    moto,
    put_backup,
    run,
    script_env,
    snapshot,
    table_count,
)

# Runs the pod scripts against the real servers (conftest: the tiers).
pytestmark = pytest.mark.integration

# Faults that last (every attempt fails): the backup must fail and leave nothing.
LASTING = {
    "upload cut in half": ("truncate", {"path_contains": "/.incoming/"}),
    "upload damaged (same size)": ("corrupt", {"path_contains": "/.incoming/"}),
    "upload stored, then 500": ("error-after", {"path_contains": "/.incoming/"}),
    "connection dropped mid-upload": ("drop", {"path_contains": "/.incoming/"}),
    "copy to the final name stored, then 500": ("error-after", {"copy": True}),
    "manifest stored, then 500": ("error-after", {"path_contains": "/backups/"}),
    "manifest cut in half": ("truncate", {"path_contains": "/backups/"}),
    # Dumps of 512 MiB and more go through `aws s3 cp` (in parts) and a HEAD request.
    "upload in parts cut in half": ("truncate", {"path_contains": "/.incoming/"}, {"SINGLE_PUT_BYTES": "1"}),
}
# Faults that pass (the client's retry gets through): the backup completes.
PASSING = {
    "upload stored, then 500, once": ("error-after", {"path_contains": "/.incoming/", "times": 1}),
    "connection dropped mid-upload, once": ("drop", {"path_contains": "/.incoming/", "times": 1}),
    "copy failed, once": ("error", {"copy": True, "times": 1}),
    "deleting the upload fails": ("error", {"method": "DELETE"}),
}


@pytest.fixture(scope="module")
def proxy(moto):
    with FaultProxy(moto.url) as proxy_:
        yield proxy_


@pytest.fixture
def bucket_with_good_backups(postgres, moto, filled, filled_dump, backups):
    """Three good backups, all older than the retention (1 day), of the database as it was; then
    the database changes. Returns their manifest keys, newest first."""
    stamps = [days_ago(d) for d in (200, 300, 400)]
    for stamp in stamps:
        put_backup(moto, backups["BACKUP_BUCKET"], stamp, filled_dump)
    postgres.admin("INSERT INTO labels (name) VALUES ('after the good backups')", filled["PGDATABASE"])
    return [f"{MANIFESTS}{s}.json" for s in stamps]


def backup_through(proxy, postgres, moto, database, backups, **extra):
    env = env_for(postgres, moto, database, backups, RETENTION_DAYS=1, AWS_MAX_ATTEMPTS=2, AWS_RETRY_MODE="standard", **extra)
    return run("backup.sh", proxy.environment(env) if proxy else env)


def latest_choice(postgres, moto, backups, tmp_path):
    """What `latest` resolves to (restore.sh's fetch step, straight to the server)."""
    work = tmp_path / f"fetch-{uuid.uuid4().hex[:6]}"
    work.mkdir()
    env = {**moto.environment(), **backups, "_PGBIN": "/nonexistent"}
    result = run("restore.sh", env, RESTORE_STEP="fetch", RESTORE_DIR=work, RESTORE_FROM="latest")
    assert result.returncode == 0, result.stderr
    return (work / "source").read_text().strip()


def assert_the_good_backups_are_intact(postgres, moto, backups, good, tmp_path):
    bucket = backups["BACKUP_BUCKET"]
    assert_nothing_incomplete_is_visible(moto, bucket)
    for key in good:
        assert backup_is_good(moto, bucket, key), f"{key} was lost"
    assert latest_choice(postgres, moto, backups, tmp_path) == f"s3://{bucket}/{good[0]}"


@pytest.mark.parametrize("fault", sorted(LASTING))
def test_a_lasting_fault_leaves_nothing_visible(proxy, postgres, moto, filled, backups, bucket_with_good_backups, fault, tmp_path):
    action, match, *env = LASTING[fault]
    injected = proxy.inject(action, **match)
    try:
        result = backup_through(proxy, postgres, moto, filled, backups, **(env[0] if env else {}))
    finally:
        proxy.clear()
    assert injected.hits >= 1, "the fault never applied"
    assert result.returncode != 0, result.stdout
    assert "deleted" in result.stderr or "nothing is visible" in result.stderr or "cannot" in result.stderr
    assert manifest_keys(moto, backups["BACKUP_BUCKET"]) == sorted(bucket_with_good_backups)
    assert len(dump_keys(moto, backups["BACKUP_BUCKET"])) == 3
    assert_the_good_backups_are_intact(postgres, moto, backups, bucket_with_good_backups, tmp_path)


@pytest.mark.parametrize("fault", sorted(PASSING))
def test_a_passing_fault_still_makes_a_whole_backup(proxy, postgres, moto, filled, backups, bucket_with_good_backups, fault, tmp_path):
    action, match = PASSING[fault]
    injected = proxy.inject(action, **match)
    try:
        result = backup_through(proxy, postgres, moto, filled, backups)
    finally:
        proxy.clear()
    assert injected.hits >= 1
    assert result.returncode == 0, result.stderr
    bucket = backups["BACKUP_BUCKET"]
    assert_nothing_incomplete_is_visible(moto, bucket)
    manifests = manifest_keys(moto, bucket)
    # The new one, and the newest two of the old ones (the newest 3 good are kept whatever their age).
    assert len(manifests) == 3 and manifests[:2] == sorted(bucket_with_good_backups[:2])
    assert latest_choice(postgres, moto, backups, tmp_path) == f"s3://{bucket}/{manifests[-1]}"


def test_a_failed_listing_deletes_nothing(proxy, postgres, moto, filled, backups, bucket_with_good_backups, tmp_path):
    """The listing that retention works from fails: the backup itself is complete, the job says
    it failed, and not one backup is deleted."""
    injected = proxy.inject("error", method="GET", query_contains="list-type=2")
    try:
        result = backup_through(proxy, postgres, moto, filled, backups)
    finally:
        proxy.clear()
    assert injected.hits >= 1
    assert result.returncode != 0
    assert "no old backup was deleted" in result.stderr
    bucket = backups["BACKUP_BUCKET"]
    manifests = manifest_keys(moto, bucket)
    assert len(manifests) == 4 and set(bucket_with_good_backups) < set(manifests)
    assert_nothing_incomplete_is_visible(moto, bucket)
    assert latest_choice(postgres, moto, backups, tmp_path) == f"s3://{bucket}/{manifests[-1]}"


@pytest.mark.parametrize("where", ["mid-upload", "before the manifest"])
def test_a_killed_backup_leaves_nothing_incomplete(proxy, postgres, moto, filled, backups, bucket_with_good_backups, where, tmp_path):
    match = {"path_contains": "/.incoming/"} if where == "mid-upload" else {"path_contains": "/backups/"}
    stall = proxy.inject("stall", **match)
    # The installed AWS CLI: the process killed with the script is the one that was uploading.
    env = script_env(proxy.environment(env_for(postgres, moto, filled, backups, RETENTION_DAYS=1)), installed_aws=True)
    process = subprocess.Popen(["/bin/sh", str(ASSETS / "backup.sh")], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)
    try:
        assert stall.stalled.wait(120), process.communicate(timeout=5)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        proxy.clear()
    bucket = backups["BACKUP_BUCKET"]
    assert manifest_keys(moto, bucket) == sorted(bucket_with_good_backups)
    if where == "mid-upload":
        assert len(dump_keys(moto, bucket)) == 3
    assert_the_good_backups_are_intact(postgres, moto, backups, bucket_with_good_backups, tmp_path)


def test_a_full_disk_while_dumping_uploads_nothing(postgres, moto, filled, backups, bucket_with_good_backups, tmp_path):
    postgres.admin("INSERT INTO frames (label_id, payload) SELECT 1, decode(md5(n::text) || md5((n + 1)::text), 'hex') "
                   "FROM generate_series(1, 20000) AS n", filled["PGDATABASE"])
    env = script_env(env_for(postgres, moto, filled, backups, RETENTION_DAYS=1))
    # Files of at most 64 KiB (in 512-byte blocks): the dump does not fit.
    result = subprocess.run(["/bin/sh", "-c", f'ulimit -f 128; exec /bin/sh "{ASSETS / "backup.sh"}"'], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "pg_dump failed; nothing was uploaded" in result.stderr
    assert manifest_keys(moto, backups["BACKUP_BUCKET"]) == sorted(bucket_with_good_backups)
    assert_the_good_backups_are_intact(postgres, moto, backups, bucket_with_good_backups, tmp_path)


def test_a_full_disk_while_downloading_changes_nothing(postgres, moto, filled, backups, bucket_with_good_backups, tmp_path):
    postgres.admin("INSERT INTO frames (label_id, payload) SELECT 1, decode(md5(n::text) || md5((n + 1)::text), 'hex') "
                   "FROM generate_series(1, 20000) AS n", filled["PGDATABASE"])
    put_backup(moto, backups["BACKUP_BUCKET"], days_ago(0), dump_of(postgres, filled, tmp_path))
    target = fresh_database(postgres)
    postgres.admin("CREATE TABLE kept (id int); INSERT INTO kept VALUES (1)", target["PGDATABASE"])
    env = script_env(env_for(postgres, moto, target, backups, RESTORE_FROM="latest", RESTORE_FORCE="true"))
    result = subprocess.run(["/bin/sh", "-c", f'ulimit -f 128; exec /bin/sh "{ASSETS / "restore.sh"}"'], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "cannot download" in result.stderr
    assert postgres.admin("SELECT string_agg(tablename, ',') FROM pg_tables WHERE schemaname = 'public'", target["PGDATABASE"]) == "kept"
    assert accepts_connections(postgres, target)
