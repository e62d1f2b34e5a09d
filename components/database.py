"""Database: the workspace's PostgreSQL 15, its scheduled backups, and restores.

- PostgreSQL runs as a one-replica StatefulSet from the official image, on a
  PersistentVolumeClaim, with a generated password in a Secret.
- A CronJob dumps the database (``pg_dump --format=custom``), reads the dump
  back completely, uploads it to the backup bucket under the workspace's
  prefix as ``<UTC timestamp>.dump``, and deletes its backups older than the
  retention. Official images only: postgres for the dump, amazon/aws-cli for
  the upload; the scripts are ``assets/backup.sh`` and ``assets/restore.sh``.
- With ``restoreFrom``, a Job restores a backup before CVAT's migrations run
  (CVAT waits on :attr:`Database.ready`). Its first container checks the
  database before anything is downloaded: a refusal (tables without
  ``restoreForce``) fails every attempt within seconds, so the Job ends with
  ``BackoffLimitExceeded``, one of the two reasons pulumi-kubernetes' Job awaiter
  reports as a failure (``DeadlineExceeded`` is the other; a ``podFailurePolicy``
  ending in ``PodFailurePolicy`` would be awaited until the timeout). A request
  already restored downloads nothing. ``pulumi.com/replaceUnready`` makes the
  next ``pulumi up`` replace a failed Job instead of awaiting it again.
"""

from __future__ import annotations

from typing import Any, Optional, TypedDict

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components import kube
from components.endpoint import AWS_CLI_IMAGE, S3Endpoint

# PostgreSQL major 15 is the one CVAT supports; the minor is pinned.
POSTGRES_IMAGE = "postgres:15.19"
POSTGRES_UID = 999  # the `postgres` user of the official image
PORT = 5432
DATABASE_NAME = "cvat"
DATABASE_USER = "cvat"
SERVICE_NAME = "postgres"
SECRET_NAME = "postgres"
PASSWORD_KEY = "password"
SCRIPTS = ("backup.sh", "restore.sh", kube.S3_HELPERS)
# Exit code of restore.sh when it refuses to overwrite a database with tables.
RESTORE_REFUSED = 3
# The restore Job's own time limit, and pulumi's wait for it: a little longer, so that
# what `pulumi up` reports is the Job's DeadlineExceeded, not its own timeout.
RESTORE_DEADLINE_SECONDS = 2 * 3600
RESTORE_AWAIT_SECONDS = RESTORE_DEADLINE_SECONDS + 10 * 60
JOB_RESOURCES = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}


class DatabaseArgs(TypedDict):
    """Inputs of :class:`Database`."""

    namespace: pulumi.Input[str]
    workspace: str
    storage_size: str
    storage_class_name: str
    """Empty: the cluster's default storage class."""
    endpoint: S3Endpoint
    s3_credentials_secret_name: pulumi.Input[str]
    """Secret with keys accessKeyId and secretAccessKey."""
    backup_bucket: pulumi.Input[str]
    storage_ready: list[pulumi.Resource]
    """What must exist before backups are written or read (the bucket)."""
    backup_prefix: str
    """Key prefix of this workspace's database backups, ending with '/'."""
    backup_schedule: str
    retention_days: int
    restore_from: str
    """'' (no restore), 'latest', a key in the backup bucket, or s3://bucket/key."""
    restore_force: bool
    resources: dict[str, Any]
    """Of the PostgreSQL container (from the size preset)."""


class Database(pulumi.ComponentResource):
    """PostgreSQL 15 with scheduled backups to object storage, and optional restore."""

    host: pulumi.Output[str]
    port: int
    name: str
    user: str
    password_secret_name: pulumi.Output[str]
    password_secret_key: str
    backup_prefix: str
    ready: list[pulumi.Resource]

    def __init__(self, name: str, args: DatabaseArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("labeling:index:Database", name, None, opts)
        namespace = args["namespace"]
        workspace = args["workspace"]
        labels = kube.labels(workspace, "postgres")
        selector = kube.selector(workspace, "postgres")
        child = pulumi.ResourceOptions(parent=self)

        password = random.RandomPassword(f"{name}-password", length=32, special=False, opts=child)
        secret = k8s.core.v1.Secret(
            f"{name}-secret",
            metadata={"name": SECRET_NAME, "namespace": namespace, "labels": labels},
            type="Opaque",
            string_data={"database": DATABASE_NAME, "username": DATABASE_USER, PASSWORD_KEY: password.result},
            opts=child,
        )
        secret_name = secret.metadata["name"]
        scripts = k8s.core.v1.ConfigMap(
            f"{name}-scripts",
            metadata={"name": "database-scripts", "namespace": namespace, "labels": kube.labels(workspace, "database-backup")},
            data={script: kube.asset(script) for script in SCRIPTS},
            opts=child,
        )
        service = k8s.core.v1.Service(
            f"{name}-service",
            metadata={"name": SERVICE_NAME, "namespace": namespace, "labels": labels},
            spec={"selector": selector, "ports": [{"name": "postgres", "port": PORT, "targetPort": "postgres"}]},
            opts=child,
        )

        ready_check = ["pg_isready", "--host=127.0.0.1", f"--username={DATABASE_USER}", f"--dbname={DATABASE_NAME}"]
        claim_spec: dict[str, Any] = {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": args["storage_size"]}},
        }
        if args["storage_class_name"]:
            claim_spec["storageClassName"] = args["storage_class_name"]
        statefulset = k8s.apps.v1.StatefulSet(
            f"{name}-server",
            metadata={
                "name": "postgres",
                "namespace": namespace,
                "labels": labels,
                "annotations": {"pulumi.com/timeoutSeconds": str(kube.AWAIT_TIMEOUT_SECONDS)},
            },
            spec={
                "serviceName": service.metadata["name"],
                "replicas": 1,
                "selector": {"matchLabels": selector},
                "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "automountServiceAccountToken": False,
                        "terminationGracePeriodSeconds": 60,
                        "securityContext": kube.pod_security_context(POSTGRES_UID, fs_group=POSTGRES_UID),
                        "containers": [
                            {
                                "name": "postgres",
                                "image": POSTGRES_IMAGE,
                                "env": [
                                    {"name": "POSTGRES_USER", "value": DATABASE_USER},
                                    {"name": "POSTGRES_DB", "value": DATABASE_NAME},
                                    kube.secret_env("POSTGRES_PASSWORD", secret_name, PASSWORD_KEY),
                                    # A subdirectory: the volume's root may hold lost+found.
                                    {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
                                ],
                                "ports": [{"name": "postgres", "containerPort": PORT}],
                                # Ready only once the real server listens on TCP (not the init-time one).
                                "readinessProbe": {"exec": {"command": ready_check}, "periodSeconds": 10, "timeoutSeconds": 5},
                                "livenessProbe": {
                                    "exec": {"command": ready_check},
                                    "initialDelaySeconds": 30,
                                    "periodSeconds": 20,
                                    "timeoutSeconds": 5,
                                    "failureThreshold": 6,
                                },
                                "startupProbe": {
                                    "exec": {"command": ready_check},
                                    "periodSeconds": 5,
                                    "timeoutSeconds": 5,
                                    "failureThreshold": 120,
                                },
                                "resources": args["resources"],
                                "securityContext": kube.container_security_context(),
                                "volumeMounts": [
                                    {"name": "data", "mountPath": "/var/lib/postgresql/data"},
                                    {"name": "run", "mountPath": "/var/run/postgresql"},
                                    {"name": "tmp", "mountPath": "/tmp"},
                                    {"name": "shm", "mountPath": "/dev/shm"},
                                ],
                            }
                        ],
                        "volumes": [
                            {"name": "run", "emptyDir": {"sizeLimit": "16Mi"}},
                            {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
                            # Parallel queries use shared memory; the runtime's default is 64 MiB.
                            {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "256Mi"}},
                        ],
                    },
                },
                "volumeClaimTemplates": [{"metadata": {"name": "data", "labels": labels}, "spec": claim_spec}],
            },
            opts=pulumi.ResourceOptions(
                parent=self,
                custom_timeouts=pulumi.CustomTimeouts(create="20m", update="20m"),
                # Claim templates are immutable: size and class are set when the volume is made
                # (grow it by expanding the claim data-postgres-0, see the README).
                ignore_changes=["spec.volumeClaimTemplates"],
            ),
        )

        endpoint = args["endpoint"]
        s3_secret = args["s3_credentials_secret_name"]

        def s3_env() -> list[dict]:
            return [{"name": key, "value": value} for key, value in endpoint.cli_environment().items()] + [
                kube.secret_env("AWS_ACCESS_KEY_ID", s3_secret, "accessKeyId"),
                kube.secret_env("AWS_SECRET_ACCESS_KEY", s3_secret, "secretAccessKey"),
                {"name": "HOME", "value": "/tmp"},
            ]

        database_env = [
            {"name": "PGHOST", "value": service.metadata["name"]},
            {"name": "PGPORT", "value": str(PORT)},
            {"name": "PGUSER", "value": DATABASE_USER},
            {"name": "PGDATABASE", "value": DATABASE_NAME},
            kube.secret_env("PGPASSWORD", secret_name, PASSWORD_KEY),
        ]
        bucket_env = [
            {"name": "BACKUP_BUCKET", "value": args["backup_bucket"]},
            {"name": "BACKUP_PREFIX", "value": args["backup_prefix"]},
        ]

        def script_container(container: str, image: str, script: str, env: list[dict], work_dir: str) -> dict:
            return {
                "name": container,
                "image": image,
                "command": ["/bin/sh", f"/scripts/{script}"],
                "env": env,
                "resources": JOB_RESOURCES,
                "securityContext": kube.container_security_context(),
                "volumeMounts": [
                    {"name": "scripts", "mountPath": "/scripts", "readOnly": True},
                    {"name": "work", "mountPath": work_dir},
                    {"name": "tmp", "mountPath": "/tmp"},
                ],
            }

        def job_pod(labels_: dict, init: list[dict], main: dict) -> dict:
            return {
                "metadata": {"labels": labels_},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "securityContext": kube.pod_security_context(POSTGRES_UID, fs_group=POSTGRES_UID),
                    "initContainers": init,
                    "containers": [main],
                    "volumes": [
                        {"name": "scripts", "configMap": {"name": scripts.metadata["name"], "defaultMode": 0o555}},
                        # Holds the dump between the two containers; as large as the dump.
                        {"name": "work", "emptyDir": {}},
                        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
                    ],
                },
            }

        backup_labels = kube.labels(workspace, "database-backup")
        k8s.batch.v1.CronJob(
            f"{name}-backup",
            metadata={"name": "database-backup", "namespace": namespace, "labels": backup_labels},
            spec={
                "schedule": args["backup_schedule"],
                "timeZone": "Etc/UTC",
                "concurrencyPolicy": "Forbid",
                "startingDeadlineSeconds": 3600,
                "successfulJobsHistoryLimit": 3,
                "failedJobsHistoryLimit": 3,
                "jobTemplate": {
                    "metadata": {"labels": backup_labels},
                    "spec": {
                        "backoffLimit": 2,
                        "activeDeadlineSeconds": 6 * 3600,
                        "template": job_pod(
                            backup_labels,
                            [script_container(
                                "dump", POSTGRES_IMAGE, "backup.sh",
                                [{"name": "BACKUP_STEP", "value": "dump"}, {"name": "BACKUP_DIR", "value": "/backup"}] + database_env,
                                "/backup",
                            )],
                            script_container(
                                "upload", AWS_CLI_IMAGE, "backup.sh",
                                [
                                    {"name": "BACKUP_STEP", "value": "upload"},
                                    {"name": "BACKUP_DIR", "value": "/backup"},
                                    {"name": "RETENTION_DAYS", "value": str(args["retention_days"])},
                                ] + bucket_env + s3_env(),
                                "/backup",
                            ),
                        ),
                    },
                },
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[statefulset, *args["storage_ready"]]),
        )

        self.ready: list[pulumi.Resource] = [statefulset]
        self.restore_job: Optional[k8s.batch.v1.Job] = None
        if args["restore_from"]:
            restore_labels = kube.labels(workspace, "database-restore")
            # One id per restore request: renewed when the source or force changes, or when
            # restoreFrom is removed and set again. It names the Job (Jobs are immutable and
            # run once) and marks the database, so that a retried request does nothing.
            request = random.RandomId(
                f"{name}-restore-request",
                byte_length=4,
                keepers={"restore_from": args["restore_from"], "restore_force": str(args["restore_force"])},
                opts=child,
            )
            restore_env = [
                {"name": "RESTORE_FROM", "value": args["restore_from"]},
                {"name": "RESTORE_REQUEST", "value": request.hex},
                {"name": "RESTORE_FORCE", "value": "true" if args["restore_force"] else "false"},
                {"name": "RESTORE_DIR", "value": "/restore"},
            ]
            self.restore_job = k8s.batch.v1.Job(
                f"{name}-restore",
                metadata={
                    "name": request.hex.apply(lambda hex_: f"database-restore-{hex_}"),
                    "namespace": namespace,
                    "labels": restore_labels,
                    "annotations": {
                        "pulumi.com/timeoutSeconds": str(RESTORE_AWAIT_SECONDS),
                        # A Job that failed (or never finished) is replaced on the next `pulumi up`
                        # instead of being awaited again; one that succeeded is left alone.
                        "pulumi.com/replaceUnready": "true",
                    },
                },
                spec={
                    # A refusal fails the check container of every attempt within seconds: the Job
                    # then fails with BackoffLimitExceeded, which the awaiter reports at once.
                    "backoffLimit": 2,
                    "activeDeadlineSeconds": RESTORE_DEADLINE_SECONDS,
                    "template": job_pod(
                        restore_labels,
                        [
                            # Before any download: already restored (then nothing is fetched), or refused.
                            script_container(
                                "check", POSTGRES_IMAGE, "restore.sh",
                                [{"name": "RESTORE_STEP", "value": "check"}] + restore_env + database_env,
                                "/restore",
                            ),
                            script_container(
                                "fetch", AWS_CLI_IMAGE, "restore.sh",
                                [{"name": "RESTORE_STEP", "value": "fetch"}] + restore_env + bucket_env + s3_env(),
                                "/restore",
                            ),
                        ],
                        # Checks again (the database may have changed meanwhile), then restores.
                        script_container(
                            "restore", POSTGRES_IMAGE, "restore.sh",
                            [{"name": "RESTORE_STEP", "value": "restore"}] + restore_env + database_env,
                            "/restore",
                        ),
                    ),
                },
                opts=pulumi.ResourceOptions(
                    parent=self,
                    depends_on=[statefulset, *args["storage_ready"]],
                    custom_timeouts=pulumi.CustomTimeouts(
                        create=f"{RESTORE_AWAIT_SECONDS // 60}m", update=f"{RESTORE_AWAIT_SECONDS // 60}m"
                    ),
                ),
            )
            self.ready.append(self.restore_job)

        self.host = service.metadata["name"]
        self.port = PORT
        self.name = DATABASE_NAME
        self.user = DATABASE_USER
        self.password_secret_name = secret_name
        self.password_secret_key = PASSWORD_KEY
        self.backup_prefix = args["backup_prefix"]
        self.register_outputs(
            {
                "host": self.host,
                "port": self.port,
                "name": self.name,
                "user": self.user,
                "password_secret_name": self.password_secret_name,
                "backup_prefix": self.backup_prefix,
            }
        )
