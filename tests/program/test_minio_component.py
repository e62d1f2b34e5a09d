"""InClusterMinio under mocks: a claim no config change replaces, the image."""

from __future__ import annotations

import pytest

from support import harness
from components.minio import MINIO_IMAGE, warn_if_class_differs
from support.components import run_component


class ClaimMadeWith(harness.Mocks):
    """Mocks where the claim reads back as it was made long ago (class `made`), as after ignore_changes."""

    def __init__(self, made):
        super().__init__()
        self.made = made

    def new_resource(self, args):
        id_, state = super().new_resource(args)
        if args.typ == "kubernetes:core/v1:PersistentVolumeClaim":
            spec = dict(state.get("spec", {}))
            if self.made is None:
                spec.pop("storageClassName", None)
            else:
                spec["storageClassName"] = self.made
            state = {**state, "spec": spec}
        return id_, state


def minio(mocks=None, **changes):
    from components.minio import InClusterMinio

    args = {
        "namespace": "cvat-dev",
        "workspace": "dev",
        "region": "us-east-1",
        "storage_size": "20Gi",
        "storage_class_name": "",
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
        **changes,
    }
    return run_component(lambda: InClusterMinio("minio", args), mocks)


def test_claim_ignores_what_would_replace_it():
    run = minio(storage_class_name="fast-ssd")
    claim = run.one("kubernetes:core/v1:PersistentVolumeClaim", "data")
    assert sorted(run.options[claim.name]["ignore_changes"]) == ["spec.accessModes", "spec.storageClassName"]
    assert claim.inputs["spec"]["storageClassName"] == "fast-ssd"
    assert claim.inputs["metadata"]["name"] == "minio-data"


def test_claim_without_class_leaves_it_to_the_cluster():
    claim = minio().one("kubernetes:core/v1:PersistentVolumeClaim", "data")
    assert "storageClassName" not in claim.inputs["spec"]


@pytest.mark.parametrize(
    "configured, made, warned",
    [
        ("fast-ssd", "standard", True),  # the config moved on; the claim keeps its class
        ("fast-ssd", "fast-ssd", False),
        ("", "standard", False),  # empty = the cluster's default, whatever its name
        ("fast-ssd", None, False),  # nothing known about the claim's class
    ],
)
def test_up_warns_when_the_configured_class_is_not_the_claims(configured, made, warned):
    run = minio(ClaimMadeWith(made), storage_class_name=configured)
    class_warnings = [w for w in run.warnings if "storageClassName" in w]
    if warned:
        (warning,) = class_warnings
        assert "'fast-ssd'" in warning and "'standard'" in warning and "minio-data" in warning
        assert "kept" in warning
    else:
        assert class_warnings == []


def test_warning_reads_typed_and_raw_specs():
    class Spec:
        storage_class_name = "standard"

    assert warn_if_class_differs("fast", Spec()) is not None
    assert warn_if_class_differs("fast", {"storageClassName": "standard"}) is not None
    assert warn_if_class_differs("fast", {"storageClassName": "fast"}) is None
    assert warn_if_class_differs("", Spec()) is None
    assert warn_if_class_differs("fast", None) is None


def minio_image(run):
    server = run.one("kubernetes:apps/v1:Deployment", "server")
    return server.inputs["spec"]["template"]["spec"]["containers"][0]["image"]


def test_image_defaults_to_the_pinned_release():
    assert MINIO_IMAGE == "quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z"
    assert minio_image(minio()) == MINIO_IMAGE
    assert minio_image(minio(image="")) == MINIO_IMAGE


def test_image_can_be_another_s3_server_build():
    image = "registry.example.net/minio:RELEASE.2025-10-15T17-29-55Z"
    assert minio_image(minio(image=image)) == image


def test_the_service_offers_the_s3_api_only_not_the_console():
    from components.minio import API_PORT, CONSOLE_PORT

    run = minio()
    service = run.one("kubernetes:core/v1:Service", "service")
    assert service.inputs["spec"]["ports"] == [{"name": "api", "port": API_PORT, "targetPort": "api"}]
    assert service.inputs["spec"].get("type", "ClusterIP") == "ClusterIP"
    # The console still listens in the pod, for `kubectl port-forward deploy/minio 9001`.
    container = run.one("kubernetes:apps/v1:Deployment", "server").inputs["spec"]["template"]["spec"]["containers"][0]
    assert f"--console-address=:{CONSOLE_PORT}" in container["args"]
    assert {"name": "console", "containerPort": CONSOLE_PORT} in container["ports"]
    # The API port the Service targets is the container's.
    assert {"name": "api", "containerPort": API_PORT} in container["ports"]
