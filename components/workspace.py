"""Workspace: one labeling workspace, wired from its configuration.

The only place where components meet: it builds the explicit providers and the
namespace, hands each component what it needs, and gathers the stack outputs.
"""

from __future__ import annotations

from typing import Any, Optional, TypedDict

import pulumi
import pulumi_kubernetes as k8s

from components import kube
from components.config import WorkspaceConfig, default_backup_bucket_prefix
from components.cloud_storages import CloudStorages
from components.cluster import ClusterBinding
from components.credentials import AdminCredentials
from components.cvat import Cvat
from components.label_schema import projects_json
from components.datasets import DatasetBuckets
from components.cvat import DATA_CLAIM
from components.database import (
    DATABASE_NAME,
    DATABASE_USER,
    PASSWORD_KEY as DATABASE_PASSWORD_KEY,
    PORT as DATABASE_PORT,
    SECRET_NAME as DATABASE_SECRET,
    SERVICE_NAME as DATABASE_SERVICE,
    Database,
)
from components.endpoint import S3Endpoint
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

    def __init__(self, name: str, args: WorkspaceArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("labeling:index:Workspace", name, None, opts)
        config = args["config"]
        workspace = config.workspace_name
        size = PRESETS[config.cvat.size]

        # The cluster and namespace the workspace was made in: a changed kubeContext or namespace
        # stops the update before the provider or the volumes would be replaced (components/cluster.py).
        binding = ClusterBinding(
            f"{name}-cluster", config.cluster.kube_context, config.cluster.namespace, opts=pulumi.ResourceOptions(parent=self)
        )
        kubernetes = k8s.Provider(
            f"{name}-kubernetes",
            context=config.cluster.kube_context or None,
            # The cluster's identity: the same value never replaces the provider, whatever the
            # kubeconfig file says (pulumi-kubernetes provider.go DiffConfig).
            cluster_identifier=config.cluster.kube_context or None,
            enable_server_side_apply=True,
            # Update Secrets and ConfigMaps in place instead of delete-then-create (their names are
            # fixed); the pods that read them roll through their templates' revision annotations.
            enable_config_map_mutable=True,
            enable_secret_mutable=True,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[binding]),
        )
        if config.cluster.paused:
            pulumi.log.warn(PAUSED_WARNING)
        namespace_metadata: dict[str, Any] = {
            "name": config.cluster.namespace,
            "labels": {
                **kube.labels(workspace, "workspace"),
                # Pods are built to the "restricted" standard: warn on any that is not, refuse privileged ones.
                "pod-security.kubernetes.io/enforce": "baseline",
                "pod-security.kubernetes.io/warn": "restricted",
                "pod-security.kubernetes.io/audit": "restricted",
            },
        }
        if config.cvat.description:
            namespace_metadata["annotations"] = {"labeling.dev/description": config.cvat.description}
        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata=namespace_metadata,
            opts=pulumi.ResourceOptions(parent=self, provider=kubernetes),
        )
        namespace_name = namespace.metadata["name"]
        in_kubernetes = pulumi.ResourceOptions(parent=self, providers=[kubernetes])

        minio: Optional[InClusterMinio] = None
        if config.storage.minio_in_cluster:
            minio = InClusterMinio(
                f"{name}-minio",
                {
                    "namespace": namespace_name,
                    "workspace": workspace,
                    "region": config.storage.region,
                    "storage_size": IN_CLUSTER_MINIO_STORAGE,
                    "storage_class_name": config.cluster.storage_class_name,
                    "resources": size.of("minio"),
                    "image": config.storage.minio_image,
                },
                opts=in_kubernetes,
            )
            endpoint = S3Endpoint(
                provider="minio",
                region=config.storage.region,
                url=minio.url,
                access_key=minio.access_key,
                secret_key=minio.secret_key,
                in_cluster=True,
            )
            storage_providers: list[pulumi.ProviderResource] = [kubernetes]
        else:
            endpoint = config.storage.endpoint
            # After the binding too: a refused move stops the update before any bucket step.
            s3 = endpoint.aws_provider(f"{name}-s3", pulumi.ResourceOptions(parent=self, depends_on=[binding]))
            storage_providers = [kubernetes, s3]

        storage = ObjectStorage(
            f"{name}-storage",
            {
                "endpoint": endpoint,
                "namespace": namespace_name,
                "workspace": workspace,
                "backup_bucket": config.backups.bucket,
                "backup_bucket_prefix": default_backup_bucket_prefix(config.project, config.stack),
                "adopt_backup_bucket": args.get("adopt_backup_bucket", False),
                # Unique per project and stack: workspaces may share a backup bucket.
                "workspace_prefix": f"{config.workspace_key}/",
                "dataset_buckets": config.storage.dataset_buckets,
                "credentials_secret_name": minio.credentials_secret_name if minio else None,
                "server": minio.deployment if minio else None,
                "paused": config.cluster.paused,
            },
            opts=pulumi.ResourceOptions(parent=self, providers=storage_providers),
        )
        credentials = AdminCredentials(
            f"{name}-admin",
            {
                "namespace": namespace_name,
                "workspace": workspace,
                "username": config.admin.username,
                "email": config.admin.email,
                "password": config.admin.password,
            },
            opts=in_kubernetes,
        )

        datasets = DatasetBuckets(
            f"{name}-datasets",
            {
                "namespace": namespace_name,
                "namespace_name": config.cluster.namespace,
                "workspace": workspace,
                "endpoint": endpoint,
                "buckets": config.storage.dataset_buckets,
                "inventory_limit": config.storage.dataset_inventory_limit,
                "share": config.cvat.shares_datasets,
                "csi_driver": config.cvat.dataset_csi_driver,
            },
            opts=in_kubernetes,
        )
        def build_database(pause_after: list[pulumi.Resource]) -> Database:
            return Database(
                f"{name}-database",
                {
                    "namespace": namespace_name,
                    "workspace": workspace,
                    "storage_size": config.cvat.database_storage_size,
                    "storage_class_name": config.cluster.storage_class_name,
                    "endpoint": endpoint,
                    "s3_credentials_secret_name": storage.credentials_secret_name,
                    "backup_bucket": storage.backup_bucket,
                    "storage_ready": storage.ready,
                    "backup_prefix": f"{config.workspace_key}/database/",
                    "backup_schedule": config.backups.schedule,
                    "retention_days": config.backups.retention_days,
                    "restore_from": config.backups.restore_from,
                    "restore_force": config.backups.restore_force,
                    "resources": size.of("postgres"),
                    "cvat_version": config.cvat.version,
                    # CVAT's data volume is backed up and restored with the database.
                    "data_claim": DATA_CLAIM,
                    "paused": config.cluster.paused,
                    "pause_after": pause_after,
                },
                opts=in_kubernetes,
            )

        def build_cvat(database_ready: list[pulumi.Resource], backend_annotations: dict[str, Any]) -> Cvat:
            return Cvat(
                f"{name}-cvat",
                {
                    "namespace": namespace_name,
                    "workspace": workspace,
                    "version": config.cvat.version,
                    "size": size,
                    "optional_queues": config.cvat.workers,
                    "hostname": config.ingress.hostname,
                    "ingress_class_name": config.ingress.class_name,
                    "tls_secret_name": config.ingress.tls_secret_name,
                    "cert_manager_issuer": config.ingress.cert_manager_issuer,
                    "data_size": config.cvat.data_size,
                    "data_access_mode": config.cvat.data_access_mode,
                    "storage_class_name": config.cluster.storage_class_name,
                    # The database's names are fixed: CVAT may be built before it (a pause).
                    "database_host": DATABASE_SERVICE,
                    "database_port": DATABASE_PORT,
                    "database_name": DATABASE_NAME,
                    "database_user": DATABASE_USER,
                    "database_password_secret": DATABASE_SECRET,
                    "database_password_key": DATABASE_PASSWORD_KEY,
                    "database_ready": database_ready,
                    "admin_credentials_secret": credentials.secret_name,
                    "admin_username": credentials.username,
                    "admin_email": credentials.email,
                    "admin_password": credentials.password,
                    # The in-cluster MinIO is private too: CVAT's SSRF guard must let it through.
                    "egress_allow": [*config.network.egress_allow, *([minio.cluster_ip] if minio else [])],
                    "share_claims": datasets.share_claims,
                    "ingress_namespaces": config.ingress.namespaces,
                    "ingress_allow_cidrs": config.ingress.allow_cidrs,
                    "paused": config.cluster.paused,
                    "backend_annotations": backend_annotations,
                    # The share's volumes mount with the S3 keys: new keys remount them by rolling the pods.
                    "rollout_secrets": (
                        {"s3-access-key": endpoint.access_key, "s3-secret-key": endpoint.secret_key} if datasets.share_claims else {}
                    ),
                },
                opts=in_kubernetes,
            )
        if config.cluster.paused:
            # CVAT first: its pods scale to zero, then the final backup, then PostgreSQL.
            cvat = build_cvat([], {})
            database = build_database(cvat.running)
        else:
            database = build_database([])
            # Migrations wait for the database, a restore, and the backup taken before a new release;
            # the server and workers roll once a restore succeeded.
            restored = {RESTORE_ANNOTATION: database.restore_request} if config.backups.restore_from else {}
            cvat = build_cvat([*database.ready, database.pre_upgrade_backup], restored)

        # The bootstrap Job: registers the buckets as cloud storages and creates the label schemas.
        registered = list(config.storage.dataset_buckets) if config.cvat.registers_datasets else []
        if registered or config.cvat.projects:
            CloudStorages(
                f"{name}-cloud-storages",
                {
                    "namespace": namespace_name,
                    "workspace": workspace,
                    "description": config.cvat.description,
                    "backend_image": cvat.backend_image,
                    "backend_url": cvat.backend_url,
                    "endpoint": endpoint,
                    "s3_credentials_secret": storage.credentials_secret_name,
                    "admin_credentials_secret": credentials.secret_name,
                    "buckets": registered,
                    "projects_json": projects_json(list(config.cvat.projects)),
                    "resources": size.of("job"),
                    # The buckets must exist (in-cluster MinIO) and CVAT must be fully up.
                    "cvat_ready": [*cvat.ready, *storage.ready],
                    "paused": config.cluster.paused,
                },
                opts=in_kubernetes,
            )

        self.endpoint = endpoint
        self.storage = storage
        self.credentials = credentials
        self.database = database
        self.cvat = cvat
        self.annotation_url = pulumi.Output.from_input(cvat.url)
        self.namespace = namespace_name
        self.backup_bucket = storage.backup_bucket
        self.admin_password = credentials.password
        self.outputs: dict[str, Any] = {
            "annotationUrl": self.annotation_url,
            "adminUsername": credentials.username,
            "adminEmail": credentials.email,
            "adminPassword": credentials.password,
            "namespace": self.namespace,
            "datasetBuckets": list(config.storage.dataset_buckets),
            "datasets": datasets.datasets,
            "backupBucket": storage.backup_bucket,
            "backupPrefix": database.backup_prefix,
            "backupSchedule": config.backups.schedule,
            "backupRetentionDays": config.backups.retention_days,
            "cvatVersion": config.cvat.version,
            "description": config.cvat.description,
            "status": "paused" if config.cluster.paused else "running",
        }
        self.register_outputs(self.outputs)
