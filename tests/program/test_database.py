"""The database component under mocks: PostgreSQL, the backups (scheduled, before an upgrade,
final before a pause; with CVAT's data volume), the restore Job.

The program as a whole is rendered (`render`) for what the Workspace wires today; the
Database component alone (`render_database`) for its arguments, so that each one is
proven whatever the Workspace passes.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from components import jobs
from components.backups import DATA_PATH, RESTIC_IMAGE, SCRIPTS, VERSION_CONFIGMAP, WORK_DIR, version_slug
from components.cvat import DATA_LABEL
from components.database import POSTGRES_IMAGE
from components.endpoint import AWS_CLI_IMAGE
from support import harness
from support.manifests import validate_rendering
from support.harness import ROOT, load_stack_file, render
from support.stacks import SECRETS, keys_of, with_
from support.database import (  # noqa: F401  (fixtures)
    acme,
    render_database,
)

DEV = load_stack_file(ROOT / "Pulumi.dev.yaml")


def containers_by_name(pod_spec):
    return {c["name"]: c for c in pod_spec.get("initContainers", []) + pod_spec["containers"]}


def env_of(container):
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def job(rendering, name_part):
    return rendering.one("kubernetes:batch/v1:Job", name_part)


def cronjob_pod(rendering):
    return rendering.one("kubernetes:batch/v1:CronJob").inputs["spec"]["jobTemplate"]["spec"]["template"]


def go_duration_seconds(text):
    """Seconds of a Go duration as pulumi's customTimeouts take it ("2h10m", "130m", "7800s")."""
    parts = re.findall(r"(\d+)([hms])", text)
    assert parts and "".join(n + u for n, u in parts) == text, text
    return sum(int(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)


def assert_bounded_and_replaced_when_unready(registration, deadline_max=6 * 3600):
    spec, annotations = registration.inputs["spec"], registration.inputs["metadata"]["annotations"]
    assert "podFailurePolicy" not in spec
    assert 0 <= spec["backoffLimit"] <= 3
    deadline = spec["activeDeadlineSeconds"]
    assert 0 < deadline <= deadline_max
    for awaited in (
        int(annotations["pulumi.com/timeoutSeconds"]),
        go_duration_seconds(registration.custom_timeouts.create),
        go_duration_seconds(registration.custom_timeouts.update),
    ):
        assert deadline + 60 <= awaited <= deadline + 30 * 60
    assert annotations["pulumi.com/replaceUnready"] == "true"


def validate(rendering):
    validate_rendering(rendering)


@pytest.fixture(scope="module")
def whole():
    """With the data volume, and a restore."""
    return render_database(data_claim="cvat-data", restore_from="latest")


@pytest.fixture(scope="module")
def paused():
    return render_database(data_claim="cvat-data", paused=True, pause_after=True)


# ----- PostgreSQL ----------------------------------------------------------------


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
    assert statefulset["spec"]["replicas"] == 1


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


def test_cvat_connects_with_the_names_the_database_is_made_with(acme):
    """CONNECTION holds fixed names (CVAT may be built before the database): they are the Service's
    and the Secret's, and the backup pods reach the same database."""
    from components.database import CONNECTION

    assert acme.kubernetes_object("Service", "postgres")["metadata"]["name"] == CONNECTION.host
    secret = acme.one("kubernetes:core/v1:Secret", "database-secret")
    assert secret.inputs["metadata"]["name"] == CONNECTION.password_secret
    assert CONNECTION.password_key in secret.inputs["stringData"]
    assert secret.inputs["stringData"]["database"] == CONNECTION.name and secret.inputs["stringData"]["username"] == CONNECTION.user
    dump = containers_by_name(cronjob_pod(acme)["spec"])["dump"]
    assert {key: env_of(dump)[key] for key in ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGPASSWORD")} == {
        "PGHOST": CONNECTION.host, "PGPORT": str(CONNECTION.port), "PGUSER": CONNECTION.user, "PGDATABASE": CONNECTION.name,
        "PGPASSWORD": {"secretKeyRef": {"name": CONNECTION.password_secret, "key": CONNECTION.password_key}},
    }


# ----- scheduled backups ---------------------------------------------------------------


def test_backup_cronjob(acme):
    cronjob = acme.kubernetes_object("CronJob", "database-backup")
    spec = cronjob["spec"]
    assert spec["schedule"] == "30 1 * * *"
    assert spec["timeZone"] == "Etc/UTC"
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["suspend"] is False
    assert spec["successfulJobsHistoryLimit"] <= 3 and spec["failedJobsHistoryLimit"] <= 3
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    containers = containers_by_name(pod)
    dump, upload = containers["dump"], containers["upload"]
    assert dump["image"] == POSTGRES_IMAGE and upload["image"] == AWS_CLI_IMAGE
    assert dump["command"] == upload["command"] == ["/bin/sh", "/scripts/backup.sh"]
    dump_env, upload_env = env_of(dump), env_of(upload)
    assert dump_env["BACKUP_STEP"] == "dump" and upload_env["BACKUP_STEP"] == "upload"
    assert dump_env["PGHOST"] == "postgres" and dump_env["PGDATABASE"] == "cvat"
    assert dump_env["PGPASSWORD"] == {"secretKeyRef": {"name": "postgres", "key": "password"}}
    assert dump_env["BACKUP_SKIP_EMPTY"] == "false"
    assert upload_env["BACKUP_BUCKET"] == acme.outputs["backupBucket"]
    assert upload_env["BACKUP_PREFIX"] == "acme/database/" == acme.outputs["backupPrefix"]
    assert upload_env["RETENTION_DAYS"] == "9"
    # The reason is an env value, so a Job made from the CronJob may say "manual".
    assert upload_env["BACKUP_REASON"] == "scheduled"
    assert upload_env["CVAT_VERSION"] == {"configMapKeyRef": {"name": VERSION_CONFIGMAP, "key": "version", "optional": True}}
    assert upload_env["AWS_ENDPOINT_URL"] == "https://s3.fr-par.scw.cloud"
    assert upload_env["AWS_DEFAULT_REGION"] == "fr-par"
    assert upload_env["AWS_REQUEST_CHECKSUM_CALCULATION"] == "when_required"
    assert upload_env["AWS_RESPONSE_CHECKSUM_VALIDATION"] == "when_required"
    assert upload_env["AWS_ACCESS_KEY_ID"] == {"secretKeyRef": {"name": "s3-credentials", "key": "accessKeyId"}}
    assert upload_env["AWS_SECRET_ACCESS_KEY"] == {"secretKeyRef": {"name": "s3-credentials", "key": "secretAccessKey"}}
    assert "PGPASSWORD" not in upload_env  # the upload needs no database password
    assert {"BACKUP_BUCKET", "AWS_SECRET_ACCESS_KEY"}.isdisjoint(dump_env)  # nor the dump the S3 keys
    # Both share the dump through one volume.
    assert {m["mountPath"] for m in dump["volumeMounts"]} & {m["mountPath"] for m in upload["volumeMounts"]} >= {WORK_DIR}
    assert env_of(dump)["BACKUP_DIR"] == env_of(upload)["BACKUP_DIR"] == WORK_DIR
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
    assert set(SCRIPTS) >= {"backup.sh", "data-backup.sh", "restore.sh", "data-restore.sh", "s3-cli.sh"}
    for script in SCRIPTS:
        assert configmap["data"][script] == (ROOT / "components" / "assets" / script).read_text()


def test_whole_workspace_backup_pod(whole):
    """dump (postgres) -> password (aws) -> data (restic) -> upload (aws) -> prune (restic)."""
    template = cronjob_pod(whole)
    pod = template["spec"]
    containers = containers_by_name(pod)
    assert [c["name"] for c in pod["initContainers"]] == ["dump", "password", "data", "upload"]
    assert [c["name"] for c in pod["containers"]] == ["prune"]
    images = {name: c["image"] for name, c in containers.items()}
    assert images == {"dump": POSTGRES_IMAGE, "password": AWS_CLI_IMAGE, "data": RESTIC_IMAGE, "upload": AWS_CLI_IMAGE,
                      "prune": RESTIC_IMAGE}
    assert re.fullmatch(r"restic/restic:\d+\.\d+\.\d+", RESTIC_IMAGE)
    assert containers["data"]["command"] == containers["prune"]["command"][:1] + ["/scripts/data-backup.sh"]
    assert [env_of(containers[n])["DATA_STEP"] for n in ("data", "prune")] == ["backup", "prune"]
    assert env_of(containers["password"])["BACKUP_STEP"] == "password"
    assert env_of(containers["upload"])["BACKUP_DATA"] == "true"
    # Identities: postgres as the image's user, everything touching the data volume as CVAT's.
    assert pod["securityContext"]["runAsUser"] == 1000 and pod["securityContext"]["fsGroup"] == 1000
    assert containers["dump"]["securityContext"]["runAsUser"] == 999
    for name in ("password", "data", "upload", "prune"):
        assert containers[name]["securityContext"]["runAsUser"] == 1000, name
    for container in containers.values():
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["runAsNonRoot"] is True
        assert "memory" in container["resources"]["limits"]
    # The data volume: read-only, only where restic reads it.
    data = containers["data"]
    (mount,) = [m for m in data["volumeMounts"] if m["name"] == "data"]
    assert mount == {"name": "data", "mountPath": DATA_PATH, "readOnly": True}
    assert all("data" not in {m["name"] for m in containers[n]["volumeMounts"]} for n in ("dump", "password", "upload", "prune"))
    (claim,) = [v for v in pod["volumes"] if v["name"] == "data"]
    assert claim["persistentVolumeClaim"]["claimName"] == "cvat-data"
    env = env_of(data)
    assert env["DATA_DIR"] == DATA_PATH and env["RESTIC_HOST"] == "acme"
    assert env["AWS_SECRET_ACCESS_KEY"] == {"secretKeyRef": {"name": "s3-credentials", "key": "secretAccessKey"}}
    # restic's cache and the password: emptyDirs, the password in memory.
    volumes = {v["name"]: v for v in pod["volumes"]}
    cache_mount = {m["name"]: m["mountPath"] for m in data["volumeMounts"]}["cache"]
    assert env["RESTIC_CACHE_DIR"] == cache_mount and "emptyDir" in volumes["cache"]
    assert volumes["secret"]["emptyDir"]["medium"] == "Memory"
    assert "PGPASSWORD" not in env and "PGPASSWORD" not in env_of(containers["prune"])


def test_backup_pods_run_next_to_cvat_s_pods(whole):
    """A ReadWriteOnce volume attaches to one node: the backup pod carries CVAT's data label and
    requires a pod with it on its node (with none running, it matches its own term)."""
    for template in (cronjob_pod(whole), job(whole, "backup-before-upgrade").inputs["spec"]["template"],
                     job(whole, "restore").inputs["spec"]["template"]):
        assert template["metadata"]["labels"][DATA_LABEL] == "acme"
        (term,) = template["spec"]["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert term == {"labelSelector": {"matchLabels": {DATA_LABEL: "acme"}}, "topologyKey": "kubernetes.io/hostname"}
        # The NetworkPolicy admits these pods to PostgreSQL by name.
        assert template["metadata"]["labels"]["app.kubernetes.io/name"] in ("database-backup", "database-restore")


def test_the_program_always_backs_up_cvat_s_data_with_the_database(acme):
    pod = acme.kubernetes_object("CronJob", "database-backup")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == "cvat-data"
    assert "dump" in [c["name"] for c in pod["initContainers"]]


def test_objects_are_valid_kubernetes_objects(whole, paused):
    validate(whole)
    validate(paused)


# ----- before an upgrade ---------------------------------------------------------------


def test_a_backup_before_each_upgrade_named_for_the_version():
    rendering = render_database(data_claim="cvat-data", cvat_version="v2.74.0")
    before = job(rendering, "backup-before-upgrade")
    assert before.inputs["metadata"]["name"] == "backup-before-v2-74-0"
    assert rendering.outputs["pre_upgrade_backup"] == before.urn
    pod = before.inputs["spec"]["template"]["spec"]
    containers = containers_by_name(pod)
    assert env_of(containers["upload"])["BACKUP_REASON"] == "before-upgrade"
    # A new stack has no tables yet: nothing to back up, and the Job succeeds.
    assert env_of(containers["dump"])["BACKUP_SKIP_EMPTY"] == "true"
    assert_bounded_and_replaced_when_unready(before)
    assert before.inputs["spec"]["activeDeadlineSeconds"] == jobs.BACKUP.seconds
    statefulset = rendering.one("kubernetes:apps/v1:StatefulSet")
    assert statefulset.urn in before.depends_on
    # Another release is another Job (Jobs are immutable and run once).
    other = job(render_database(data_claim="cvat-data", cvat_version="v2.73.0"), "backup-before-upgrade")
    assert other.inputs["metadata"]["name"] == "backup-before-v2-73-0" and other.urn == before.urn


def test_the_manifest_records_the_release_that_wrote_the_database():
    """The release ConfigMap changes only after the backup before the upgrade, which thus records
    the former release (its pod reads the ConfigMap when it starts)."""
    rendering = render_database(cvat_version="v2.74.0")
    configmap = rendering.one("kubernetes:core/v1:ConfigMap", "cvat-version")
    assert configmap.inputs["metadata"]["name"] == VERSION_CONFIGMAP
    assert configmap.inputs["data"] == {"version": "v2.74.0"}
    assert job(rendering, "backup-before-upgrade").urn in configmap.depends_on


@pytest.mark.parametrize("version, slug", [("v2.73.0", "v2-73-0"), ("V2.74.0-rc.1", "v2-74-0-rc-1"), ("", "unknown")])
def test_version_slugs_are_dns_labels(version, slug):
    assert version_slug(version) == slug


# ----- paused ---------------------------------------------------------------------


def test_paused_takes_a_final_backup_then_scales_postgres_to_zero(paused):
    final = job(paused, "backup-final")
    scaled_down = paused.one("kubernetes:core/v1:ConfigMap", "cvat-scaled-down")
    statefulset = paused.one("kubernetes:apps/v1:StatefulSet")
    assert statefulset.inputs["spec"]["replicas"] == 0
    # CVAT first, then the final backup, then PostgreSQL.
    assert scaled_down.urn in final.depends_on
    assert final.urn in statefulset.depends_on
    assert statefulset.urn not in final.depends_on
    # Named per pause request: paused again later, it runs again.
    pause = paused.one("random:index/randomId:RandomId", "pause-request")
    assert pause.inputs["keepers"] == {"paused": "true"}
    assert final.inputs["metadata"]["name"] == f"backup-final-{harness.RANDOM_HEX}"
    pod = final.inputs["spec"]["template"]["spec"]
    assert env_of(containers_by_name(pod)["upload"])["BACKUP_REASON"] == "final"
    assert_bounded_and_replaced_when_unready(final)
    # CVAT is down: no pod to be next to.
    assert "affinity" not in pod
    # No scheduled backups while paused; the volumes stay.
    assert paused.one("kubernetes:batch/v1:CronJob").inputs["spec"]["suspend"] is True
    assert statefulset.inputs["spec"]["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    assert paused.of_type("kubernetes:core/v1:PersistentVolumeClaim") == []
    # The final backup waits for CVAT's last sessions to close before it dumps.
    assert env_of(containers_by_name(pod)["dump"])["BACKUP_WAIT_IDLE_SECONDS"] == "300"
    # The backup before an upgrade stays declared while paused (were it deleted, a resume would
    # take it again), held: suspended, not awaited, its name and spec ignored.
    before = job(paused, "backup-before-upgrade")
    assert paused.outputs["pre_upgrade_backup"] == before.urn
    assert before.inputs["spec"]["suspend"] is True
    assert before.inputs["metadata"]["annotations"] == {"pulumi.com/skipAwait": "true", "pulumi.com/deletionPropagationPolicy": "background"}
    assert before.ignore_changes == list(jobs.HELD)
    # The final backup runs (not suspended) and a later change of how it runs does not repeat it.
    assert "suspend" not in final.inputs["spec"] and final.ignore_changes == ["spec.template"]
    # The release the database holds is not changed while the backup before an upgrade is held.
    assert paused.one("kubernetes:core/v1:ConfigMap", "cvat-version").ignore_changes == ["data"]


def test_not_paused_runs_postgres_and_the_schedule(whole):
    assert whole.one("kubernetes:apps/v1:StatefulSet").inputs["spec"]["replicas"] == 1
    assert whole.one("kubernetes:batch/v1:CronJob").inputs["spec"]["suspend"] is False
    assert [r for r in whole.of_type("kubernetes:batch/v1:Job") if "final" in r.name] == []
    assert whole.of_type("random:index/randomId:RandomId") == [whole.one("random:index/randomId:RandomId", "restore")]


# ----- restore ----------------------------------------------------------------------


def test_no_restore_job_without_restore_from(acme):
    assert [r for r in acme.of_type("kubernetes:batch/v1:Job") if "restore" in r.name] == []
    assert render_database().outputs["restore_request"] == ""


def restore_job(rendering):
    return rendering.one("kubernetes:batch/v1:Job", "restore")


def test_restore_job():
    rendering = render(with_(restoreFrom="latest"), stack="acme", secrets=SECRETS)
    job_ = restore_job(rendering)
    pod = job_.inputs["spec"]["template"]["spec"]
    containers = containers_by_name(pod)
    check, fetch, restore = containers["check"], containers["fetch"], containers["restore"]
    # The database is checked before anything is downloaded, and again before the restore;
    # CVAT's data volume is staged before and swapped in after it.
    order = [c["name"] for c in pod["initContainers"] + pod["containers"]]
    assert order == ["check", "fetch", "stage", "restore", "swap"]
    assert [env_of(c)["RESTORE_STEP"] for c in (check, fetch, restore)] == ["check", "fetch", "restore"]
    assert check["image"] == restore["image"] == POSTGRES_IMAGE and fetch["image"] == AWS_CLI_IMAGE
    assert check["command"] == fetch["command"] == restore["command"] == ["/bin/sh", "/scripts/restore.sh"]
    for container in (check, fetch, restore):
        env = env_of(container)
        assert env["RESTORE_FROM"] == "latest" and env["RESTORE_FORCE"] == "false"
        assert env["RESTORE_REQUEST"] == harness.RANDOM_HEX and env["RESTORE_DIR"] == WORK_DIR
        assert WORK_DIR in {m["mountPath"] for m in container["volumeMounts"]}
    assert env_of(fetch)["BACKUP_PREFIX"] == "acme/database/"
    for container in (check, restore):
        assert env_of(container)["PGPASSWORD"] == {"secretKeyRef": {"name": "postgres", "key": "password"}}
        assert "AWS_SECRET_ACCESS_KEY" not in env_of(container)  # the database steps need no S3 keys
    assert "PGPASSWORD" not in env_of(fetch)  # nor the download the database password
    assert rendering.one("kubernetes:apps/v1:StatefulSet", "database").urn in job_.depends_on


def test_whole_workspace_restore_job(whole):
    """check -> fetch -> stage (restic, into the volume) -> restore (one transaction) -> swap."""
    job_ = restore_job(whole)
    pod = job_.inputs["spec"]["template"]["spec"]
    containers = containers_by_name(pod)
    assert [c["name"] for c in pod["initContainers"]] == ["check", "fetch", "stage", "restore"]
    assert [c["name"] for c in pod["containers"]] == ["swap"]
    assert containers["stage"]["image"] == containers["swap"]["image"] == RESTIC_IMAGE
    assert [env_of(containers[n])["DATA_STEP"] for n in ("stage", "swap")] == ["stage", "swap"]
    assert containers["stage"]["command"] == ["/bin/sh", "/scripts/data-restore.sh"]
    mounts = {name: {m["name"]: m for m in c["volumeMounts"]} for name, c in containers.items()}
    # Written by stage and swap; read by fetch (a request restored there downloads nothing).
    assert mounts["stage"]["data"] == {"name": "data", "mountPath": DATA_PATH}
    assert mounts["swap"]["data"] == {"name": "data", "mountPath": DATA_PATH}
    assert mounts["fetch"]["data"]["readOnly"] is True
    assert "data" not in mounts["check"] and "data" not in mounts["restore"]
    for name in ("fetch", "stage", "swap"):
        assert env_of(containers[name])["DATA_DIR"] == DATA_PATH
        assert containers[name]["securityContext"]["runAsUser"] == 1000
    for name in ("check", "restore"):
        assert containers[name]["securityContext"]["runAsUser"] == 999
    assert whole.outputs["restore_request"] == harness.RANDOM_HEX
    # A restore replaces what the backup before an upgrade keeps: it comes after it.
    assert job(whole, "backup-before-upgrade").urn in job_.depends_on


def test_a_failed_restore_job_fails_pulumi_up_fast_and_is_replaced_on_the_next_one():
    """pulumi-kubernetes' Job awaiter (provider/pkg/await/checker/job/check.go) fails only on a
    Failed condition with reason BackoffLimitExceeded or DeadlineExceeded; a podFailurePolicy
    FailJob ends the Job with reason PodFailurePolicy, which it awaits until its own timeout."""
    assert_bounded_and_replaced_when_unready(restore_job(render(with_(restoreFrom="latest"), stack="acme", secrets=SECRETS)))


def test_restore_job_runs_again_only_for_a_new_request():
    def request(**changes):
        rendering = render(with_(**changes), stack="acme", secrets=SECRETS)
        random_id = rendering.one("random:index/randomId:RandomId", "restore-request")
        job_ = restore_job(rendering)
        assert job_.inputs["metadata"]["name"] == f"database-restore-{harness.RANDOM_HEX}"
        restore = containers_by_name(job_.inputs["spec"]["template"]["spec"])["restore"]
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
    # 64 MiB parts x 1000 parts: dumps up to ~64 GB upload to Scaleway; the threshold is the
    # part size, so the ETag the server gives an upload is known in advance.
    helpers = ROOT / "components" / "assets" / "s3-cli.sh"
    script = (f'. "{helpers}"; s3_cli_setup "{tmp_path}"; aws configure get default.s3.multipart_chunksize; '
              "aws configure get default.s3.multipart_threshold; aws configure get default.s3.addressing_style")
    env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "HOME": str(tmp_path),
           "AWS_ENDPOINT_URL": "http://127.0.0.1:1", "AWS_DEFAULT_REGION": "fr-par"}
    result = subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["64MB", "64MB", "path"]


def test_every_pod_of_the_component_is_pinned_sized_and_hardened(whole, paused):
    """The program-wide rules of test_manifests, on the objects the Workspace does not render
    yet (data volume, pause): pinned images, requests and limits, non-root, no secret in text."""
    import test_manifests

    for rendering in (whole, paused):
        test_manifests.test_every_container_is_pinned_sized_and_hardened((rendering, set()))
        test_manifests.test_no_secret_in_plain_text((rendering, {"secret-key", "access-key"}))
