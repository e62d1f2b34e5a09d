"""InClusterMinio: a single MinIO server inside the workspace's namespace.

Used by the local development stack (``minioInCluster: true``) so that a
workspace needs nothing but a Kubernetes cluster. Its Service offers the S3 API
(port 9000) only; the web console (9001) is reached through the pod with
``kubectl port-forward``. Root credentials are
generated and kept in a Secret; the server stores its data on a
PersistentVolumeClaim, which is deleted with the workspace (it is for
development; production workspaces use external object storage).

No config change replaces the claim: its access modes and storage class are
immutable in Kubernetes (a change would replace it, and with its fixed name the
old claim, and its data, would go first), so they are ignored after creation,
and `pulumi up` warns when the configured class differs from the claim's.
"""

from __future__ import annotations

from typing import Any, NotRequired, Optional, TypedDict

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components import kube

# The community edition is source-only since Oct 2025: this is the last image
# release, pinned. Nothing here uses MinIO-only APIs, so another S3 server can stand in.
MINIO_IMAGE = "quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z"
API_PORT = 9000
# The web console listens in the pod only (the Service has the API port alone): an
# operator reaches it with `kubectl port-forward deploy/minio 9001`, nothing else can.
CONSOLE_PORT = 9001
SERVICE_NAME = "minio"
SECRET_NAME = "minio-root"
MINIO_UID = 1000
CLAIM_NAME = "minio-data"
# Immutable once the claim exists (and an unset class is filled in with the
# cluster's default, which would read as a change): never diffed after creation.
CLAIM_IGNORED_CHANGES = ["spec.accessModes", "spec.storageClassName"]


class InClusterMinioArgs(TypedDict):
    """Inputs of :class:`InClusterMinio`."""

    namespace: pulumi.Input[str]
    workspace: str
    region: str
    storage_size: str
    storage_class_name: str
    """Empty: the cluster's default storage class."""
    resources: dict
    image: NotRequired[str]
    """The MinIO server image; empty or absent: MINIO_IMAGE."""


class InClusterMinio(pulumi.ComponentResource):
    """A MinIO server (Deployment, PVC, Service, generated root credentials)."""

    url: pulumi.Output[str]
    cluster_ip: pulumi.Output[str]
    access_key: pulumi.Output[str]
    secret_key: pulumi.Output[str]
    credentials_secret_name: pulumi.Output[str]

    def __init__(self, name: str, args: InClusterMinioArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("labeling:index:InClusterMinio", name, None, opts)
        self._resource_name = name
        self._args = args
        self._labels = kube.labels(args["workspace"], "minio")

        self.access_key, self.secret_key = self._root_credentials()
        self.credentials_secret_name = self._credentials_secret()
        claim = self._claim()
        self.deployment = self._server(claim)
        self.service = self._service()
        # Smokescreen in CVAT must be told to let cloud-storage traffic reach this private address.
        self.cluster_ip = self.service.spec.cluster_ip
        self.url = pulumi.Output.concat(
            "http://", self.service.metadata["name"], ".", self.service.metadata["namespace"], f".svc:{API_PORT}"
        )
        self.register_outputs(
            {
                "url": self.url,
                "access_key": self.access_key,
                "secret_key": self.secret_key,
                "credentials_secret_name": self.credentials_secret_name,
            }
        )

    def _root_credentials(self) -> tuple[pulumi.Output[str], pulumi.Output[str]]:
        """The generated root user (lower-case letters and digits, a secret) and password."""
        root_user = random.RandomString(
            f"{self._resource_name}-root-user",
            length=20,
            special=False,
            upper=False,
            opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["result"]),
        )
        root_password = random.RandomPassword(
            f"{self._resource_name}-root-password", length=40, special=False, opts=pulumi.ResourceOptions(parent=self)
        )
        return pulumi.Output.secret(root_user.result), root_password.result

    def _credentials_secret(self) -> pulumi.Output[str]:
        """The root credentials, in a Secret with the keys the S3 credentials Secret has."""
        secret = k8s.core.v1.Secret(
            f"{self._resource_name}-root",
            metadata={"name": SECRET_NAME, "namespace": self._args["namespace"], "labels": self._labels},
            type="Opaque",
            string_data={"accessKeyId": self.access_key, "secretAccessKey": self.secret_key},
            opts=pulumi.ResourceOptions(parent=self),
        )
        return secret.metadata["name"]

    def _claim(self) -> k8s.core.v1.PersistentVolumeClaim:
        """The data volume; what would replace it is ignored, with a warning when the class differs."""
        configured_class = self._args["storage_class_name"]
        claim = k8s.core.v1.PersistentVolumeClaim(
            f"{self._resource_name}-data",
            metadata={"name": CLAIM_NAME, "namespace": self._args["namespace"], "labels": self._labels},
            spec=kube.claim_spec(self._args["storage_size"], configured_class),
            opts=pulumi.ResourceOptions(
                parent=self,
                # Bound only once the pod exists on clusters with WaitForFirstConsumer.
                custom_timeouts=pulumi.CustomTimeouts(create="15m"),
                ignore_changes=CLAIM_IGNORED_CHANGES,
            ),
        )
        claim.spec.apply(lambda spec: warn_if_class_differs(configured_class, spec))
        return claim

    def _server(self, claim: k8s.core.v1.PersistentVolumeClaim) -> k8s.apps.v1.Deployment:
        """One pod, recreated (never two at once: one pod owns the ReadWriteOnce volume at a time)."""
        args = self._args
        return k8s.apps.v1.Deployment(
            f"{self._resource_name}-server",
            metadata={"name": "minio", "namespace": args["namespace"], "labels": self._labels, "annotations": kube.awaited()},
            spec={
                "replicas": 1,
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": kube.selector(args["workspace"], "minio")},
                "template": {
                    "metadata": {"labels": self._labels},
                    "spec": {
                        "automountServiceAccountToken": False,
                        "securityContext": kube.pod_security_context(MINIO_UID, fs_group=MINIO_UID),
                        "containers": [
                            minio_container(args.get("image") or MINIO_IMAGE, args["region"], self.credentials_secret_name,
                                            args["resources"])
                        ],
                        "volumes": [
                            {"name": "data", "persistentVolumeClaim": {"claimName": claim.metadata["name"]}},
                            {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
                        ],
                    },
                },
            },
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _service(self) -> k8s.core.v1.Service:
        """The S3 API only. The console is not exposed: reach it through the pod,
        `kubectl -n <namespace> port-forward deploy/minio 9001`."""
        return k8s.core.v1.Service(
            f"{self._resource_name}-service",
            metadata={"name": SERVICE_NAME, "namespace": self._args["namespace"], "labels": self._labels},
            spec={
                "selector": kube.selector(self._args["workspace"], "minio"),
                "ports": [{"name": "api", "port": API_PORT, "targetPort": "api"}],
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.deployment]),
        )


def minio_container(image: str, region: str, credentials_secret: pulumi.Input[str], resources: dict) -> dict[str, Any]:
    """The MinIO server: the API and the console, its root credentials from their Secret."""
    return {
        "name": "minio",
        "image": image,
        "command": ["minio"],
        "args": ["server", "/data", f"--address=:{API_PORT}", f"--console-address=:{CONSOLE_PORT}", "--certs-dir=/tmp/minio-certs"],
        "env": [
            kube.secret_env("MINIO_ROOT_USER", credentials_secret, "accessKeyId"),
            kube.secret_env("MINIO_ROOT_PASSWORD", credentials_secret, "secretAccessKey"),
            {"name": "MINIO_SITE_REGION", "value": region},
            {"name": "HOME", "value": "/tmp"},
        ],
        "ports": [{"name": "api", "containerPort": API_PORT}, {"name": "console", "containerPort": CONSOLE_PORT}],
        "readinessProbe": {"httpGet": {"path": "/minio/health/ready", "port": "api"}, "periodSeconds": 10, "timeoutSeconds": 5},
        "livenessProbe": {
            "httpGet": {"path": "/minio/health/live", "port": "api"},
            "initialDelaySeconds": 10,
            "periodSeconds": 20,
            "timeoutSeconds": 5,
            "failureThreshold": 6,
        },
        "resources": resources,
        "securityContext": kube.container_security_context(),
        "volumeMounts": [{"name": "data", "mountPath": "/data"}, {"name": "tmp", "mountPath": "/tmp"}],
    }


def warn_if_class_differs(configured: str, spec: Any) -> Optional[str]:
    """Warns (and returns the warning) when the configured class is not the claim's.

    Empty configured class: the cluster's default, whatever its name; nothing to say.
    """
    made = _field(spec, "storage_class_name", "storageClassName")
    if not configured or made is None or made == configured:
        return None
    message = (
        f"storageClassName is {configured!r} but the in-cluster MinIO's claim {CLAIM_NAME} was made with "
        f"{made!r}: a claim's class cannot change, so the claim is kept as it is, with its data. To use the "
        "new class, copy the buckets out and recreate the workspace (`pulumi destroy`, then `pulumi up`)."
    )
    pulumi.log.warn(message)
    return message


def _field(value: Any, attribute: str, key: str) -> Any:
    """A field of an output object, typed (attribute) or raw (dict key)."""
    if value is None:
        return None
    if hasattr(type(value), attribute):  # pulumi output types are dicts that warn on key access
        return getattr(value, attribute)
    if isinstance(value, dict):
        return value.get(key)
    return getattr(value, attribute, None)
