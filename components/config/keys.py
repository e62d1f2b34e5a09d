"""The key table: every stack config key of a workspace, written once.

Each :class:`Key` says what the key is (type, default, whether it is required
or secret), which section of :class:`~components.config.model.WorkspaceConfig`
reads it, and how the documentation shows it. ``DEFAULTS``, ``REQUIRED_KEYS``,
``SECRET_KEYS`` and ``DEFAULTED_BY_PROGRAM`` are derived from the table;
``docs/configuration.md`` and the README's short table are generated from it
(components/config/docs.py), and tests/program/test_config_table.py holds
``Pulumi.yaml`` to it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Optional

# The sections of WorkspaceConfig (`config.<name>`), in the order the docs list them: title, what each holds.
SECTIONS: dict[str, tuple[str, str]] = {
    "storage": ("Object storage", "Scaleway Object Storage or a MinIO server, its keys, and the dataset buckets on it."),
    "backups": ("Backups", "The backup bucket, the schedule and retention of backups, and restoring one."),
    "cvat": ("CVAT", "CVAT itself: its release, size, queues, volumes, projects, and how it reaches the dataset buckets."),
    "admin": ("Admin account", "The CVAT superuser the workspace creates."),
    "ingress": ("Ingress", "How the annotation server is published: host name, TLS, and who may reach it."),
    "network": ("Network", "What CVAT may reach past its SSRF guard."),
    "cluster": ("Cluster", "Where the workspace lives in Kubernetes, and whether it runs."),
}

# Pulumi.yaml's types; `items` says what an array holds.
TYPES = ("string", "integer", "boolean", "array")


@dataclass(frozen=True)
class Key:
    """One stack config key (in the ``labeling:`` namespace)."""

    name: str
    section: str
    type: str
    description: str
    """One line, exactly as Pulumi.yaml's `description` (a test holds them equal)."""
    default: Any = None
    required: bool = False
    secret: bool = False
    items: Optional[str] = None
    """What an array holds: "string" or "object"."""
    defaulted_by_program: bool = False
    """Pulumi.yaml declares no default, so that the program can tell the key left unset."""
    first_stack: bool = False
    """Listed in the README's short table: the keys a first stack needs."""
    shown_default: str = ""
    """How the docs show a default the program derives at run time (an empty default)."""
    details: str = ""
    """docs/configuration.md's longer text, when the description does not say everything."""

    @property
    def shown_type(self) -> str:
        """The type as the docs show it."""
        if self.secret:
            return "secret"
        if self.type == "array":
            return f"list of {self.items}s"
        return self.type

    @property
    def shown_default_text(self) -> str:
        """The default as the docs show it."""
        if self.shown_default:
            return self.shown_default
        if self.required:
            return "— (required)"
        if isinstance(self.default, list):
            return f"`{json.dumps(self.default)}`"
        if isinstance(self.default, bool):
            return f"`{str(self.default).lower()}`"
        return f"`{self.default}`"


KEYS: tuple[Key, ...] = (
    # ----- storage
    Key("storageProvider", "storage", "string",
        "Object storage: `scaleway` (Scaleway Object Storage) or `minio` (a MinIO server).",
        default="scaleway", first_stack=True, details="`scaleway` or `minio`"),
    Key("storageRegion", "storage", "string",
        "Region. Scaleway: fr-par (default), nl-ams or pl-waw. MinIO: the server's MINIO_SITE_REGION if it sets one "
        "(default minio).",
        default="", first_stack=True, shown_default="`fr-par` (Scaleway), `minio` (MinIO)",
        details="Scaleway: `fr-par`, `nl-ams`, `pl-waw`; MinIO: the server's region if it sets one (a MinIO without one "
                "accepts any)"),
    Key("storageEndpoint", "storage", "string",
        "Base URL of the S3 API (http or https, a host name or IP address, a port from 1 to 65535, no user name or "
        "password). Derived from the region for Scaleway; required for an external MinIO.",
        default="", first_stack=True, shown_default="`https://s3.<region>.scw.cloud` for Scaleway",
        details="base URL of the S3 API; required for an external MinIO: `http` or `https`, a host name (letters, digits, "
                "hyphens and dots: no `_`) or an IP address, a port from 1 to 65535, no path, no user name or password "
                "(error messages show any as `***`)"),
    Key("storageAccessKey", "storage", "string",
        "S3 access key. Required unless minioInCluster is true.",
        default="", first_stack=True, shown_default="— (required unless `minioInCluster`)",
        details="S3 access key: at most 128 printable ASCII characters, no spaces (at most 40 when CVAT registers "
                "the dataset buckets as cloud storages)"),
    Key("storageSecretKey", "storage", "string",
        "S3 secret key (secret: set it with --secret). Required unless minioInCluster is true.",
        default="", secret=True, first_stack=True, shown_default="— (required unless `minioInCluster`)",
        details="S3 secret key, set with `--secret` (at most 64 characters when CVAT registers the dataset buckets as "
                "cloud storages)"),
    Key("minioInCluster", "storage", "boolean",
        "Run a MinIO server inside the workspace's namespace and use it (local development).",
        default=False, first_stack=True,
        details="run a MinIO server in the namespace and use it (development); requires `storageProvider: minio` and no "
                "endpoint or keys"),
    Key("minioImage", "storage", "string",
        "Image of the in-cluster MinIO (minioInCluster only), pinned by tag or digest, e.g. a mirrored or self-built "
        "one. Empty: the last image MinIO published.",
        default="", shown_default="`quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z`",
        details="image of the in-cluster MinIO (`minioInCluster` only), pinned by tag or digest. The default is the last "
                "image MinIO published: the community edition's later fixes are source-only, so point this at a "
                "mirrored or self-built image if you keep a development stack running. Changing it restarts MinIO; its "
                "data stays on the `minio-data` claim (use the same or a newer release: an older server may not read "
                "newer data)"),
    Key("datasetBuckets", "storage", "array",
        "Existing buckets holding the images and videos to label. Never changed or deleted.",
        default=[], items="string", first_stack=True,
        details="existing buckets with the media to label (S3 bucket names, see above), each listed once; the "
                "workspace only lists and reads them, never changes or deletes them"),
    Key("datasetInventoryLimit", "storage", "integer",
        "At most this many objects are counted per dataset bucket for the `datasets` output.",
        default=100000),
    # ----- backups
    Key("backupBucket", "backups", "string",
        "Bucket for database backups, created and kept on destroy. Default: labeling-<stack>-backups-<random suffix>.",
        default="", shown_default="`labeling-<stack>-backups-<random>`",
        details="bucket for backups, kept on destroy; must not be a dataset bucket. An existing bucket the keys can list "
                "(e.g. kept by an earlier `pulumi destroy`) is adopted instead of created; one they may not use stops "
                "`pulumi up` (see [Object storage details](operations/backups.md#object-storage-details))"),
    Key("backupRetentionDays", "backups", "integer",
        "Days a database backup is kept (at least 1).",
        default=30, details="days a backup is kept (1 to 3650)"),
    Key("backupSchedule", "backups", "string",
        "Cron schedule (UTC) of the database backups, as Kubernetes reads it (robfig/cron: day of week 0-6, names, ?, "
        "steps, @daily and the other macros, @every <duration>; no TZ=), e.g. '0 3 * * *' or @daily.",
        default="0 3 * * *",
        details="cron schedule of the backups, in UTC, exactly as Kubernetes reads it (robfig/cron v3): 5 fields with "
                "names (`jan`, `mon`), ranges, steps and `?`, the day of week `0`-`6` (`7` is refused: Sunday is `0` or "
                "`sun`), or `@yearly`, `@monthly`, `@weekly`, `@daily`, `@hourly`, `@every <duration>` (`@every 12h`); "
                "no `TZ=`. A schedule that never fires, or only on 29 February, is refused"),
    Key("restoreFrom", "backups", "string",
        "Restore the database before CVAT starts: 'latest', a backup key in the backup bucket, or s3://<bucket>/<key>.",
        default="", shown_default="none",
        details="restore a backup (database and data volume) before CVAT starts: `latest`, a manifest key "
                "(`acme/backups/20261130T030000Z.json`), a dump key of an older backup "
                "(`acme/database/20261130T030000Z.dump`: database only) or `s3://<bucket>/<key>` (see "
                "[Restoring a backup](operations/restore.md))"),
    Key("restoreForce", "backups", "boolean",
        "Let restoreFrom replace a database that already holds tables.",
        default=False, details="let `restoreFrom` replace a database that already holds tables (only with `restoreFrom`)"),
    # ----- cvat
    Key("description", "cvat", "string",
        "Free text describing the workspace, shown in the stack outputs.",
        default="", shown_default="none",
        details="one line of free text (at most 1000 characters), shown in the outputs; also the name of the "
                "workspace's CVAT organization, cut to CVAT's 64 characters"),
    Key("cvatVersion", "cvat", "string",
        "CVAT release (sets the server and UI images); only releases whose deployment contract the program knows "
        "(v2.73.0). Back up before changing it.",
        default="v2.73.0",
        details="CVAT release: the `cvat/server` and `cvat/ui` tags. Only releases whose deployment contract the "
                "program knows are accepted (today `v2.73.0`); see "
                "[Upgrading CVAT](operations/upgrade.md#upgrading-cvat)"),
    Key("size", "cvat", "string",
        "Resource preset: small (a few annotators, at most 2 CPU / 4 GiB of requests), medium or large.",
        default="small", details="resource preset: `small`, `medium`, `large` (see [Sizes](architecture.md#sizes))"),
    Key("workers", "cvat", "array",
        "Optional CVAT queues to serve (annotation, webhooks, quality_reports, consensus); import, export, chunks and "
        "utils always run.",
        default=["annotation", "webhooks", "quality_reports", "consensus"], items="string",
        details="optional CVAT queues: `annotation` and `webhooks` get a worker each (as upstream runs them: 24 h jobs "
                "and 25 s deliveries), `quality_reports` and `consensus` share one; `import`, `export`, `chunks` and "
                "`utils` always run"),
    Key("cvatDataSize", "cvat", "string",
        "Size of CVAT's data volume (uploaded media, chunks, exports), at least 1Gi.",
        default="20Gi",
        details="CVAT's data volume (uploaded media, chunks, exports), at least `1Gi`; written the way Kubernetes stores "
                "it (`1024Mi` becomes `1Gi`)"),
    Key("cvatDataAccessMode", "cvat", "string",
        "Access mode of the data volume: ReadWriteOnce (every pod on one node) or ReadWriteMany.",
        default="ReadWriteOnce",
        details="`ReadWriteOnce` (every pod that mounts it runs on one node) or `ReadWriteMany`; fixed when the volume "
                "is made (see [Changing a volume's access mode or class]"
                "(operations/troubleshooting.md#changing-a-volumes-access-mode-or-class))"),
    Key("databaseStorageSize", "cvat", "string",
        "Size of the PostgreSQL volume (a Kubernetes quantity, at least 1Gi).",
        default="10Gi",
        details="size of the PostgreSQL volume (at least `1Gi`), set when the volume is made: to grow it later, expand "
                "the claim (`kubectl -n <namespace> patch pvc data-postgres-0 -p "
                "'{\"spec\":{\"resources\":{\"requests\":{\"storage\":\"20Gi\"}}}}'`, if the storage class allows "
                "expansion)"),
    Key("datasetAccess", "cvat", "string",
        "How annotators reach the dataset buckets in CVAT: cloudStorage (registered cloud storages, the default), "
        "share (mounted through a CSI S3 driver) or both.",
        default="cloudStorage",
        details="how annotators reach the dataset buckets in CVAT: `cloudStorage`, `share` or `both` (see "
                "[Datasets](datasets.md)); `share` and `both` need object storage the nodes can reach (not "
                "`minioInCluster`)"),
    Key("datasetCsiDriver", "cvat", "string",
        "CSI driver that mounts the dataset buckets for datasetAccess share/both (k8s-csi-s3's by default; at most 63 "
        "characters).",
        default="ru.yandex.s3.csi",
        details="CSI S3 driver that mounts the buckets for `share` (a CSI driver name: at most 63 characters)"),
    Key("projects", "cvat", "array",
        "CVAT projects and their label schemas: each {name, labels, conditions, protected}. Every condition and "
        "protected attribute becomes a radio attribute (first value unlabeled) of every label. Labels, attributes and "
        "values are only ever added; removing one is refused.",
        default=[], items="object",
        details="CVAT projects and their label schemas, created and extended in the workspace's organization by the "
                "bootstrap Job: each `{name, labels, conditions, protected}`. Labels, attributes and values are only "
                "ever added (see [Label schemas](label-schemas.md))"),
    # ----- admin
    Key("adminUsername", "admin", "string",
        "Username of the CVAT superuser (letters, digits and @.+-_, at most 150).",
        default="admin", details="CVAT superuser: at most 150 letters, digits and `@.+-_`"),
    Key("adminEmail", "admin", "string",
        "E-mail address of the CVAT superuser (at most 254 characters).",
        required=True, first_stack=True),
    Key("adminPassword", "admin", "string",
        "Password of the CVAT superuser (secret: set it with --secret; no leading or trailing whitespace, no NUL). "
        "Generated (24 characters) when empty.",
        default="", secret=True, first_stack=True, shown_default="generated",
        details="superuser password, set with `--secret` (at least 8 characters, not only digits, no whitespace at "
                "either end: CVAT's login trims it; no NUL); generated once and kept when unset"),
    # ----- ingress
    Key("hostname", "ingress", "string",
        "Public host name of the annotation server, e.g. cvat.example.com.",
        required=True, first_stack=True,
        details="public host name of the annotation server: a lowercase DNS name, not an IP address"),
    Key("ingressClassName", "ingress", "string",
        "Ingress class of the annotation server. Empty uses the cluster's default class.",
        default="", shown_default="cluster default"),
    Key("tlsSecretName", "ingress", "string",
        "Existing kubernetes.io/tls Secret in the namespace serving HTTPS for the hostname.",
        default="", first_stack=True, shown_default="none",
        details="existing TLS Secret for `hostname` in the namespace (not with `certManagerIssuer`)"),
    Key("certManagerIssuer", "ingress", "string",
        "cert-manager ClusterIssuer that issues the HTTPS certificate (instead of tlsSecretName).",
        default="", first_stack=True, shown_default="none",
        details="cert-manager ClusterIssuer (instead of `tlsSecretName`; not both)"),
    Key("allowInsecureHttp", "ingress", "boolean",
        "Serve a hostname other than localhost or *.localhost without TLS (neither tlsSecretName nor certManagerIssuer): "
        "only when something in front terminates TLS, or for a private test.",
        default=False, first_stack=True,
        details="serve a `hostname` other than `localhost`/`*.localhost` without `tlsSecretName` or `certManagerIssuer` "
                "(logins would cross the network in plain http): only when something in front terminates TLS, or for "
                "a private test"),
    Key("ingressNamespaces", "ingress", "array",
        "Namespaces of the ingress controller, the only ones whose pods may reach CVAT's backend and UI: ingress-nginx "
        "for ingress-nginx, kube-system for Traefik on k3s, k3d and Rancher Desktop (every pod of a namespace listed "
        "here may reach the backend; kube-system is no longer in the default, and the preview warns while the key is "
        "unset). Default (applied by the program, so that it can tell an unset key): [\"ingress-nginx\"].",
        # ingress-nginx's own namespace. Not kube-system: every pod there could reach the backend
        # directly. Traefik on k3s, k3d and Rancher Desktop runs there: Pulumi.dev.yaml lists both.
        default=["ingress-nginx"], items="string", defaulted_by_program=True, first_stack=True,
        details="namespaces of the ingress controller: only their pods may reach CVAT's backend and UI (every pod of a "
                "listed namespace may). `ingress-nginx` for ingress-nginx, `kube-system` for Traefik on k3s, k3d and "
                "Rancher Desktop (the development stack lists both), `traefik` for Traefik's Helm chart, "
                "`haproxy-controller` for HAProxy. The preview warns while it is unset; see "
                "[Security](architecture.md#security) and the [upgrade note]"
                "(operations/upgrade.md#the-release-where-ingressnamespaces-defaults-to-ingress-nginx)"),
    Key("ingressAllowCidrs", "ingress", "array",
        "Address ranges (CIDR) the ingress controller's traffic comes from when it is not a pod of ingressNamespaces: a "
        "controller on the host network (the nodes' range) or a load balancer that sends to pod IPs.",
        default=[], items="string",
        details="CIDR ranges the ingress controller's traffic comes from when it is not a pod of `ingressNamespaces`: a "
                "controller on the host network (the nodes' range, e.g. `10.0.0.0/16`) or a load balancer that sends "
                "straight to pod IPs (AWS ALB in IP mode, GKE NEG); `0.0.0.0/0` and `::/0` are refused"),
    # ----- network
    Key("egressAllow", "network", "array",
        "IP addresses and CIDR ranges CVAT may reach despite its SSRF guard, which refuses private, loopback and "
        "link-local addresses: a private S3 endpoint given by name, a webhook receiver. An endpoint given as a private "
        "or link-local IP is allowed without it (a loopback endpoint and 169.254.169.254 are refused). Ranges wider "
        "than /8 (IPv4) or /7 (IPv6) are refused.",
        default=[], items="string",
        details="IP addresses and CIDR ranges CVAT may reach despite its SSRF guard (smokescreen), which refuses, unless "
                "allowed, the private ranges 10/8, 172.16/12, 192.168/16 and fc00::/7 and every loopback (127/8, ::1) "
                "and link-local (169.254/16, fe80::/10) address: a MinIO on a private network, a webhook receiver. A "
                "`storageEndpoint` given as a private or link-local IP is allowed without it; a loopback endpoint "
                "(`localhost` included: in a pod it is the pod itself) and 169.254.169.254 (the cloud metadata "
                "address) are refused. When `storageEndpoint` is a private *name*, set its address or range here "
                "(`pulumi config set --path 'egressAllow[0]' 10.0.12.0/24`): the backups, restores and cloud storages "
                "need it too, and the preview warns when the name resolves to a private address this list does not "
                "open. Ranges wider than `/8` (IPv4) or `/7` (IPv6), `0.0.0.0/0` among them, are refused: they would "
                "turn the guard off"),
    # ----- cluster
    Key("kubeContext", "cluster", "string",
        "kubeconfig context of the cluster (kubectl config current-context). Required for every stack except the "
        "in-cluster-MinIO development stack.",
        default="", first_stack=True, shown_default="— (required, but for the dev stack)",
        details="kubeconfig context of the workspace's cluster (`kubectl config current-context` prints it). Required "
                "for every stack except the in-cluster-MinIO development stack: without it the provider follows "
                "kubectl's current context at every run, so a later `pulumi destroy` could act on another cluster"),
    Key("namespace", "cluster", "string",
        "Kubernetes namespace of the workspace. Default: cvat-<stack>.",
        default="", shown_default="`cvat-<stack>`",
        details="Kubernetes namespace of the workspace (a DNS-1123 label, not `default` nor a `kube-` namespace)"),
    Key("storageClassName", "cluster", "string",
        "Storage class of the workspace's volumes. Empty uses the cluster's default class.",
        default="", shown_default="cluster default",
        details="storage class of the workspace's volumes; fixed when each volume is made"),
    Key("paused", "cluster", "boolean",
        "Pause the workspace: CVAT scaled to zero, a final backup, then the database and stores scaled to zero and "
        "scheduled backups suspended. Volumes, database files and buckets stay; false brings it back as it was.",
        default=False,
        details="pause the workspace: CVAT's server, workers, UI and OPA scale to zero, a final backup runs, then the "
                "database and stores scale to zero and scheduled backups are suspended; volumes, database files and "
                "buckets stay. `false` brings it back as it was (see "
                "[Pausing a workspace](operations/pause-and-delete.md#pausing-a-workspace))"),
)

KEYS_BY_NAME: dict[str, Key] = {key.name: key for key in KEYS}

# Defaults, the same as the `default:` of each key in Pulumi.yaml (a test keeps them equal):
# the engine merges Pulumi.yaml defaults, mocks and other hosts do not.
DEFAULTS: dict[str, Any] = {key.name: key.default for key in KEYS if not key.required}
# Keys without a default: the engine refuses to run without them, and so do we.
REQUIRED_KEYS: tuple[str, ...] = tuple(key.name for key in KEYS if key.required)
# Optional secrets cannot be declared `secret: true` in Pulumi.yaml (a secret key without a
# default is required there), so the program checks that a set value was stored encrypted.
SECRET_KEYS: tuple[str, ...] = tuple(key.name for key in KEYS if key.secret)
# Keys whose default the program applies itself: Pulumi.yaml declares them without one, so
# that the program can tell a key left unset from one set to the default.
DEFAULTED_BY_PROGRAM: tuple[str, ...] = tuple(key.name for key in KEYS if key.defaulted_by_program)
