"""Rules on single values: each function says why a value is refused, or returns None.

Patterns are used with re.fullmatch and ASCII classes only: `$` lets a trailing
newline through, and \\d or str.isdigit() accept digits of other scripts.
"""

from __future__ import annotations

import ipaddress
import re
from fractions import Fraction
from typing import Optional

from components import cron

_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
DNS_LABEL_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
DJANGO_USERNAME_RE = re.compile(r"[A-Za-z0-9_.@+-]{1,150}")
REGION_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_QUANTITY_RE = re.compile(r"([0-9]+(\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?")
# No quotes, backslashes or spaces: the restore script refuses them.
_BACKUP_KEY_RE = re.compile(r"[A-Za-z0-9!_.*()=/-]+\.(dump|json)")
_EMAIL_LOCAL_RE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_IMAGE_RE = re.compile(
    r"(?:[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?/)?[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
    r"(?P<tag>:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?P<digest>@sha256:[0-9a-f]{64})?"
)
# Kubernetes stores a quantity's value in an int64 of bytes (resource.Quantity.Value()).
MAX_SIZE_BYTES = 2**63 - 1
# A size has no business with more digits than this; int() refuses more than 4300.
_MAX_QUANTITY_DIGITS = 40
# Django's EmailField (CVAT's User.email) and RFC 5321: at most 254 characters.
MAX_EMAIL_LENGTH = 254
# ValidateCSIDriverName (pkg/apis/core/validation): at most 63 characters.
MAX_CSI_DRIVER_LENGTH = 63
# Namespaces Kubernetes keeps for itself.
RESERVED_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
# An annotation and an env var carry it; the API server caps all annotations at 256 KiB.
MAX_DESCRIPTION_LENGTH = 1000

_SUFFIX_BYTES = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
                 "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_BINARY_SUFFIXES = ("", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei")
_DECIMAL_SUFFIXES = ("", "k", "M", "G", "T", "P", "E")


def bucket_name_problem(name: str) -> Optional[str]:
    """Why `name` is not a valid S3 bucket name, or None when it is."""
    if not isinstance(name, str) or not 3 <= len(name) <= 63:
        return f"{name!r} must be 3 to 63 characters long"
    if not _BUCKET_RE.fullmatch(name):
        return (
            f"{name!r} may hold only lowercase letters, digits, dots and hyphens, "
            "and must start and end with a letter or digit"
        )
    if ".." in name:
        return f"{name!r} must not contain '..'"
    if ".-" in name or "-." in name:
        # S3 (and MinIO) refuse them: a dot must sit between letters or digits.
        return f"{name!r} must not contain '.-' or '-.' (a dot goes between letters or digits)"
    try:
        ipaddress.IPv4Address(name)
        return f"{name!r} must not be an IP address"
    except ValueError:
        return None


def dns_name_problem(name: str) -> Optional[str]:
    """Why `name` is not a lowercase DNS name (RFC 1123 subdomain), or None."""
    if "://" in name or "/" in name or ":" in name:
        return f"{name!r} is not a host name (give the bare name, without scheme, port or path)"
    if len(name) > 253:
        return f"{name!r} is longer than 253 characters"
    if name != name.lower():
        return f"{name!r} must be lowercase"
    labels = name.split(".")
    if not all(DNS_LABEL_RE.fullmatch(label) for label in labels):
        return (
            f"{name!r} is not a DNS name: each dot-separated part must be 1 to 63 "
            "letters, digits or hyphens, not starting or ending with a hyphen"
        )
    return None


def hostname_problem(name: str) -> Optional[str]:
    """Why `name` cannot be the Ingress host of the workspace, or None."""
    try:
        ipaddress.ip_address(name)
        return f"{name!r} is an IP address: an Ingress host must be a DNS name (e.g. cvat.<ip>.nip.io)"
    except ValueError:
        pass
    return dns_name_problem(name)


def description_problem(text: str) -> Optional[str]:
    """Why `text` cannot be a workspace description (one line of printable text), or None."""
    if len(text) > MAX_DESCRIPTION_LENGTH:
        return f"is {len(text)} characters long; at most {MAX_DESCRIPTION_LENGTH}"
    if not text.isprintable():
        return "must be one line of printable text (no control characters, newlines or NUL)"
    return None


def cron_problem(schedule: str) -> Optional[str]:
    """Why `schedule` is not a Kubernetes CronJob schedule that fires, or None.

    Kubernetes' own rules (components/cron.py: robfig/cron v3 ParseStandard, no TZ), and one
    of ours: a schedule that never fires, or only on 29 February, is refused too.
    """
    try:
        parsed = cron.parse(schedule)
    except cron.CronError as error:
        return str(error)
    reason = parsed.firing_problem()
    shown = repr(schedule) if len(schedule) <= 60 else f"{schedule[:60]!r}..."
    return f"{shown} {reason}" if reason else None


def _quantity_bytes(size: str) -> Optional[Fraction]:
    """The exact number of bytes of a storage size, or None when it is not one."""
    match = _QUANTITY_RE.fullmatch(size)
    if not match or len(match.group(1)) > _MAX_QUANTITY_DIGITS:
        return None
    return Fraction(match.group(1)) * _SUFFIX_BYTES[match.group(3) or ""]


def storage_size_problem(size: str, minimum_gib: float = 0) -> Optional[str]:
    """Why `size` is not a Kubernetes storage quantity of at least `minimum_gib`, or None."""
    match = _QUANTITY_RE.fullmatch(size)
    if not match:
        return f"{size!r} is not a storage size (e.g. 10Gi, 500Mi)"
    if len(match.group(1)) > _MAX_QUANTITY_DIGITS:
        return f"{size[:20]!r}... has {len(match.group(1))} digits: not a storage size (e.g. 10Gi, 500Mi)"
    count = _quantity_bytes(size)
    if count > MAX_SIZE_BYTES:
        return f"{size!r} is 2^63 bytes (8Ei) or more: Kubernetes stores sizes in 64 bits, at most 2^63 - 1 bytes"
    if count < minimum_gib * 2**30:
        return f"{size!r} is too small: at least {minimum_gib:g}Gi"
    return None


def canonical_quantity(size: str) -> Optional[str]:
    """`size` as the API server writes it back (1024Mi -> 1Gi, 1.5Gi -> 1536Mi); None if not whole bytes.

    Kubernetes keeps the format (binary or decimal) and picks the largest suffix
    that leaves a whole number, so a claim written in another form shows an
    update at every `pulumi up`.
    """
    match = _QUANTITY_RE.fullmatch(size)
    if not match or len(match.group(1)) > _MAX_QUANTITY_DIGITS:
        return None
    suffix = match.group(3) or ""
    binary = suffix in _BINARY_SUFFIXES[1:]
    suffixes, base = (_BINARY_SUFFIXES, 1024) if binary else (_DECIMAL_SUFFIXES, 1000)
    count = Fraction(match.group(1)) * base ** suffixes.index(suffix)
    if count.denominator != 1:
        return None
    number = int(count)
    power = 0
    while number and number % base == 0 and power < len(suffixes) - 1:
        number //= base
        power += 1
    return f"{number}{suffixes[power]}"


def image_reference_problem(image: str) -> Optional[str]:
    """Why `image` is not a pinned container image reference (a tag or a digest), or None."""
    match = _IMAGE_RE.fullmatch(image)
    if not match:
        return f"{image!r} is not a container image reference (e.g. registry.example.com/minio/minio:RELEASE.2025-09-07T16-13-09Z)"
    if not match.group("tag") and not match.group("digest"):
        return f"{image!r} must name a tag or a digest: a moving image is not reproducible"
    if match.group("tag") == ":latest" and not match.group("digest"):
        return f"{image!r}: 'latest' moves; pin a release tag or a digest"
    return None


def restore_source_problem(source: str) -> Optional[str]:
    """Why `source` is not `latest`, a backup key or `s3://bucket/key`, or None."""
    if source == "latest":
        return None
    key = source
    if source.startswith("s3://"):
        bucket, _, key = source[len("s3://") :].partition("/")
        reason = bucket_name_problem(bucket)
        if reason:
            return f"{source!r}: bucket {reason}"
    if not key or key.startswith("/") or "//" in key or not _BACKUP_KEY_RE.fullmatch(key):
        return (
            f"{source!r} is not a backup: give 'latest', a manifest key such as "
            "'acme/backups/20261130T030000Z.json' (or, for an older backup, a dump key such as "
            "'acme/database/20261130T030000Z.dump'), or 's3://<bucket>/<key>'"
        )
    return None


def email_problem(address: str) -> Optional[str]:
    """Why `address` is not a usable e-mail address, or None."""
    if len(address) > MAX_EMAIL_LENGTH:
        # CVAT's User.email is Django's EmailField, 254 characters: the superuser Job would fail.
        return f"{address[:40]!r}... is {len(address)} characters long; at most {MAX_EMAIL_LENGTH}"
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        return f"{address!r} is not an e-mail address"
    if len(local) > 64 or not _EMAIL_LOCAL_RE.fullmatch(local):
        return f"{address!r} has an invalid part before '@'"
    if domain != "localhost" and (
        "." not in domain or dns_name_problem(domain.lower()) or not re.search(r"\.[a-z]{2,63}$", domain.lower())
    ):
        return f"{address!r} has an invalid domain"
    return None


def namespace_problem(name: str) -> Optional[str]:
    """Why `name` cannot be the workspace's namespace, or None."""
    if not DNS_LABEL_RE.fullmatch(name):
        return f"{name!r} is not a DNS-1123 label (at most 63 lowercase letters, digits or hyphens)"
    if name in RESERVED_NAMESPACES or name.startswith("kube-"):
        return f"{name!r} is a namespace Kubernetes keeps for itself: choose one of the workspace's own"
    return None


def access_key_problem(key: str) -> Optional[str]:
    """Why `key` is not an S3 access key, or None (the message never shows the key)."""
    if len(key) > 128 or not key.isascii() or not key.isprintable() or " " in key:
        return "is not an S3 access key (at most 128 printable ASCII characters, no spaces)"
    return None


def csi_driver_problem(name: str) -> Optional[str]:
    """Why `name` is not a CSI driver name, or None."""
    # ValidateCSIDriverName (kubernetes pkg/apis/core/validation): at most 63 characters, a DNS subdomain.
    if len(name) > MAX_CSI_DRIVER_LENGTH:
        return f"{name[:40]!r}... is {len(name)} characters long; a CSI driver name has at most {MAX_CSI_DRIVER_LENGTH}"
    return object_name_problem(name)


def object_name_problem(name: str) -> Optional[str]:
    """Why `name` is not a Kubernetes object name (a DNS subdomain), or None."""
    reason = dns_name_problem(name)
    return f"{name!r} is not a valid Kubernetes object name" if reason else None
