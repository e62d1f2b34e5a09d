"""The S3 requests the command makes (list, head, read a manifest), and its S3 failures in one line."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, Optional

from botocore.exceptions import ClientError

from backups.display import redact_url
from backups.errors import BackupsError
from backups.layout import MAX_MANIFEST_SIZE, parse_manifest

if TYPE_CHECKING:  # for the annotations only
    from backups.location import Location


def status_of(error: ClientError) -> int:
    """The HTTP status of a failed request (0 when unknown)."""
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def code_of(error: ClientError) -> str:
    """The S3 error code of a failed request ("" when unknown)."""
    return str(error.response.get("Error", {}).get("Code") or "")


def no_such_key(error: ClientError) -> bool:
    """Whether a GET failed because the object does not exist."""
    return code_of(error) == "NoSuchKey" or status_of(error) == 404


def list_objects(client: Any, bucket: str, prefix: str) -> list[dict]:
    """Every object under `prefix`, all pages."""
    items = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        items.extend(page.get("Contents", []))
    return items


def head(client: Any, bucket: str, key: str) -> Optional[dict]:
    """HeadObject, or None when the object does not exist."""
    try:
        return client.head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if status_of(error) == 404:
            return None
        raise


def read_manifest(client: Any, bucket: str, key: str) -> tuple[Optional[dict], Optional[str]]:
    """(manifest, None), or (None, why it cannot be used); None, None when it does not exist."""
    manifest, problem, _ = get_manifest(client, bucket, key)
    return manifest, problem


def get_manifest(client: Any, bucket: str, key: str) -> tuple[Optional[dict], Optional[str], Optional[datetime]]:
    """What `read_manifest` returns, and the object's LastModified (None when it does not exist)."""
    try:
        response = client.get_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if no_such_key(error):
            return None, None, None
        raise
    body = response["Body"].read(MAX_MANIFEST_SIZE + 1)
    modified = response.get("LastModified")
    if len(body) > MAX_MANIFEST_SIZE:
        return None, "manifest larger than 1 MiB", modified
    return (*parse_manifest(body), modified)


def check_bucket(location: "Location") -> None:
    """Raises a clear error when the bucket itself does not exist."""
    try:
        location.client().head_bucket(Bucket=location.bucket)
    except ClientError as error:
        if status_of(error) == 404:
            raise BackupsError(f"bucket {location.bucket} does not exist at {redact_url(location.endpoint_url)}") from error
        raise


def parallel(function: Callable, items: list) -> list:
    """`function` over `items`, up to 8 requests at a time (a listing reads every manifest)."""
    if len(items) <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(8, len(items))) as pool:
        return list(pool.map(function, items))


def describe_error(error: Exception, location: Optional["Location"]) -> str:
    """One line for an S3 failure: unreachable endpoint, refused keys, missing bucket, wrong region."""
    endpoint = redact_url(location.endpoint_url) if location else "the S3 endpoint"
    if isinstance(error, ClientError):
        return describe_refusal(error, location, endpoint)
    from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError

    if isinstance(error, (EndpointConnectionError, ConnectTimeoutError)):
        return f"cannot reach the S3 endpoint {endpoint}: {error}"
    if isinstance(error, ReadTimeoutError):
        return f"the S3 endpoint {endpoint} stopped answering: {error}"
    return f"S3 request failed: {error}"


def describe_refusal(error: ClientError, location: Optional["Location"], endpoint: str) -> str:
    """One line for a request the server answered with an error."""
    code, status = code_of(error), status_of(error)
    message = error.response.get("Error", {}).get("Message") or ""
    if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "AccessDenied", "403") or status == 403:
        return (f"the S3 server refused the keys ({code or status}{': ' + message if message else ''}): check "
                "--access-key/--secret-key (or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or the stack's "
                "storageAccessKey/storageSecretKey) and that they may read the backup bucket")
    if code == "NoSuchBucket":
        bucket = error.response.get("Error", {}).get("BucketName") or (location.bucket if location else "the backup bucket")
        return f"bucket {bucket} does not exist at {endpoint}"
    if code == "AuthorizationHeaderMalformed" or "region" in message.lower():
        return f"wrong region for {endpoint} ({message or code}): pass --region"
    return f"S3 request failed ({code or status}): {message or error}"
