"""The stack configuration of a labeling workspace: read, validated, frozen, in sections.

Every key lives in the project namespace (``labeling:``) and is written once, in
the key table (``keys.py``), from which ``DEFAULTS``, ``docs/configuration.md``
and the README's short table come and to which ``Pulumi.yaml`` is held.
:func:`load_config` reads each section (``sections.py``), checks the rules
between sections (``across.py``), and raises one :class:`ConfigError` that names
each bad key and why, before the program registers a single resource.

- ``keys.py``: the key table; ``model.py``: the frozen sections and
  :class:`WorkspaceConfig`; ``reader.py``: the reader that collects problems;
- ``rules.py``, ``addresses.py``: the rules on single values;
- ``derived.py``: names, keys and the storage location derived from values;
- ``docs.py``: the generated documentation.
"""

from __future__ import annotations

from typing import Optional

import pulumi

from components.config.across import CVAT_KEY_LENGTH, CVAT_SECRET_KEY_LENGTH, check_across_sections
from components.config.addresses import (
    CLOUD_METADATA_ADDRESS,
    MIN_EGRESS_PREFIX,
    egress_entry,
    egress_range_problem,
    endpoint_allow_address,
    endpoint_problems,
    redact_endpoint,
)
from components.config.derived import (
    MINIO_DEFAULT_REGION,
    SCALEWAY_REGIONS,
    STORAGE_PROVIDERS,
    default_backup_bucket_prefix,
    default_namespace,
    default_region,
    dns_label,
    storage_location,
    workspace_key,
)
from components.config.keys import DEFAULTED_BY_PROGRAM, DEFAULTS, KEYS, REQUIRED_KEYS, SECRET_KEYS, Key
from components.config.model import (
    AdminConfig,
    BackupsConfig,
    ClusterConfig,
    CvatConfig,
    IngressConfig,
    NetworkConfig,
    StorageConfig,
    WorkspaceConfig,
)
from components.config.reader import ConfigError, Reader
from components.config.rules import (
    MAX_CSI_DRIVER_LENGTH,
    MAX_DESCRIPTION_LENGTH,
    MAX_EMAIL_LENGTH,
    MAX_SIZE_BYTES,
    RESERVED_NAMESPACES,
    bucket_name_problem,
    canonical_quantity,
    cron_problem,
    description_problem,
    dns_name_problem,
    email_problem,
    hostname_problem,
    image_reference_problem,
    restore_source_problem,
    storage_size_problem,
)
from components.config.sections import (
    DATA_ACCESS_MODES,
    DATASET_ACCESS,
    MAX_RETENTION_DAYS,
    OPTIONAL_QUEUES,
    read_admin,
    read_backups,
    read_cluster,
    read_cvat,
    read_ingress,
    read_network,
    read_storage,
)

# Shown by every preview of a stack that leaves ingressNamespaces unset.
INGRESS_NAMESPACES_WARNING = (
    "ingressNamespaces is not set, so it is [\"ingress-nginx\"]: kube-system is no longer allowed by default, so an "
    "ingress controller running there (Traefik on k3s, k3d or Rancher Desktop, RKE2's ingress-nginx) can no longer "
    "reach CVAT. For Traefik on k3s: pulumi config set --path 'ingressNamespaces[0]' ingress-nginx && "
    "pulumi config set --path 'ingressNamespaces[1]' kube-system (or only kube-system). With ingress-nginx in its "
    "own namespace, set it to say so: pulumi config set --path 'ingressNamespaces[0]' ingress-nginx "
    "(see 'The release where ingressNamespaces defaults to ingress-nginx' in docs/operations/upgrade.md)."
)


def load_config(config: Optional[pulumi.Config] = None) -> WorkspaceConfig:
    """Reads and validates the stack configuration.

    Raises :class:`ConfigError` listing every problem found; returns a frozen
    :class:`WorkspaceConfig` otherwise.
    """
    read = Reader(config or pulumi.Config())
    read.require(REQUIRED_KEYS)
    storage, backups, cvat = read_storage(read), read_backups(read), read_cvat(read)
    admin, ingress, cluster = read_admin(read), read_ingress(read), read_cluster(read, pulumi.get_stack())
    network = check_across_sections(read, storage, backups, cvat, cluster, read_network(read))
    if read.problems:
        raise ConfigError(read.problems)
    if not read.is_set("ingressNamespaces"):
        # Unset (Pulumi.yaml gives no default for it: DEFAULTED_BY_PROGRAM).
        pulumi.log.warn(INGRESS_NAMESPACES_WARNING)
    return WorkspaceConfig(
        project=pulumi.get_project(),
        stack=pulumi.get_stack(),
        storage=storage,
        backups=backups,
        cvat=cvat,
        admin=admin,
        ingress=ingress,
        network=network,
        cluster=cluster,
    )


__all__ = [
    "AdminConfig", "BackupsConfig", "CLOUD_METADATA_ADDRESS", "CVAT_KEY_LENGTH", "CVAT_SECRET_KEY_LENGTH", "ClusterConfig",
    "ConfigError", "CvatConfig", "DATASET_ACCESS", "DATA_ACCESS_MODES", "DEFAULTED_BY_PROGRAM", "DEFAULTS",
    "INGRESS_NAMESPACES_WARNING", "IngressConfig", "KEYS", "Key", "MAX_CSI_DRIVER_LENGTH", "MAX_DESCRIPTION_LENGTH",
    "MAX_EMAIL_LENGTH", "MAX_RETENTION_DAYS", "MAX_SIZE_BYTES", "MINIO_DEFAULT_REGION", "MIN_EGRESS_PREFIX",
    "NetworkConfig", "OPTIONAL_QUEUES", "REQUIRED_KEYS", "RESERVED_NAMESPACES", "Reader", "SCALEWAY_REGIONS",
    "SECRET_KEYS", "STORAGE_PROVIDERS", "StorageConfig", "WorkspaceConfig", "bucket_name_problem", "canonical_quantity",
    "cron_problem", "default_backup_bucket_prefix", "default_namespace", "default_region", "description_problem",
    "dns_label", "dns_name_problem", "egress_entry", "egress_range_problem", "email_problem", "endpoint_allow_address",
    "endpoint_problems", "hostname_problem", "image_reference_problem", "load_config", "redact_endpoint",
    "restore_source_problem", "storage_location", "storage_size_problem", "workspace_key",
]
