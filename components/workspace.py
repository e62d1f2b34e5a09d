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
        size = PRESETS[config.size]

        # The cluster and namespace the workspace was made in: a changed kubeContext or namespace
        # stops the update before the provider or the volumes would be replaced (components/cluster.py).
        binding = ClusterBinding(
            f"{name}-cluster", config.kube_context, config.namespace, opts=pulumi.ResourceOptions(parent=self)
        )
        kubernetes = k8s.Provider(
            f"{name}-kubernetes",
            context=config.kube_context or None,
            # The cluster's identity: the same value never replaces the provider, whatever the
            # kubeconfig file says (pulumi-kubernetes provider.go DiffConfig).
            cluster_identifier=config.kube_context or None,
            enable_server_side_apply=True,
            # Update Secrets and ConfigMaps in place instead of delete-then-create (their names are
            # fixed); the pods that read them roll through their templates' revision annotations.
            enable_config_map_mutable=True,
            enable_secret_mutable=True,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[binding]),
        )
        if config.paused:
            pulumi.log.warn(PAUSED_WARNING)
        namespace_metadata: dict[str, Any] = {
            "name": config.namespace,
            "labels": {
                **kube.labels(workspace, "workspace"),
                # Pods are built to the "restricted" standard: warn on any that is not, refuse privileged ones.
                "pod-security.kubernetes.io/enforce": "baseline",
                "pod-security.kubernetes.io/warn": "restricted",
                "pod-security.kubernetes.io/audit": "restricted",
            },
        }
        if config.description:
            namespace_metadata["annotations"] = {"labeling.dev/description": config.description}
        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata=namespace_metadata,
            opts=pulumi.ResourceOptions(parent=self, provider=kubernetes),
        )
        namespace_name = namespace.metadata["name"]
        in_kubernetes = pulumi.ResourceOptions(parent=self, providers=[kubernetes])

        minio: Optional[InClusterMinio] = None
        if config.minio_in_cluster:
            minio = InClusterMinio(
                f"{name}-minio",
                {
                    "namespace": namespace_name,
                    "workspace": workspace,
                    "region": config.storage_region,
                    "storage_size": IN_CLUSTER_MINIO_STORAGE,
                    "storage_class_name": config.storage_class_name,
                    "resources": size.of("minio"),
                    "image": config.minio_image,
                },
                opts=in_kubernetes,
            )
            endpoint = S3Endpoint(
                provider="minio",
                region=config.storage_region,
                url=minio.url,
                access_key=minio.access_key,
                secret_key=minio.secret_key,
                in_cluster=True,
            )
            storage_providers: list[pulumi.ProviderResource] = [kubernetes]
        else:
            endpoint = S3Endpoint.from_settings(
                provider=config.storage_provider,
                region=config.storage_region,
                endpoint=config.storage_endpoint,
                access_key=config.storage_access_key,
                secret_key=config.storage_secret_key,
            )
            # After the binding too: a refused move stops the update before any bucket step.
            s3 = endpoint.aws_provider(f"{name}-s3", pulumi.ResourceOptions(parent=self, depends_on=[binding]))
            storage_providers = [kubernetes, s3]

        storage = ObjectStorage(
            f"{name}-storage",
            {
                "endpoint": endpoint,
                "namespace": namespace_name,
                "workspace": workspace,
                "backup_bucket": config.backup_bucket,
                "backup_bucket_prefix": default_backup_bucket_prefix(config.project, config.stack),
                "adopt_backup_bucket": args.get("adopt_backup_bucket", False),
                # Unique per project and stack: workspaces may share a backup bucket.
                "workspace_prefix": f"{config.workspace_key}/",
                "dataset_buckets": config.dataset_buckets,
                "credentials_secret_name": minio.credentials_secret_name if minio else None,
                "server": minio.deployment if minio else None,
                "paused": config.paused,
            },
            opts=pulumi.ResourceOptions(parent=self, providers=storage_providers),
        )
        credentials = AdminCredentials(
            f"{name}-admin",
            {
                "namespace": namespace_name,
                "workspace": workspace,
                "username": config.admin_username,
                "email": config.admin_email,
                "password": config.admin_password,
            },
            opts=in_kubernetes,
        )

        datasets = DatasetBuckets(
            f"{name}-datasets",
            {
                "namespace": namespace_name,
                "namespace_name": config.namespace,
                "workspace": workspace,
                "endpoint": endpoint,
                "buckets": config.dataset_buckets,
                "inventory_limit": config.dataset_inventory_limit,
                "share": config.dataset_access in ("share", "both"),
                "csi_driver": config.dataset_csi_driver,
            },
            opts=in_kubernetes,
        )
        def build_database(pause_after: list[pulumi.Resource]) -> Database:
            return Database(
                f"{name}-database",
                {
                    "namespace": namespace_name,
                    "workspace": workspace,
                    "storage_size": config.database_storage_size,
                    "storage_class_name": config.storage_class_name,
                    "endpoint": endpoint,
                    "s3_credentials_secret_name": storage.credentials_secret_name,
                    "backup_bucket": storage.backup_bucket,
                    "storage_ready": storage.ready,
                    "backup_prefix": f"{config.workspace_key}/database/",
                    "backup_schedule": config.backup_schedule,
                    "retention_days": config.backup_retention_days,
                    "restore_from": config.restore_from,
                    "restore_force": config.restore_force,
                    "resources": size.of("postgres"),
                    "cvat_version": config.cvat_version,
                    # CVAT's data volume is backed up and restored with the database.
                    "data_claim": DATA_CLAIM,
                    "paused": config.paused,
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
                    "version": config.cvat_version,
                    "size": size,
                    "optional_queues": config.workers,
                    "hostname": config.hostname,
                    "ingress_class_name": config.ingress_class_name,
                    "tls_secret_name": config.tls_secret_name,
                    "cert_manager_issuer": config.cert_manager_issuer,
                    "data_size": config.cvat_data_size,
                    "data_access_mode": config.cvat_data_access_mode,
                    "storage_class_name": config.storage_class_name,
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
                    "egress_allow": [*config.egress_allow, *([minio.cluster_ip] if minio else [])],
                    "share_claims": datasets.share_claims,
                    "ingress_namespaces": config.ingress_namespaces,
                    "ingress_allow_cidrs": config.ingress_allow_cidrs,
                    "paused": config.paused,
                    "backend_annotations": backend_annotations,
                    # The share's volumes mount with the S3 keys: new keys remount them by rolling the pods.
                    "rollout_secrets": (
                        {"s3-access-key": endpoint.access_key, "s3-secret-key": endpoint.secret_key} if datasets.share_claims else {}
                    ),
                },
                opts=in_kubernetes,
            )
        if config.paused:
            # CVAT first: its pods scale to zero, then the final backup, then PostgreSQL.
            cvat = build_cvat([], {})
            database = build_database(cvat.running)
        else:
            database = build_database([])
            # Migrations wait for the database, a restore, and the backup taken before a new release;
            # the server and workers roll once a restore succeeded.
            restored = {RESTORE_ANNOTATION: database.restore_request} if config.restore_from else {}
            cvat = build_cvat([*database.ready, database.pre_upgrade_backup], restored)

        # The bootstrap Job: registers the buckets as cloud storages and creates the label schemas.
        registered = list(config.dataset_buckets) if config.dataset_access in ("cloudStorage", "both") else []
        if registered or config.projects:
            CloudStorages(
                f"{name}-cloud-storages",
                {
                    "namespace": namespace_name,
                    "workspace": workspace,
                    "description": config.description,
                    "backend_image": cvat.backend_image,
                    "backend_url": cvat.backend_url,
                    "endpoint": endpoint,
                    "s3_credentials_secret": storage.credentials_secret_name,
                    "admin_credentials_secret": credentials.secret_name,
                    "buckets": registered,
                    "projects_json": projects_json(list(config.projects)),
                    "resources": size.of("job"),
                    # The buckets must exist (in-cluster MinIO) and CVAT must be fully up.
                    "cvat_ready": [*cvat.ready, *storage.ready],
                    "paused": config.paused,
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
            "datasetBuckets": list(config.dataset_buckets),
            "datasets": datasets.datasets,
            "backupBucket": storage.backup_bucket,
            "backupPrefix": database.backup_prefix,
            "backupSchedule": config.backup_schedule,
            "backupRetentionDays": config.backup_retention_days,
            "cvatVersion": config.cvat_version,
            "description": config.description,
            "status": "paused" if config.paused else "running",
        }
        self.register_outputs(self.outputs)
