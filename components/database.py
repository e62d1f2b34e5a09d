"""Database: the workspace's PostgreSQL 15, its backups (with CVAT's data volume), and restores.

- PostgreSQL runs as a one-replica StatefulSet from the official image, on a
  PersistentVolumeClaim, with a generated password in a Secret.
- A backup (docs/backups.md) is a pg_dump archive, a restic snapshot of CVAT's
  data volume, and a manifest written last. The CronJob ``database-backup`` takes
  one on schedule (also usable by ``kubectl create job --from=cronjob/...``); a
  one-shot Job named for the CVAT version takes one before an upgrade
  (:attr:`Database.pre_upgrade_backup`, which CVAT's migration waits for); and a
  one-shot Job per pause takes a final one before PostgreSQL is scaled to zero.
  Each step runs in the official image that has its tool: postgres (pg_dump),
  amazon/aws-cli (uploads, manifest, retention), restic/restic (the data volume).
  Scripts: ``assets/backup.sh``, ``data-backup.sh``, ``restore.sh``, ``data-restore.sh``.
- With ``restoreFrom``, a Job restores a backup before CVAT's migrations run
  (CVAT waits on :attr:`Database.ready`, and its pods roll with
  :attr:`Database.restore_request`): the database in one transaction, the data
  volume staged, then swapped in. Its first container checks the database before
  anything is downloaded: a refusal (tables without ``restoreForce``) fails every
  attempt within seconds, so the Job ends with ``BackoffLimitExceeded``, one of the
  two reasons pulumi-kubernetes' Job awaiter reports as a failure
  (``DeadlineExceeded`` is the other; a ``podFailurePolicy`` ending in
  ``PodFailurePolicy`` would be awaited until the timeout). A request already
  restored downloads nothing. ``pulumi.com/replaceUnready`` makes the next
  ``pulumi up`` replace a failed Job instead of awaiting it again.
"""

from __future__ import annotations

import re
from typing import Any, NotRequired, Optional, Sequence, TypedDict

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components import jobs, kube
from components.cvat import DATA_LABEL
from components.endpoint import AWS_CLI_IMAGE, S3Endpoint

# PostgreSQL major 15 is the one CVAT supports; the minor is pinned.
POSTGRES_IMAGE = "postgres:15.19"
POSTGRES_UID = 999  # the `postgres` user of the official image
# The official restic image (Alpine, busybox sh); backs up and restores the data volume.
RESTIC_IMAGE = "restic/restic:0.18.1"
# CVAT's user, owner of its data volume.
DATA_UID = 1000
DATA_PATH = "/home/django/data"
PORT = 5432
DATABASE_NAME = "cvat"
DATABASE_USER = "cvat"
SERVICE_NAME = "postgres"
SECRET_NAME = "postgres"
PASSWORD_KEY = "password"
BACKUP_CRONJOB = "database-backup"
# The CVAT release whose schema the database holds, read by the backup pods (manifest).
VERSION_CONFIGMAP = "database-cvat-version"
SCRIPTS = ("backup.sh", "data-backup.sh", "restore.sh", "data-restore.sh", kube.S3_HELPERS)
# Exit code of restore.sh when it refuses to overwrite a database with tables.
RESTORE_REFUSED = 3
# The restore Job's own time limit, and pulumi's wait for it: a little longer, so that
# what `pulumi up` reports is the Job's DeadlineExceeded, not its own timeout.
RESTORE_DEADLINE_SECONDS = 2 * 3600
RESTORE_AWAIT_SECONDS = RESTORE_DEADLINE_SECONDS + 10 * 60
# The same for the one-shot backups (before an upgrade, before a pause).
BACKUP_DEADLINE_SECONDS = 2 * 3600
BACKUP_AWAIT_SECONDS = BACKUP_DEADLINE_SECONDS + 10 * 60
# A pause's final backup waits this long for CVAT's last database sessions to close (its
# pods' grace period is 30 s), then ends what is left (backup.sh, BACKUP_WAIT_IDLE_SECONDS).
FINAL_BACKUP_IDLE_WAIT_SECONDS = 300
# Scheduled backups: the CronJob's Jobs.
SCHEDULED_DEADLINE_SECONDS = 6 * 3600
JOB_RESOURCES = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}
# restic keeps the repository's index in memory.
RESTIC_RESOURCES = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}
# Where the steps of a pod hand things on (emptyDirs).
WORK_DIR = "/work"
SECRET_DIR = "/secret"
CACHE_DIR = "/cache"


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
    """Key prefix of this workspace's database backups, "<key>/database/"."""
    backup_schedule: str
    retention_days: int
    restore_from: str
    """'' (no restore), 'latest', a manifest or dump key in the backup bucket, or s3://bucket/key."""
    restore_force: bool
    resources: dict[str, Any]
    """Of the PostgreSQL container (from the size preset)."""
    cvat_version: NotRequired[str]
    """The CVAT release to run: a new one takes a backup first (:attr:`Database.pre_upgrade_backup`)."""
    data_claim: NotRequired[Optional[pulumi.Input[str]]]
    """CVAT's data volume claim (``cvat-data``): backed up with the database and restored with it.
    None: the database alone."""
    paused: NotRequired[bool]
    """Scale PostgreSQL to zero after a final backup (CVAT's Deployments first, see pause_after)."""
    pause_after: NotRequired[Sequence[pulumi.Resource]]
    """When paused: what must be done before the final backup (CVAT scaled down)."""


def version_slug(version: str) -> str:
    """A CVAT release as a DNS label part: v2.73.0 -> v2-73-0."""
    slug = re.sub(r"[^a-z0-9]+", "-", version.lower()).strip("-")
    return slug[:40].strip("-") or "unknown"


class Database(pulumi.ComponentResource):
    """PostgreSQL 15 with backups of the workspace to object storage, and optional restore."""

    host: pulumi.Output[str]
    port: int
    name: str
    user: str
    password_secret_name: pulumi.Output[str]
    password_secret_key: str
    backup_prefix: str
    ready: list[pulumi.Resource]
    restore_request: pulumi.Output[str]
    pre_upgrade_backup: pulumi.Resource
    final_backup: Optional[pulumi.Resource]

    def __init__(self, name: str, args: DatabaseArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("labeling:index:Database", name, None, opts)
        self.args = args
        self.name_ = name
        self.namespace = args["namespace"]
        self.workspace = args["workspace"]
        self.data_claim = args.get("data_claim")
        self.paused = bool(args.get("paused", False))
        self.cvat_version = args.get("cvat_version", "") or ""
        child = pulumi.ResourceOptions(parent=self)

        password = random.RandomPassword(f"{name}-password", length=32, special=False, opts=child)
        secret = k8s.core.v1.Secret(
            f"{name}-secret",
            metadata={"name": SECRET_NAME, "namespace": self.namespace, "labels": kube.labels(self.workspace, "postgres")},
            type="Opaque",
            string_data={"database": DATABASE_NAME, "username": DATABASE_USER, PASSWORD_KEY: password.result},
            opts=child,
        )
        self.secret_name = secret.metadata["name"]
        self.scripts = k8s.core.v1.ConfigMap(
            f"{name}-scripts",
            metadata={"name": "database-scripts", "namespace": self.namespace, "labels": kube.labels(self.workspace, "database-backup")},
            data={script: kube.asset(script) for script in SCRIPTS},
            opts=child,
        )
        self.service = k8s.core.v1.Service(
            f"{name}-service",
            metadata={"name": SERVICE_NAME, "namespace": self.namespace, "labels": kube.labels(self.workspace, "postgres")},
            spec={"selector": kube.selector(self.workspace, "postgres"), "ports": [{"name": "postgres", "port": PORT, "targetPort": "postgres"}]},
            opts=child,
        )
        self.storage_ready = list(args["storage_ready"])

        # Paused: the final backup (once CVAT is down), then the server scales to zero. The
        # backup before an upgrade is always declared (held while paused, components/jobs.py):
        # were it not, a resume would take it again.
        # The schedule is suspended first: no scheduled backup starts beside the final one.
        self.final_backup: Optional[k8s.batch.v1.Job] = self._final_backup(self._cronjob([])) if self.paused else None
        self.statefulset = self._statefulset()
        self.pre_upgrade_backup: pulumi.Resource = self._pre_upgrade_backup()
        # The release whose schema the database holds, as the next backups record it:
        # changed only once the backup before an upgrade ran (it records the former one);
        # held while paused, as that backup is.
        k8s.core.v1.ConfigMap(
            f"{name}-cvat-version",
            metadata={"name": VERSION_CONFIGMAP, "namespace": self.namespace, "labels": kube.labels(self.workspace, "database-backup")},
            data={"version": self.cvat_version or "unknown"},
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[self.pre_upgrade_backup], ignore_changes=["data"] if self.paused else None
            ),
        )
        if not self.paused:
            self._cronjob([self.statefulset])

        self.ready: list[pulumi.Resource] = [self.statefulset]
        self.restore_job: Optional[k8s.batch.v1.Job] = None
        self.restore_request: pulumi.Output[str] = pulumi.Output.from_input("")
        if args["restore_from"]:
            self.restore_job = self._restore_job()
            self.ready.append(self.restore_job)

        self.host = self.service.metadata["name"]
        self.port = PORT
        self.name = DATABASE_NAME
        self.user = DATABASE_USER
        self.password_secret_name = self.secret_name
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
                "restore_request": self.restore_request,
            }
        )

    # ----- PostgreSQL ------------------------------------------------------

    def _statefulset(self) -> k8s.apps.v1.StatefulSet:
        """The server: 1 replica, or 0 when paused (after the final backup; the volume stays)."""
        args = self.args
        labels = kube.labels(self.workspace, "postgres")
        ready_check = ["pg_isready", "--host=127.0.0.1", f"--username={DATABASE_USER}", f"--dbname={DATABASE_NAME}"]
        claim_spec: dict[str, Any] = {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": args["storage_size"]}},
        }
        if args["storage_class_name"]:
            claim_spec["storageClassName"] = args["storage_class_name"]
        return k8s.apps.v1.StatefulSet(
            f"{self.name_}-server",
            metadata={
                "name": "postgres",
                "namespace": self.namespace,
                "labels": labels,
                "annotations": {"pulumi.com/timeoutSeconds": str(kube.AWAIT_TIMEOUT_SECONDS)},
            },
            spec={
                "serviceName": self.service.metadata["name"],
                "replicas": 0 if self.paused else 1,
                "selector": {"matchLabels": kube.selector(self.workspace, "postgres")},
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
                                    # A superuser (the official image makes POSTGRES_USER one): a restore
                                    # closes the database to connections and ends the others' sessions.
                                    {"name": "POSTGRES_USER", "value": DATABASE_USER},
                                    {"name": "POSTGRES_DB", "value": DATABASE_NAME},
                                    kube.secret_env("POSTGRES_PASSWORD", self.secret_name, PASSWORD_KEY),
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
                # Paused: scaled down only once the final backup is in.
                depends_on=[self.final_backup] if self.final_backup else [],
                custom_timeouts=pulumi.CustomTimeouts(create="20m", update="20m"),
                # Claim templates are immutable: size and class are set when the volume is made
                # (grow it by expanding the claim data-postgres-0, see the README).
                ignore_changes=["spec.volumeClaimTemplates"],
            ),
        )

    # ----- pod parts ---------------------------------------------------------

    def _s3_env(self) -> list[dict]:
        secret = self.args["s3_credentials_secret_name"]
        return [{"name": key, "value": value} for key, value in self.args["endpoint"].cli_environment().items()] + [
            kube.secret_env("AWS_ACCESS_KEY_ID", secret, "accessKeyId"),
            kube.secret_env("AWS_SECRET_ACCESS_KEY", secret, "secretAccessKey"),
            {"name": "HOME", "value": "/tmp"},
        ]

    def _database_env(self) -> list[dict]:
        return [
            {"name": "PGHOST", "value": self.service.metadata["name"]},
            {"name": "PGPORT", "value": str(PORT)},
            {"name": "PGUSER", "value": DATABASE_USER},
            {"name": "PGDATABASE", "value": DATABASE_NAME},
            kube.secret_env("PGPASSWORD", self.secret_name, PASSWORD_KEY),
        ]

    def _bucket_env(self) -> list[dict]:
        return [
            {"name": "BACKUP_BUCKET", "value": self.args["backup_bucket"]},
            {"name": "BACKUP_PREFIX", "value": self.args["backup_prefix"]},
        ]

    def _container(self, container: str, image: str, script: str, env: list[dict], uid: int,
                   extra_mounts: Sequence[dict] = (), resources: Optional[dict] = None) -> dict:
        context = {**kube.container_security_context(), "runAsUser": uid, "runAsGroup": uid}
        return {
            "name": container,
            "image": image,
            "command": ["/bin/sh", f"/scripts/{script}"],
            "env": env,
            "resources": resources or JOB_RESOURCES,
            "securityContext": context,
            "volumeMounts": [
                {"name": "scripts", "mountPath": "/scripts", "readOnly": True},
                {"name": "work", "mountPath": WORK_DIR},
                {"name": "tmp", "mountPath": "/tmp"},
                *extra_mounts,
            ],
        }

    def _pod(self, labels: dict, init: list[dict], main: dict, data: Optional[str], same_node: bool) -> dict:
        """A Job's pod: its steps share WORK_DIR (and SECRET_DIR, in memory, for the data
        repository's password); with the data volume, the pod runs as CVAT's user group
        and, when CVAT runs (`same_node`), on the node where the volume is attached."""
        volumes: list[dict] = [
            {"name": "scripts", "configMap": {"name": self.scripts.metadata["name"], "defaultMode": 0o555}},
            # Holds the dump between the steps; as large as the dump.
            {"name": "work", "emptyDir": {}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
        ]
        spec: dict[str, Any] = {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": kube.pod_security_context(POSTGRES_UID, fs_group=POSTGRES_UID),
            "initContainers": init,
            "containers": [main],
            "volumes": volumes,
        }
        if data is not None:
            volumes += [
                {"name": "secret", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
                {"name": "cache", "emptyDir": {"sizeLimit": "4Gi"}},
                {"name": "data", "persistentVolumeClaim": {"claimName": data}},
            ]
            # The data volume belongs to CVAT's user and group; the emptyDirs get the group too.
            spec["securityContext"] = kube.pod_security_context(DATA_UID, fs_group=DATA_UID)
            # The same label as CVAT's pods that mount the volume: required affinity to them
            # puts the pod on their node (a ReadWriteOnce volume attaches to one node); with
            # none running, the pod matches its own term and may go anywhere.
            labels = {**labels, DATA_LABEL: self.workspace}
            if same_node:
                spec["affinity"] = {
                    "podAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": [
                            {"labelSelector": {"matchLabels": {DATA_LABEL: self.workspace}}, "topologyKey": "kubernetes.io/hostname"}
                        ]
                    }
                }
        return {"metadata": {"labels": labels}, "spec": spec}

    # ----- backups -----------------------------------------------------------

    def _backup_pod(self, reason: str, skip_empty: bool, same_node: bool, wait_idle_seconds: int = 0) -> dict:
        """dump (postgres) -> password, data (restic) -> upload (aws) -> prune (restic); without
        a data volume: dump -> upload. `wait_idle_seconds`: the dump first waits for the other
        sessions to leave (a pause: CVAT's pods may still be terminating)."""
        data = self.data_claim
        shared = [{"name": "BACKUP_DIR", "value": WORK_DIR}]
        version = {"name": "CVAT_VERSION", "valueFrom": {"configMapKeyRef": {"name": VERSION_CONFIGMAP, "key": "version", "optional": True}}}
        idle = [{"name": "BACKUP_WAIT_IDLE_SECONDS", "value": str(wait_idle_seconds)}] if wait_idle_seconds else []
        dump = self._container(
            "dump", POSTGRES_IMAGE, "backup.sh",
            [{"name": "BACKUP_STEP", "value": "dump"}, *shared,
             {"name": "BACKUP_SKIP_EMPTY", "value": "true" if skip_empty else "false"}, *idle] + self._database_env(),
            POSTGRES_UID,
        )
        upload_env = [
            {"name": "BACKUP_STEP", "value": "upload"}, *shared,
            {"name": "RETENTION_DAYS", "value": str(self.args["retention_days"])},
            {"name": "BACKUP_REASON", "value": reason},
            version,
            {"name": "BACKUP_DATA", "value": "true" if data is not None else "false"},
        ] + self._bucket_env() + self._s3_env()
        if data is None:
            upload = self._container("upload", AWS_CLI_IMAGE, "backup.sh", upload_env, POSTGRES_UID)
            return self._pod(kube.labels(self.workspace, "database-backup"), [dump], upload, None, same_node)

        secret_mount = {"name": "secret", "mountPath": SECRET_DIR}
        restic_env = [*shared, {"name": "SECRET_DIR", "value": SECRET_DIR},
                      {"name": "DATA_DIR", "value": DATA_PATH}, {"name": "RESTIC_HOST", "value": self.workspace},
                      {"name": "RESTIC_CACHE_DIR", "value": CACHE_DIR}] + self._bucket_env() + self._s3_env()
        restic_mounts = [secret_mount, {"name": "cache", "mountPath": CACHE_DIR}]
        password = self._container(
            "password", AWS_CLI_IMAGE, "backup.sh",
            [{"name": "BACKUP_STEP", "value": "password"}, *shared, {"name": "SECRET_DIR", "value": SECRET_DIR}]
            + self._bucket_env() + self._s3_env(),
            DATA_UID, [secret_mount],
        )
        snapshot = self._container(
            "data", RESTIC_IMAGE, "data-backup.sh", [{"name": "DATA_STEP", "value": "backup"}, *restic_env], DATA_UID,
            [*restic_mounts, {"name": "data", "mountPath": DATA_PATH, "readOnly": True}], RESTIC_RESOURCES,
        )
        upload = self._container("upload", AWS_CLI_IMAGE, "backup.sh", upload_env, DATA_UID)
        prune = self._container(
            "prune", RESTIC_IMAGE, "data-backup.sh", [{"name": "DATA_STEP", "value": "prune"}, *restic_env], DATA_UID,
            restic_mounts, RESTIC_RESOURCES,
        )
        return self._pod(kube.labels(self.workspace, "database-backup"), [dump, password, snapshot, upload], prune, data, same_node)

    def _backup_job(self, key: str, job_name: pulumi.Input[str], template: dict, held: bool,
                    depends_on: Sequence[pulumi.Resource]) -> k8s.batch.v1.Job:
        """A one-shot backup (before an upgrade, before a pause): bounded in time, replaced by the
        next `pulumi up` if it failed, run once per name (components/jobs.py); nothing uploaded
        while the database has no tables. `held`: declared while paused, run on resume."""
        labels = kube.labels(self.workspace, "database-backup")
        return k8s.batch.v1.Job(
            f"{self.name_}-{key}",
            metadata={
                "name": job_name,
                "namespace": self.namespace,
                "labels": labels,
                "annotations": jobs.annotations(held, BACKUP_AWAIT_SECONDS),
            },
            spec=jobs.spec({"backoffLimit": 2, "activeDeadlineSeconds": BACKUP_DEADLINE_SECONDS, "template": template}, held),
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[*depends_on, *self.storage_ready, self.scripts],
                custom_timeouts=pulumi.CustomTimeouts(
                    create=f"{BACKUP_AWAIT_SECONDS // 60}m", update=f"{BACKUP_AWAIT_SECONDS // 60}m"
                ),
                # A new retention, endpoint or image does not take the backup again.
                ignore_changes=jobs.ignored(held),
            ),
        )

    def _pre_upgrade_backup(self) -> k8s.batch.v1.Job:
        """A backup before CVAT's migrations of a release run: one Job per release (Jobs are
        immutable and run once), while the former release still runs."""
        return self._backup_job(
            "backup-before-upgrade", f"backup-before-{version_slug(self.cvat_version or 'unknown')}",
            self._backup_pod("before-upgrade", skip_empty=True, same_node=True), held=self.paused,
            depends_on=[self.statefulset],
        )

    def _final_backup(self, schedule: pulumi.Resource) -> k8s.batch.v1.Job:
        """The last backup of a pause: once CVAT is scaled down, before PostgreSQL is. One per
        pause request: paused again later, another Job runs."""
        pause = random.RandomId(
            f"{self.name_}-pause-request", byte_length=4, keepers={"paused": "true"}, opts=pulumi.ResourceOptions(parent=self)
        )
        return self._backup_job(
            "backup-final", pause.hex.apply(lambda hex_: f"backup-final-{hex_}"),
            # CVAT is scaled down: no pod holds the volume; its last sessions may still be closing.
            self._backup_pod("final", skip_empty=True, same_node=False, wait_idle_seconds=FINAL_BACKUP_IDLE_WAIT_SECONDS),
            held=False, depends_on=[*self.args.get("pause_after", []), schedule],
        )

    def _cronjob(self, after: Sequence[pulumi.Resource]) -> k8s.batch.v1.CronJob:
        """Scheduled backups; suspended while paused (before the final backup). `kubectl create job
        --from=cronjob/database-backup` runs one now (its BACKUP_REASON may be set to manual)."""
        labels = kube.labels(self.workspace, "database-backup")
        return k8s.batch.v1.CronJob(
            f"{self.name_}-backup",
            metadata={"name": BACKUP_CRONJOB, "namespace": self.namespace, "labels": labels},
            spec={
                "schedule": self.args["backup_schedule"],
                "timeZone": "Etc/UTC",
                "suspend": self.paused,
                "concurrencyPolicy": "Forbid",
                "startingDeadlineSeconds": 3600,
                "successfulJobsHistoryLimit": 3,
                "failedJobsHistoryLimit": 3,
                "jobTemplate": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "backoffLimit": 2,
                        "activeDeadlineSeconds": SCHEDULED_DEADLINE_SECONDS,
                        "template": self._backup_pod("scheduled", skip_empty=False, same_node=True),
                    },
                },
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*after, *self.storage_ready]),
        )

    # ----- restore -----------------------------------------------------------

    def _restore_job(self) -> k8s.batch.v1.Job:
        """check (postgres) -> fetch (aws) [-> stage (restic)] -> restore (postgres) [-> swap (restic)]."""
        args = self.args
        data = self.data_claim
        labels = kube.labels(self.workspace, "database-restore")
        # One id per restore request: renewed when the source or force changes, or when
        # restoreFrom is removed and set again. It names the Job (Jobs are immutable and
        # run once) and marks the database and the data volume, so that a retried request
        # does nothing; CVAT's pods carry it, so that they restart after the restore.
        request = random.RandomId(
            f"{self.name_}-restore-request",
            byte_length=4,
            keepers={"restore_from": args["restore_from"], "restore_force": str(args["restore_force"])},
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.restore_request = request.hex
        restore_env = [
            {"name": "RESTORE_FROM", "value": args["restore_from"]},
            {"name": "RESTORE_REQUEST", "value": request.hex},
            {"name": "RESTORE_FORCE", "value": "true" if args["restore_force"] else "false"},
            {"name": "RESTORE_DIR", "value": WORK_DIR},
        ]
        data_env: list[dict] = []
        data_mount: list[dict] = []
        secret_mount = [{"name": "secret", "mountPath": SECRET_DIR}]
        if data is not None:
            data_env = [{"name": "DATA_DIR", "value": DATA_PATH}, {"name": "SECRET_DIR", "value": SECRET_DIR}]
            data_mount = [{"name": "data", "mountPath": DATA_PATH}]
        uid = DATA_UID if data is not None else POSTGRES_UID

        def step(name: str) -> list[dict]:
            return [{"name": "RESTORE_STEP", "value": name}] + restore_env

        check = self._container("check", POSTGRES_IMAGE, "restore.sh", step("check") + self._database_env(), POSTGRES_UID)
        # Reads the volume's restore state (read-only): a request restored there downloads nothing.
        fetch = self._container(
            "fetch", AWS_CLI_IMAGE, "restore.sh", step("fetch") + data_env + self._bucket_env() + self._s3_env(), uid,
            secret_mount + [{**m, "readOnly": True} for m in data_mount] if data is not None else (),
        )
        # Checks again (the database may have changed meanwhile), then restores.
        restore = self._container("restore", POSTGRES_IMAGE, "restore.sh", step("restore") + self._database_env(), POSTGRES_UID)
        if data is None:
            init, main = [check, fetch], restore
        else:
            restic_env = restore_env + data_env + [{"name": "RESTIC_CACHE_DIR", "value": CACHE_DIR}] + self._s3_env()
            restic_mounts = secret_mount + [{"name": "cache", "mountPath": CACHE_DIR}] + data_mount
            stage = self._container(
                "stage", RESTIC_IMAGE, "data-restore.sh", [{"name": "DATA_STEP", "value": "stage"}] + restic_env, DATA_UID,
                restic_mounts, RESTIC_RESOURCES,
            )
            swap = self._container(
                "swap", RESTIC_IMAGE, "data-restore.sh", [{"name": "DATA_STEP", "value": "swap"}] + restic_env, DATA_UID,
                restic_mounts,
            )
            init, main = [check, fetch, stage, restore], swap
        return k8s.batch.v1.Job(
            f"{self.name_}-restore",
            metadata={
                "name": request.hex.apply(lambda hex_: f"database-restore-{hex_}"),
                "namespace": self.namespace,
                "labels": labels,
                # A Job that failed (or never finished) is replaced on the next `pulumi up`
                # instead of being awaited again; one that succeeded is left alone.
                "annotations": jobs.annotations(self.paused, RESTORE_AWAIT_SECONDS),
            },
            spec=jobs.spec({
                # A refusal fails the check container of every attempt within seconds: the Job
                # then fails with BackoffLimitExceeded, which the awaiter reports at once.
                "backoffLimit": 2,
                "activeDeadlineSeconds": RESTORE_DEADLINE_SECONDS,
                "template": self._pod(labels, init, main, data, same_node=True),
            }, self.paused),
            opts=pulumi.ResourceOptions(
                parent=self,
                # After the backup of a new release: a restore replaces what that backup keeps.
                depends_on=[self.statefulset, self.pre_upgrade_backup, *self.storage_ready],
                custom_timeouts=pulumi.CustomTimeouts(
                    create=f"{RESTORE_AWAIT_SECONDS // 60}m", update=f"{RESTORE_AWAIT_SECONDS // 60}m"
                ),
                # One run per request (its name): a new endpoint or image does not restore again.
                ignore_changes=jobs.ignored(self.paused),
            ),
        )
