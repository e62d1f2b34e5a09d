"""The stack configuration of a labeling workspace: read, validated, frozen.

Every key lives in the project namespace (``labeling:``) and is declared in
``Pulumi.yaml``. :func:`load_config` reads them all, checks every rule, and
raises one :class:`ConfigError` that names each bad key and why, before the
program registers a single resource.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional
from urllib.parse import urlsplit

import pulumi

from components import cron
from components.cvat_release import RELEASES
from components.label_schema import Project, load_json, parse_projects
from components.sizes import SIZES

STORAGE_PROVIDERS = ("scaleway", "minio")
# Optional CVAT queues, served by one extra worker; the others always run.
OPTIONAL_QUEUES = ("annotation", "webhooks", "quality_reports", "consensus")
DATA_ACCESS_MODES = ("ReadWriteOnce", "ReadWriteMany")
# How CVAT reaches the dataset buckets: registered cloud storages, a mounted share, or both.
DATASET_ACCESS = ("cloudStorage", "share", "both")
SCALEWAY_REGIONS = ("fr-par", "nl-ams", "pl-waw")
# A MinIO server without MINIO_SITE_REGION accepts any region. Not us-east-1:
# with a custom endpoint, AWS clients may rewrite it to the pseudo region aws-global.
MINIO_DEFAULT_REGION = "minio"

# Defaults, the same as the `default:` of each key in Pulumi.yaml (a test keeps
# them equal): the engine merges Pulumi.yaml defaults, mocks and other hosts do not.
DEFAULTS: dict[str, Any] = {
    "description": "",
    "storageProvider": "scaleway",
    "storageRegion": "",
    "storageEndpoint": "",
    "storageAccessKey": "",
    "storageSecretKey": "",
    "minioInCluster": False,
    "datasetBuckets": [],
    "backupBucket": "",
    "backupRetentionDays": 30,
    "backupSchedule": "0 3 * * *",
    "databaseStorageSize": "10Gi",
    "storageClassName": "",
    "restoreFrom": "",
    "restoreForce": False,
    "cvatVersion": "v2.73.0",
    "size": "small",
    "workers": ["annotation", "webhooks", "quality_reports", "consensus"],
    "cvatDataSize": "20Gi",
    "cvatDataAccessMode": "ReadWriteOnce",
    "datasetAccess": "cloudStorage",
    "datasetInventoryLimit": 100000,
    "datasetCsiDriver": "ru.yandex.s3.csi",
    "adminUsername": "admin",
    "adminPassword": "",
    "ingressClassName": "",
    "tlsSecretName": "",
    "certManagerIssuer": "",
    "namespace": "",
    "kubeContext": "",
    "egressAllow": [],
    # ingress-nginx's own namespace. Not kube-system: every pod there could reach the backend
    # directly. Traefik on k3s, k3d and Rancher Desktop runs there: Pulumi.dev.yaml lists both.
    "ingressNamespaces": ["ingress-nginx"],
    "ingressAllowCidrs": [],
    "minioImage": "",
    "paused": False,
    "allowInsecureHttp": False,
    "projects": [],
}
# Keys without a default: the engine refuses to run without them, and so do we.
REQUIRED_KEYS = ("adminEmail", "hostname")
# Optional secrets cannot be declared `secret: true` in Pulumi.yaml (a secret
# key without a default is required there), so the program checks that a set
# value was stored encrypted.
SECRET_KEYS = ("storageSecretKey", "adminPassword")

# Patterns are used with re.fullmatch and ASCII classes only: `$` lets a trailing
# newline through, and \d or str.isdigit() accept digits of other scripts.
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_DNS_LABEL_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_DJANGO_USERNAME_RE = re.compile(r"[A-Za-z0-9_.@+-]{1,150}")
_QUANTITY_RE = re.compile(r"([0-9]+(\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?")
# No quotes, backslashes or spaces: the restore script refuses them.
_BACKUP_KEY_RE = re.compile(r"[A-Za-z0-9!_.*()=/-]+\.(dump|json)")
_INTEGER_RE = re.compile(r"-?[0-9]{1,18}")
# RFC 1123 host names, as botocore checks an endpoint (botocore/utils.py is_valid_endpoint_url:
# labels of letters, digits and hyphens, not starting or ending with one; no underscore).
_HOST_LABEL_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
# Kubernetes stores a quantity's value in an int64 of bytes (resource.Quantity.Value()).
MAX_SIZE_BYTES = 2**63 - 1
# A size has no business with more digits than this; int() refuses more than 4300.
_MAX_QUANTITY_DIGITS = 40
# Django's EmailField (CVAT's User.email) and RFC 5321: at most 254 characters.
MAX_EMAIL_LENGTH = 254
# ValidateCSIDriverName (pkg/apis/core/validation): at most 63 characters.
MAX_CSI_DRIVER_LENGTH = 63
# egressAllow: wider ranges than these would let CVAT reach most of the internet's or the
# cluster's addresses past its SSRF guard (0.0.0.0/0 turns it off).
MIN_EGRESS_PREFIX = {4: 8, 6: 7}
# Namespaces Kubernetes keeps for itself.
RESERVED_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
MAX_RETENTION_DAYS = 3650
# CVAT's CloudStorage.key and .secret_key lengths.
CVAT_KEY_LENGTH, CVAT_SECRET_KEY_LENGTH = 40, 64
# An annotation and an env var carry it; the API server caps all annotations at 256 KiB.
MAX_DESCRIPTION_LENGTH = 1000
_EMAIL_LOCAL_RE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")


# Keys whose default the program applies itself: Pulumi.yaml declares them without one, so
# that the program can tell a key left unset from one set to the default.
DEFAULTED_BY_PROGRAM = ("ingressNamespaces",)
# Shown by every preview of a stack that leaves ingressNamespaces unset.
INGRESS_NAMESPACES_WARNING = (
    "ingressNamespaces is not set, so it is [\"ingress-nginx\"]: kube-system is no longer allowed by default, so an "
    "ingress controller running there (Traefik on k3s, k3d or Rancher Desktop, RKE2's ingress-nginx) can no longer "
    "reach CVAT. For Traefik on k3s: pulumi config set --path 'ingressNamespaces[0]' ingress-nginx && "
    "pulumi config set --path 'ingressNamespaces[1]' kube-system (or only kube-system). With ingress-nginx in its "
    "own namespace, set it to say so: pulumi config set --path 'ingressNamespaces[0]' ingress-nginx "
    "(see 'Upgrading this program' in the README)."
)


class ConfigError(pulumi.RunError):
    """Bad stack configuration: one message listing every problem, by key."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        lines = [f"  - {key}: {reason}" for key, reason in problems]
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(
            f"Invalid stack configuration ({count}); nothing was changed.\n" + "\n".join(lines)
        )


@dataclass(frozen=True)
class WorkspaceConfig:
    """The validated configuration of one workspace (one stack)."""

    project: str
    stack: str
    description: str
    storage_provider: str
    storage_region: str
    storage_endpoint: str
    storage_access_key: str
    storage_secret_key: Optional[pulumi.Output[str]]
    minio_in_cluster: bool
    dataset_buckets: tuple[str, ...]
    backup_bucket: str
    backup_retention_days: int
    backup_schedule: str
    database_storage_size: str
    storage_class_name: str
    restore_from: str
    restore_force: bool
    cvat_version: str
    size: str
    workers: tuple[str, ...]
    cvat_data_size: str
    cvat_data_access_mode: str
    dataset_access: str
    dataset_inventory_limit: int
    dataset_csi_driver: str
    admin_username: str
    admin_email: str
    admin_password: Optional[pulumi.Output[str]]
    hostname: str
    ingress_class_name: str
    tls_secret_name: str
    cert_manager_issuer: str
    namespace: str
    kube_context: str
    ingress_namespaces: tuple[str, ...] = ("ingress-nginx",)
    ingress_allow_cidrs: tuple[str, ...] = ()
    egress_allow: tuple[str, ...] = ()
    """IP addresses and CIDR ranges CVAT may reach despite its SSRF guard (canonical form)."""
    minio_image: str = ""
    paused: bool = False
    projects: tuple[Project, ...] = ()
    """CVAT projects and their label schemas (components.label_schema)."""
    # Plain text, for the checks the program itself makes with boto3 (never logged or exported).
    storage_secret_key_plain: str = field(repr=False, default="")

    @property
    def workspace_name(self) -> str:
        """The workspace's name: the stack name, made a valid label value."""
        return dns_label(self.stack)

    @property
    def workspace_key(self) -> str:
        """What tells this workspace apart in places it may share with others (see :func:`workspace_key`)."""
        return workspace_key(self.project, self.stack)

    @property
    def tls_enabled(self) -> bool:
        """Whether the annotation server is served over HTTPS."""
        return bool(self.tls_secret_name or self.cert_manager_issuer)


def default_region(provider: str) -> str:
    """The region used when storageRegion is empty."""
    return SCALEWAY_REGIONS[0] if provider == "scaleway" else MINIO_DEFAULT_REGION


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
    if not all(_DNS_LABEL_RE.fullmatch(label) for label in labels):
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


_SUFFIX_BYTES = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
                 "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}


def _quantity_bytes(size: str):
    """The exact number of bytes of a storage size (a Fraction), or None when it is not one."""
    from fractions import Fraction

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


_BINARY_SUFFIXES = ("", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei")
_DECIMAL_SUFFIXES = ("", "k", "M", "G", "T", "P", "E")


def canonical_quantity(size: str) -> Optional[str]:
    """`size` as the API server writes it back (1024Mi -> 1Gi, 1.5Gi -> 1536Mi); None if not whole bytes.

    Kubernetes keeps the format (binary or decimal) and picks the largest suffix
    that leaves a whole number, so a claim written in another form shows an
    update at every `pulumi up`.
    """
    from fractions import Fraction

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


def egress_entry(entry: str) -> tuple[str, Optional[str]]:
    """(canonical form, None) of an IP address or CIDR range, or ("", why it is not one)."""
    reason = (
        f"{entry!r} is not an IP address or CIDR range (e.g. 10.0.0.12 or 10.0.0.0/24); "
        "give a host name's address, not the name"
    )
    if not entry or not entry.isascii() or not re.fullmatch(r"[0-9A-Fa-f:./]+", entry):
        return "", reason
    try:
        if "/" in entry:
            network = ipaddress.ip_network(entry, strict=True)
            return (str(network.network_address) if network.num_addresses == 1 else str(network)), None
        return str(ipaddress.ip_address(entry)), None
    except ValueError as error:
        if "has host bits set" in str(error):
            return "", f"{entry!r} has host bits set: did you mean {ipaddress.ip_network(entry, strict=False)}?"
        return "", reason


def egress_range_problem(canonical: str) -> Optional[str]:
    """Why an egressAllow entry (in canonical form) is too wide to allow past CVAT's SSRF guard, or None.

    IPv4 prefixes shorter than /8 and IPv6 prefixes shorter than /7 are refused. An
    IPv4-mapped IPv6 range (::ffff:0:0/96 and inside it) counts as the IPv4 range it maps:
    Go's net.IPNet.Contains, which smokescreen uses, matches IPv4 addresses against it so.
    """
    network = ipaddress.ip_network(canonical)
    version, prefix = network.version, network.prefixlen
    if version == 6 and prefix >= 96 and network.network_address.ipv4_mapped is not None:
        version, prefix = 4, prefix - 96
    if prefix < MIN_EGRESS_PREFIX[version]:
        mapped = " as the IPv4 range it maps" if version != network.version else ""
        return (
            f"{canonical!r} is wider than /{MIN_EGRESS_PREFIX[version]} (IPv{version}{mapped}): it would let CVAT reach that "
            "much of the network past its SSRF guard (0.0.0.0/0 turns the guard off); name the addresses or "
            "ranges CVAT needs (a MinIO server, a webhook receiver)"
        )
    return None


# What smokescreen (CVAT's SSRF guard, stripe/smokescreen eb1ac09 classifyAddr) refuses unless
# allowed: its private ranges (PrivateRuleRanges), and every address that is not global unicast
# (`!IsGlobalUnicast() || IsLoopback()`), loopback and link-local included.
_SMOKESCREEN_PRIVATE = tuple(
    ipaddress.ip_network(net) for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
)
_LINK_LOCAL = tuple(ipaddress.ip_network(net) for net in ("169.254.0.0/16", "fe80::/10"))
# The cloud metadata service (instance credentials on AWS, GCP, Azure, Scaleway, OpenStack...).
CLOUD_METADATA_ADDRESS = ipaddress.ip_address("169.254.169.254")
_LOCALHOST_NAMES = ("localhost", "localhost.")


def _ip_literal(host: str) -> Optional[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """`host` as an IP address when it is one (an IPv4-mapped IPv6 as its IPv4, as Go sees it; no zone), else None."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.scope_id is not None:
            return ipaddress.IPv6Address(str(address).split("%", 1)[0])
    return address


def endpoint_allow_address(url: str) -> Optional[str]:
    """The host of `url` when it is a private or link-local IP literal, which CVAT's SSRF guard refuses
    unless allowed (so the program allows it), else None."""
    try:
        address = _ip_literal(urlsplit(url).hostname or "")
    except ValueError:
        return None
    if address is None or address == CLOUD_METADATA_ADDRESS:
        return None
    guarded = _SMOKESCREEN_PRIVATE + _LINK_LOCAL
    return str(address) if any(address in network for network in guarded) else None


def _endpoint_address_problem(hostname: str) -> Optional[str]:
    """Why the endpoint's host is no address for CVAT's pods to reach object storage at, or None."""
    address = _ip_literal(hostname)
    if hostname.lower() in _LOCALHOST_NAMES or (address is not None and address.is_loopback):
        what = "is a loopback address"
    elif address is not None and address.is_unspecified:
        what = "reaches the local host, like a loopback address"  # Linux connects 0.0.0.0 and :: to itself
    elif address == CLOUD_METADATA_ADDRESS:
        return ("169.254.169.254 is the cloud metadata service (it hands out the nodes' credentials), not object "
                "storage: it is never allowed through CVAT's SSRF guard")
    else:
        return None
    return (f"{hostname!r} {what}: inside CVAT's pods it is the pod itself, not the storage server; give an "
            "address or name the pods can reach (a Service name, the server's IP)")


_IMAGE_RE = re.compile(
    r"(?:[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?/)?[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
    r"(?P<tag>:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?P<digest>@sha256:[0-9a-f]{64})?"
)


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


class _Reader:
    """Reads raw config values and collects problems instead of raising."""

    def __init__(self, config: pulumi.Config):
        self.config = config
        self.problems: list[tuple[str, str]] = []

    def problem(self, key: str, reason: str) -> None:
        self.problems.append((key, reason))

    def string(self, key: str) -> str:
        value = self.config.get(key)
        if value is None:
            return DEFAULTS.get(key, "")
        return value.strip()

    def boolean(self, key: str) -> bool:
        value = self.config.get(key)
        if value is None:
            return DEFAULTS[key]
        text = value.strip().lower()
        if text not in ("true", "false"):
            self.problem(key, f"{value!r} is not a boolean (true or false)")
            return DEFAULTS[key]
        return text == "true"

    def integer(self, key: str, minimum: int, maximum: Optional[int] = None) -> int:
        value = self.config.get(key)
        if value is None:
            return DEFAULTS[key]
        if not _INTEGER_RE.fullmatch(value.strip()):
            self.problem(key, f"{value!r} is not a whole number")
            return DEFAULTS[key]
        number = int(value.strip())
        if number < minimum:
            self.problem(key, f"must be at least {minimum}, got {number}")
        elif maximum is not None and number > maximum:
            self.problem(key, f"must be at most {maximum}, got {number}")
        return number

    def string_list(self, key: str) -> list[str]:
        value = self.config.get(key)
        if value is None:
            return list(DEFAULTS[key])
        items, reason = load_json(value)
        if reason:
            self.problem(key, f"{reason}: give a list of strings (pulumi config set --path '{key}[0]' VALUE)")
            return []
        if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
            self.problem(key, f"must be a list of strings (pulumi config set --path '{key}[0]' VALUE)")
            return []
        return [item.strip() for item in items]

    def secret(self, key: str) -> Optional[pulumi.Output[str]]:
        """A secret value as a secret Output, or None when unset or empty."""
        plain = self.config.get(key)
        if plain is None or plain == "":
            return None
        if not pulumi.runtime.is_config_secret(self.config.full_key(key)):
            self.problem(key, f"must be stored encrypted: pulumi config set --secret {key} <value>")
        if "\x00" in plain:
            # No environment variable, command line or C string carries it: the Jobs would fail.
            self.problem(key, "contains a NUL character, which no environment variable can hold")
        return pulumi.Output.secret(plain)

    def has_problem(self, key: str) -> bool:
        return any(problem_key == key for problem_key, _ in self.problems)

    def size(self, key: str, minimum_gib: float) -> str:
        """A storage size in the canonical form the API server stores (so no diff at every up)."""
        value = self.string(key)
        reason = storage_size_problem(value, minimum_gib)
        if reason:
            self.problem(key, reason)
            return value
        canonical = canonical_quantity(value)
        if canonical is None:
            self.problem(key, f"{value!r} is not a whole number of bytes (e.g. 10Gi, 1536Mi)")
            return value
        return canonical

    def check(self, key: str, value: str, rule: Callable[[str], Optional[str]]) -> None:
        reason = rule(value)
        if reason:
            self.problem(key, reason)


def load_config(config: Optional[pulumi.Config] = None) -> WorkspaceConfig:
    """Reads and validates the stack configuration.

    Raises :class:`ConfigError` listing every problem found; returns a frozen
    :class:`WorkspaceConfig` otherwise.
    """
    config = config or pulumi.Config()
    project = pulumi.get_project()
    stack = pulumi.get_stack()
    read = _Reader(config)

    for key in REQUIRED_KEYS:
        if not read.string(key):
            read.problem(key, f"is required: pulumi config set {key} <value>")
    description = read.string("description")
    read.check("description", description, description_problem)

    provider = read.string("storageProvider").lower()
    if provider not in STORAGE_PROVIDERS:
        read.problem("storageProvider", f"{provider!r} is not one of {', '.join(STORAGE_PROVIDERS)}")
    minio_in_cluster = read.boolean("minioInCluster")
    region = read.string("storageRegion")
    endpoint = read.string("storageEndpoint").rstrip("/")
    access_key = read.string("storageAccessKey")
    if access_key:
        read.check("storageAccessKey", access_key, _access_key_problem)
    secret_key = read.secret("storageSecretKey")

    if provider == "scaleway":
        region = region or default_region(provider)
        if region not in SCALEWAY_REGIONS:
            read.problem("storageRegion", f"{region!r} is not a Scaleway region ({', '.join(SCALEWAY_REGIONS)})")
        if minio_in_cluster:
            read.problem("minioInCluster", "requires storageProvider 'minio'")
    elif provider == "minio":
        region = region or default_region(provider)
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", region):
            read.problem("storageRegion", f"{region!r} is not a region name (lowercase letters, digits, hyphens)")

    if minio_in_cluster:
        # The in-cluster server's URL and generated keys are used; a value here would be ignored.
        for key, value in (("storageEndpoint", endpoint), ("storageAccessKey", access_key)):
            if value:
                read.problem(key, "must not be set with minioInCluster (the in-cluster MinIO is used)")
        if secret_key is not None:
            read.problem("storageSecretKey", "must not be set with minioInCluster (its keys are generated)")
    else:
        if endpoint:
            for reason in _endpoint_problems(endpoint):
                read.problem("storageEndpoint", reason)
        elif provider == "minio":
            read.problem("storageEndpoint", "is required for an external MinIO server (e.g. https://minio.example.com)")
        if not access_key:
            read.problem("storageAccessKey", "is required unless minioInCluster is true")
        if secret_key is None:
            read.problem("storageSecretKey", "is required unless minioInCluster is true (set it with --secret)")

    dataset_buckets = read.string_list("datasetBuckets")
    seen: set[str] = set()
    for bucket in dataset_buckets:
        read.check("datasetBuckets", bucket, bucket_name_problem)
        if bucket in seen:
            read.problem("datasetBuckets", f"{bucket!r} is listed twice")
        seen.add(bucket)
    backup_bucket = read.string("backupBucket")
    if backup_bucket:
        read.check("backupBucket", backup_bucket, bucket_name_problem)
        if backup_bucket in seen:
            read.problem("backupBucket", f"{backup_bucket!r} is also a dataset bucket; backups need a bucket of their own")
    retention = read.integer("backupRetentionDays", minimum=1, maximum=MAX_RETENTION_DAYS)
    schedule = " ".join(read.string("backupSchedule").split())
    read.check("backupSchedule", schedule, cron_problem)
    storage_size = read.size("databaseStorageSize", minimum_gib=1)
    storage_class = read.string("storageClassName")
    if storage_class:
        read.check("storageClassName", storage_class, _object_name_problem)
    restore_from = read.string("restoreFrom")
    if restore_from:
        read.check("restoreFrom", restore_from, restore_source_problem)
    restore_force = read.boolean("restoreForce")
    if restore_force and not restore_from:
        read.problem("restoreForce", "only means something with restoreFrom")

    cvat_version = read.string("cvatVersion")
    if cvat_version not in RELEASES:
        read.problem(
            "cvatVersion",
            f"{cvat_version!r} is not a release this program knows the deployment contract of "
            f"(known: {', '.join(RELEASES)}; see 'Upgrading CVAT' in the README for adding one)",
        )
    size = read.string("size").lower()

    if size not in SIZES:
        read.problem("size", f"{size!r} is not one of {', '.join(SIZES)}")
    workers = read.string_list("workers")
    for queue in workers:
        if queue not in OPTIONAL_QUEUES:
            read.problem("workers", f"{queue!r} is not an optional CVAT queue ({', '.join(OPTIONAL_QUEUES)}); import, export, chunks and utils always run")
    if len(set(workers)) != len(workers):
        read.problem("workers", "lists a queue twice")
    data_size = read.size("cvatDataSize", minimum_gib=1)
    access_mode = read.string("cvatDataAccessMode")
    if access_mode not in DATA_ACCESS_MODES:
        read.problem("cvatDataAccessMode", f"{access_mode!r} is not one of {', '.join(DATA_ACCESS_MODES)}")

    dataset_access = read.string("datasetAccess")
    if dataset_access not in DATASET_ACCESS:
        read.problem("datasetAccess", f"{dataset_access!r} is not one of {', '.join(DATASET_ACCESS)}")
    if dataset_buckets and dataset_access in ("cloudStorage", "both") and not minio_in_cluster:
        # CVAT's cloud-storage fields are this long at most; the bootstrap Job would fail on longer ones.
        if len(access_key) > CVAT_KEY_LENGTH:
            read.problem("storageAccessKey", f"is longer than {CVAT_KEY_LENGTH} characters, the most CVAT stores for a cloud storage")
        if len(config.get("storageSecretKey") or "") > CVAT_SECRET_KEY_LENGTH:
            read.problem("storageSecretKey", f"is longer than {CVAT_SECRET_KEY_LENGTH} characters, the most CVAT stores for a cloud storage")
    if dataset_access in ("share", "both") and minio_in_cluster:
        # The CSI driver mounts on the nodes, which neither resolve nor may reach the in-cluster MinIO.
        read.problem("datasetAccess", f"{dataset_access!r} needs object storage the nodes can reach; with minioInCluster use cloudStorage")
    inventory_limit = read.integer("datasetInventoryLimit", minimum=1)
    csi_driver = read.string("datasetCsiDriver")
    read.check("datasetCsiDriver", csi_driver, _csi_driver_problem)

    username = read.string("adminUsername")
    if not _DJANGO_USERNAME_RE.fullmatch(username):
        read.problem("adminUsername", f"{username!r} must be 1 to 150 letters, digits or @.+-_")
    email = read.string("adminEmail")
    if email:
        read.check("adminEmail", email, email_problem)
    admin_password = read.secret("adminPassword")
    plain_password = config.get("adminPassword") or ""
    if admin_password is not None and (len(plain_password) < 8 or plain_password.isdigit()):
        # Mirrors Django's default validators, which the superuser step bypasses.
        read.problem("adminPassword", "must be at least 8 characters and not only digits")
    if admin_password is not None and plain_password != plain_password.strip():
        # CVAT's login serializer trims the password it is given (DRF CharField): the admin could
        # never log in, nor could the bootstrap Job.
        read.problem("adminPassword", "starts or ends with whitespace, which CVAT's login trims: the admin could never log in")

    hostname = read.string("hostname")
    if hostname:
        read.check("hostname", hostname, hostname_problem)
    ingress_class = read.string("ingressClassName")
    tls_secret = read.string("tlsSecretName")
    issuer = read.string("certManagerIssuer")
    for key, value in (("ingressClassName", ingress_class), ("tlsSecretName", tls_secret), ("certManagerIssuer", issuer)):
        if value:
            read.check(key, value, _object_name_problem)
    allow_insecure_http = read.boolean("allowInsecureHttp")
    local_host = hostname == "localhost" or hostname.endswith(".localhost")
    if hostname and not (tls_secret or issuer or local_host or allow_insecure_http):
        read.problem(
            "hostname",
            f"{hostname!r} would serve logins and passwords over plain http: set certManagerIssuer or tlsSecretName, "
            "or allowInsecureHttp: true if something in front terminates TLS (or for a private test)",
        )
    if tls_secret and issuer:
        read.problem("tlsSecretName", "set either tlsSecretName or certManagerIssuer, not both")
        read.problem("certManagerIssuer", "set either tlsSecretName or certManagerIssuer, not both")

    egress_allow = []
    for entry in read.string_list("egressAllow"):
        canonical, reason = egress_entry(entry)
        reason = reason or egress_range_problem(canonical)
        if reason:
            read.problem("egressAllow", reason)
        elif canonical not in egress_allow:
            egress_allow.append(canonical)
    if not minio_in_cluster and endpoint and not read.has_problem("storageEndpoint"):
        # Smokescreen refuses private and link-local addresses: an endpoint given as one is allowed unasked.
        allowed = endpoint_allow_address(endpoint)
        if allowed and allowed not in egress_allow:
            egress_allow.append(allowed)
    minio_image = read.string("minioImage")
    if minio_image:
        if not minio_in_cluster:
            read.problem("minioImage", "only means something with minioInCluster (the development stack)")
        read.check("minioImage", minio_image, image_reference_problem)

    ingress_namespaces = read.string_list("ingressNamespaces")
    if not ingress_namespaces and config.get("ingressNamespaces") is not None and not read.has_problem("ingressNamespaces"):
        read.problem("ingressNamespaces", "must name at least one namespace: nothing could reach the annotation server")
    for name in ingress_namespaces:
        if not _DNS_LABEL_RE.fullmatch(name):
            read.problem("ingressNamespaces", f"{name!r} is not a namespace name (a DNS-1123 label)")

    ingress_cidrs = []
    for entry in read.string_list("ingressAllowCidrs"):
        canonical, reason = egress_entry(entry)
        if reason:
            read.problem("ingressAllowCidrs", reason.replace("IP address or CIDR range", "CIDR range"))
        else:
            network = ipaddress.ip_network(canonical)  # an address becomes its /32 or /128
            if network.prefixlen == 0:
                read.problem("ingressAllowCidrs", f"{entry!r} would admit every address: name the controller's nodes or load balancer")
            elif str(network) not in ingress_cidrs:
                ingress_cidrs.append(str(network))

    kube_context = read.string("kubeContext")
    if not kube_context and not minio_in_cluster:
        # Without it the provider follows kubectl's current context at every run, so a
        # later `pulumi destroy` could act on whatever cluster kubectl points at then.
        read.problem(
            "kubeContext",
            "is required for a workspace outside the local development stack: pulumi config set kubeContext "
            "\"$(kubectl config current-context)\" (the provider would otherwise follow kubectl's current context)",
        )

    namespace = read.string("namespace")
    if namespace:
        read.check("namespace", namespace, _namespace_problem)
    else:
        namespace = default_namespace(stack)

    paused = read.boolean("paused")
    projects, schema_problems = parse_projects(config.get("projects"))
    for problem in schema_problems:
        read.problem("projects", problem)

    if read.problems:
        raise ConfigError(read.problems)
    if config.get("ingressNamespaces") is None:
        # Unset (Pulumi.yaml gives no default for it: DEFAULTED_BY_PROGRAM).
        pulumi.log.warn(INGRESS_NAMESPACES_WARNING)

    return WorkspaceConfig(
        project=project,
        stack=stack,
        description=description,
        storage_provider=provider,
        storage_region=region,
        storage_endpoint=endpoint,
        storage_access_key=access_key,
        storage_secret_key=secret_key,
        minio_in_cluster=minio_in_cluster,
        dataset_buckets=tuple(dataset_buckets),
        backup_bucket=backup_bucket,
        backup_retention_days=retention,
        backup_schedule=schedule,
        database_storage_size=storage_size,
        storage_class_name=storage_class,
        restore_from=restore_from,
        restore_force=restore_force,
        cvat_version=cvat_version,
        size=size,
        workers=tuple(workers),
        cvat_data_size=data_size,
        cvat_data_access_mode=access_mode,
        dataset_access=dataset_access,
        dataset_inventory_limit=inventory_limit,
        dataset_csi_driver=csi_driver,
        admin_username=username,
        admin_email=email,
        admin_password=admin_password,
        hostname=hostname,
        ingress_class_name=ingress_class,
        tls_secret_name=tls_secret,
        cert_manager_issuer=issuer,
        namespace=namespace,
        kube_context=kube_context,
        egress_allow=tuple(egress_allow),
        ingress_namespaces=tuple(ingress_namespaces),
        ingress_allow_cidrs=tuple(ingress_cidrs),
        minio_image=minio_image,
        paused=paused,
        projects=tuple(projects),
        storage_secret_key_plain=(config.get("storageSecretKey") or "") if not minio_in_cluster else "",
    )


def redact_endpoint(url: str) -> str:
    """`url` with whatever comes before an '@' in it (a user name, a password) shown as ***.

    For every message that prints an endpoint: a URL of the form
    https://user:password@host must not put its password in an error or a log.
    Everything up to the last '@' after the scheme goes, so a password holding '/',
    '?', '#' or '@' goes too.
    """
    if "@" not in url:
        return url
    scheme, separator, rest = url.partition("://")
    if not separator or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
        scheme, separator, rest = "", "", url
    return f"{scheme}{separator}***@{rest.rpartition('@')[2]}"


def _endpoint_problems(url: str) -> list[str]:
    """Why `url` cannot be the S3 endpoint: every reason, none showing credentials."""
    shown = redact_endpoint(url)
    problems = []
    if "@" in url:
        # It would reach pod env, the S3 provider's inputs and the state in plain text.
        problems.append("must not hold a user name or password: give the keys as storageAccessKey and storageSecretKey")
    # The rest is judged without the user name and password (they are a problem of their own).
    reason = _endpoint_form_problem(shown.replace("***@", "", 1), shown)
    if reason:
        problems.append(reason)
    return problems


def _endpoint_form_problem(url: str, shown: str) -> Optional[str]:
    """Why `url` is not an http(s) base URL that botocore takes; `shown` is how messages name it."""
    if not url.isascii() or not url.isprintable() or " " in url:
        return f"{shown!r} is not an http(s) URL"
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
    except ValueError:
        return f"{shown!r} is not an http(s) URL"
    if parts.scheme not in ("http", "https") or not hostname:
        return f"{shown!r} is not an http(s) URL"
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return f"{shown!r} must be the server's base URL, without a path or query"
    _, port_separator, port = parts.netloc.rpartition("]")[2].partition(":")
    if port_separator and not (re.fullmatch(r"[0-9]{1,5}", port) and 1 <= int(port) <= 65535):
        return f"{shown!r} has an invalid port (1 to 65535)"
    reason = _endpoint_host_problem(hostname, bracketed=parts.netloc.startswith("["))
    if reason:
        return f"{shown!r}: {reason}"
    return _endpoint_address_problem(hostname)


def _endpoint_host_problem(hostname: str, bracketed: bool) -> Optional[str]:
    """Why an endpoint's host is neither a host name, an IPv4 address nor a bracketed IPv6 address
    (what botocore accepts: utils.py is_valid_endpoint_url, is_valid_ipv6_endpoint_url), or None."""
    if bracketed:
        return None if _ip_literal(hostname) is not None and ":" in hostname else "is not an IPv6 address"
    name = hostname[:-1] if hostname.endswith(".") else hostname
    if len(hostname) > 253 or not all(_HOST_LABEL_RE.fullmatch(label) for label in name.split(".")):
        return (
            f"{hostname[:80]!r} is not a host name: dot-separated parts of 1 to 63 letters, digits or hyphens "
            "(no underscores), not starting or ending with a hyphen"
        )
    return None


def _namespace_problem(name: str) -> Optional[str]:
    if not _DNS_LABEL_RE.fullmatch(name):
        return f"{name!r} is not a DNS-1123 label (at most 63 lowercase letters, digits or hyphens)"
    if name in RESERVED_NAMESPACES or name.startswith("kube-"):
        return f"{name!r} is a namespace Kubernetes keeps for itself: choose one of the workspace's own"
    return None


def _access_key_problem(key: str) -> Optional[str]:
    if len(key) > 128 or not key.isascii() or not key.isprintable() or " " in key:
        return "is not an S3 access key (at most 128 printable ASCII characters, no spaces)"
    return None


def _csi_driver_problem(name: str) -> Optional[str]:
    # ValidateCSIDriverName (kubernetes pkg/apis/core/validation): at most 63 characters, a DNS subdomain.
    if len(name) > MAX_CSI_DRIVER_LENGTH:
        return f"{name[:40]!r}... is {len(name)} characters long; a CSI driver name has at most {MAX_CSI_DRIVER_LENGTH}"
    return _object_name_problem(name)


def _object_name_problem(name: str) -> Optional[str]:
    reason = dns_name_problem(name)
    return f"{name!r} is not a valid Kubernetes object name" if reason else None
