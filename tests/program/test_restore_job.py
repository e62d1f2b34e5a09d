"""The restore Job as rendered under mocks, its pod run container by container like the
kubelet runs it (init containers in order, the first failure ends the pod), against a real
PostgreSQL 15 and a real S3-compatible server.

Each container gets only the environment the Job gives it: its literal values, with the
connection settings (database, S3 endpoint and keys, bucket, the shared volume) replaced by
the test servers'. A variable the Job does not give a container stays unset in it.
"""

import time

import pytest

from components.backups import RESTORE_REFUSED
from support.harness import render
from support.backup_scripts import (  # noqa: F401  (fixtures)
    backups,
    database,
    database_comment,
    filled,
    fresh_database,
    no_s3,
    pod_volumes,
    run_pod,
    seed_backup,
    snapshot,
)
from support.stacks import SECRETS, with_


def restore_pod(**config):
    rendering = render(with_(**config), stack="acme", secrets=SECRETS)
    job = rendering.one("kubernetes:batch/v1:Job", "restore").inputs
    return job["spec"]["template"]["spec"]


@pytest.fixture(scope="module")
def pod():
    return restore_pod(restoreFrom="latest")


@pytest.fixture(scope="module")
def forced_pod():
    return restore_pod(restoreFrom="latest", restoreForce=True)


def empty_data_volume(tmp_path):
    """CVAT's data volume as the Job mounts it: the whole program always restores it with the database."""
    volume = tmp_path / "cvat-data"
    volume.mkdir(exist_ok=True)
    return volume


def servers_for(postgres, s3_environment, target, backups):
    return {**target, **s3_environment, **backups, "_PGBIN": str(postgres.bindir)}


def test_the_job_restores_latest_into_an_empty_database(postgres, moto, pod, filled, backups, tmp_path):
    seed_backup(postgres, moto, filled, backups)
    fresh = fresh_database(postgres)
    failed, code, results = run_pod(pod, servers_for(postgres, moto.environment(), fresh, backups), pod_volumes(tmp_path, data=empty_data_volume(tmp_path)))
    assert failed is None, {name: r.stderr for name, r in results.items()}
    assert list(results) == ["check", "fetch", "stage", "restore", "swap"]  # the data volume comes back too
    assert snapshot(postgres, fresh) == snapshot(postgres, filled)
    assert database_comment(postgres, fresh).startswith("labeling-restore: ")


def test_a_refused_request_fails_in_the_first_container_before_any_download(postgres, moto, no_s3, pod, filled, backups, tmp_path):
    seed_backup(postgres, moto, filled, backups)
    before = snapshot(postgres, filled)
    started = time.monotonic()
    failed, code, results = run_pod(pod, servers_for(postgres, no_s3.environment, filled, backups), pod_volumes(tmp_path, data=empty_data_volume(tmp_path)))
    # Each attempt of the Job fails this fast, so it soon fails with BackoffLimitExceeded.
    assert time.monotonic() - started < 20
    assert (failed, code) == ("check", RESTORE_REFUSED)
    assert "set restoreForce to true" in results["check"].stderr
    assert no_s3.requests == []
    assert snapshot(postgres, filled) == before


def test_a_retried_job_of_a_restored_request_downloads_nothing(postgres, moto, no_s3, pod, filled, backups, tmp_path):
    seed_backup(postgres, moto, filled, backups)
    fresh = fresh_database(postgres)
    assert run_pod(pod, servers_for(postgres, moto.environment(), fresh, backups), pod_volumes(tmp_path, data=empty_data_volume(tmp_path)))[0] is None
    restored, marker = snapshot(postgres, fresh), database_comment(postgres, fresh)
    # A new pod (a retry, or the Job replaced by the next `pulumi up`) of the same request.
    failed, code, results = run_pod(pod, servers_for(postgres, no_s3.environment, fresh, backups), pod_volumes(tmp_path, data=empty_data_volume(tmp_path)))
    assert failed is None, {name: r.stderr for name, r in results.items()}
    assert "nothing to download" in results["fetch"].stdout
    assert no_s3.requests == []
    assert snapshot(postgres, fresh) == restored and database_comment(postgres, fresh) == marker


def test_a_forced_request_replaces_the_tables(postgres, moto, forced_pod, filled, backups, tmp_path):
    seed_backup(postgres, moto, filled, backups)
    expected = snapshot(postgres, filled)
    postgres.admin("INSERT INTO labels (name) VALUES ('added after the backup')", filled["PGDATABASE"])
    failed, code, results = run_pod(forced_pod, servers_for(postgres, moto.environment(), filled, backups), pod_volumes(tmp_path, data=empty_data_volume(tmp_path)))
    assert failed is None, {name: r.stderr for name, r in results.items()}
    assert "will be replaced" in results["check"].stdout
    assert snapshot(postgres, filled) == expected
