"""Cvat: the CVAT annotation server of a workspace, as typed Kubernetes resources.

Follows CVAT's deployment contract (reference/cvat-v2.73.md, and the release
table in :mod:`components.cvat_release`): the backend server pod (`run server`
+ `run nginx`), the RQ workers, the UI, OPA, Redis and Kvrocks, a migration
Job (`init`) and a superuser Job, an Ingress for the workspace's host name,
and NetworkPolicies. `pulumi up` returns once every Deployment is ready and
both Jobs completed.

The constructor only calls the builders, one per part: secrets and scripts,
the data volume, the stores, the Jobs, the server, the workers, the UI and
OPA, the ingress and policies. The backend environment and the worker layout
are plain functions (:func:`backend_environment`, :func:`worker_layout`), so
that each can be read and tested on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional, Sequence, TypedDict

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components import jobs, kube, network
from components.config import CvatConfig, IngressConfig
from components.credentials import AdminLogin
from components.cvat_release import RELEASES, CvatRelease
from components.endpoint import CHECKSUM_ENV
from components.sizes import PRESETS

if TYPE_CHECKING:
    # Not imported at run time: the database's backups mount CVAT's data volume (DATA_LABEL).
    from components.database import DatabaseConnection

BACKEND_IMAGE = "cvat/server"
UI_IMAGE = "cvat/ui"
OPA_IMAGE = "openpolicyagent/opa:1.12.2"
# The 7.2 line CVAT pins, with its later security fixes (7.2.15: use-after-free through RESTORE).
REDIS_IMAGE = "redis:7.2.16-alpine"
KVROCKS_IMAGE = "apache/kvrocks:2.15.0"

REDIS_UID, REDIS_GID = 999, 1000  # the image's `redis` user
KVROCKS_UID = 999
OPA_UID = 1000
UI_UID = 101  # nginx-unprivileged's `nginx` user

BACKEND_PORT = 8080
UI_PORT = 8000
OPA_PORT = 8181
REDIS_PORT = 6379
KVROCKS_PORT = 6666

BACKEND_SERVICE = "cvat-backend"
UI_SERVICE = "cvat-ui"
OPA_SERVICE = "cvat-opa"
REDIS_SERVICE = "cvat-redis"
KVROCKS_SERVICE = "cvat-kvrocks"
DATA_CLAIM = "cvat-data"
SCRIPTS_CONFIGMAP = "cvat-scripts"
# Config file (in the store's Secret) that holds each store's password.
STORE_CONFIG_FILES = {"redis": "redis.conf", "kvrocks": "kvrocks.conf"}
SUPERUSER_SCRIPT = "superuser.py"

# Always-running workers and the queues they serve.
CORE_WORKERS = {"import": ["import"], "export": ["export"], "chunks": ["chunks"], "utils": ["notifications", "cleaning"]}
# Optional queues by worker: annotation (24 h jobs) and webhooks (25 s) apart, as upstream runs them.
OPTIONAL_WORKERS = {"annotation": ["annotation"], "webhooks": ["webhooks"], "quality": ["quality_reports", "consensus"]}
SCHEDULER_FLAG = "--with-scheduler"
# Pods that mount the data volume (with ReadWriteOnce they must share a node).
DATA_LABEL = "labeling.dev/cvat-data"
# Changes with the Secrets a pod template reads, so that a new value rolls the pods.
SECRETS_REVISION_ANNOTATION = "labeling.dev/secrets-revision"
SHARE_ROOT = "/home/django/share"
# Queues whose workers read the connected file share (with the server).
SHARE_QUEUES = {"import", "export", "chunks", "annotation"}
WAIT = pulumi.CustomTimeouts(create="30m", update="30m")
# The migrations run again for a new image or command (a CVAT release), not for a new size,
# host name or egress list (the environment of `init`): those are ignored, the name with them.
MIGRATION_HOW_IT_RUNS = (
    "metadata.name",
    "spec.template.metadata",
    "spec.template.spec.securityContext",
    "spec.template.spec.containers[0].env",
    "spec.template.spec.containers[0].resources",
    "spec.template.spec.containers[0].securityContext",
)


@dataclass(frozen=True)
class Store:
    """A Redis-protocol store of CVAT (Redis, Kvrocks): what differs between the two."""

    key: str
    image: str
    port: int
    uid: int
    gid: int
    command: list[str]
    data_path: str
    extra_mounts: list[dict] = field(default_factory=list)
    extra_volumes: list[dict] = field(default_factory=list)

    @property
    def component(self) -> str:
        """Its app.kubernetes.io/name, also the StatefulSet's name."""
        return f"cvat-{self.key}"

    @property
    def service(self) -> str:
        """Its Service, also the StatefulSet's serviceName."""
        return f"cvat-{self.key}"

    def config_volume(self, secret_name: pulumi.Input[str]) -> dict[str, Any]:
        """The store's config file (it holds the password), from its Secret, readable by its group only."""
        config_file = STORE_CONFIG_FILES[self.key]
        return {
            "name": "config",
            "secret": {"secretName": secret_name, "items": [{"key": config_file, "path": config_file}], "defaultMode": 0o440},
        }


REDIS = Store(
    "redis", REDIS_IMAGE, REDIS_PORT, REDIS_UID, REDIS_GID,
    ["redis-server", f"/etc/redis/{STORE_CONFIG_FILES['redis']}", "--appendonly", "yes", "--dir", "/data"],
    "/data",
)
# The image's entrypoint with our config file (kvrocks takes the settings it lacks from its
# defaults); data below /var/lib/kvrocks, where the claim has always been mounted.
KVROCKS = Store(
    "kvrocks", KVROCKS_IMAGE, KVROCKS_PORT, KVROCKS_UID, KVROCKS_UID,
    ["kvrocks", "-c", f"/etc/kvrocks/{STORE_CONFIG_FILES['kvrocks']}", "--dir", "/var/lib/kvrocks/data",
     "--pidfile", "/var/run/kvrocks/kvrocks.pid", "--bind", "0.0.0.0"],
    "/var/lib/kvrocks/data",
    extra_mounts=[{"name": "run", "mountPath": "/var/run/kvrocks"}],
    extra_volumes=[{"name": "run", "emptyDir": {"sizeLimit": "16Mi"}}],
)


def worker_layout(optional_queues: Sequence[str]) -> dict[str, list[str]]:
    """Worker key -> the queues it serves: the core workers, then one per group of optional queues."""
    workers = {key: list(queues) for key, queues in CORE_WORKERS.items()}
    for key, queues in OPTIONAL_WORKERS.items():
        chosen = [queue for queue in queues if queue in optional_queues]
        if chosen:
            workers[key] = chosen
    return workers


def worker_arguments(release: CvatRelease, queues: Sequence[str]) -> list[str]:
    """`run worker <queues>`, with --with-scheduler where a queue retries through rq's scheduled registry."""
    flags = [SCHEDULER_FLAG] if set(queues) & release.scheduler_queues else []
    return ["run", "worker", *queues, *flags]


def smokescreen_options(allowed: Sequence[pulumi.Input[str]]) -> pulumi.Output[str]:
    """SMOKESCREEN_OPTS: the flags that let CVAT reach these private addresses and ranges.

    Always a string (empty when nothing is allowed): supervisord refuses to start the
    server and most workers when the variable is unset. The entries were validated
    as IP addresses or CIDR ranges (config), or are a Service's ClusterIP.
    """

    def render(entries: list[str]) -> str:
        flags = []
        for entry in entries:
            flag = "--allow-range" if "/" in entry else "--allow-address"
            flags.append(f"{flag}={entry}")
        return " ".join(flags)

    return pulumi.Output.all(*allowed).apply(render)


def backend_environment(
    args: "CvatArgs", secrets: dict[str, pulumi.Input[str]], processes: int
) -> list[dict[str, Any]]:
    """The environment every backend container gets (reference: backend environment).

    `secrets` maps redis, kvrocks and django to the names of their Secrets.
    """
    namespace = args["namespace"]
    database = args["database"]
    hosts = pulumi.Output.all(namespace).apply(
        lambda values: ",".join(
            [
                args["ingress"].hostname,
                BACKEND_SERVICE,
                f"{BACKEND_SERVICE}.{values[0]}",
                f"{BACKEND_SERVICE}.{values[0]}.svc",
                f"{BACKEND_SERVICE}.{values[0]}.svc.cluster.local",
                "localhost",
                "127.0.0.1",
            ]
        )
    )
    return [
        {"name": "CVAT_POSTGRES_HOST", "value": database.host},
        {"name": "CVAT_POSTGRES_PORT", "value": str(database.port)},
        {"name": "CVAT_POSTGRES_DBNAME", "value": database.name},
        {"name": "CVAT_POSTGRES_USER", "value": database.user},
        database.password_env("CVAT_POSTGRES_PASSWORD"),
        {"name": "CVAT_REDIS_INMEM_HOST", "value": REDIS_SERVICE},
        {"name": "CVAT_REDIS_INMEM_PORT", "value": str(REDIS_PORT)},
        kube.secret_env("CVAT_REDIS_INMEM_PASSWORD", secrets["redis"], "password"),
        {"name": "CVAT_REDIS_ONDISK_HOST", "value": KVROCKS_SERVICE},
        {"name": "CVAT_REDIS_ONDISK_PORT", "value": str(KVROCKS_PORT)},
        kube.secret_env("CVAT_REDIS_ONDISK_PASSWORD", secrets["kvrocks"], "password"),
        {"name": "CVAT_OPA_URL", "value": f"http://{OPA_SERVICE}:{OPA_PORT}"},
        # The public host name, the Service's names (OPA pulls its rules from the backend), probes.
        {"name": "ALLOWED_HOSTS", "value": hosts},
        # The ingress; the entrypoint adds the pod's own nginx.
        {"name": "CVAT_NUM_PROXIES", "value": "1"},
        kube.secret_env("DJANGO_SECRET_KEY", secrets["django"], "password"),
        {"name": "CVAT_HEALTH_DISK_USAGE_MAX", "value": "90"},
        {"name": "NUMPROCS", "value": str(processes)},
        # Expanded by supervisord for the server and most workers: must be set, even empty.
        {"name": "SMOKESCREEN_OPTS", "value": smokescreen_options(args["egress_allow"])},
        # CVAT's boto3 1.39 sends CRC checksums by default, which S3-compatible servers refuse.
        *({"name": name, "value": value} for name, value in CHECKSUM_ENV.items()),
    ]


class CvatArgs(TypedDict):
    """Inputs of :class:`Cvat`."""

    namespace: pulumi.Input[str]
    workspace: str
    settings: CvatConfig
    """The release (a key of components.cvat_release.RELEASES, checked by the config), the size
    preset, the optional queues, and the data volume's size and access mode."""
    storage_class_name: str
    """Of the data volume and the stores' volumes; empty: the cluster's default class."""
    ingress: IngressConfig
    """The host name, its TLS, the ingress class, and where the ingress controller's traffic comes from."""
    database: "DatabaseConnection"
    database_ready: Sequence[pulumi.Resource]
    """Migrations wait for these (the database, and its restore when there is one)."""
    admin: AdminLogin
    egress_allow: Sequence[pulumi.Input[str]]
    """Private IP addresses and CIDR ranges CVAT may reach (a private S3 endpoint, the in-cluster MinIO's ClusterIP)."""
    share_claims: dict[str, pulumi.Input[str]]
    """Dataset bucket -> read-only claim, mounted at /home/django/share/<bucket> (connected file share)."""
    paused: bool
    """Scale every Deployment and store to zero (volumes, Jobs and the Ingress stay)."""
    backend_annotations: dict[str, pulumi.Input[str]]
    """Extra annotations of the server's and workers' pod templates: a change rolls them (a restore request)."""
    rollout_secrets: dict[str, pulumi.Input[str]]
    """Secret values the backend pods depend on outside their env (the share's S3 keys): a change rolls them."""


class Cvat(pulumi.ComponentResource):
    """CVAT: backend server, workers, UI, OPA, Redis, Kvrocks, migrations, superuser, ingress."""

    url: str
    backend_service: pulumi.Output[str]
    ready: list[pulumi.Resource]

    def __init__(self, name: str, args: CvatArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("labeling:index:Cvat", name, None, opts)
        self.name = name
        self.args = args
        self.settings = args["settings"]
        self.ingress = args["ingress"]
        self.release = RELEASES[self.settings.version]
        self.workspace = args["workspace"]
        self.namespace = args["namespace"]
        self.size = PRESETS[self.settings.size]
        self.backend_image = f"{BACKEND_IMAGE}:{self.settings.version}"

        self.passwords, self.secrets = self._secrets()
        self.scripts = self._scripts()
        self.data_claim = self._data_claim()
        self.backend_revision = self._backend_revision()

        if args["paused"]:
            # Pausing: CVAT's pods scale down first, then the stores they write to (a store
            # waits for the pods); the database's final backup waits for both (`running`).
            # The Jobs are held (components/jobs.py): nothing runs against what stops.
            migration = self._migration_job([])
            superuser = self._superuser_job(migration)
            server, workers, ui, opa = self._pods(migration)
            stores = [self._redis([server, *workers, ui, opa]), self._kvrocks([server, *workers, ui, opa])]
        else:
            # Running (or resuming): the stores and the database, the migrations, then the pods.
            stores = [self._redis(), self._kvrocks()]
            migration = self._migration_job(stores)
            superuser = self._superuser_job(migration)
            server, workers, ui, opa = self._pods(migration)
        # Not before the admin exists: registration is open, and the first to register its name would own it.
        self._ingress([server, ui, superuser])
        self._network_policies()

        self.ready = [migration, superuser, server, ui, opa, *workers]
        # What runs against the database and data volume: all scaled down before a pause's final backup.
        self.running = [server, *workers, ui, opa, *stores]
        self.backend_url = f"http://{BACKEND_SERVICE}:{BACKEND_PORT}"
        self.url = f"{'https' if self.ingress.tls_enabled else 'http'}://{self.ingress.hostname}"
        self.backend_service = pulumi.Output.from_input(BACKEND_SERVICE)
        self.register_outputs({"url": self.url, "backend_service": self.backend_service, "version": self.settings.version})

    def _pods(self, migration: k8s.batch.v1.Job) -> tuple[k8s.apps.v1.Deployment, list[k8s.apps.v1.Deployment],
                                                         k8s.apps.v1.Deployment, k8s.apps.v1.Deployment]:
        """The server, the workers, the UI and OPA: all after the migrations."""
        server = self._server(migration)
        workers = self._workers(migration)
        ui = self._ui(migration)
        opa = self._opa(server)
        return server, workers, ui, opa

    # ----- shared pieces -------------------------------------------------

    def _child(self, **options: Any) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, **options)

    def _metadata(self, name: str, component: str, **extra: Any) -> dict[str, Any]:
        return {"name": name, "namespace": self.namespace, "labels": kube.labels(self.workspace, component), **extra}

    def _secrets(self) -> tuple[dict[str, pulumi.Output[str]], dict[str, pulumi.Output[str]]]:
        """Generated passwords (Redis, Kvrocks) and Django's secret key, each in a Secret.

        Returns (key -> password, key -> Secret name).
        """
        passwords, names = {}, {}
        for key, length in (("redis", 32), ("kvrocks", 32), ("django", 64)):
            value = random.RandomPassword(f"{self.name}-{key}-password", length=length, special=False, opts=self._child())
            data: dict[str, pulumi.Input[str]] = {"password": value.result}
            if key in STORE_CONFIG_FILES:
                # The store reads its password from a file: in its arguments anyone on the node could `ps` it.
                data[STORE_CONFIG_FILES[key]] = pulumi.Output.concat("requirepass ", value.result, "\n", self._store_settings(key))
            secret = k8s.core.v1.Secret(
                f"{self.name}-{key}-secret",
                metadata=self._metadata(f"cvat-{key}", f"cvat-{key}"),
                type="Opaque",
                string_data=data,
                opts=self._child(),
            )
            passwords[key] = value.result
            names[key] = secret.metadata["name"]
        return passwords, names

    def _store_settings(self, key: str) -> str:
        """Settings a store's config file holds besides its password."""
        if key == "kvrocks":
            # The image's own config sets these; without them kvrocks logs into its data volume
            # (never rotated) and sizes its RocksDB caches at 2 x 2 GiB, past the memory limit.
            return f"log-dir stdout\nrocksdb.block_cache_size {self.size.kvrocks_block_cache_mb}\n"
        return ""

    def _scripts(self) -> k8s.core.v1.ConfigMap:
        return k8s.core.v1.ConfigMap(
            f"{self.name}-scripts",
            metadata=self._metadata(SCRIPTS_CONFIGMAP, "cvat-scripts"),
            data={SUPERUSER_SCRIPT: kube.asset(SUPERUSER_SCRIPT)},
            opts=self._child(),
        )

    def _secrets_revision(self, key: str, values: dict[str, pulumi.Input[str]]) -> pulumi.Output[str]:
        """A random id renewed whenever one of these secret values changes (never a hash of them)."""
        revision = random.RandomId(
            f"{self.name}-{key}-secrets-revision",
            byte_length=4,
            keepers={name: pulumi.Output.secret(value) for name, value in values.items()},
            opts=self._child(),
        )
        return revision.hex

    def _backend_revision(self) -> pulumi.Output[str]:
        """Renewed with every Secret the backend pods read, so that a new value rolls them."""
        return self._secrets_revision(
            "backend", {**{key: self.passwords[key] for key in ("redis", "kvrocks", "django")}, **self.args["rollout_secrets"]}
        )

    def _backend_annotations(self) -> dict[str, pulumi.Input[str]]:
        """Pod-template annotations of the server and workers: they roll when one changes."""
        return {SECRETS_REVISION_ANNOTATION: self.backend_revision, **self.args["backend_annotations"]}

    def _data_claim(self) -> k8s.core.v1.PersistentVolumeClaim:
        """CVAT's data volume. Its access mode and class are fixed when it is made (changing them
        would replace the claim and lose the data): later changes are ignored, with a warning."""
        settings, storage_class = self.settings, self.args["storage_class_name"]
        claim = k8s.core.v1.PersistentVolumeClaim(
            f"{self.name}-data",
            metadata=self._metadata(DATA_CLAIM, "cvat-data"),
            spec=kube.claim_spec(settings.data_size, storage_class, settings.data_access_mode),
            opts=self._child(custom_timeouts=WAIT, ignore_changes=["spec.accessModes", "spec.storageClassName"]),
        )
        pulumi.Output.all(claim.spec.access_modes, claim.spec.storage_class_name).apply(
            lambda made: warn_if_claim_differs(
                DATA_CLAIM, ("cvatDataAccessMode", "storageClassName"),
                configured=(settings.data_access_mode, storage_class), made=(made[0], made[1]),
            )
        )
        return claim

    def _data_is_read_write_once(self) -> pulumi.Output[bool]:
        """Whether the data volume, as it was made, attaches to one node at a time."""
        return self.data_claim.spec.access_modes.apply(
            lambda modes: "ReadWriteOnce" in (modes or [self.settings.data_access_mode])
        )

    def _backend_pod_spec(self, containers: list[dict], volumes: list[dict], mounts_data: bool) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "automountServiceAccountToken": False,
            "securityContext": kube.pod_security_context(kube.CVAT_UID, fs_group=kube.CVAT_UID),
            "containers": containers,
            "volumes": volumes,
        }
        if mounts_data:
            # A ReadWriteOnce volume attaches to one node: every pod that mounts it goes there.
            # Follows the claim as it was made, not the config (which cannot change it).
            same_node = {
                "podAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": [
                        {
                            "labelSelector": {"matchLabels": {DATA_LABEL: self.workspace}},
                            "topologyKey": "kubernetes.io/hostname",
                        }
                    ]
                }
            }
            spec["affinity"] = self._data_is_read_write_once().apply(lambda once: same_node if once else {})
        return spec

    def _share(self) -> tuple[list[dict], list[dict]]:
        """(volumes, mounts) of the connected file share: each dataset bucket, read-only."""
        volumes, mounts = [], []
        for index, (bucket, claim) in enumerate(sorted(self.args["share_claims"].items())):
            volumes.append({"name": f"share-{index}", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}})
            mounts.append({"name": f"share-{index}", "mountPath": f"{SHARE_ROOT}/{bucket}", "readOnly": True})
        return volumes, mounts

    def _data_volume(self) -> dict[str, Any]:
        return {"name": "data", "persistentVolumeClaim": {"claimName": self.data_claim.metadata["name"]}}

    def _backend_env(self, processes: int) -> list[dict[str, Any]]:
        return backend_environment(self.args, self.secrets, processes)

    def _pod_labels(self, component: str, mounts_data: bool) -> dict[str, str]:
        labels = kube.labels(self.workspace, component)
        if mounts_data:
            labels[DATA_LABEL] = self.workspace
        return labels

    def _deployment(self, key: str, component: str, replicas: int, pod_spec: dict, mounts_data: bool = False,
                    depends_on: Sequence[pulumi.Resource] = (), strategy: Optional[dict] = None,
                    annotations: Optional[dict[str, pulumi.Input[str]]] = None) -> k8s.apps.v1.Deployment:
        template_metadata: dict[str, Any] = {"labels": self._pod_labels(component, mounts_data)}
        if annotations:
            template_metadata["annotations"] = annotations
        spec: dict[str, Any] = {
            "replicas": 0 if self.args["paused"] else replicas,
            "selector": {"matchLabels": kube.selector(self.workspace, component)},
            "template": {"metadata": template_metadata, "spec": pod_spec},
        }
        if strategy:
            spec["strategy"] = strategy
        return k8s.apps.v1.Deployment(
            f"{self.name}-{key}",
            metadata=self._metadata(component, component),
            spec=spec,
            opts=self._child(depends_on=list(depends_on), custom_timeouts=WAIT),
        )

    def _service(self, key: str, name: str, component: str, port: int) -> k8s.core.v1.Service:
        return k8s.core.v1.Service(
            f"{self.name}-{key}-service",
            metadata=self._metadata(name, component),
            spec={
                "selector": kube.selector(self.workspace, component),
                "ports": [{"name": "http" if port in (BACKEND_PORT, UI_PORT, OPA_PORT) else "tcp", "port": port, "targetPort": port}],
            },
            # Pulumi waits for ready endpoints: the pods behind come after migrations and image pulls.
            opts=self._child(custom_timeouts=WAIT),
        )

    # ----- Redis and Kvrocks ---------------------------------------------

    def _store(self, store: "Store", storage: str, after: Sequence[pulumi.Resource] = ()) -> k8s.apps.v1.StatefulSet:
        """A Redis-protocol store (Redis, Kvrocks): one replica, its password in a config file from a
        Secret, data on a claim of `storage`. `after`: what stops first (a pause)."""
        revision = self._secrets_revision(store.key, {"password": self.passwords[store.key]})
        self._service(store.key, store.service, store.component, store.port)
        labels = kube.labels(self.workspace, store.component)
        return k8s.apps.v1.StatefulSet(
            f"{self.name}-{store.key}",
            metadata=self._metadata(store.component, store.component),
            spec={
                "serviceName": store.service,
                "replicas": 0 if self.args["paused"] else 1,
                "selector": {"matchLabels": kube.selector(self.workspace, store.component)},
                "template": {
                    "metadata": {"labels": labels, "annotations": {SECRETS_REVISION_ANNOTATION: revision}},
                    "spec": {
                        "automountServiceAccountToken": False,
                        "securityContext": kube.pod_security_context(store.uid, store.gid, fs_group=store.gid),
                        "containers": [self._store_container(store)],
                        "volumes": [store.config_volume(self.secrets[store.key]), *store.extra_volumes],
                    },
                },
                "volumeClaimTemplates": [
                    {"metadata": {"name": "data", "labels": labels}, "spec": kube.claim_spec(storage, self.args["storage_class_name"])}
                ],
            },
            # Claim templates are immutable: the volume keeps the size it was made with.
            opts=self._child(custom_timeouts=WAIT, ignore_changes=["spec.volumeClaimTemplates"], depends_on=list(after)),
        )

    def _store_container(self, store: "Store") -> dict[str, Any]:
        """The store's server, probed with redis-cli."""
        ping = ["sh", "-c", f"redis-cli -p {store.port} ping | grep -q PONG"]
        return {
            "name": store.key,
            "image": store.image,
            "command": store.command,
            # redis-cli reads the password from here (probes); the environment is not in `ps`.
            "env": [kube.secret_env("REDISCLI_AUTH", self.secrets[store.key], "password")],
            "ports": [{"name": "tcp", "containerPort": store.port}],
            "readinessProbe": {"exec": {"command": ping}, "periodSeconds": 10, "timeoutSeconds": 5},
            "livenessProbe": {
                "exec": {"command": ping},
                "initialDelaySeconds": 30,
                "periodSeconds": 20,
                "timeoutSeconds": 5,
                "failureThreshold": 6,
            },
            "resources": self.size.of(store.key),
            "securityContext": kube.container_security_context(),
            "volumeMounts": [{"name": "data", "mountPath": store.data_path},
                             {"name": "config", "mountPath": f"/etc/{store.key}", "readOnly": True}, *store.extra_mounts],
        }

    def _redis(self, after: Sequence[pulumi.Resource] = ()) -> k8s.apps.v1.StatefulSet:
        """Redis for RQ queues and cache: password, append-only persistence. `after`: what stops first (a pause)."""
        return self._store(REDIS, "1Gi", after)

    def _kvrocks(self, after: Sequence[pulumi.Resource] = ()) -> k8s.apps.v1.StatefulSet:
        """Kvrocks, CVAT's on-disk media cache: password, data on a volume. `after`: what stops first (a pause)."""
        return self._store(KVROCKS, self.size.kvrocks_storage, after)

    # ----- Jobs ----------------------------------------------------------

    def _one_shot_job(self, key: str, job_name: pulumi.Input[str], container: dict, volumes: list[dict],
                      deadline: jobs.Deadline, depends_on: Sequence[pulumi.Resource],
                      how_it_runs: Sequence[str] = jobs.HOW_IT_RUNS) -> k8s.batch.v1.Job:
        """A Job of the backend image, `cvat-<key>`, that runs once per name, ends by its own deadline,
        and is replaced when it failed (components/jobs.py: changes of `how_it_runs` do not run it
        again; held while paused).

        `pulumi.com/replaceUnready`: a Job that failed stays in the state; without it every
        later `pulumi up` would await it again, see it failed, and block what depends on it.
        """
        component = f"cvat-{key}"
        template = jobs.script_pod(
            kube.labels(self.workspace, component), [container], volumes,
            kube.pod_security_context(kube.CVAT_UID, fs_group=kube.CVAT_UID),
        )
        return jobs.one_shot_job(
            f"{self.name}-{key}", self._metadata(job_name, component), template, backoff_limit=4, deadline=deadline,
            options=jobs.JobOptions(parent=self, held=self.args["paused"], depends_on=depends_on, how_it_runs=how_it_runs),
        )

    def _migration_job(self, stores: list[pulumi.Resource]) -> k8s.batch.v1.Job:
        """`init`: Django and Redis migrations. Runs again for a new CVAT version or spec."""
        container = {
            "name": "migrate",
            "image": self.backend_image,
            "args": ["init"],
            "env": self._backend_env(1),
            "resources": self.size.of("job"),
            "securityContext": kube.container_security_context(read_only_root=False),
        }
        version = self.settings.version.replace(".", "-")
        # The name of a new Job: its release and a hash of how it ran until the migrations were
        # defined by the image alone (names made so far are kept: MIGRATION_HOW_IT_RUNS).
        plain_egress = [entry for entry in self.args["egress_allow"] if isinstance(entry, str)]
        revision = kube.content_hash(self.backend_image, container["args"], self.size.name, self.ingress.hostname, plain_egress)
        return self._one_shot_job(
            "migrate", f"cvat-migrate-{version}-{revision}", container, [],
            jobs.MIGRATION, [*self.args["database_ready"], *stores], MIGRATION_HOW_IT_RUNS,
        )

    def _superuser_job(self, migration: k8s.batch.v1.Job) -> k8s.batch.v1.Job:
        """Creates the admin, or updates its e-mail and password; runs again when they or its script change."""
        admin = self.args["admin"]
        # A random id renewed with the credentials names the Job: nothing derived from the password shows.
        revision = random.RandomId(
            f"{self.name}-superuser-revision",
            byte_length=4,
            keepers={
                "username": admin.username,
                "email": admin.email,
                "password": pulumi.Output.secret(admin.password),
                "version": self.settings.version,
                "script": kube.content_hash(kube.asset(SUPERUSER_SCRIPT)),
            },
            opts=self._child(),
        )
        container = {
            "name": "superuser",
            "image": self.backend_image,
            "command": ["django-admin", "shell", "--command", f"exec(open('{jobs.SCRIPTS_DIR}/{SUPERUSER_SCRIPT}').read())"],
            "env": self._backend_env(1)
            + [
                kube.secret_env("ADMIN_USERNAME", admin.secret_name, "username"),
                kube.secret_env("ADMIN_EMAIL", admin.secret_name, "email"),
                kube.secret_env("ADMIN_PASSWORD", admin.secret_name, "password"),
            ],
            "resources": self.size.of("job"),
            "securityContext": kube.container_security_context(read_only_root=False),
            "volumeMounts": [jobs.scripts_mount()],
        }
        return self._one_shot_job(
            "superuser", revision.hex.apply(lambda hex_: f"cvat-superuser-{hex_}"), container,
            [jobs.scripts_volume(self.scripts.metadata["name"])], jobs.SUPERUSER, [migration],
        )

    # ----- long-running pods ---------------------------------------------

    def _server(self, migration: k8s.batch.v1.Job) -> k8s.apps.v1.Deployment:
        """`run server` and `run nginx` in one pod, sharing the uvicorn socket and static files."""
        shared = [{"name": "sockets", "mountPath": "/tmp/cvat"}, {"name": "static", "mountPath": "/home/django/static"}]
        data = [{"name": "data", "mountPath": "/home/django/data"}]
        probe_get = {"path": "/api/server/about", "port": BACKEND_PORT, "httpHeaders": [{"name": "Host", "value": "localhost"}]}
        share_volumes, share_mounts = self._share()
        server = {
            "name": "server",
            "image": self.backend_image,
            "args": ["run", "server"],
            "env": self._backend_env(self.size.server_processes),
            "resources": self.size.of("server"),
            "securityContext": kube.container_security_context(read_only_root=False),
            "volumeMounts": shared + data + share_mounts,
        }
        nginx = {
            "name": "nginx",
            "image": self.backend_image,
            "args": ["run", "nginx"],
            # nginx only serves files and proxies to the socket: none of the backend's secrets.
            "ports": [{"name": "http", "containerPort": BACKEND_PORT}],
            "resources": self.size.of("nginx"),
            "securityContext": kube.container_security_context(read_only_root=False),
            "volumeMounts": shared + data,
        }
        # Both are ready when the pod's port 8080 answers (nginx in front of uvicorn); only the
        # server is restarted when it stops answering, so a slow uvicorn does not take nginx down.
        for container in (server, nginx):
            container["readinessProbe"] = {"httpGet": probe_get, "periodSeconds": 15, "timeoutSeconds": 10, "failureThreshold": 4}
        server["livenessProbe"] = {
            "httpGet": probe_get, "initialDelaySeconds": 60, "periodSeconds": 15, "timeoutSeconds": 10, "failureThreshold": 5,
        }
        # collectstatic and the wait for migrations come first.
        server["startupProbe"] = {"httpGet": probe_get, "periodSeconds": 10, "timeoutSeconds": 10, "failureThreshold": 90}
        nginx["livenessProbe"] = {"tcpSocket": {"port": BACKEND_PORT}, "initialDelaySeconds": 30, "periodSeconds": 20, "failureThreshold": 5}
        volumes = [
            {"name": "sockets", "emptyDir": {"sizeLimit": "16Mi"}},
            {"name": "static", "emptyDir": {"sizeLimit": "512Mi"}},
            self._data_volume(),
            *share_volumes,
        ]
        deployment = self._deployment(
            "server", "cvat-backend", self.size.server_replicas,
            self._backend_pod_spec([server, nginx], volumes, mounts_data=True), mounts_data=True,
            depends_on=[migration], annotations=self._backend_annotations(),
        )
        self._service("backend", BACKEND_SERVICE, "cvat-backend", BACKEND_PORT)
        if self.size.server_replicas > 1 and not self.args["paused"]:
            k8s.policy.v1.PodDisruptionBudget(
                f"{self.name}-server-pdb",
                metadata=self._metadata("cvat-backend", "cvat-backend"),
                spec={"minAvailable": 1, "selector": {"matchLabels": kube.selector(self.workspace, "cvat-backend")}},
                opts=self._child(),
            )
        return deployment

    def _workers(self, migration: k8s.batch.v1.Job) -> list[k8s.apps.v1.Deployment]:
        """The RQ workers of :func:`worker_layout`, each a Deployment."""
        deployments = []
        share_volumes, share_mounts = self._share()
        for key, queues in worker_layout(self.settings.workers).items():
            reads_share = bool(SHARE_QUEUES & set(queues))
            # As the chart of the same release: at least NUMPROCS workers on these queues (queue names only).
            probe = {"exec": {"command": ["django-admin", "workerprobe", *queues, "--expected-num-workers", str(self.size.worker_processes)]}}
            container = {
                "name": "worker",
                "image": self.backend_image,
                "args": worker_arguments(self.release, queues),
                "env": self._backend_env(self.size.worker_processes),
                "readinessProbe": {**probe, "initialDelaySeconds": 30, "periodSeconds": 60, "timeoutSeconds": 20},
                "livenessProbe": {**probe, "initialDelaySeconds": 60, "periodSeconds": 120, "timeoutSeconds": 20, "failureThreshold": 3},
                "resources": self.size.of(f"worker-{key}"),
                "securityContext": kube.container_security_context(read_only_root=False),
                "volumeMounts": [{"name": "data", "mountPath": "/home/django/data"}] + (share_mounts if reads_share else []),
            }
            component = f"cvat-worker-{key}"
            volumes = [self._data_volume()] + (share_volumes if reads_share else [])
            deployments.append(
                self._deployment(
                    f"worker-{key}", component, self.size.worker_replicas[key],
                    self._backend_pod_spec([container], volumes, mounts_data=True), mounts_data=True,
                    depends_on=[migration], annotations=self._backend_annotations(),
                )
            )
        self.workers = deployments
        return deployments

    def _ui(self, migration: k8s.batch.v1.Job) -> k8s.apps.v1.Deployment:
        """The single-page app (unprivileged nginx on port 8000); starts with the server, after the migrations."""
        tcp = {"tcpSocket": {"port": UI_PORT}}
        container = {
            "name": "ui",
            "image": f"{UI_IMAGE}:{self.settings.version}",
            "ports": [{"name": "http", "containerPort": UI_PORT}],
            "readinessProbe": {**tcp, "periodSeconds": 10, "failureThreshold": 5},
            "livenessProbe": {**tcp, "initialDelaySeconds": 10, "periodSeconds": 20, "failureThreshold": 5},
            "resources": self.size.of("ui"),
            # The image's own numeric non-root user; its nginx writes under its own paths.
            "securityContext": kube.container_security_context(read_only_root=False),
        }
        pod = {
            "automountServiceAccountToken": False,
            # The unprivileged nginx image's user, by number: the kubelet cannot check a named one.
            "securityContext": kube.pod_security_context(UI_UID),
            "containers": [container],
        }
        deployment = self._deployment("ui", "cvat-ui", self.size.ui_replicas, pod, depends_on=[migration])
        self._service("ui", UI_SERVICE, "cvat-ui", UI_PORT)
        return deployment

    def _opa(self, server: pulumi.Resource) -> k8s.apps.v1.Deployment:
        """OPA with CVAT's policy bundle, pulled from the backend."""
        container = {
            "name": "opa",
            "image": OPA_IMAGE,
            "args": [
                "run",
                "--server",
                f"--addr=:{OPA_PORT}",
                f"--set=services.cvat.url=http://{BACKEND_SERVICE}:{BACKEND_PORT}",
                "--set=bundles.cvat.service=cvat",
                "--set=bundles.cvat.resource=/api/auth/rules",
                "--set=bundles.cvat.polling.min_delay_seconds=10",
                "--set=bundles.cvat.polling.max_delay_seconds=15",
            ],
            "ports": [{"name": "http", "containerPort": OPA_PORT}],
            # Healthy only once the policy bundle arrived from the backend.
            "readinessProbe": {"httpGet": {"path": "/health?bundles", "port": OPA_PORT}, "periodSeconds": 10, "failureThreshold": 30},
            "livenessProbe": {"httpGet": {"path": "/health", "port": OPA_PORT}, "initialDelaySeconds": 10, "periodSeconds": 20},
            "resources": self.size.of("opa"),
            "securityContext": kube.container_security_context(),
        }
        pod = {
            "automountServiceAccountToken": False,
            "securityContext": kube.pod_security_context(OPA_UID),
            "containers": [container],
        }
        deployment = self._deployment("opa", "cvat-opa", 1, pod, depends_on=[server])
        self._service("opa", OPA_SERVICE, "cvat-opa", OPA_PORT)
        return deployment

    # ----- ingress and network policies ----------------------------------

    def _ingress(self, backends: list[pulumi.Resource]) -> k8s.networking.v1.Ingress:
        """One host: /api, /admin, /static, /django-rq to the backend, the rest to the UI.

        Made once the backend and UI are ready. Pulumi does not wait for a load-balancer
        address: many controllers (kind, k3d, host-network ones) never publish one.
        """
        ingress = self.ingress

        def path(prefix: str, service: str, port: int) -> dict[str, Any]:
            return {"path": prefix, "pathType": "Prefix", "backend": {"service": {"name": service, "port": {"number": port}}}}

        annotations = {
            kube.SKIP_AWAIT_ANNOTATION: "true",
            # CVAT uploads in 100 MB chunks and exports large archives (ingress-nginx; Traefik needs none).
            "nginx.ingress.kubernetes.io/proxy-body-size": "0",
            "nginx.ingress.kubernetes.io/proxy-request-buffering": "off",
            "nginx.ingress.kubernetes.io/proxy-read-timeout": "600",
            "nginx.ingress.kubernetes.io/proxy-send-timeout": "600",
        }
        spec: dict[str, Any] = {
            "rules": [
                {
                    "host": ingress.hostname,
                    "http": {
                        "paths": [path(f"/{p}", BACKEND_SERVICE, BACKEND_PORT) for p in ("api", "admin", "static", "django-rq")]
                        + [path("/", UI_SERVICE, UI_PORT)]
                    },
                }
            ]
        }
        if ingress.class_name:
            spec["ingressClassName"] = ingress.class_name
        tls_secret = ingress.tls_secret_name
        if ingress.cert_manager_issuer:
            annotations["cert-manager.io/cluster-issuer"] = ingress.cert_manager_issuer
            tls_secret = f"cvat-{self.workspace}-tls"
        if tls_secret:
            spec["tls"] = [{"hosts": [ingress.hostname], "secretName": tls_secret}]
            annotations["nginx.ingress.kubernetes.io/ssl-redirect"] = "true"
        return k8s.networking.v1.Ingress(
            f"{self.name}-ingress",
            metadata=self._metadata("cvat", "cvat-ingress", annotations=annotations),
            spec=spec,
            opts=self._child(depends_on=backends),
        )

    def _network_policies(self) -> None:
        """The NetworkPolicies of :func:`network_policies`, one object each."""
        workers = [f"cvat-worker-{key}" for key in worker_layout(self.settings.workers)]
        policies = network_policies(
            self.ingress.namespaces, self.ingress.allow_cidrs, workers,
            acme_solver=bool(self.ingress.cert_manager_issuer), egress_allow=self.args["egress_allow"],
        )
        made = []
        for policy, spec in policies.items():
            # The default deny last: on an upgrade, no pod loses what its own policy allows meanwhile.
            after = list(made) if policy == network.DEFAULT_DENY_EGRESS else []
            made.append(k8s.networking.v1.NetworkPolicy(
                f"{self.name}-{policy}",
                metadata=self._metadata(policy, "network-policy"),
                spec=spec,
                opts=self._child(depends_on=after),
            ))


# Pods (app.kubernetes.io/name) of the workspace, by what they talk to.
BACKEND_PODS = ["cvat-backend"]
BACKEND_JOBS = ["cvat-migrate", "cvat-superuser"]
DATABASE_JOBS = ["database-backup", "database-restore"]
BOOTSTRAP_JOBS = ["cvat-cloud-storages"]
# Pods of components that import this module: PostgreSQL (components/database.py), the
# in-cluster MinIO's S3 API (components/minio.py) and its bucket Job (components/storage.py).
POSTGRES_POD, POSTGRES_PORT = "postgres", 5432
MINIO_POD, MINIO_PORT = "minio", 9000
ENSURE_BUCKETS_JOB = "ensure-buckets"
# cert-manager's HTTP-01 solver pods listen here (pkg/issuer/acme/http).
ACME_SOLVER_PORT = 8089
# Pods that call no one: no egress but DNS. (MinIO, which only serves, gets not even that.)
DNS_ONLY_PODS = ["cvat-ui", "cvat-redis", "cvat-kvrocks", POSTGRES_POD]


def network_policies(ingress_namespaces: Sequence[str], ingress_cidrs: Sequence[str], workers: Sequence[str],
                     acme_solver: bool = False, egress_allow: Sequence[pulumi.Input[str]] = ()) -> dict[str, dict[str, Any]]:
    """Policy name -> spec: who may call each pod (:func:`ingress_policies`), and whom each pod
    may call (:func:`egress_table`, made into policies by :func:`components.network.egress_policies`).

    `egress_allow`: the addresses CVAT's SSRF guard allows; the pods that reach S3 and the
    outside may reach them too.
    """
    return {
        **ingress_policies(ingress_namespaces, ingress_cidrs, workers, acme_solver),
        **network.egress_policies(egress_table(workers), DNS_ONLY_PODS, egress_allow),
    }


def egress_table(workers: Sequence[str]) -> dict[str, network.Egress]:
    """Whom each pod calls, besides kube-dns (every pod but MinIO resolves names):

    - OPA: the backend, for its policy bundle;
    - the server and workers: Redis, Kvrocks, PostgreSQL, OPA, and S3, webhooks and cloud
      storages: the in-cluster MinIO, and outside the cluster with the SSRF guard's addresses;
    - the migrations and the superuser Job: PostgreSQL, Redis, Kvrocks;
    - backups and restores (scheduled, before an upgrade, final): PostgreSQL and S3;
    - the bootstrap Job: the backend (it calls CVAT's API only; CVAT reaches the buckets);
    - the bucket Job: MinIO (it runs with the in-cluster MinIO only);
    - the UI, Redis, Kvrocks, PostgreSQL (:data:`DNS_ONLY_PODS`) and MinIO: no one.
    """
    Peer, Egress = network.Peer, network.Egress
    backend, opa = Peer("cvat-backend", BACKEND_PORT), Peer("cvat-opa", OPA_PORT)
    database, minio = Peer(POSTGRES_POD, POSTGRES_PORT), Peer(MINIO_POD, MINIO_PORT)
    stores = [database, Peer("cvat-redis", REDIS_PORT), Peer("cvat-kvrocks", KVROCKS_PORT)]
    return {
        "opa": Egress(["cvat-opa"], [backend]),
        "backend": Egress(BACKEND_PODS + list(workers), [*stores, opa, minio], outside=True),
        "backend-jobs": Egress(BACKEND_JOBS, stores),
        "database-jobs": Egress(DATABASE_JOBS, [database, minio], outside=True),
        "bootstrap": Egress(BOOTSTRAP_JOBS, [backend]),
        "ensure-buckets": Egress([ENSURE_BUCKETS_JOB], [minio]),
    }


def ingress_policies(ingress_namespaces: Sequence[str], ingress_cidrs: Sequence[str], workers: Sequence[str],
                     acme_solver: bool = False) -> dict[str, dict[str, Any]]:
    """Policy name -> spec. Ingress is denied by default; each service admits only the pods that use it.

    - the backend and the UI: from the ingress controller's namespaces (or, for controllers
      on the host network or load balancers that send to pod IPs, its address ranges) only:
      anything else would bypass the Ingress's TLS and could forge X-Forwarded-* headers;
      the backend also from OPA (its policy bundle) and the bootstrap Job;
    - cert-manager's HTTP-01 solver (with certManagerIssuer): from the ingress controller;
    - PostgreSQL, Redis, Kvrocks, OPA and MinIO: from the pods that use each.
    """
    backend = BACKEND_PODS + list(workers)
    pods = network.pods

    def admit(target: str, clients: Sequence[str], port: int) -> dict[str, Any]:
        return {
            "podSelector": pods([target]),
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": pods(clients)}], "ports": [{"protocol": "TCP", "port": port}]}],
        }

    controllers: list[dict[str, Any]] = [
        {"namespaceSelector": {"matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "In", "values": list(ingress_namespaces)}]}},
        *({"ipBlock": {"cidr": cidr}} for cidr in ingress_cidrs),
    ]

    def from_controller(selector: dict[str, Any], port: int) -> dict[str, Any]:
        return {
            "podSelector": selector,
            "policyTypes": ["Ingress"],
            "ingress": [{"from": controllers, "ports": [{"protocol": "TCP", "port": port}]}],
        }

    policies = {
        "default-deny-ingress": {"podSelector": {}, "policyTypes": ["Ingress"]},
        "allow-ingress-to-backend": from_controller(pods(["cvat-backend"]), BACKEND_PORT),
        "allow-ingress-to-ui": from_controller(pods(["cvat-ui"]), UI_PORT),
        "allow-backend-callers": admit("cvat-backend", ["cvat-opa", *BOOTSTRAP_JOBS], BACKEND_PORT),
        "allow-to-postgres": admit(POSTGRES_POD, [*backend, *BACKEND_JOBS, *DATABASE_JOBS], POSTGRES_PORT),
        "allow-to-redis": admit("cvat-redis", [*backend, *BACKEND_JOBS], REDIS_PORT),
        "allow-to-kvrocks": admit("cvat-kvrocks", [*backend, *BACKEND_JOBS], KVROCKS_PORT),
        "allow-to-opa": admit("cvat-opa", backend, OPA_PORT),
        # The in-cluster MinIO (development stack): cloud storage, backups and the bucket Job.
        "allow-to-minio": admit(MINIO_POD, [*backend, *DATABASE_JOBS, ENSURE_BUCKETS_JOB], MINIO_PORT),
    }
    if acme_solver:
        # cert-manager runs its HTTP-01 solver in this namespace; the controller must reach it.
        policies["allow-acme-http01-solver"] = from_controller(
            {"matchLabels": {"acme.cert-manager.io/http01-solver": "true"}}, ACME_SOLVER_PORT
        )
    return policies


def warn_if_claim_differs(claim: str, keys: tuple[str, str], configured: tuple[str, str],
                          made: tuple[Optional[list[str]], Optional[str]]) -> None:
    """Warns when the config asks for another access mode or class than the claim was made with.

    Both are fixed at creation: the claim keeps them (changing them would replace it and
    lose its data). An empty configured class means the cluster default: no warning.
    """
    mode_key, class_key = keys
    wanted_mode, wanted_class = configured
    made_modes, made_class = made
    if made_modes and wanted_mode not in made_modes:
        pulumi.log.warn(
            f"{mode_key} is {wanted_mode} but the claim {claim} was made {', '.join(made_modes)}: the volume is kept as it is "
            "(a new access mode needs a new volume; see 'Changing a volume's access mode or class' in docs/operations/troubleshooting.md)."
        )
    if wanted_class and made_class and wanted_class != made_class:
        pulumi.log.warn(
            f"{class_key} is {wanted_class} but the claim {claim} was made with class {made_class}: the volume is kept as it is "
            "(see 'Changing a volume's access mode or class' in docs/operations/troubleshooting.md)."
        )
