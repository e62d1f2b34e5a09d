"""Database: the workspace's PostgreSQL 15, and (components/backups.py) its backups and restores.

- PostgreSQL runs as a one-replica StatefulSet from the official image, on a
  PersistentVolumeClaim, with a generated password in a Secret.
- Its backups (scheduled, before an upgrade, the final one of a pause, with CVAT's
  data volume) and the restore of ``restoreFrom`` are built by
  :class:`components.backups.DatabaseBackups` as children of this component; this
  module says when each is made around PostgreSQL: paused, the final backup comes
  before the server scales to zero; running, the backup before an upgrade and a
  restore come after it is up, and CVAT waits on :attr:`Database.ready` (its pods
  roll with :attr:`Database.restore_request`).
- CVAT connects with :data:`CONNECTION`: the names are fixed, so CVAT can be built
  before the database (a pause scales CVAT down first).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NotRequired, Optional, Sequence, TypedDict

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components import kube
from components.backups import BackupStore, DatabaseBackups, DatabaseBackupsArgs
from components.config import BackupsConfig

# PostgreSQL major 15 is the one CVAT supports; the minor is pinned.
POSTGRES_IMAGE = "postgres:15.19"
POSTGRES_UID = 999  # the `postgres` user of the official image
PORT = 5432
DATABASE_NAME = "cvat"
DATABASE_USER = "cvat"
SERVICE_NAME = "postgres"
SECRET_NAME = "postgres"
PASSWORD_KEY = "password"


@dataclass(frozen=True)
class DatabaseConnection:
    """How a client reaches the database: host, port, database, user, and the Secret key of the password."""

    host: pulumi.Input[str]
    port: int
    name: str
    user: str
    password_secret: pulumi.Input[str]
    password_key: str

    def password_env(self, variable: str) -> dict[str, Any]:
        """An environment variable holding the password, read from its Secret."""
        return kube.secret_env(variable, self.password_secret, self.password_key)

    def libpq_environment(self) -> list[dict[str, Any]]:
        """PGHOST, PGPORT, PGUSER, PGDATABASE and PGPASSWORD, as psql, pg_dump and pg_restore read them."""
        return [
            {"name": "PGHOST", "value": self.host},
            {"name": "PGPORT", "value": str(self.port)},
            {"name": "PGUSER", "value": self.user},
            {"name": "PGDATABASE", "value": self.name},
            self.password_env("PGPASSWORD"),
        ]


# The database's fixed names: CVAT may be built before the database exists (a pause).
CONNECTION = DatabaseConnection(SERVICE_NAME, PORT, DATABASE_NAME, DATABASE_USER, SECRET_NAME, PASSWORD_KEY)


class DatabaseArgs(TypedDict):
    """Inputs of :class:`Database`."""

    namespace: pulumi.Input[str]
    workspace: str
    storage_size: str
    storage_class_name: str
    """Empty: the cluster's default storage class."""
    resources: dict[str, Any]
    """Of the PostgreSQL container (from the size preset)."""
    store: BackupStore
    """Where backups are written and read."""
    backups: BackupsConfig
    """The schedule and retention of backups, and the restore asked for (restoreFrom, restoreForce)."""
    cvat_version: NotRequired[str]
    """The CVAT release to run: a new one takes a backup first (:attr:`Database.pre_upgrade_backup`)."""
    data_claim: NotRequired[Optional[pulumi.Input[str]]]
    """CVAT's data volume claim (``cvat-data``): backed up with the database and restored with it.
    None: the database alone."""
    paused: NotRequired[bool]
    """Scale PostgreSQL to zero after a final backup (CVAT's Deployments first, see pause_after)."""
    pause_after: NotRequired[Sequence[pulumi.Resource]]
    """When paused: what must be done before the final backup (CVAT scaled down)."""


class Database(pulumi.ComponentResource):
    """PostgreSQL 15 with backups of the workspace to object storage, and optional restore."""

    connection: DatabaseConnection
    backup_prefix: str
    ready: list[pulumi.Resource]
    restore_request: pulumi.Output[str]
    pre_upgrade_backup: pulumi.Resource
    final_backup: Optional[pulumi.Resource]

    def __init__(self, name: str, args: DatabaseArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("labeling:index:Database", name, None, opts)
        self._resource_name = name
        self._args = args
        self.paused = bool(args.get("paused", False))
        self.connection = self._server_access()
        self.backups = DatabaseBackups(self, name, DatabaseBackupsArgs(
            namespace=args["namespace"], workspace=args["workspace"], store=args["store"], policy=args["backups"],
            connection=self.connection, postgres_image=POSTGRES_IMAGE, postgres_uid=POSTGRES_UID,
            cvat_version=args.get("cvat_version", "") or "", data_claim=args.get("data_claim"), paused=self.paused,
        ))
        self._server_and_backups()

        self.backup_prefix = args["store"].prefix
        connection = self.connection
        self.register_outputs(
            {
                "host": connection.host,
                "port": connection.port,
                "name": connection.name,
                "user": connection.user,
                "password_secret_name": connection.password_secret,
                "backup_prefix": self.backup_prefix,
                "restore_request": self.restore_request,
            }
        )

    def _server_access(self) -> DatabaseConnection:
        """The generated password, its Secret and the Service: the connection, as Outputs of them."""
        args, name = self._args, self._resource_name
        labels = kube.labels(args["workspace"], "postgres")
        child = pulumi.ResourceOptions(parent=self)
        password = random.RandomPassword(f"{name}-password", length=32, special=False, opts=child)
        secret = k8s.core.v1.Secret(
            f"{name}-secret",
            metadata={"name": SECRET_NAME, "namespace": args["namespace"], "labels": labels},
            type="Opaque",
            string_data={"database": DATABASE_NAME, "username": DATABASE_USER, PASSWORD_KEY: password.result},
            opts=child,
        )
        service = k8s.core.v1.Service(
            f"{name}-service",
            metadata={"name": SERVICE_NAME, "namespace": args["namespace"], "labels": labels},
            spec={"selector": kube.selector(args["workspace"], "postgres"),
                  "ports": [{"name": "postgres", "port": PORT, "targetPort": "postgres"}]},
            opts=child,
        )
        return DatabaseConnection(service.metadata["name"], PORT, DATABASE_NAME, DATABASE_USER, secret.metadata["name"], PASSWORD_KEY)

    def _server_and_backups(self) -> None:
        """PostgreSQL and its backups, in the order a pause or a run needs.

        Paused: the schedule is suspended first (no scheduled backup starts beside the final
        one), then the final backup (once CVAT is down), then the server scales to zero. The
        backup before an upgrade is always declared (held while paused, components/jobs.py):
        were it not, a resume would take it again.
        """
        backups = self.backups
        self.final_backup = None
        if self.paused:
            self.final_backup = backups.final(backups.schedule([]), self._args.get("pause_after", []))
        self.statefulset = self._statefulset()
        self.pre_upgrade_backup = backups.before_upgrade(self.statefulset)
        backups.record_version(self.pre_upgrade_backup)
        if not self.paused:
            backups.schedule([self.statefulset])
        self.ready = [self.statefulset]
        self.restore_job: Optional[k8s.batch.v1.Job] = None
        self.restore_request = pulumi.Output.from_input("")
        if self._args["backups"].restore_from:
            self.restore_job, self.restore_request = backups.restore(self.statefulset, self.pre_upgrade_backup)
            self.ready.append(self.restore_job)

    def _statefulset(self) -> k8s.apps.v1.StatefulSet:
        """The server: 1 replica, or 0 when paused (after the final backup; the volume stays)."""
        args = self._args
        labels = kube.labels(args["workspace"], "postgres")
        return k8s.apps.v1.StatefulSet(
            f"{self._resource_name}-server",
            metadata={"name": "postgres", "namespace": args["namespace"], "labels": labels, "annotations": kube.awaited()},
            spec={
                "serviceName": self.connection.host,
                "replicas": 0 if self.paused else 1,
                "selector": {"matchLabels": kube.selector(args["workspace"], "postgres")},
                "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
                "template": {"metadata": {"labels": labels}, "spec": self._pod_spec()},
                "volumeClaimTemplates": [{
                    "metadata": {"name": "data", "labels": labels},
                    "spec": kube.claim_spec(args["storage_size"], args["storage_class_name"]),
                }],
            },
            opts=pulumi.ResourceOptions(
                parent=self,
                # Paused: scaled down only once the final backup is in.
                depends_on=[self.final_backup] if self.final_backup else [],
                custom_timeouts=pulumi.CustomTimeouts(create="20m", update="20m"),
                # Claim templates are immutable: size and class are set when the volume is made
                # (grow it by expanding the claim data-postgres-0: databaseStorageSize in docs/configuration.md).
                ignore_changes=["spec.volumeClaimTemplates"],
            ),
        )

    def _pod_spec(self) -> dict[str, Any]:
        """The server's pod: the official image, its data in a subdirectory of the volume."""
        return {
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 60,
            "securityContext": kube.pod_security_context(POSTGRES_UID, fs_group=POSTGRES_UID),
            "containers": [self._container()],
            "volumes": [
                {"name": "run", "emptyDir": {"sizeLimit": "16Mi"}},
                {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
                # Parallel queries use shared memory; the runtime's default is 64 MiB.
                {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "256Mi"}},
            ],
        }

    def _container(self) -> dict[str, Any]:
        """PostgreSQL, ready only once the real server listens on TCP (not the init-time one)."""
        ready_check = {"exec": {"command": ["pg_isready", "--host=127.0.0.1", f"--username={DATABASE_USER}",
                                            f"--dbname={DATABASE_NAME}"]}}
        return {
            "name": "postgres",
            "image": POSTGRES_IMAGE,
            "env": [
                # A superuser (the official image makes POSTGRES_USER one): a restore
                # closes the database to connections and ends the others' sessions.
                {"name": "POSTGRES_USER", "value": DATABASE_USER},
                {"name": "POSTGRES_DB", "value": DATABASE_NAME},
                self.connection.password_env("POSTGRES_PASSWORD"),
                # A subdirectory: the volume's root may hold lost+found.
                {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
            ],
            "ports": [{"name": "postgres", "containerPort": PORT}],
            "readinessProbe": {**ready_check, "periodSeconds": 10, "timeoutSeconds": 5},
            "livenessProbe": {**ready_check, "initialDelaySeconds": 30, "periodSeconds": 20, "timeoutSeconds": 5,
                              "failureThreshold": 6},
            "startupProbe": {**ready_check, "periodSeconds": 5, "timeoutSeconds": 5, "failureThreshold": 120},
            "resources": self._args["resources"],
            "securityContext": kube.container_security_context(),
            "volumeMounts": [
                {"name": "data", "mountPath": "/var/lib/postgresql/data"},
                {"name": "run", "mountPath": "/var/run/postgresql"},
                {"name": "tmp", "mountPath": "/tmp"},
                {"name": "shm", "mountPath": "/dev/shm"},
            ],
        }
