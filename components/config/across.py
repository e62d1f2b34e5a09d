"""The rules between sections: keys of one section that another section's keys constrain."""

from __future__ import annotations

from dataclasses import replace

from components.config.addresses import endpoint_allow_address
from components.config.model import BackupsConfig, ClusterConfig, CvatConfig, NetworkConfig, StorageConfig
from components.config.reader import Reader

# CVAT's CloudStorage.key and .secret_key lengths.
CVAT_KEY_LENGTH, CVAT_SECRET_KEY_LENGTH = 40, 64


def check_across_sections(
    read: Reader,
    storage: StorageConfig,
    backups: BackupsConfig,
    cvat: CvatConfig,
    cluster: ClusterConfig,
    network: NetworkConfig,
) -> NetworkConfig:
    """Records the problems between sections; returns the network section with a private endpoint IP allowed.

    - backupBucket is not a dataset bucket;
    - the S3 keys fit CVAT's cloud storage fields when datasetAccess registers the buckets there;
    - datasetAccess share/both needs object storage the nodes reach, not the in-cluster MinIO;
    - kubeContext is required outside the in-cluster-MinIO development stack;
    - a storageEndpoint given as a private or link-local IP is added to egressAllow.
    """
    if backups.bucket and backups.bucket in storage.dataset_buckets:
        read.problem("backupBucket", f"{backups.bucket!r} is also a dataset bucket; backups need a bucket of their own")
    if storage.dataset_buckets and cvat.registers_datasets and not storage.minio_in_cluster:
        # CVAT's cloud-storage fields are this long at most; the bootstrap Job would fail on longer ones.
        if len(storage.access_key) > CVAT_KEY_LENGTH:
            read.problem("storageAccessKey", f"is longer than {CVAT_KEY_LENGTH} characters, the most CVAT stores for a cloud storage")
        if len(storage.secret_key_plain) > CVAT_SECRET_KEY_LENGTH:
            read.problem("storageSecretKey", f"is longer than {CVAT_SECRET_KEY_LENGTH} characters, the most CVAT stores for a cloud storage")
    if cvat.shares_datasets and storage.minio_in_cluster:
        # The CSI driver mounts on the nodes, which neither resolve nor may reach the in-cluster MinIO.
        read.problem("datasetAccess", f"{cvat.dataset_access!r} needs object storage the nodes can reach; with minioInCluster use cloudStorage")
    if not cluster.kube_context and not storage.minio_in_cluster:
        # Without it the provider follows kubectl's current context at every run, so a
        # later `pulumi destroy` could act on whatever cluster kubectl points at then.
        read.problem(
            "kubeContext",
            "is required for a workspace outside the local development stack: pulumi config set kubeContext "
            "\"$(kubectl config current-context)\" (the provider would otherwise follow kubectl's current context)",
        )
    return _allow_endpoint_address(read, storage, network)


def _allow_endpoint_address(read: Reader, storage: StorageConfig, network: NetworkConfig) -> NetworkConfig:
    """`network` with the endpoint's host added when it is a private or link-local IP.

    Smokescreen refuses private and link-local addresses: an endpoint given as one is allowed unasked.
    """
    endpoint = storage.configured_endpoint
    if storage.minio_in_cluster or not endpoint or read.has_problem("storageEndpoint"):
        return network
    allowed = endpoint_allow_address(endpoint)
    if not allowed or allowed in network.egress_allow:
        return network
    return replace(network, egress_allow=(*network.egress_allow, allowed))
