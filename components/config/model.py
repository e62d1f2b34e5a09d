"""The validated configuration of a workspace: frozen sections, one per concern.

:class:`WorkspaceConfig` is made of the sections (``config.storage.endpoint``,
``config.backups.schedule``, ``config.ingress.hostname``...); the key table
(components/config/keys.py) says which key feeds which section.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import pulumi

from components.config.derived import dns_label, workspace_key
from components.config.keys import DEFAULTS
from components.endpoint import S3Endpoint
from components.label_schema import Project


@dataclass(frozen=True)
class StorageConfig:
    """Object storage (Scaleway or MinIO), its keys, and the dataset buckets on it."""

    provider: str
    region: str
    """The configured region, or the provider's default."""
    configured_endpoint: str
    """storageEndpoint as set (no trailing slash); "" when derived from the region or unused."""
    access_key: str
    secret_key: Optional[pulumi.Output[str]]
    minio_in_cluster: bool
    minio_image: str
    dataset_buckets: tuple[str, ...]
    dataset_inventory_limit: int
    endpoint: Optional[S3Endpoint]
    """The endpoint everything uses, built once here; None with the in-cluster MinIO, whose
    URL and keys come from the server the workspace creates."""
    # Plain text, for the checks the program itself makes with boto3 (never logged or exported).
    secret_key_plain: str = field(repr=False, default="")


@dataclass(frozen=True)
class BackupsConfig:
    """The backup bucket, the schedule and retention of backups, and a restore."""

    bucket: str
    """The configured backup bucket; "" for a generated name."""
    retention_days: int
    schedule: str
    restore_from: str
    restore_force: bool


@dataclass(frozen=True)
class CvatConfig:
    """CVAT: release, size, queues, volumes, projects, and how it reaches the dataset buckets."""

    description: str
    version: str
    size: str
    workers: tuple[str, ...]
    data_size: str
    data_access_mode: str
    database_storage_size: str
    dataset_access: str
    dataset_csi_driver: str
    projects: tuple[Project, ...] = ()
    """CVAT projects and their label schemas (components.label_schema)."""

    @property
    def shares_datasets(self) -> bool:
        """Whether the dataset buckets are mounted as CVAT's connected file share."""
        return self.dataset_access in ("share", "both")

    @property
    def registers_datasets(self) -> bool:
        """Whether the dataset buckets are registered as CVAT cloud storages."""
        return self.dataset_access in ("cloudStorage", "both")


@dataclass(frozen=True)
class AdminConfig:
    """The CVAT superuser."""

    username: str
    email: str
    password: Optional[pulumi.Output[str]]
    """The configured password (secret), or None for a generated one."""


@dataclass(frozen=True)
class IngressConfig:
    """How the annotation server is published, and who may reach it."""

    hostname: str
    class_name: str
    tls_secret_name: str
    cert_manager_issuer: str
    allow_insecure_http: bool
    namespaces: tuple[str, ...] = tuple(DEFAULTS["ingressNamespaces"])
    allow_cidrs: tuple[str, ...] = ()

    @property
    def tls_enabled(self) -> bool:
        """Whether the annotation server is served over HTTPS."""
        return bool(self.tls_secret_name or self.cert_manager_issuer)


@dataclass(frozen=True)
class NetworkConfig:
    """What CVAT may reach past its SSRF guard."""

    egress_allow: tuple[str, ...] = ()
    """IP addresses and CIDR ranges (canonical form), a private endpoint IP included."""


@dataclass(frozen=True)
class ClusterConfig:
    """Where the workspace lives in Kubernetes, and whether it runs."""

    kube_context: str
    namespace: str
    """The configured namespace, or cvat-<stack>."""
    storage_class_name: str
    paused: bool = False


@dataclass(frozen=True)
class WorkspaceConfig:
    """The validated configuration of one workspace (one stack), in sections."""

    project: str
    stack: str
    storage: StorageConfig
    backups: BackupsConfig
    cvat: CvatConfig
    admin: AdminConfig
    ingress: IngressConfig
    network: NetworkConfig
    cluster: ClusterConfig

    @property
    def workspace_name(self) -> str:
        """The workspace's name: the stack name, made a valid label value."""
        return dns_label(self.stack)

    @property
    def workspace_key(self) -> str:
        """What tells this workspace apart in places it may share with others (see :func:`workspace_key`)."""
        return workspace_key(self.project, self.stack)
