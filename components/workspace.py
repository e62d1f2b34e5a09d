"""Workspace: one labeling workspace, wired from its configuration.

The only place where components meet: it builds the explicit providers and the
namespace, hands each component what it needs, and gathers the stack outputs.
Its constructor is the list of steps, in order: the provider, the namespace,
the object storage, the admin, the datasets, the database and CVAT (the only
step that knows the order a pause needs between them), the bootstrap, the
outputs.
"""

from __future__ import annotations

from typing import Any, Optional, TypedDict

import pulumi
import pulumi_kubernetes as k8s

from components import kube
from components.backups import BackupStore
from components.cloud_storages import CloudStorages
from components.cluster import ClusterBinding
from components.config import WorkspaceConfig, default_backup_bucket_prefix
from components.credentials import AdminCredentials
from components.cvat import DATA_CLAIM, Cvat
from components.database import CONNECTION as DATABASE_CONNECTION
from components.database import Database
from components.datasets import DatasetBuckets
from components.endpoint import S3Endpoint
from components.label_schema import projects_json
from components.minio import InClusterMinio
from components.sizes import PRESETS
from components.storage import ObjectStorage

# On the server's and workers' pod templates: a new restore request rolls them after the restore.
RESTORE_ANNOTATION = "labeling.dev/restore-request"
# Shown by every preview and update of a paused workspace (components/jobs.py holds the Jobs).
PAUSED_WARNING = (
    "The workspace is paused: its one-shot Jobs (migrations, admin account, bootstrap, backup before an "
    "upgrade, restore) are held. Changes of cvatVersion, size, hostname, egressAllow, projects, datasetBuckets, "
    "datasetAccess, storageEndpoint, storageRegion, storageAccessKey, storageSecretKey, adminUsername, adminEmail, "
    "adminPassword, restoreFrom or restoreForce made while paused apply when it resumes "
    "(pulumi config set paused false && pulumi up)."
)
# Size of the in-cluster MinIO's volume (development stacks only).
IN_CLUSTER_MINIO_STORAGE = "20Gi"


class WorkspaceArgs(TypedDict):
    """Inputs of :class:`Workspace`."""

    config: WorkspaceConfig
    adopt_backup_bucket: bool
    """The configured backup bucket exists and these keys can use it (preflight): import it."""


class Workspace(pulumi.ComponentResource):
    """A labeling workspace: namespace, object storage, database, admin credentials and CVAT."""

    annotation_url: pulumi.Output[str]
    namespace: pulumi.Output[str]
    backup_bucket: pulumi.Output[str]
    admin_password: pulumi.Output[str]
    outputs: dict[str, Any]
    """The stack outputs, by name."""

    def __init__(self, name: str, args: WorkspaceArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("labeling:index:Workspace", name, None, opts)
        self._resource_name = name
        self._config = args["config"]
        self._size = PRESETS[self._config.cvat.size]

        self._kubernetes_provider()
        if self._config.cluster.paused:
            pulumi.log.warn(PAUSED_WARNING)
        self._namespace()
        self._object_storage(args.get("adopt_backup_bucket", False))
        self._admin()
        self._datasets()
        self._database_and_cvat()
        self._bootstrap()
        self._outputs()

    def _kubernetes_provider(self) -> None:
        """The Kubernetes provider, bound to the cluster and namespace the workspace was made in."""
        cluster = self._config.cluster
        # A changed kubeContext or namespace stops the update before the provider or the volumes
        # would be replaced (components/cluster.py).
        self._binding = ClusterBinding(
            f"{self._resource_name}-cluster", cluster.kube_context, cluster.namespace, opts=pulumi.ResourceOptions(parent=self)
        )
        self._kubernetes = k8s.Provider(
            f"{self._resource_name}-kubernetes",
            context=cluster.kube_context or None,
            # The cluster's identity: the same value never replaces the provider, whatever the
            # kubeconfig file says (pulumi-kubernetes provider.go DiffConfig).
            cluster_identifier=cluster.kube_context or None,
            enable_server_side_apply=True,
            # Update Secrets and ConfigMaps in place instead of delete-then-create (their names are
            # fixed); the pods that read them roll through their templates' revision annotations.
            enable_config_map_mutable=True,
            enable_secret_mutable=True,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self._binding]),
        )
        self._in_kubernetes = pulumi.ResourceOptions(parent=self, providers=[self._kubernetes])

    def _namespace(self) -> None:
        """The workspace's namespace, held to the restricted pod security standard."""
        config = self._config
        metadata: dict[str, Any] = {
            "name": config.cluster.namespace,
            "labels": {
                **kube.labels(config.workspace_name, "workspace"),
                # Pods are built to the "restricted" standard: warn on any that is not, refuse privileged ones.
                "pod-security.kubernetes.io/enforce": "baseline",
                "pod-security.kubernetes.io/warn": "restricted",
                "pod-security.kubernetes.io/audit": "restricted",
            },
        }
        if config.cvat.description:
            metadata["annotations"] = {"labeling.dev/description": config.cvat.description}
        namespace = k8s.core.v1.Namespace(
            f"{self._resource_name}-namespace",
            metadata=metadata,
            opts=pulumi.ResourceOptions(parent=self, provider=self._kubernetes),
        )
        self.namespace = namespace.metadata["name"]

    def _object_storage(self, adopt_backup_bucket: bool) -> None:
        """The S3 endpoint (the configured one, or an in-cluster MinIO), and the buckets on it."""
        config, name = self._config, self._resource_name
        self.minio: Optional[InClusterMinio] = None
        if config.storage.minio_in_cluster:
            self.minio = self._in_cluster_minio()
            self.endpoint = S3Endpoint(
                provider="minio", region=config.storage.region, url=self.minio.url,
                access_key=self.minio.access_key, secret_key=self.minio.secret_key, in_cluster=True,
            )
            providers: list[pulumi.ProviderResource] = [self._kubernetes]
        else:
            self.endpoint = config.storage.endpoint
            # After the binding too: a refused move stops the update before any bucket step.
            s3 = self.endpoint.aws_provider(f"{name}-s3", pulumi.ResourceOptions(parent=self, depends_on=[self._binding]))
            providers = [self._kubernetes, s3]
        self.storage = ObjectStorage(
            f"{name}-storage",
            {
                "endpoint": self.endpoint,
                "namespace": self.namespace,
                "workspace": config.workspace_name,
                "backup_bucket": config.backups.bucket,
                "backup_bucket_prefix": default_backup_bucket_prefix(config.project, config.stack),
                "adopt_backup_bucket": adopt_backup_bucket,
                # Unique per project and stack: workspaces may share a backup bucket.
                "workspace_prefix": f"{config.workspace_key}/",
                "dataset_buckets": config.storage.dataset_buckets,
                "credentials_secret_name": self.minio.credentials_secret_name if self.minio else None,
                "server": self.minio.deployment if self.minio else None,
                "paused": config.cluster.paused,
            },
            opts=pulumi.ResourceOptions(parent=self, providers=providers),
        )
        self.backup_bucket = self.storage.backup_bucket

    def _in_cluster_minio(self) -> InClusterMinio:
        """The development stack's S3 server, inside the namespace."""
        config = self._config
        return InClusterMinio(
            f"{self._resource_name}-minio",
            {
                "namespace": self.namespace,
                "workspace": config.workspace_name,
                "region": config.storage.region,
                "storage_size": IN_CLUSTER_MINIO_STORAGE,
                "storage_class_name": config.cluster.storage_class_name,
                "resources": self._size.of("minio"),
                "image": config.storage.minio_image,
            },
            opts=self._in_kubernetes,
        )

    def _admin(self) -> None:
        """The admin's login, kept in a Secret."""
        self.credentials = AdminCredentials(
            f"{self._resource_name}-admin",
            {"namespace": self.namespace, "workspace": self._config.workspace_name, "admin": self._config.admin},
            opts=self._in_kubernetes,
        )
        self.admin_password = self.credentials.password

    def _datasets(self) -> None:
        """The user's buckets: counted, and mounted as CVAT's file share when asked for."""
        config = self._config
        self.datasets = DatasetBuckets(
            f"{self._resource_name}-datasets",
            {
                "namespace": self.namespace,
                "namespace_name": config.cluster.namespace,
                "workspace": config.workspace_name,
                "endpoint": self.endpoint,
                "buckets": config.storage.dataset_buckets,
                "inventory_limit": config.storage.dataset_inventory_limit,
                "share": config.cvat.shares_datasets,
                "csi_driver": config.cvat.dataset_csi_driver,
            },
            opts=self._in_kubernetes,
        )

    def _database_and_cvat(self) -> None:
        """The database and CVAT, in the order the workspace's state needs.

        Paused: CVAT first (its pods scale to zero), then the database, whose final backup
        waits for CVAT's pods to be down before PostgreSQL stops. Running (or resuming): the
        database first; CVAT's migrations wait for it, for a restore, and for the backup taken
        before a new release; the server and workers roll once a restore succeeded.
        """
        if self._config.cluster.paused:
            self.cvat = self._cvat(database_ready=[], backend_annotations={})
            self.database = self._database(pause_after=self.cvat.running)
            return
        self.database = self._database(pause_after=[])
        restored = {RESTORE_ANNOTATION: self.database.restore_request} if self._config.backups.restore_from else {}
        self.cvat = self._cvat([*self.database.ready, self.database.pre_upgrade_backup], restored)

    def _database(self, pause_after: list[pulumi.Resource]) -> Database:
        """PostgreSQL and its backups; `pause_after`: what stops before the final backup of a pause."""
        config, storage = self._config, self.storage
        return Database(
            f"{self._resource_name}-database",
            {
                "namespace": self.namespace,
                "workspace": config.workspace_name,
                "storage_size": config.cvat.database_storage_size,
                "storage_class_name": config.cluster.storage_class_name,
                "resources": self._size.of("postgres"),
                "store": BackupStore(
                    endpoint=self.endpoint, bucket=storage.backup_bucket, prefix=f"{config.workspace_key}/database/",
                    credentials_secret=storage.credentials_secret_name, ready=tuple(storage.ready),
                ),
                "backups": config.backups,
                "cvat_version": config.cvat.version,
                # CVAT's data volume is backed up and restored with the database.
                "data_claim": DATA_CLAIM,
                "paused": config.cluster.paused,
                "pause_after": pause_after,
            },
            opts=self._in_kubernetes,
        )

    def _cvat(self, database_ready: list[pulumi.Resource], backend_annotations: dict[str, Any]) -> Cvat:
        """CVAT; `database_ready`: what its migrations wait for; `backend_annotations` roll its pods."""
        config = self._config
        return Cvat(
            f"{self._resource_name}-cvat",
            {
                "namespace": self.namespace,
                "workspace": config.workspace_name,
                "settings": config.cvat,
                "storage_class_name": config.cluster.storage_class_name,
                "ingress": config.ingress,
                # The database's names are fixed: CVAT may be built before it (a pause).
                "database": DATABASE_CONNECTION,
                "database_ready": database_ready,
                "admin": self.credentials.login,
                # The in-cluster MinIO is private too: CVAT's SSRF guard must let it through.
                "egress_allow": [*config.network.egress_allow, *([self.minio.cluster_ip] if self.minio else [])],
                "share_claims": self.datasets.share_claims,
                "paused": config.cluster.paused,
                "backend_annotations": backend_annotations,
                "rollout_secrets": self._share_keys(),
            },
            opts=self._in_kubernetes,
        )

    def _share_keys(self) -> dict[str, pulumi.Input[str]]:
        """The share's volumes mount with the S3 keys: new keys remount them by rolling CVAT's pods."""
        if not self.datasets.share_claims:
            return {}
        return {"s3-access-key": self.endpoint.access_key, "s3-secret-key": self.endpoint.secret_key}

    def _bootstrap(self) -> None:
        """The bootstrap Job: registers the buckets as cloud storages and creates the label schemas."""
        config = self._config
        registered = list(config.storage.dataset_buckets) if config.cvat.registers_datasets else []
        if not (registered or config.cvat.projects):
            return
        CloudStorages(
            f"{self._resource_name}-cloud-storages",
            {
                "namespace": self.namespace,
                "workspace": config.workspace_name,
                "description": config.cvat.description,
                "backend_image": self.cvat.backend_image,
                "backend_url": self.cvat.backend_url,
                "endpoint": self.endpoint,
                "s3_credentials_secret": self.storage.credentials_secret_name,
                "admin_credentials_secret": self.credentials.secret_name,
                "buckets": registered,
                "projects_json": projects_json(list(config.cvat.projects)),
                "resources": self._size.of("job"),
                # The buckets must exist (in-cluster MinIO) and CVAT must be fully up.
                "cvat_ready": [*self.cvat.ready, *self.storage.ready],
                "paused": config.cluster.paused,
            },
            opts=self._in_kubernetes,
        )

    def _outputs(self) -> None:
        """The stack outputs (exported by __main__.py) and the component's own."""
        config, credentials = self._config, self.credentials
        self.annotation_url = pulumi.Output.from_input(self.cvat.url)
        self.outputs = {
            "annotationUrl": self.annotation_url,
            "adminUsername": credentials.username,
            "adminEmail": credentials.email,
            "adminPassword": credentials.password,
            "namespace": self.namespace,
            "datasetBuckets": list(config.storage.dataset_buckets),
            "datasets": self.datasets.datasets,
            "backupBucket": self.storage.backup_bucket,
            "backupPrefix": self.database.backup_prefix,
            "backupSchedule": config.backups.schedule,
            "backupRetentionDays": config.backups.retention_days,
            "cvatVersion": config.cvat.version,
            "description": config.cvat.description,
            "status": "paused" if config.cluster.paused else "running",
        }
        self.register_outputs(self.outputs)
