"""What the program derives from config values: names, keys, the region and URL of the object storage.

The operator command (`python -m backups`) derives the storage location of a
stack from the same raw values with :func:`storage_location`, so that it never
works the endpoint out differently from the program.
"""

from __future__ import annotations

import hashlib
import re
from typing import Optional

from components.endpoint import endpoint_url

STORAGE_PROVIDERS = ("scaleway", "minio")
SCALEWAY_REGIONS = ("fr-par", "nl-ams", "pl-waw")
# A MinIO server without MINIO_SITE_REGION accepts any region. Not us-east-1:
# with a custom endpoint, AWS clients may rewrite it to the pseudo region aws-global.
MINIO_DEFAULT_REGION = "minio"


def default_region(provider: str) -> str:
    """The region used when storageRegion is empty."""
    return SCALEWAY_REGIONS[0] if provider == "scaleway" else MINIO_DEFAULT_REGION


def storage_location(provider: Optional[str], region: Optional[str], endpoint: Optional[str]) -> tuple[str, str, str]:
    """(provider, region, endpoint URL) of the object storage, from the raw values of storageProvider,
    storageRegion and storageEndpoint (None or empty: unset), as the program reads them.

    The provider is lowercased (default scaleway), an empty region is the provider's default,
    and the URL is the configured one without a trailing slash, or Scaleway's for the region;
    "" for a MinIO without one. Values are not validated here: load_config does that.
    """
    provider = (provider or "").strip().lower() or STORAGE_PROVIDERS[0]
    region = (region or "").strip()
    if provider in STORAGE_PROVIDERS:
        region = region or default_region(provider)
    return provider, region, endpoint_url(provider, region, (endpoint or "").strip().rstrip("/"))


def dns_label(text: str, max_length: int = 63) -> str:
    """Turns free text (a stack name) into a DNS-1123 label."""
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower())
    label = re.sub(r"-{2,}", "-", label).strip("-")[:max_length].rstrip("-")
    return label or "workspace"


def workspace_key(project: str, stack: str) -> str:
    """The workspace's key in a backup bucket that several workspaces may share.

    Backup prefix and lifecycle rule id start with it. A stack whose name is
    already a DNS label keeps it as is (so existing backups stay where they
    are); any other name is cleaned, cut, and given a short hash of project and
    stack, so that `acme_prod`, `acme-prod` and `Acme.Prod` never share backups.
    """
    label = dns_label(stack)
    if label == stack:
        return stack
    digest = hashlib.sha256(f"{project}/{stack}".encode()).hexdigest()[:8]
    return f"{dns_label(stack, max_length=54)}-{digest}"


def default_namespace(stack: str) -> str:
    """`cvat-<stack>`, as a DNS-1123 label."""
    return dns_label(f"cvat-{stack}")


def default_backup_bucket_prefix(project: str, stack: str) -> str:
    """Start of the generated backup bucket name; a random suffix follows.

    Bucket names are global on Scaleway, so the program adds a suffix that it
    keeps in the stack state; 49 characters leave room for it within 63.
    """
    return dns_label(f"{project}-{stack}-backups", max_length=49)
