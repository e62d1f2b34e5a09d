"""The restore Job as rendered under mocks, its pod run container by container like the
kubelet runs it (init containers in order, the first failure ends the pod), against a real
PostgreSQL 15 and a real S3-compatible server.

Each container gets only the environment the Job gives it: its literal values, with the
connection settings (database, S3 endpoint and keys, bucket, the shared volume) replaced by
the test servers'. A variable the Job does not give a container stays unset in it.
"""

import time
import uuid

import pytest

from components.database import RESTORE_REFUSED
from harness import render
from test_backup_restore import (  # noqa: F401  (fixtures)
    NASTY_PASSWORD,
    backups,
    database,
    database_comment,
    env_for,
    filled,
    no_s3,
    run,
    snapshot,
)
from test_config import SECRETS, with_


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


def run_pod(pod_spec, servers: dict, shared_dir):
    """Runs the pod's containers in order; returns (the failed container or None, its exit code, results)."""
    results = {}
    for container in pod_spec["initContainers"] + pod_spec["containers"]:
        assert container["command"] == ["/bin/sh", "/scripts/restore.sh"]
        env = {}
        for variable in container["env"]:
            name = variable["name"]
            if name in servers:
                env[name] = servers[name]
            elif "value" in variable:
                env[name] = variable["value"]
        env["RESTORE_DIR"] = str(shared_dir)  # the Job's emptyDir, mounted in every container
        # The AWS CLI image has no PostgreSQL tools; the postgres image's AWS CLI is never configured.
        env["_PGBIN"] = servers["_PGBIN"] if container["image"].startswith("postgres:") else "/nonexistent"
        result = run("restore.sh", env)
        results[container["name"]] = result
        if result.returncode != 0:
            return container["name"], result.returncode, results
    return None, 0, results


def servers_for(postgres, s3_environment, target, backups):
    return {**target, **s3_environment, **backups, "_PGBIN": str(postgres.bindir)}


def fresh_database(postgres):
    name = f"fresh_{uuid.uuid4().hex[:8]}"
    return postgres.create_database(name, name, NASTY_PASSWORD)


def test_the_job_restores_latest_into_an_empty_database(postgres, moto, pod, filled, backups, tmp_path):
    assert run("backup.sh", env_for(postgres, moto, filled, backups)).returncode == 0
    fresh = fresh_database(postgres)
    failed, code, results = run_pod(pod, servers_for(postgres, moto.environment(), fresh, backups), tmp_path)
    assert failed is None, {name: r.stderr for name, r in results.items()}
    assert list(results) == ["check", "fetch", "restore"]
    assert snapshot(postgres, fresh) == snapshot(postgres, filled)
    assert database_comment(postgres, fresh).startswith("labeling-restore: ")


def test_a_refused_request_fails_in_the_first_container_before_any_download(postgres, moto, no_s3, pod, filled, backups, tmp_path):
    assert run("backup.sh", env_for(postgres, moto, filled, backups)).returncode == 0
    before = snapshot(postgres, filled)
    started = time.monotonic()
    failed, code, results = run_pod(pod, servers_for(postgres, no_s3.environment, filled, backups), tmp_path)
    # Each attempt of the Job fails this fast, so it soon fails with BackoffLimitExceeded.
    assert time.monotonic() - started < 20
    assert (failed, code) == ("check", RESTORE_REFUSED)
    assert "set restoreForce to true" in results["check"].stderr
    assert no_s3.requests == []
    assert snapshot(postgres, filled) == before


def test_a_retried_job_of_a_restored_request_downloads_nothing(postgres, moto, no_s3, pod, filled, backups, tmp_path):
    assert run("backup.sh", env_for(postgres, moto, filled, backups)).returncode == 0
    fresh = fresh_database(postgres)
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    assert run_pod(pod, servers_for(postgres, moto.environment(), fresh, backups), first)[0] is None
    restored, marker = snapshot(postgres, fresh), database_comment(postgres, fresh)
    # A new pod (a retry, or the Job replaced by the next `pulumi up`) of the same request.
    failed, code, results = run_pod(pod, servers_for(postgres, no_s3.environment, fresh, backups), second)
    assert failed is None, {name: r.stderr for name, r in results.items()}
    assert "nothing to download" in results["fetch"].stdout
    assert no_s3.requests == []
    assert snapshot(postgres, fresh) == restored and database_comment(postgres, fresh) == marker


def test_a_forced_request_replaces_the_tables(postgres, moto, forced_pod, filled, backups, tmp_path):
    assert run("backup.sh", env_for(postgres, moto, filled, backups)).returncode == 0
    expected = snapshot(postgres, filled)
    postgres.admin("INSERT INTO labels (name) VALUES ('added after the backup')", filled["PGDATABASE"])
    failed, code, results = run_pod(forced_pod, servers_for(postgres, moto.environment(), filled, backups), tmp_path)
    assert failed is None, {name: r.stderr for name, r in results.items()}
    assert "will be replaced" in results["check"].stdout
    assert snapshot(postgres, filled) == expected
