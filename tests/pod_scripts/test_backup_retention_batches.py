"""Retention deletes in batches: one DeleteObjects request per thousand keys, with the same
guarantees as one by one (manifests before their dumps, the newest 3 good backups and the
one just made kept, nothing else touched).

The requests are counted through the fault proxy, by S3 operation: the time it takes is not
what is tested (it used to be one request, and a read, per backup deleted).
"""

import hashlib
import json
import math
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest

from support.fault_proxy import FaultProxy
from support.backup_scripts import (  # noqa: F401  (fixtures)
    MANIFESTS,
    PREFIX,
    assert_nothing_incomplete_is_visible,
    backup_is_good,
    backups,
    database,
    dump_keys,
    env_for,
    filled,
    manifest_keys,
    moto,
    run,
    stamp_of,
)

# Runs the pod scripts against the real servers (conftest: the tiers).
pytestmark = pytest.mark.integration

OLD = 1050


@pytest.fixture(scope="module")
def proxy(moto):
    with FaultProxy(moto.url) as proxy_:
        yield proxy_


def fill(moto, bucket, stamps, with_manifests):
    """A backup (or a dump alone) per stamp, stored 100 days ago (all in a few seconds: the
    stamp breaks the ties of the server's time)."""
    body = b"an old dump"
    digest = hashlib.sha256(body).hexdigest()
    s3 = moto.shared_client()

    def put(stamp):
        key = f"{PREFIX}{stamp}.dump"
        s3.put_object(Bucket=bucket, Key=key, Body=body, Metadata={"sha256": digest})
        if with_manifests:
            manifest = {"format": 1, "stamp": stamp, "workspace": "acme", "cvatVersion": "v2.73.0", "reason": "scheduled",
                        "database": {"key": key, "size": len(body), "sha256": digest}, "data": None}
            s3.put_object(Bucket=bucket, Key=f"{MANIFESTS}{stamp}.json", Body=json.dumps(manifest).encode())

    moto.set_clock(-timedelta(days=100))
    try:
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(put, stamps))
    finally:
        moto.set_clock(timedelta(0))


def old_stamps(count):
    start = datetime.now(timezone.utc) - timedelta(days=100)
    # Both forms of stamp: bare (older backups) and with the suffix.
    return [stamp_of(start - timedelta(minutes=i)) + ("" if i % 2 else f"-{uuid.uuid4().hex[:8]}") for i in range(count)]


def newest_by_server_time(moto, bucket, prefix, suffix, count):
    listed = [(o["LastModified"], o["Key"]) for page in moto.shared_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
              for o in page.get("Contents", []) if o["Key"].endswith(suffix)]
    return {key for _, key in sorted(listed)[-count:]}


def test_1050_old_backups_go_in_one_delete_request_per_thousand_keys(proxy, postgres, moto, filled, backups):
    bucket = backups["BACKUP_BUCKET"]
    fill(moto, bucket, old_stamps(OLD), with_manifests=True)
    kept = newest_by_server_time(moto, bucket, MANIFESTS, ".json", 2)
    proxy.reset_counts()
    result = run("backup.sh", proxy.environment(env_for(postgres, moto, filled, backups, RETENTION_DAYS=30)))
    assert result.returncode == 0, result.stderr
    made = next(f"{MANIFESTS}{line.split()[1]}.json" for line in result.stdout.splitlines() if " complete: " in line)

    # The newest 3 good by the server's time stay: the new one and the two stored last.
    remaining = set(manifest_keys(moto, bucket))
    assert remaining == {made} | kept
    assert sorted(dump_keys(moto, bucket)) == sorted(k.replace(MANIFESTS, PREFIX).replace(".json", ".dump") for k in remaining)
    assert all(backup_is_good(moto, bucket, key) for key in remaining)
    assert_nothing_incomplete_is_visible(moto, bucket)

    deleted_keys = 2 * (OLD - 2)
    requests = [s for s in proxy.requests if s.operation == "DeleteObjects"]
    assert len(requests) == math.ceil(deleted_keys / 1000) == 3, [s.keys for s in requests]
    assert [s.keys for s in requests] == [1000, 1000, deleted_keys - 2000]
    assert f"{OLD - 2} backup(s) older than 30 days deleted in 3 request(s)" in result.stdout
    # One by one only this run's own upload; no read per backup deleted.
    operations = proxy.operations()
    assert operations["DeleteObject"] == 1, operations
    assert operations["GetObject"] <= 3 and operations["HeadObject"] <= 10, operations


def test_1050_old_dumps_without_manifest_go_in_two_requests(proxy, postgres, moto, filled, backups):
    bucket = backups["BACKUP_BUCKET"]
    fill(moto, bucket, old_stamps(OLD), with_manifests=False)
    kept = newest_by_server_time(moto, bucket, PREFIX, ".dump", 3)
    proxy.reset_counts()
    result = run("backup.sh", proxy.environment(env_for(postgres, moto, filled, backups, RETENTION_DAYS=30)))
    assert result.returncode == 0, result.stderr
    assert set(dump_keys(moto, bucket)) == kept | {k.replace(MANIFESTS, PREFIX).replace(".json", ".dump") for k in manifest_keys(moto, bucket)}
    requests = [s for s in proxy.requests if s.operation == "DeleteObjects"]
    assert len(requests) <= 2 and [s.keys for s in requests] == [1000, OLD - 3 - 1000]


def test_a_failed_delete_request_stops_the_retention_with_the_manifests_first(proxy, postgres, moto, filled, backups):
    """The manifests go in a request before their dumps: when the next request fails, the old
    backups are gone (no manifest names a missing dump) and their dumps are left, never the reverse."""
    bucket = backups["BACKUP_BUCKET"]
    fill(moto, bucket, old_stamps(10), with_manifests=True)
    kept = newest_by_server_time(moto, bucket, MANIFESTS, ".json", 2)
    # The first request goes through, the second fails (AWS CLI retries off).
    injected = proxy.inject("error", operation="DeleteObjects", after=1)
    proxy.reset_counts()
    try:
        result = run("backup.sh", proxy.environment(env_for(postgres, moto, filled, backups, RETENTION_DAYS=30, AWS_MAX_ATTEMPTS=1)))
    finally:
        proxy.clear()
    assert injected.hits == 1
    assert result.returncode != 0 and "cannot delete old backups" in result.stderr
    assert [s.keys for s in proxy.requests if s.operation == "DeleteObjects"] == [8, 8]
    made = next(f"{MANIFESTS}{line.split()[1]}.json" for line in result.stdout.splitlines() if " complete: " in line)
    assert set(manifest_keys(moto, bucket)) == {made} | kept
    assert len(dump_keys(moto, bucket)) == 11
    assert_nothing_incomplete_is_visible(moto, bucket)
