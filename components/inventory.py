"""DatasetInventory: what the dataset buckets hold, counted by a dynamic resource.

For each dataset bucket: the number and total size of image files, video
files and other files (which CVAT skips), classified by extension the way CVAT
does (images are `image/*` except SVG, videos `video/*`). Listing is paginated
and keeps only counters, so memory stays constant whatever the bucket size;
at most `limit` objects are counted per bucket, and the result says when a
count stopped there.

The counts live in a dynamic resource. It counts when it is created, counts
again on `pulumi refresh` and `pulumi up --refresh` (its read recounts), and
whenever its inputs change: the buckets, the limit, the endpoint (URL,
region) or the keys (its diff then reports an update, never a replacement; so
does a change of the serialized provider, ``__provider``). A `pulumi up` or
`pulumi preview` whose inputs are unchanged reports no change and keeps the
last counts, so an unchanged stack passes `pulumi preview --expect-no-changes`:
files added to or removed from the buckets since show in `datasets` after a
refresh.

A bucket that was deleted or became forbidden since does not fail either: its
entry becomes ``{"error": "<reason>"}`` and the other buckets are still
counted. Keys that the server no longer accepts do fail, with a message that
says so (refresh and destroy use the keys kept in the stack's state).
Like the lifecycle provider, it is pickled by reference: the module path and
class names are part of the stack state.
"""

from __future__ import annotations

import mimetypes
from typing import Any, Optional

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, Resource, ResourceProvider, UpdateResult

from components.endpoint import CONNECTION_SECRETS, S3Endpoint, client_from_inputs

# The built-in table only: the system's mime.types would make results machine-dependent.
_TYPES = mimetypes.MimeTypes(filenames=())
# Extensions CVAT accepts that Python's table lacks.
_EXTRA = {
    ".webp": "image/webp",
    ".heic": "image/heic",
    ".heif": "image/heif",
    ".jfif": "image/jpeg",
    ".mkv": "video/x-matroska",
    ".m4v": "video/x-m4v",
    ".3gp": "video/3gpp",
    ".mts": "video/mp2t",
    ".m2ts": "video/mp2t",
}


def media_kind(key: str) -> str:
    """'image', 'video' or 'ignored' for an object key, by its extension (any case)."""
    name = key.rsplit("/", 1)[-1].lower()
    dot = name.rfind(".")
    if dot <= 0:
        return "ignored"
    mime = _EXTRA.get(name[dot:]) or _TYPES.guess_type(name, strict=False)[0] or ""
    if mime.startswith("image/") and mime != "image/svg+xml":
        return "image"
    if mime.startswith("video/"):
        return "video"
    return "ignored"


# Keys per listing request: S3's maximum, and all the memory counting ever holds.
PAGE_SIZE = 1000


def count_bucket(client: Any, bucket: str, limit: int, page_size: int = PAGE_SIZE) -> dict[str, Any]:
    """Counts one bucket's objects by kind, in constant memory, stopping at `limit` objects.

    Pages of `page_size` keys are read one at a time and only counters are kept.
    """
    counts = {"images": 0, "videos": 0, "ignored": 0, "bytes": 0, "imageBytes": 0, "videoBytes": 0, "truncated": False}
    seen = 0
    kind_key = {"image": ("images", "imageBytes"), "video": ("videos", "videoBytes"), "ignored": ("ignored", None)}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, PaginationConfig={"PageSize": page_size}):
        for item in page.get("Contents", ()):
            key = item["Key"]
            if key.endswith("/"):  # a "folder" marker, not a file
                continue
            if seen >= limit:
                counts["truncated"] = True
                return counts
            seen += 1
            size = item.get("Size", 0)
            count, size_key = kind_key[media_kind(key)]
            counts[count] += 1
            counts["bytes"] += size
            if size_key:
                counts[size_key] += size
    return counts


# Answers about one bucket (gone, forbidden, moved to another region): recorded, not raised.
_MISSING_CODES = {"NoSuchBucket", "404"}
_FORBIDDEN_CODES = {"AccessDenied", "AllAccessDisabled", "403"}
_MOVED_CODES = {"PermanentRedirect", "301"}
# Answers about the keys themselves: every bucket would fail the same way.
_KEY_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"}


class InventoryError(Exception):
    """The endpoint refused the keys kept in the stack's state."""


def bucket_error(error: Exception) -> Optional[str]:
    """Why one bucket cannot be counted, when the cause is the bucket; None otherwise."""
    response = getattr(error, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code in _KEY_CODES:
        return None
    if code in _MISSING_CODES or (status == 404 and not code):
        return f"the bucket does not exist ({code or status})"
    if code in _FORBIDDEN_CODES or (status == 403 and not code):
        return f"access denied ({code or status}): the keys may no longer list this bucket"
    if code in _MOVED_CODES or (status == 301 and not code):
        return f"the bucket is in another region ({code or status})"
    return None


def count_buckets(props: dict) -> dict[str, dict]:
    """The inventory of every bucket listed in the resource's properties.

    A bucket that is gone or forbidden gets ``{"error": reason}``; the others are counted.
    """
    from botocore.exceptions import ClientError

    client = client_from_inputs(props)
    limit = int(props["limit"])
    inventory: dict[str, dict] = {}
    for bucket in props["buckets"]:
        try:
            inventory[bucket] = count_bucket(client, bucket, limit)
        except ClientError as error:
            reason = bucket_error(error)
            if reason is None:
                code = error.response.get("Error", {}).get("Code", "")
                if code in _KEY_CODES:
                    raise InventoryError(
                        f"{props['endpoint_url']} refused the S3 keys kept in the stack's state ({code}) "
                        f"while counting bucket {bucket}. Run `pulumi up` with valid storageAccessKey/"
                        "storageSecretKey first: refresh and destroy use the keys of the last update."
                    ) from None
                raise
            inventory[bucket] = {"error": reason}
    return inventory


# The outputs that are not inputs: what diff leaves out of the comparison.
_OUTPUT_KEYS = ("datasets",)


class DatasetInventoryProvider(ResourceProvider):
    """Dynamic provider: counts on create, update (inputs changed) and read (refresh)."""

    def create(self, props: dict) -> CreateResult:
        return CreateResult(id_="dataset-inventory", outs={**props, "datasets": count_buckets(props)})

    def diff(self, id_: str, olds: dict, news: dict) -> DiffResult:
        """An update when an input changed (buckets, limit, endpoint, keys, the provider itself); else none.

        ``olds`` are the old outputs: the inputs of the last create, update or
        refresh plus ``datasets``, which the inputs hold as None; it is left out.
        ``__provider`` (the pickled provider) is compared like the inputs: when
        it changes, the update stores the new one in the state. Nothing is
        ever replaced: there is nothing to re-create, only counts to redo.
        """
        changed = [key for key in news if key not in _OUTPUT_KEYS and olds.get(key) != news[key]]
        return DiffResult(changes=bool(changed), replaces=[], stables=[], delete_before_replace=False)

    def update(self, id_: str, olds: dict, news: dict) -> UpdateResult:
        return UpdateResult(outs={**news, "datasets": count_buckets(news)})

    def read(self, id_: str, props: dict) -> ReadResult:
        return ReadResult(id_=id_, outs={**props, "datasets": count_buckets(props)})

    def delete(self, id_: str, props: dict) -> None:
        """Counting changed nothing: nothing to undo."""


class DatasetInventory(Resource, module="labeling", name="DatasetInventory"):
    """The media counts of the dataset buckets (output `datasets`)."""

    datasets: pulumi.Output[dict]

    def __init__(
        self,
        name: str,
        *,
        endpoint: S3Endpoint,
        buckets: list[str],
        limit: int,
        opts: Optional[pulumi.ResourceOptions] = None,
    ):
        props = {
            **endpoint.connection_inputs(),
            "buckets": buckets,
            "limit": limit,
            "datasets": None,
        }
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=CONNECTION_SECRETS))
        super().__init__(DatasetInventoryProvider(), name, props, opts)
