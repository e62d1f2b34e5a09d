"""DatasetInventory: what the dataset buckets hold, counted at every `pulumi up`.

For each dataset bucket: the number and total size of image files, video
files and other files (which CVAT skips), classified by extension the way CVAT
does (images are `image/*` except SVG, videos `video/*`). Listing is paginated
and keeps only counters, so memory stays constant whatever the bucket size;
at most `limit` objects are counted per bucket, and the result says when a
count stopped there.

The counts live in a dynamic resource: it recounts on every `pulumi up` (its
diff always reports a change) and on `pulumi refresh` (its read recounts).
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


def count_bucket(client: Any, bucket: str, limit: int) -> dict[str, Any]:
    """Counts one bucket's objects by kind, in constant memory, stopping at `limit` objects."""
    counts = {"images": 0, "videos": 0, "ignored": 0, "bytes": 0, "imageBytes": 0, "videoBytes": 0, "truncated": False}
    seen = 0
    kind_key = {"image": ("images", "imageBytes"), "video": ("videos", "videoBytes"), "ignored": ("ignored", None)}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, PaginationConfig={"PageSize": 1000}):
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


def count_buckets(props: dict) -> dict[str, dict]:
    """The inventory of every bucket listed in the resource's properties."""
    client = client_from_inputs(props)
    limit = int(props["limit"])
    return {bucket: count_bucket(client, bucket, limit) for bucket in props["buckets"]}


class DatasetInventoryProvider(ResourceProvider):
    """Dynamic provider: counts on create, update (every up) and read (refresh)."""

    def create(self, props: dict) -> CreateResult:
        return CreateResult(id_="dataset-inventory", outs={**props, "datasets": count_buckets(props)})

    def diff(self, id_: str, olds: dict, news: dict) -> DiffResult:
        # Bucket contents change outside Pulumi: count again at every update.
        return DiffResult(changes=True, replaces=[], stables=[], delete_before_replace=False)

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
