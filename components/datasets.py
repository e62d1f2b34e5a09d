"""DatasetBuckets: the user's buckets of images and videos, as the workspace sees them.

:class:`DatasetBuckets` counts what they hold (stack output `datasets`) and,
for `datasetAccess` share/both, makes each bucket a read-only volume through a
CSI S3 driver (a statically provisioned PersistentVolume and claim per bucket)
for CVAT's connected file share. The buckets are never modified. What is
checked about them before anything is created (they exist and list with the
configured keys) is in components/preflight.py.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, TypedDict

import pulumi
import pulumi_kubernetes as k8s

from components import kube
from components.endpoint import S3Endpoint
from components.inventory import DatasetInventory

SHARE_ROOT = "/home/django/share"
SHARE_SECRET = "dataset-share-credentials"
# A static volume's capacity is nominal: the bucket is as large as it is.
SHARE_CAPACITY = "1Ti"
# geesefs, read-only, files readable by CVAT's user. `-o ro` alone does not keep
# geesefs from writing: at every mount it aborts the bucket's unfinished multipart
# uploads older than --multipart-age (48 h), unless told not to
# (yandex-cloud/geesefs core/goofys.go calls MultipartExpire on mount;
# core/cfg/flags.go `no-expire-multipart`).
SHARE_MOUNT_OPTIONS = "--memory-limit 1000 --dir-mode 0555 --file-mode 0444 --no-expire-multipart -o ro"


class DatasetBucketsArgs(TypedDict):
    """Inputs of :class:`DatasetBuckets`."""

    namespace: pulumi.Input[str]
    namespace_name: str
    workspace: str
    endpoint: S3Endpoint
    buckets: Sequence[str]
    inventory_limit: int
    share: bool
    csi_driver: str


class DatasetBuckets(pulumi.ComponentResource):
    """The dataset buckets: their inventory, and read-only share volumes when asked for."""

    datasets: pulumi.Output[Any]
    share_claims: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, args: DatasetBucketsArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("labeling:index:DatasetBuckets", name, None, opts)
        endpoint = args["endpoint"]
        buckets = list(args["buckets"])

        if not buckets:
            self.datasets = pulumi.Output.from_input({})
        elif endpoint.reachable_from_program:
            inventory = DatasetInventory(
                f"{name}-inventory",
                endpoint=endpoint,
                buckets=buckets,
                limit=args["inventory_limit"],
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.datasets = inventory.datasets
        else:
            reason = "not counted: the in-cluster MinIO is not reachable from the Pulumi program"
            self.datasets = pulumi.Output.from_input({bucket: {"counted": False, "reason": reason} for bucket in buckets})

        self.share_claims = {}
        if args["share"] and buckets:
            self.share_claims = self._share_volumes(name, args, buckets)

        self.register_outputs({"datasets": self.datasets, "share_claims": self.share_claims})

    def _share_volumes(self, name: str, args: DatasetBucketsArgs, buckets: list[str]) -> dict[str, pulumi.Output[str]]:
        """A read-only PersistentVolume and claim per bucket, through the CSI S3 driver."""
        endpoint = args["endpoint"]
        labels = kube.labels(args["workspace"], "dataset-share")
        secret = k8s.core.v1.Secret(
            f"{name}-share-credentials",
            metadata={"name": SHARE_SECRET, "namespace": args["namespace"], "labels": labels},
            type="Opaque",
            string_data={
                "accessKeyID": pulumi.Output.secret(endpoint.access_key),
                "secretAccessKey": pulumi.Output.secret(endpoint.secret_key),
                "endpoint": endpoint.url,
                "region": endpoint.region,
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
        secret_ref = {"name": secret.metadata["name"], "namespace": args["namespace"]}
        claims = {}
        for bucket in buckets:
            attributes = {"capacity": SHARE_CAPACITY, "mounter": "geesefs", "options": SHARE_MOUNT_OPTIONS}
            claim_name = share_claim_name(bucket, share_revision(args["csi_driver"], bucket, SHARE_SECRET, attributes))
            # Volumes are cluster-wide: the namespace keeps two workspaces' volumes apart.
            volume_name = f"{args['namespace_name']}-{claim_name}"
            volume = k8s.core.v1.PersistentVolume(
                f"{name}-share-{bucket}",
                metadata={"name": volume_name, "labels": labels},
                spec={
                    "capacity": {"storage": SHARE_CAPACITY},
                    "accessModes": ["ReadOnlyMany"],
                    # Never let the driver touch the bucket when the volume goes.
                    "persistentVolumeReclaimPolicy": "Retain",
                    "storageClassName": "",
                    "claimRef": {"namespace": args["namespace"], "name": claim_name},
                    "csi": {
                        "driver": args["csi_driver"],
                        "volumeHandle": bucket,
                        "readOnly": True,
                        "controllerPublishSecretRef": secret_ref,
                        "nodePublishSecretRef": secret_ref,
                        "nodeStageSecretRef": secret_ref,
                        "volumeAttributes": attributes,
                    },
                },
                opts=pulumi.ResourceOptions(parent=self),
            )
            claim = k8s.core.v1.PersistentVolumeClaim(
                f"{name}-share-{bucket}-claim",
                metadata={"name": claim_name, "namespace": args["namespace"], "labels": labels},
                spec={
                    "accessModes": ["ReadOnlyMany"],
                    "storageClassName": "",
                    "volumeName": volume.metadata["name"],
                    "resources": {"requests": {"storage": SHARE_CAPACITY}},
                },
                opts=pulumi.ResourceOptions(parent=self),
            )
            claims[bucket] = claim.metadata["name"]
        return claims


def share_revision(driver: str, bucket: str, secret: str, attributes: dict[str, str]) -> str:
    """A hash of what a share volume mounts with (its `spec.csi`, which Kubernetes never changes).

    A new value is a new volume and claim under new names, made before the old pair
    is deleted (pulumi-kubernetes replaces a volume whose `spec.csi` changes,
    provider/diff.go; under the same name it would delete first, and a volume bound
    to a claim in use never finishes deleting).
    """
    return kube.content_hash(driver, bucket, secret, attributes)


def share_claim_name(bucket: str, revision: str) -> str:
    """The claim of a bucket's share volume (a DNS-1123 name)."""
    return f"share-{bucket}-{revision}"  # bucket names are valid DNS subdomains already
