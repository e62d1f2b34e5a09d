"""The database's backups (with CVAT's data volume) and restores, beside components/database.py.

- A backup (docs/backups.md) is a pg_dump archive, a restic snapshot of CVAT's
  data volume, and a manifest written last. The CronJob ``database-backup`` takes
  one on schedule (also usable by ``kubectl create job --from=cronjob/...``); a
  one-shot Job named for the CVAT version takes one before an upgrade (CVAT's
  migration waits for it); and a one-shot Job per pause takes a final one before
  PostgreSQL is scaled to zero. Each step runs in the official image that has its
  tool: postgres (pg_dump), amazon/aws-cli (uploads, manifest, retention),
  restic/restic (the data volume). Scripts: ``assets/backup.sh``,
  ``data-backup.sh``, ``restore.sh``, ``data-restore.sh``.
- With ``restoreFrom``, a Job restores a backup before CVAT's migrations run: the
  database in one transaction, the data volume staged, then swapped in. Its first
  container checks the database before anything is downloaded: a refusal (tables
  without ``restoreForce``) fails every attempt within seconds, so the Job ends
  with ``BackoffLimitExceeded``, one of the two reasons pulumi-kubernetes' Job
  awaiter reports as a failure (``DeadlineExceeded`` is the other; a
  ``podFailurePolicy`` ending in ``PodFailurePolicy`` would be awaited until the
  timeout). A request already restored downloads nothing.
  ``pulumi.com/replaceUnready`` makes the next ``pulumi up`` replace a failed Job
  instead of awaiting it again (components/jobs.py).

:class:`DatabaseBackups` builds these resources as children of the
:class:`~components.database.Database` component (their URNs are the ones they
always had); the Database says when each is made (before or after PostgreSQL).

Run as a command, this module is the deprecated entry point of the operators'
backup command, now ``python -m backups``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Sequence

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components import jobs, kube
from components.cvat import DATA_LABEL
from components.endpoint import AWS_CLI_IMAGE, S3Endpoint

if TYPE_CHECKING:
    from components.config import BackupsConfig
    from components.database import DatabaseConnection

# The official restic image (Alpine, busybox sh); backs up and restores the data volume.
RESTIC_IMAGE = "restic/restic:0.18.1"
# Where CVAT's data volume is mounted, in CVAT's pods and in the backup and restore pods.
DATA_PATH = "/home/django/data"
BACKUP_CRONJOB = "database-backup"
# The CVAT release whose schema the database holds, read by the backup pods (manifest).
VERSION_CONFIGMAP = "database-cvat-version"
SCRIPTS_CONFIGMAP = "database-scripts"
SCRIPTS = ("backup.sh", "data-backup.sh", "restore.sh", "data-restore.sh", kube.S3_HELPERS)
# Exit code of restore.sh when it refuses to overwrite a database with tables.
RESTORE_REFUSED = 3
# A pause's final backup waits this long for CVAT's last database sessions to close (its
# pods' grace period is 30 s), then ends what is left (backup.sh, BACKUP_WAIT_IDLE_SECONDS).
FINAL_BACKUP_IDLE_WAIT_SECONDS = 300
# Scheduled backups: the CronJob's Jobs (the one-shot ones: jobs.BACKUP and jobs.RESTORE).
SCHEDULED_DEADLINE_SECONDS = 6 * 3600
JOB_RESOURCES = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}
# restic keeps the repository's index in memory.
RESTIC_RESOURCES = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}
# Where the steps of a pod hand things on (emptyDirs).
WORK_DIR = "/work"
SECRET_DIR = "/secret"
CACHE_DIR = "/cache"


def version_slug(version: str) -> str:
    """A CVAT release as a DNS label part: v2.73.0 -> v2-73-0."""
    slug = re.sub(r"[^a-z0-9]+", "-", version.lower()).strip("-")
    return slug[:40].strip("-") or "unknown"


@dataclass(frozen=True)
class BackupStore:
    """Where the workspace's backups are kept, and how the pods reach it."""

    endpoint: S3Endpoint
    bucket: pulumi.Input[str]
    prefix: str
    """Key prefix of this workspace's database backups, "<key>/database/"."""
    credentials_secret: pulumi.Input[str]
    """The Secret with keys accessKeyId and secretAccessKey."""
    ready: Sequence[pulumi.Resource] = ()
    """What must exist before backups are written or read (the bucket)."""

    def bucket_env(self) -> list[dict]:
        """Where the scripts read and write: the bucket and the prefix."""
        return [{"name": "BACKUP_BUCKET", "value": self.bucket}, {"name": "BACKUP_PREFIX", "value": self.prefix}]

    def s3_env(self) -> list[dict]:
        """How the AWS CLI and restic reach the endpoint, the keys read from their Secret."""
        return [{"name": key, "value": value} for key, value in self.endpoint.cli_environment().items()] + [
            kube.secret_env("AWS_ACCESS_KEY_ID", self.credentials_secret, "accessKeyId"),
            kube.secret_env("AWS_SECRET_ACCESS_KEY", self.credentials_secret, "secretAccessKey"),
            {"name": "HOME", "value": "/tmp"},
        ]


@dataclass(frozen=True)
class DatabaseBackupsArgs:
    """What the backups of one database need."""

    namespace: pulumi.Input[str]
    workspace: str
    store: BackupStore
    policy: "BackupsConfig"
    """The schedule, the retention, and the restore asked for (restoreFrom, restoreForce)."""
    connection: "DatabaseConnection"
    postgres_image: str
    """The server's own image: its pg_dump and pg_restore match the server."""
    postgres_uid: int
    cvat_version: str
    """The CVAT release to run: a new one takes a backup first."""
    data_claim: Optional[pulumi.Input[str]]
    """CVAT's data volume claim, backed up and restored with the database; None: the database alone."""
    paused: bool


class BackupPods:
    """The pod templates of backups and restores: each step a container in the image that has its tool."""

    def __init__(self, args: DatabaseBackupsArgs, scripts: pulumi.Input[str]):
        self.args = args
        self.scripts = scripts

    def container(self, name: str, image: str, script: str, env: list[dict], uid: int,
                  extra_mounts: Sequence[dict] = (), resources: Optional[dict] = None) -> dict:
        """One step: a script of the ConfigMap, run as `uid`, with the pod's work and tmp directories."""
        context = {**kube.container_security_context(), "runAsUser": uid, "runAsGroup": uid}
        return {
            "name": name,
            "image": image,
            "command": ["/bin/sh", f"{jobs.SCRIPTS_DIR}/{script}"],
            "env": env,
            "resources": resources or JOB_RESOURCES,
            "securityContext": context,
            "volumeMounts": [jobs.scripts_mount(), {"name": "work", "mountPath": WORK_DIR},
                             {"name": "tmp", "mountPath": "/tmp"}, *extra_mounts],
        }

    def pod(self, labels: dict, init: list[dict], main: dict, same_node: bool) -> dict:
        """A Job's pod: its steps share WORK_DIR (and SECRET_DIR, in memory, for the data
        repository's password); with the data volume, the pod runs as CVAT's user group
        and, when CVAT runs (`same_node`), on the node where the volume is attached."""
        data = self.args.data_claim
        volumes: list[dict] = [
            jobs.scripts_volume(self.scripts, executable=True),
            # Holds the dump between the steps; as large as the dump.
            {"name": "work", "emptyDir": {}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
        ]
        uid = self.args.postgres_uid
        if data is not None:
            volumes += [
                {"name": "secret", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
                {"name": "cache", "emptyDir": {"sizeLimit": "4Gi"}},
                {"name": "data", "persistentVolumeClaim": {"claimName": data}},
            ]
            # The data volume belongs to CVAT's user and group; the emptyDirs get the group too.
            uid = kube.CVAT_UID
            # The same label as CVAT's pods that mount the volume: required affinity to them
            # puts the pod on their node (a ReadWriteOnce volume attaches to one node); with
            # none running, the pod matches its own term and may go anywhere.
            labels = {**labels, DATA_LABEL: self.args.workspace}
        pod = jobs.script_pod(labels, [main], volumes, kube.pod_security_context(uid, fs_group=uid), init_containers=init)
        if data is not None and same_node:
            pod["spec"]["affinity"] = {
                "podAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": [
                        {"labelSelector": {"matchLabels": {DATA_LABEL: self.args.workspace}},
                         "topologyKey": "kubernetes.io/hostname"}
                    ]
                }
            }
        return pod

    def backup(self, reason: str, skip_empty: bool, same_node: bool, wait_idle_seconds: int = 0) -> dict:
        """dump (postgres) -> password, data (restic) -> upload (aws) -> prune (restic); without
        a data volume: dump -> upload. `wait_idle_seconds`: the dump first waits for the other
        sessions to leave (a pause: CVAT's pods may still be terminating)."""
        args = self.args
        labels = kube.labels(args.workspace, "database-backup")
        idle = [{"name": "BACKUP_WAIT_IDLE_SECONDS", "value": str(wait_idle_seconds)}] if wait_idle_seconds else []
        dump = self.container(
            "dump", args.postgres_image, "backup.sh",
            [{"name": "BACKUP_STEP", "value": "dump"}, {"name": "BACKUP_DIR", "value": WORK_DIR},
             {"name": "BACKUP_SKIP_EMPTY", "value": "true" if skip_empty else "false"}, *idle]
            + args.connection.libpq_environment(),
            args.postgres_uid,
        )
        if args.data_claim is None:
            upload = self.container("upload", AWS_CLI_IMAGE, "backup.sh", self._upload_env(reason), args.postgres_uid)
            return self.pod(labels, [dump], upload, same_node)
        password, snapshot, prune = self._data_backup_steps()
        upload = self.container("upload", AWS_CLI_IMAGE, "backup.sh", self._upload_env(reason), kube.CVAT_UID)
        return self.pod(labels, [dump, password, snapshot, upload], prune, same_node)

    def _upload_env(self, reason: str) -> list[dict]:
        """The upload step: the dump (and the snapshot's id) to the bucket, the manifest, retention."""
        store = self.args.store
        version = {"name": "CVAT_VERSION",
                   "valueFrom": {"configMapKeyRef": {"name": VERSION_CONFIGMAP, "key": "version", "optional": True}}}
        return [
            {"name": "BACKUP_STEP", "value": "upload"}, {"name": "BACKUP_DIR", "value": WORK_DIR},
            {"name": "RETENTION_DAYS", "value": str(self.args.policy.retention_days)},
            {"name": "BACKUP_REASON", "value": reason},
            version,
            {"name": "BACKUP_DATA", "value": "true" if self.args.data_claim is not None else "false"},
        ] + store.bucket_env() + store.s3_env()

    def _data_backup_steps(self) -> tuple[dict, dict, dict]:
        """(password, snapshot, prune): the data repository's password, a restic snapshot of the
        data volume (read-only), and the repository's own retention."""
        store, workspace = self.args.store, self.args.workspace
        shared = [{"name": "BACKUP_DIR", "value": WORK_DIR}]
        secret_mount = {"name": "secret", "mountPath": SECRET_DIR}
        restic_env = [*shared, {"name": "SECRET_DIR", "value": SECRET_DIR},
                      {"name": "DATA_DIR", "value": DATA_PATH}, {"name": "RESTIC_HOST", "value": workspace},
                      {"name": "RESTIC_CACHE_DIR", "value": CACHE_DIR}] + store.bucket_env() + store.s3_env()
        restic_mounts = [secret_mount, {"name": "cache", "mountPath": CACHE_DIR}]
        password = self.container(
            "password", AWS_CLI_IMAGE, "backup.sh",
            [{"name": "BACKUP_STEP", "value": "password"}, *shared, {"name": "SECRET_DIR", "value": SECRET_DIR}]
            + store.bucket_env() + store.s3_env(),
            kube.CVAT_UID, [secret_mount],
        )
        snapshot = self.container(
            "data", RESTIC_IMAGE, "data-backup.sh", [{"name": "DATA_STEP", "value": "backup"}, *restic_env], kube.CVAT_UID,
            [*restic_mounts, {"name": "data", "mountPath": DATA_PATH, "readOnly": True}], RESTIC_RESOURCES,
        )
        prune = self.container(
            "prune", RESTIC_IMAGE, "data-backup.sh", [{"name": "DATA_STEP", "value": "prune"}, *restic_env], kube.CVAT_UID,
            restic_mounts, RESTIC_RESOURCES,
        )
        return password, snapshot, prune

    def restore(self, request: pulumi.Input[str]) -> dict:
        """check (postgres) -> fetch (aws) [-> stage (restic)] -> restore (postgres) [-> swap (restic)]."""
        args = self.args
        policy, data = args.policy, args.data_claim
        restore_env = [
            {"name": "RESTORE_FROM", "value": policy.restore_from},
            {"name": "RESTORE_REQUEST", "value": request},
            {"name": "RESTORE_FORCE", "value": "true" if policy.restore_force else "false"},
            {"name": "RESTORE_DIR", "value": WORK_DIR},
        ]
        data_env = [{"name": "DATA_DIR", "value": DATA_PATH}, {"name": "SECRET_DIR", "value": SECRET_DIR}] if data is not None else []
        data_mount = [{"name": "data", "mountPath": DATA_PATH}] if data is not None else []
        secret_mount = [{"name": "secret", "mountPath": SECRET_DIR}]

        def step(name: str) -> list[dict]:
            return [{"name": "RESTORE_STEP", "value": name}] + restore_env

        database_env = args.connection.libpq_environment()
        check = self.container("check", args.postgres_image, "restore.sh", step("check") + database_env, args.postgres_uid)
        # Reads the volume's restore state (read-only): a request restored there downloads nothing.
        fetch = self.container(
            "fetch", AWS_CLI_IMAGE, "restore.sh", step("fetch") + data_env + args.store.bucket_env() + args.store.s3_env(),
            kube.CVAT_UID if data is not None else args.postgres_uid,
            secret_mount + [{**m, "readOnly": True} for m in data_mount] if data is not None else (),
        )
        # Checks again (the database may have changed meanwhile), then restores.
        restore = self.container("restore", args.postgres_image, "restore.sh", step("restore") + database_env, args.postgres_uid)
        labels = kube.labels(args.workspace, "database-restore")
        if data is None:
            return self.pod(labels, [check, fetch], restore, same_node=True)
        restic_env = restore_env + data_env + [{"name": "RESTIC_CACHE_DIR", "value": CACHE_DIR}] + args.store.s3_env()
        restic_mounts = secret_mount + [{"name": "cache", "mountPath": CACHE_DIR}] + data_mount
        stage = self.container(
            "stage", RESTIC_IMAGE, "data-restore.sh", [{"name": "DATA_STEP", "value": "stage"}] + restic_env, kube.CVAT_UID,
            restic_mounts, RESTIC_RESOURCES,
        )
        swap = self.container(
            "swap", RESTIC_IMAGE, "data-restore.sh", [{"name": "DATA_STEP", "value": "swap"}] + restic_env, kube.CVAT_UID,
            restic_mounts,
        )
        return self.pod(labels, [check, fetch, stage, restore], swap, same_node=True)


class DatabaseBackups:
    """The backup and restore resources of one Database, made as its children (resource names
    ``<database>-backup``, ``-backup-final``, ``-backup-before-upgrade``, ``-restore``...)."""

    def __init__(self, owner: pulumi.Resource, name: str, args: DatabaseBackupsArgs):
        self.owner = owner
        self.name = name
        self.args = args
        self.scripts = jobs.scripts_configmap(
            f"{name}-scripts",
            {"name": SCRIPTS_CONFIGMAP, "namespace": args.namespace, "labels": kube.labels(args.workspace, "database-backup")},
            SCRIPTS, parent=owner,
        )
        self.pods = BackupPods(args, self.scripts.metadata["name"])

    def schedule(self, after: Sequence[pulumi.Resource]) -> k8s.batch.v1.CronJob:
        """Scheduled backups; suspended while paused (before the final backup). `kubectl create job
        --from=cronjob/database-backup` runs one now (its BACKUP_REASON may be set to manual)."""
        args = self.args
        labels = kube.labels(args.workspace, "database-backup")
        return k8s.batch.v1.CronJob(
            f"{self.name}-backup",
            metadata={"name": BACKUP_CRONJOB, "namespace": args.namespace, "labels": labels},
            spec={
                "schedule": args.policy.schedule,
                "timeZone": "Etc/UTC",
                "suspend": args.paused,
                "concurrencyPolicy": "Forbid",
                "startingDeadlineSeconds": 3600,
                "successfulJobsHistoryLimit": 3,
                "failedJobsHistoryLimit": 3,
                "jobTemplate": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "backoffLimit": 2,
                        "activeDeadlineSeconds": SCHEDULED_DEADLINE_SECONDS,
                        "template": self.pods.backup("scheduled", skip_empty=False, same_node=True),
                    },
                },
            },
            opts=pulumi.ResourceOptions(parent=self.owner, depends_on=[*after, *args.store.ready]),
        )

    def _one_shot(self, key: str, job_name: pulumi.Input[str], template: dict, held: bool,
                  depends_on: Sequence[pulumi.Resource]) -> k8s.batch.v1.Job:
        """A one-shot backup (before an upgrade, before a pause): bounded in time, replaced by the
        next `pulumi up` if it failed, run once per name (components/jobs.py); nothing uploaded
        while the database has no tables. `held`: declared while paused, run on resume."""
        return jobs.one_shot_job(
            f"{self.name}-{key}",
            {"name": job_name, "namespace": self.args.namespace, "labels": kube.labels(self.args.workspace, "database-backup")},
            template, backoff_limit=2, deadline=jobs.BACKUP,
            # A new retention, endpoint or image does not take the backup again.
            options=jobs.JobOptions(parent=self.owner, held=held,
                                    depends_on=[*depends_on, *self.args.store.ready, self.scripts]),
        )

    def before_upgrade(self, server: pulumi.Resource) -> k8s.batch.v1.Job:
        """A backup before CVAT's migrations of a release run: one Job per release (Jobs are
        immutable and run once), while the former release still runs; held while paused."""
        return self._one_shot(
            "backup-before-upgrade", f"backup-before-{version_slug(self.args.cvat_version or 'unknown')}",
            self.pods.backup("before-upgrade", skip_empty=True, same_node=True), held=self.args.paused,
            depends_on=[server],
        )

    def final(self, schedule: pulumi.Resource, pause_after: Sequence[pulumi.Resource]) -> k8s.batch.v1.Job:
        """The last backup of a pause: once CVAT is scaled down (`pause_after`) and the schedule
        suspended, before PostgreSQL is. One per pause request: paused again later, another Job runs."""
        pause = random.RandomId(
            f"{self.name}-pause-request", byte_length=4, keepers={"paused": "true"},
            opts=pulumi.ResourceOptions(parent=self.owner),
        )
        return self._one_shot(
            "backup-final", pause.hex.apply(lambda hex_: f"backup-final-{hex_}"),
            # CVAT is scaled down: no pod holds the volume; its last sessions may still be closing.
            self.pods.backup("final", skip_empty=True, same_node=False, wait_idle_seconds=FINAL_BACKUP_IDLE_WAIT_SECONDS),
            held=False, depends_on=[*pause_after, schedule],
        )

    def record_version(self, before_upgrade: pulumi.Resource) -> k8s.core.v1.ConfigMap:
        """The release whose schema the database holds, as the next backups record it: changed
        only once the backup before an upgrade ran (it records the former one); held while
        paused, as that backup is."""
        args = self.args
        return k8s.core.v1.ConfigMap(
            f"{self.name}-cvat-version",
            metadata={"name": VERSION_CONFIGMAP, "namespace": args.namespace, "labels": kube.labels(args.workspace, "database-backup")},
            data={"version": args.cvat_version or "unknown"},
            opts=pulumi.ResourceOptions(
                parent=self.owner, depends_on=[before_upgrade], ignore_changes=["data"] if args.paused else None
            ),
        )

    def restore(self, server: pulumi.Resource, before_upgrade: pulumi.Resource) -> tuple[k8s.batch.v1.Job, pulumi.Output[str]]:
        """The restore Job of `restoreFrom`, and its request id.

        One id per restore request: renewed when the source or force changes, or when
        restoreFrom is removed and set again. It names the Job (Jobs are immutable and run
        once) and marks the database and the data volume, so that a retried request does
        nothing; CVAT's pods carry it, so that they restart after the restore.
        """
        args = self.args
        request = random.RandomId(
            f"{self.name}-restore-request",
            byte_length=4,
            keepers={"restore_from": args.policy.restore_from, "restore_force": str(args.policy.restore_force)},
            opts=pulumi.ResourceOptions(parent=self.owner),
        )
        job = jobs.one_shot_job(
            f"{self.name}-restore",
            {"name": request.hex.apply(lambda hex_: f"database-restore-{hex_}"), "namespace": args.namespace,
             "labels": kube.labels(args.workspace, "database-restore")},
            # A refusal fails the check container of every attempt within seconds: the Job
            # then fails with BackoffLimitExceeded, which the awaiter reports at once.
            self.pods.restore(request.hex), backoff_limit=2, deadline=jobs.RESTORE,
            # After the backup of a new release: a restore replaces what that backup keeps.
            # One run per request (its name): a new endpoint or image does not restore again.
            options=jobs.JobOptions(parent=self.owner, held=args.paused,
                                    depends_on=[server, before_upgrade, *args.store.ready]),
        )
        return job, request.hex


if __name__ == "__main__":
    import sys

    from backups.cli import main

    sys.stderr.write("components.backups is now `python -m backups`\n")
    sys.exit(main())
