"""DatasetBuckets: the user's buckets of images and videos, as the workspace sees them.

- :func:`check_dataset_buckets` runs before anything is created: every dataset
  bucket must exist and be listable with the configured keys, or the update
  stops naming the bucket and the cause (missing, access denied, endpoint
  unreachable, wrong region). It only lists: the buckets are never modified.
- :func:`check_backup_bucket` tells, before anything is created, whether the
  configured backupBucket already exists and is usable (then it is adopted),
  and stops the update when the name is taken by a bucket these keys may not use.
- :class:`DatasetBuckets` counts what they hold (stack output `datasets`) and,
  for `datasetAccess` share/both, makes each bucket a read-only volume
  through a CSI S3 driver (a statically provisioned PersistentVolume and
  claim per bucket) for CVAT's connected file share.
"""

from __future__ import annotations

import re
from typing import Any, Optional, Sequence, TypedDict

import pulumi
import pulumi_kubernetes as k8s

from components import kube
from components.config import WorkspaceConfig
from components.endpoint import S3Endpoint, endpoint_url as resolve_endpoint_url, s3_client
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


class DatasetError(pulumi.RunError):
    """Dataset buckets that cannot be used: one message naming each bucket and why."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        lines = [f"  - {bucket}: {reason}" for bucket, reason in problems]
        super().__init__("Dataset buckets cannot be read; nothing was changed.\n" + "\n".join(lines))


class BackupBucketError(pulumi.RunError):
    """The configured backup bucket cannot be used: the message names backupBucket and why."""

    def __init__(self, bucket: str, reason: str):
        self.problems = [("backupBucket", f"{bucket!r} {reason}")]
        super().__init__(f"The backup bucket cannot be used; nothing was changed.\n  - backupBucket: {bucket!r} {reason}")


def bucket_status(client: Any, bucket: str, endpoint_url: str) -> tuple[str, Optional[str]]:
    """(kind, reason) for listing `bucket` with this client. Lists one key at most.

    kind is "ok" (reason None), "missing", "region", "denied" (this bucket is
    forbidden), "keys" (the server refuses the keys), "unreachable" or "error".
    """
    from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, ReadTimeoutError

    try:
        client.list_objects_v2(Bucket=bucket, MaxKeys=1)
        return "ok", None
    except ClientError as error:
        details = error.response.get("Error", {})
        code = str(details.get("Code", ""))
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("NoSuchBucket", "404") or (status == 404 and not code):
            return "missing", f"does not exist on {endpoint_url}"
        if code in ("PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException", "301") or status == 301:
            region = details.get("Region") or _region_in(str(details.get("Message", "")))
            hint = f": set storageRegion to {region}" if region else ": check storageRegion"
            return "region", f"is in another region than the configured one{hint} ({code or status})"
        if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "AllAccessDisabled") or status == 403:
            # Refused keys are a problem of the keys, not of this bucket.
            kind = "keys" if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch") else "denied"
            return kind, f"access denied ({code or status}): check storageAccessKey/storageSecretKey and that the key may list this bucket"
        return "error", f"cannot be listed: {code or status} {details.get('Message', '')}".strip()
    except (EndpointConnectionError, ReadTimeoutError) as error:
        return "unreachable", f"endpoint {endpoint_url} is unreachable ({error})"
    except BotoCoreError as error:
        return "error", f"endpoint {endpoint_url} did not answer properly ({error})"


def bucket_problem(client: Any, bucket: str, endpoint_url: str) -> Optional[str]:
    """Why `bucket` cannot be listed with this client, or None. Lists one key at most."""
    return bucket_status(client, bucket, endpoint_url)[1]


def _region_in(message: str) -> Optional[str]:
    match = re.search(r"expecting '([a-z0-9-]+)'", message)
    return match.group(1) if match else None


def closed_endpoint_addresses(config: WorkspaceConfig, resolve: Any = None) -> list[str]:
    """The private addresses the storageEndpoint's *name* resolves to here that egressAllow does not
    open: the workspace's egress policies and CVAT's SSRF guard keep them closed (components/network.py),
    so backups, restores and cloud storages could not reach the server. [] for an IP or a public name."""
    import ipaddress
    import socket
    from urllib.parse import urlsplit

    from components.network import CLOSED_IPV4, CLOSED_IPV6

    host = urlsplit(resolve_endpoint_url(config.storage_provider, config.storage_region, config.storage_endpoint)).hostname or ""
    try:
        ipaddress.ip_address(host)
        return []  # a literal is allowed by the config itself (endpoint_allow_address)
    except ValueError:
        pass
    try:
        infos = (resolve or socket.getaddrinfo)(host, None)
    except OSError:
        return []  # not resolvable here: the dataset check says so when it matters
    closed = [ipaddress.ip_network(net) for net in (*CLOSED_IPV4, *CLOSED_IPV6)]
    opened = [ipaddress.ip_network(entry, strict=False) for entry in config.egress_allow]
    found = []
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        if any(address in net for net in closed) and not any(address in net for net in opened) and str(address) not in found:
            found.append(str(address))
    return found


def warn_if_endpoint_is_closed(config: WorkspaceConfig, resolve: Any = None) -> None:
    """Warns (does not stop: the cluster may resolve the name otherwise) when the endpoint's name is private here."""
    if config.minio_in_cluster or not config.storage_endpoint:
        return
    closed = closed_endpoint_addresses(config, resolve)
    if closed:
        pulumi.log.warn(
            f"storageEndpoint's host resolves here to {', '.join(closed)}, a private address that egressAllow does not "
            "list: the workspace's pods may not reach it (CVAT's cloud storages, the backups and restores). If the "
            f"cluster resolves it the same way, add it: pulumi config set --path 'egressAllow[0]' {closed[0]}"
        )


def check_dataset_buckets(config: WorkspaceConfig) -> None:
    """Stops the update when a dataset bucket cannot be listed (external endpoints only); warns when the
    endpoint's name is private and not opened by egressAllow."""
    if config.minio_in_cluster:
        return  # the in-cluster MinIO is not reachable from here; its buckets are created empty
    warn_if_endpoint_is_closed(config)
    if not config.dataset_buckets:
        return
    endpoint_url = resolve_endpoint_url(config.storage_provider, config.storage_region, config.storage_endpoint)
    client = s3_client(endpoint_url, config.storage_region, config.storage_access_key, config.storage_secret_key_plain, attempts=1)
    problems = []
    for bucket in config.dataset_buckets:
        reason = bucket_problem(client, bucket, endpoint_url)
        if reason:
            problems.append((bucket, reason))
            if "unreachable" in reason:
                problems += [(other, "not checked: the endpoint is unreachable") for other in config.dataset_buckets if other != bucket]
                break
    if problems:
        raise DatasetError(problems)


def check_backup_bucket(config: WorkspaceConfig) -> bool:
    """Whether the configured backupBucket already exists and these keys can use it.

    True: it exists and lists with the configured keys (e.g. kept by an earlier
    `pulumi destroy`, or this stack's own bucket): the program adopts it
    (ObjectStorageArgs ``adopt_backup_bucket``) instead of failing to create it.
    False: it does not exist (it will be created), or there is nothing to check
    (in-cluster MinIO, or no configured name: a generated one is new).
    Raises :class:`BackupBucketError`, naming backupBucket, when the bucket
    exists but these keys may not use it (on Scaleway bucket names are global:
    the name may be someone else's), or when the endpoint cannot tell.
    Only lists: the bucket is never modified here.
    """
    if config.minio_in_cluster or not config.backup_bucket:
        return False
    endpoint_url = resolve_endpoint_url(config.storage_provider, config.storage_region, config.storage_endpoint)
    client = s3_client(endpoint_url, config.storage_region, config.storage_access_key, config.storage_secret_key_plain, attempts=1)
    kind, reason = bucket_status(client, config.backup_bucket, endpoint_url)
    if kind == "ok":
        return True
    if kind == "missing":
        return False
    if kind == "denied":
        reason = (
            f"exists on {endpoint_url} but these keys may not list it (access denied). Bucket names are "
            "global on Scaleway: the name may belong to someone else. Choose another backupBucket (or leave "
            "it empty for a generated name), or use keys that may list and write this bucket"
        )
    else:
        reason = f"cannot be checked: {reason}"
    raise BackupBucketError(config.backup_bucket, reason)


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
