"""Every Kubernetes object of each example stack, rendered under mocks and checked.

Generic on purpose: whatever objects later components add are validated
against the Kubernetes OpenAPI schema and held to the same rules (namespace,
labels, pinned images, resources, probes, non-root, no secret in plain text).
"""

import re

import pytest

from support import harness
from support.harness import ROOT, load_stack_file, render
from support.manifests import (
    validate_rendering,
)


DEV = load_stack_file(ROOT / "Pulumi.dev.yaml")
ACME = {**load_stack_file(ROOT / "examples" / "Pulumi.acme.yaml"), "storageSecretKey": "acme-secret-key-0123"}
STACKS = {
    "dev": (DEV, "dev", []),
    "acme": (ACME, "acme", ["storageSecretKey"]),
    "acme-tls-secret": (
        {**ACME, "certManagerIssuer": "", "tlsSecretName": "acme-tls", "adminPassword": "Configured-Passw0rd!"},
        "acme-tls",
        ["storageSecretKey", "adminPassword"],
    ),
    # Every optional object: share volumes, restore Job, PodDisruptionBudget, storage class.
    "acme-everything": (
        {**ACME, "datasetAccess": "both", "size": "large", "cvatDataAccessMode": "ReadWriteMany",
         "restoreFrom": "latest", "storageClassName": "scw-bssd"},
        "acme-all",
        ["storageSecretKey"],
    ),
    "dev-large": ({**DEV, "size": "large", "storageClassName": "local-path"}, "dev", []),
}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}
LONG_RUNNING = {"Deployment", "StatefulSet", "DaemonSet"}
CLUSTER_SCOPED = {"Namespace", "PersistentVolume", "ClusterRole", "ClusterRoleBinding", "StorageClass"}
# Names of variables that hold secrets (a *_DIR or *_FILE holds where they are, not what).
SECRET_ENV_NAME = re.compile(r"(PASSWORD|SECRET|ACCESS_KEY|TOKEN)(?!.*_(DIR|FILE)$)", re.IGNORECASE)


@pytest.fixture(scope="module", params=sorted(STACKS))
def stack(request):
    config, name, secrets = STACKS[request.param]
    rendering = render(config, stack=name, secrets=secrets)
    secret_values = {config[key] for key in secrets} | rendering.generated_secrets
    assert harness.GENERATED_PASSWORD in secret_values or "adminPassword" in secrets
    return rendering, secret_values


def pod_specs(manifest):
    """(where, pod spec) of a workload object."""
    kind = manifest["kind"]
    if kind == "CronJob":
        yield "jobTemplate", manifest["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    elif kind in WORKLOAD_KINDS:
        yield "template", manifest["spec"]["template"]["spec"]


def containers(pod_spec):
    return pod_spec.get("initContainers", []) + pod_spec["containers"]


def test_there_are_objects_to_check(stack):
    rendering, _ = stack
    kinds = {r.manifest()["kind"] for r in rendering.kubernetes_objects()}
    assert {"Namespace", "Secret", "StatefulSet", "Deployment", "CronJob", "Ingress", "NetworkPolicy"} <= kinds


def test_every_kind_the_program_makes_is_checked():
    kinds = set()
    for config, name, secrets in STACKS.values():
        kinds |= {r.manifest()["kind"] for r in render(config, stack=name, secrets=secrets).kubernetes_objects()}
    assert {"PersistentVolume", "PersistentVolumeClaim", "Job", "PodDisruptionBudget", "ConfigMap", "Service"} <= kinds


def test_every_claim_uses_the_configured_storage_class():
    config, name, secrets = STACKS["dev-large"]
    rendering = render(config, stack=name, secrets=secrets)
    for registration in rendering.kubernetes_objects():
        manifest = registration.manifest()
        claims = [manifest["spec"]] if manifest["kind"] == "PersistentVolumeClaim" else [
            template["spec"] for template in manifest.get("spec", {}).get("volumeClaimTemplates", [])
        ]
        for claim in claims:
            assert claim.get("storageClassName") == "local-path", manifest["metadata"]["name"]


def test_every_object_is_valid_against_the_kubernetes_schema(stack):
    rendering, _ = stack
    validate_rendering(rendering)


def test_every_object_is_named_labelled_and_in_the_workspace_namespace(stack):
    rendering, _ = stack
    namespace = rendering.outputs["namespace"]
    for registration in rendering.kubernetes_objects():
        manifest = registration.manifest()
        metadata = manifest["metadata"]
        assert metadata.get("name"), f"{manifest['kind']} has no explicit name"
        if manifest["kind"] not in CLUSTER_SCOPED:
            assert metadata.get("namespace") == namespace, (manifest["kind"], metadata["name"])
        labels = metadata.get("labels", {})
        assert labels.get("app.kubernetes.io/part-of") == "labeling-workspace", metadata["name"]
        assert labels.get("labeling.dev/workspace"), metadata["name"]


def test_every_container_is_pinned_sized_and_hardened(stack):
    rendering, _ = stack
    for registration in rendering.kubernetes_objects():
        manifest = registration.manifest()
        for _, pod in pod_specs(manifest):
            where = f"{manifest['kind']} {manifest['metadata']['name']}"
            pod_context = pod.get("securityContext", {})
            assert pod.get("automountServiceAccountToken") is False, where
            for container in containers(pod):
                name = f"{where}/{container['name']}"
                image = container["image"]
                tag = image.rsplit("/", 1)[-1]
                assert ("@sha256:" in image) or (":" in tag and not tag.endswith(":latest")), f"{name}: unpinned {image}"
                resources = container.get("resources", {})
                assert {"cpu", "memory"} <= set(resources.get("requests", {})), f"{name}: requests"
                assert "memory" in resources.get("limits", {}), f"{name}: memory limit"
                context = container.get("securityContext", {})
                assert context.get("allowPrivilegeEscalation") is False, name
                assert "ALL" in context.get("capabilities", {}).get("drop", []), name
                assert context.get("privileged") in (None, False), name
                assert context.get("runAsNonRoot", pod_context.get("runAsNonRoot")) is True, name
                # runAsNonRoot makes the kubelet refuse a root user; an explicit uid must not be 0 either.
                uid = context.get("runAsUser", pod_context.get("runAsUser"))
                assert uid != 0, f"{name}: runs as root"
                seccomp = context.get("seccompProfile", pod_context.get("seccompProfile", {}))
                assert seccomp.get("type") == "RuntimeDefault", name
                if manifest["kind"] in LONG_RUNNING:
                    assert "readinessProbe" in container and "livenessProbe" in container, f"{name}: probes"


def test_no_secret_in_plain_text(stack):
    rendering, secret_values = stack
    for registration in rendering.kubernetes_objects():
        manifest = registration.manifest()
        where = f"{manifest['kind']} {manifest['metadata']['name']}"
        if manifest["kind"] == "Secret":
            for field in ("stringData", "data"):
                if field in manifest:
                    assert field in registration.secret_paths, f"{where}: {field} is not marked secret"
            continue
        text = repr(manifest)
        for value in secret_values:
            assert value not in text, f"{where} holds a secret value in plain text"
        for _, pod in pod_specs(manifest):
            for container in containers(pod):
                for env in container.get("env", []):
                    if SECRET_ENV_NAME.search(env["name"]):
                        assert "value" not in env, f"{where}: {env['name']} has a plain value"
                        assert "secretKeyRef" in env.get("valueFrom", {}), f"{where}: {env['name']}"


def test_scripts_reach_pods_through_configmaps(stack):
    rendering, _ = stack
    configmaps = {
        r.manifest()["metadata"]["name"]: r.manifest() for r in rendering.kubernetes_objects() if r.manifest()["kind"] == "ConfigMap"
    }
    for registration in rendering.kubernetes_objects():
        manifest = registration.manifest()
        for _, pod in pod_specs(manifest):
            for volume in pod.get("volumes", []):
                if "configMap" in volume:
                    assert volume["configMap"]["name"] in configmaps
            for container in containers(pod):
                command = " ".join(container.get("command", []) + container.get("args", []))
                mounted = {
                    volume["configMap"]["name"] for volume in pod.get("volumes", []) if "configMap" in volume
                }
                for script in re.findall(r"/scripts/([\w.-]+\.(?:sh|py))", command):
                    shipped = [configmaps[name]["data"] for name in mounted if script in configmaps[name].get("data", {})]
                    assert shipped, f"{script} is not in a ConfigMap mounted by the pod"
                    text = (ROOT / "components" / "assets" / script).read_text()
                    assert shipped[0][script] == text
                    # What a script sources must be shipped beside it.
                    for helper in re.findall(r'^\. "\$\(dirname "\$0"\)/([\w.-]+)"', text, re.MULTILINE):
                        assert shipped[0].get(helper) == (ROOT / "components" / "assets" / helper).read_text(), helper
