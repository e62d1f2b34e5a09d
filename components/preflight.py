"""Preflight: what is checked over the network before anything is created.

All of it talks to the object storage (or the resolver) from the machine that
runs `pulumi up`, with the endpoint the storage section built
(``config.storage.endpoint``), and only ever lists: nothing is written.

- :func:`check_dataset_buckets`: every dataset bucket must exist and be listable
  with the configured keys, or the update stops naming the bucket and the cause
  (missing, access denied, endpoint unreachable, wrong region); it also warns
  when the endpoint's name resolves to a private address egressAllow does not
  open (:func:`closed_endpoint_addresses`).
- :func:`check_backup_bucket`: whether the configured backupBucket already
  exists and is usable (then it is adopted), and stops the update when the name
  is taken by a bucket these keys may not use.

The in-cluster MinIO of the development stack is not reachable from here: with
it, nothing is checked.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Any, Callable, Optional
from urllib.parse import urlsplit

import pulumi

from components.config import StorageConfig, WorkspaceConfig
from components.network import CLOSED_IPV4, CLOSED_IPV6

# Codes by which S3 servers say a bucket is in another region than the request's.
_REGION_CODES = ("PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException", "301")
_DENIED_CODES = ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "AllAccessDisabled")
# Refused keys are a problem of the keys, not of one bucket.
_REFUSED_KEY_CODES = ("InvalidAccessKeyId", "SignatureDoesNotMatch")


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
        return _client_error_status(error, endpoint_url)
    except (EndpointConnectionError, ReadTimeoutError) as error:
        return "unreachable", f"endpoint {endpoint_url} is unreachable ({error})"
    except BotoCoreError as error:
        return "error", f"endpoint {endpoint_url} did not answer properly ({error})"


def _client_error_status(error: Any, endpoint_url: str) -> tuple[str, str]:
    """(kind, reason) of an error response to a listing (see :func:`bucket_status`)."""
    details = error.response.get("Error", {})
    code = str(details.get("Code", ""))
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code in ("NoSuchBucket", "404") or (status == 404 and not code):
        return "missing", f"does not exist on {endpoint_url}"
    if code in _REGION_CODES or status == 301:
        region = details.get("Region") or _region_in(str(details.get("Message", "")))
        hint = f": set storageRegion to {region}" if region else ": check storageRegion"
        return "region", f"is in another region than the configured one{hint} ({code or status})"
    if code in _DENIED_CODES or status == 403:
        kind = "keys" if code in _REFUSED_KEY_CODES else "denied"
        return kind, f"access denied ({code or status}): check storageAccessKey/storageSecretKey and that the key may list this bucket"
    return "error", f"cannot be listed: {code or status} {details.get('Message', '')}".strip()


def bucket_problem(client: Any, bucket: str, endpoint_url: str) -> Optional[str]:
    """Why `bucket` cannot be listed with this client, or None. Lists one key at most."""
    return bucket_status(client, bucket, endpoint_url)[1]


def _region_in(message: str) -> Optional[str]:
    match = re.search(r"expecting '([a-z0-9-]+)'", message)
    return match.group(1) if match else None


def _client(storage: StorageConfig) -> Any:
    """A boto3 client for the configured endpoint that tries once: the preflight reports, it does not wait."""
    return storage.endpoint.program_client(storage.secret_key_plain, attempts=1)


def closed_endpoint_addresses(config: WorkspaceConfig, resolve: Optional[Callable[..., Any]] = None) -> list[str]:
    """The private addresses the storageEndpoint's *name* resolves to here that egressAllow does not
    open: the workspace's egress policies and CVAT's SSRF guard keep them closed (components/network.py),
    so backups, restores and cloud storages could not reach the server. [] for an IP or a public name."""
    host = urlsplit(config.storage.endpoint.url).hostname or ""
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
    opened = [ipaddress.ip_network(entry, strict=False) for entry in config.network.egress_allow]
    found: list[str] = []
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        if any(address in net for net in closed) and not any(address in net for net in opened) and str(address) not in found:
            found.append(str(address))
    return found


def warn_if_endpoint_is_closed(config: WorkspaceConfig, resolve: Optional[Callable[..., Any]] = None) -> None:
    """Warns (does not stop: the cluster may resolve the name otherwise) when the endpoint's name is private here."""
    if config.storage.minio_in_cluster or not config.storage.configured_endpoint:
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
    storage = config.storage
    if storage.minio_in_cluster:
        return  # the in-cluster MinIO is not reachable from here; its buckets are created empty
    warn_if_endpoint_is_closed(config)
    if not storage.dataset_buckets:
        return
    client, endpoint_url = _client(storage), storage.endpoint.url
    problems = []
    for bucket in storage.dataset_buckets:
        reason = bucket_problem(client, bucket, endpoint_url)
        if reason:
            problems.append((bucket, reason))
            if "unreachable" in reason:
                problems += [(other, "not checked: the endpoint is unreachable") for other in storage.dataset_buckets if other != bucket]
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
    storage, bucket = config.storage, config.backups.bucket
    if storage.minio_in_cluster or not bucket:
        return False
    endpoint_url = storage.endpoint.url
    kind, reason = bucket_status(_client(storage), bucket, endpoint_url)
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
    raise BackupBucketError(bucket, reason)
