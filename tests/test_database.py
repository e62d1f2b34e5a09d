"""The database component under mocks: PostgreSQL, the backup CronJob, the restore Job."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from components.database import POSTGRES_IMAGE
from components.endpoint import AWS_CLI_IMAGE
import harness
from harness import ROOT, load_stack_file, render
from test_config import SCALEWAY, SECRETS, keys_of, with_

DEV = load_stack_file(ROOT / "Pulumi.dev.yaml")


def containers_by_name(pod_spec):
    return {c["name"]: c for c in pod_spec.get("initContainers", []) + pod_spec["containers"]}


def env_of(container):
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


@pytest.fixture(scope="module")
def acme():
    config = {**SCALEWAY, "backupSchedule": "30 1 * * *", "backupRetentionDays": 9, "databaseStorageSize": "25Gi",
              "storageClassName": "scw-bssd"}
    return render(config, stack="acme", secrets=SECRETS)


def test_postgres_statefulset(acme):
    statefulset = acme.kubernetes_object("StatefulSet", "postgres")
    pod = statefulset["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == POSTGRES_IMAGE and POSTGRES_IMAGE.startswith("postgres:15.")
    env = env_of(container)
    assert env["POSTGRES_DB"] == "cvat" and env["POSTGRES_USER"] == "cvat"
    assert env["POSTGRES_PASSWORD"] == {"secretKeyRef": {"name": "postgres", "key": "password"}}
    assert env["PGDATA"].startswith("/var/lib/postgresql/data/")
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["exec"]["command"][0] == "pg_isready"
    assert pod["securityContext"]["runAsUser"] == 999 and pod["securityContext"]["fsGroup"] == 999
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "25Gi"
    assert claim["spec"]["storageClassName"] == "scw-bssd"
    assert statefulset["spec"]["serviceName"] == "postgres"


def test_default_storage_uses_the_cluster_default_class():
    statefulset = render(DEV, stack="dev").kubernetes_object("StatefulSet", "postgres")
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert "storageClassName" not in claim["spec"]


def test_service_and_password_secret(acme):
    service = acme.kubernetes_object("Service", "postgres")
    assert service["spec"]["ports"] == [{"name": "postgres", "port": 5432, "targetPort": "postgres"}]
    secret = acme.one("kubernetes:core/v1:Secret", "database-secret")
    assert "stringData" in secret.secret_paths
    assert set(secret.inputs["stringData"]) == {"database", "username", "password"}
    password = acme.one("random:index/randomPassword:RandomPassword", "database")
    assert password.inputs["length"] >= 24


def test_backup_cronjob(acme):
    cronjob = acme.kubernetes_object("CronJob", "database-backup")
    spec = cronjob["spec"]
    assert spec["schedule"] == "30 1 * * *"
    assert spec["timeZone"] == "Etc/UTC"
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["successfulJobsHistoryLimit"] <= 3 and spec["failedJobsHistoryLimit"] <= 3
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    containers = containers_by_name(pod)
    dump, upload = containers["dump"], containers["upload"]
    assert pod["initContainers"] == [dump] and pod["containers"] == [upload]
    assert dump["image"] == POSTGRES_IMAGE and upload["image"] == AWS_CLI_IMAGE
    assert dump["command"] == upload["command"] == ["/bin/sh", "/scripts/backup.sh"]
    dump_env, upload_env = env_of(dump), env_of(upload)
    assert dump_env["BACKUP_STEP"] == "dump" and upload_env["BACKUP_STEP"] == "upload"
    assert dump_env["PGHOST"] == "postgres" and dump_env["PGDATABASE"] == "cvat"
    assert dump_env["PGPASSWORD"] == {"secretKeyRef": {"name": "postgres", "key": "password"}}
    assert upload_env["BACKUP_BUCKET"] == acme.outputs["backupBucket"]
    assert upload_env["BACKUP_PREFIX"] == "acme/database/" == acme.outputs["backupPrefix"]
    assert upload_env["RETENTION_DAYS"] == "9"
    assert upload_env["AWS_ENDPOINT_URL"] == "https://s3.fr-par.scw.cloud"
    assert upload_env["AWS_DEFAULT_REGION"] == "fr-par"
    assert upload_env["AWS_REQUEST_CHECKSUM_CALCULATION"] == "when_required"
    assert upload_env["AWS_RESPONSE_CHECKSUM_VALIDATION"] == "when_required"
    assert upload_env["AWS_ACCESS_KEY_ID"] == {"secretKeyRef": {"name": "s3-credentials", "key": "accessKeyId"}}
    assert upload_env["AWS_SECRET_ACCESS_KEY"] == {"secretKeyRef": {"name": "s3-credentials", "key": "secretAccessKey"}}
    assert "PGPASSWORD" not in upload_env  # the upload needs no database password
    assert {"BACKUP_BUCKET", "AWS_SECRET_ACCESS_KEY"}.isdisjoint(dump_env)  # nor the dump the S3 keys
    # Both share the dump through one volume.
    assert {m["mountPath"] for m in dump["volumeMounts"]} & {m["mountPath"] for m in upload["volumeMounts"]} >= {"/backup"}
    assert acme.outputs["backupSchedule"] == "30 1 * * *" and acme.outputs["backupRetentionDays"] == 9


def test_backup_waits_for_the_database_and_the_bucket(acme):
    cronjob = acme.one("kubernetes:batch/v1:CronJob")
    statefulset = acme.one("kubernetes:apps/v1:StatefulSet", "database")
    bucket = acme.one("aws:s3/bucket:Bucket")
    assert {statefulset.urn, bucket.urn} <= set(cronjob.depends_on)


def test_in_cluster_backups_go_to_the_in_cluster_minio():
    dev = render(DEV, stack="dev")
    pod = dev.kubernetes_object("CronJob", "database-backup")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    upload = env_of(containers_by_name(pod)["upload"])
    assert upload["AWS_ENDPOINT_URL"] == "http://minio.cvat-dev.svc:9000"
    assert upload["AWS_SECRET_ACCESS_KEY"] == {"secretKeyRef": {"name": "minio-root", "key": "secretAccessKey"}}
    cronjob = dev.one("kubernetes:batch/v1:CronJob")
    assert dev.one("kubernetes:batch/v1:Job", "ensure-buckets").urn in cronjob.depends_on


def test_scripts_configmap_ships_the_assets(acme):
    configmap = acme.kubernetes_object("ConfigMap", "database-scripts")
    for script in ("backup.sh", "restore.sh", "s3-cli.sh"):
        assert configmap["data"][script] == (ROOT / "components" / "assets" / script).read_text()


def test_no_restore_job_without_restore_from(acme):
    assert [r for r in acme.of_type("kubernetes:batch/v1:Job") if "restore" in r.name] == []


def restore_job(rendering):
    return rendering.one("kubernetes:batch/v1:Job", "restore")


def go_duration_seconds(text):
    """Seconds of a Go duration as pulumi's customTimeouts take it ("2h10m", "130m", "7800s")."""
    import re

    parts = re.findall(r"(\d+)([hms])", text)
    assert parts and "".join(n + u for n, u in parts) == text, text
    return sum(int(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)


def test_restore_job(acme):
    rendering = render(with_(restoreFrom="latest"), stack="acme", secrets=SECRETS)
    job = restore_job(rendering)
    spec = job.inputs["spec"]
    pod = spec["template"]["spec"]
    containers = containers_by_name(pod)
    check, fetch, restore = containers["check"], containers["fetch"], containers["restore"]
    # The database is checked before anything is downloaded, and again before the restore.
    assert pod["initContainers"] == [check, fetch] and pod["containers"] == [restore]
    assert [env_of(c)["RESTORE_STEP"] for c in (check, fetch, restore)] == ["check", "fetch", "restore"]
    assert check["image"] == restore["image"] == POSTGRES_IMAGE and fetch["image"] == AWS_CLI_IMAGE
    assert check["command"] == fetch["command"] == restore["command"] == ["/bin/sh", "/scripts/restore.sh"]
    for container in (check, fetch, restore):
        env = env_of(container)
        assert env["RESTORE_FROM"] == "latest" and env["RESTORE_FORCE"] == "false"
        assert env["RESTORE_REQUEST"] == harness.RANDOM_HEX and env["RESTORE_DIR"] == "/restore"
        assert "/restore" in {m["mountPath"] for m in container["volumeMounts"]}
    assert env_of(fetch)["BACKUP_PREFIX"] == "acme/database/"
    for container in (check, restore):
        assert env_of(container)["PGPASSWORD"] == {"secretKeyRef": {"name": "postgres", "key": "password"}}
        assert "AWS_SECRET_ACCESS_KEY" not in env_of(container)  # the database steps need no S3 keys
    assert "PGPASSWORD" not in env_of(fetch)  # nor the download the database password
    assert rendering.one("kubernetes:apps/v1:StatefulSet", "database").urn in job.depends_on


def test_a_failed_restore_job_fails_pulumi_up_fast_and_is_replaced_on_the_next_one():
    """pulumi-kubernetes' Job awaiter (provider/pkg/await/checker/job/check.go) fails only on a
    Failed condition with reason BackoffLimitExceeded or DeadlineExceeded; a podFailurePolicy
    FailJob ends the Job with reason PodFailurePolicy, which it awaits until its own timeout."""
    job = restore_job(render(with_(restoreFrom="latest"), stack="acme", secrets=SECRETS))
    spec, annotations = job.inputs["spec"], job.inputs["metadata"]["annotations"]
    assert "podFailurePolicy" not in spec
    # A refusal fails each attempt within seconds: a few attempts, then BackoffLimitExceeded.
    assert 0 <= spec["backoffLimit"] <= 3
    # Bounded in time by the Job itself, and awaited a little longer than that, so that the
    # failure pulumi reports is the Job's DeadlineExceeded rather than its own timeout.
    deadline = spec["activeDeadlineSeconds"]
    assert 0 < deadline <= 6 * 3600
    for awaited in (
        int(annotations["pulumi.com/timeoutSeconds"]),
        go_duration_seconds(job.custom_timeouts.create),
        go_duration_seconds(job.custom_timeouts.update),
    ):
        assert deadline + 60 <= awaited <= deadline + 30 * 60
    # A Job left failed (or unfinished) in the state is replaced by the next `pulumi up`.
    assert annotations["pulumi.com/replaceUnready"] == "true"


def test_restore_job_runs_again_only_for_a_new_request():
    def request(**changes):
        rendering = render(with_(**changes), stack="acme", secrets=SECRETS)
        random_id = rendering.one("random:index/randomId:RandomId", "restore-request")
        job = restore_job(rendering)
        assert job.inputs["metadata"]["name"] == f"database-restore-{harness.RANDOM_HEX}"
        restore = containers_by_name(job.inputs["spec"]["template"]["spec"])["restore"]
        assert env_of(restore)["RESTORE_REQUEST"] == harness.RANDOM_HEX
        return random_id.inputs["keepers"]

    latest = request(restoreFrom="latest")
    assert latest == request(restoreFrom="latest", description="other")
    assert latest != request(restoreFrom="acme/database/20261130T030000Z.dump")
    assert latest != request(restoreFrom="latest", restoreForce=True)


def test_restore_from_another_bucket_is_passed_as_given():
    rendering = render(with_(restoreFrom="s3://old-backups/acme/database/20261130T030000Z.dump"), stack="acme", secrets=SECRETS)
    restore = containers_by_name(restore_job(rendering).inputs["spec"]["template"]["spec"])["restore"]
    assert env_of(restore)["RESTORE_FROM"] == "s3://old-backups/acme/database/20261130T030000Z.dump"


@pytest.mark.parametrize(
    "changes, key",
    [
        ({"backupSchedule": "every night"}, "backupSchedule"),
        ({"backupSchedule": "0 25 * * *"}, "backupSchedule"),
        ({"backupSchedule": "0 3 * *"}, "backupSchedule"),
        ({"backupSchedule": "TZ=Europe/Paris 0 3 * * *"}, "backupSchedule"),
        ({"restoreFrom": "yesterday"}, "restoreFrom"),
        ({"restoreFrom": "s3://Old_Bucket/x.dump"}, "restoreFrom"),
        ({"restoreFrom": "acme/database/x.sql"}, "restoreFrom"),
        ({"restoreForce": True}, "restoreForce"),
        ({"backupRetentionDays": 0}, "backupRetentionDays"),
        ({"databaseStorageSize": "10GB"}, "databaseStorageSize"),
        ({"databaseStorageSize": "100Mi"}, "databaseStorageSize"),
        ({"storageClassName": "Fast SSD"}, "storageClassName"),
    ],
)
def test_bad_database_config_is_refused(changes, key):
    assert key in keys_of(with_(**changes))


@pytest.mark.parametrize("schedule", ["0 3 * * *", "*/30 * * * *", "15 2 * * mon-fri", "0 0 1,15 * *", "@daily"])
def test_good_schedules(schedule):
    render(with_(backupSchedule=schedule), stack="acme", secrets=SECRETS)


def test_cli_uses_parts_large_enough_for_the_scaleway_part_cap(tmp_path):
    # 64 MiB parts x 1000 parts: dumps up to ~64 GB upload to Scaleway.
    helpers = ROOT / "components" / "assets" / "s3-cli.sh"
    script = f'. "{helpers}"; s3_cli_setup "{tmp_path}"; aws configure get default.s3.multipart_chunksize; aws configure get default.s3.addressing_style'
    env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "HOME": str(tmp_path),
           "AWS_ENDPOINT_URL": "http://127.0.0.1:1", "AWS_DEFAULT_REGION": "fr-par"}
    result = subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["64MB", "path"]
