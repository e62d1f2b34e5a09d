"""The resource graph of a workspace under mocks: types, parents, providers, options, outputs."""

import json

import pytest

from support import harness
from support.harness import ROOT, load_stack_file, render
from components.lifecycle import rule_id
from support.stacks import (
    STACK_OUTPUTS,
)

DEV = load_stack_file(ROOT / "Pulumi.dev.yaml")
ACME = {**load_stack_file(ROOT / "examples" / "Pulumi.acme.yaml"), "storageSecretKey": "acme-secret-key-0123"}
ACME_SECRETS = ["storageSecretKey"]


# What the providers compute, set here to values of the test's own: an output or
# input equal to one of them came from that resource's output, through the program.
ADMIN_PASSWORD = "Provider-Made-Admin-Pass-8142"
BUCKET_SUFFIX = "5eed1e55"
PROVIDER_OUTPUTS = {
    "workspace-admin-password": {"result": ADMIN_PASSWORD},
    "workspace-storage-backup-bucket-suffix": {"hex": BUCKET_SUFFIX},
}


def render_stack(config, stack, secrets=()):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(harness.Mocks, "state_overrides", PROVIDER_OUTPUTS)
        return render(config, stack=stack, secrets=secrets)


@pytest.fixture(scope="module")
def dev():
    return render_stack(DEV, "dev")


@pytest.fixture(scope="module")
def acme():
    return render_stack(ACME, "acme", ACME_SECRETS)


@pytest.mark.parametrize("stack", ["dev", "acme"])
def test_every_resource_descends_from_the_workspace(stack, request):
    rendering = request.getfixturevalue(stack)
    workspace = rendering.one("labeling:index:Workspace")
    assert workspace.parent.endswith("pulumi:pulumi:Stack::labeling-" + stack)
    for registration in rendering.registrations:
        if registration is workspace:
            continue
        chain, current = [], registration
        while current is not None and current is not workspace:
            chain.append(current.name)
            current = rendering.by_urn(current.parent)
        assert current is workspace, f"{registration.type} {registration.name} is not under the workspace: {chain}"
        # Child names derive from the parent component's name.
        parent = rendering.by_urn(registration.parent)
        assert registration.name.startswith(parent.name + "-"), (registration.name, parent.name)


@pytest.mark.parametrize("stack", ["dev", "acme"])
def test_components_use_the_project_type_tokens(stack, request):
    rendering = request.getfixturevalue(stack)
    components = {r.type for r in rendering.registrations if not r.custom}
    assert components and all(t.startswith("labeling:index:") for t in components), components


@pytest.mark.parametrize("stack", ["dev", "acme"])
def test_kubernetes_and_aws_resources_use_the_explicit_providers(stack, request):
    rendering = request.getfixturevalue(stack)
    providers = {r.urn: r for r in rendering.registrations if r.is_provider}
    for registration in rendering.registrations:
        package = registration.type.split(":")[0]
        if package not in ("kubernetes", "aws") or not registration.custom:
            continue
        urn = registration.provider.rsplit("::", 1)[0]
        assert urn in providers, f"{registration.name} uses no explicit provider"
        assert providers[urn].type == f"pulumi:providers:{package}"


def test_kubernetes_provider_uses_the_configured_context():
    rendering = render({**DEV, "kubeContext": "kind-labeling"}, stack="dev")
    provider = rendering.one("pulumi:providers:kubernetes")
    assert provider.inputs["context"] == "kind-labeling"
    assert json.loads(provider.inputs["enableServerSideApply"]) is True
    assert "context" not in harness.render(DEV, stack="dev").one("pulumi:providers:kubernetes").inputs


def test_default_providers_are_disabled_in_the_project():
    import yaml

    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert set(project["config"]["pulumi:disable-default-providers"]["value"]) >= {"aws", "kubernetes"}


@pytest.mark.parametrize("stack", ["dev", "acme"])
def test_stack_outputs(stack, request):
    rendering = request.getfixturevalue(stack)
    assert set(rendering.outputs) == STACK_OUTPUTS
    assert rendering.secret_outputs == {"adminPassword"}
    # The generated password, as its resource made it, is the one the admin Secret holds.
    secret = rendering.one("kubernetes:core/v1:Secret", "admin")
    assert rendering.outputs["adminPassword"] == ADMIN_PASSWORD == secret.inputs["stringData"]["password"]


def test_dev_outputs(dev):
    assert dev.outputs["annotationUrl"] == "http://cvat.localhost"
    assert dev.outputs["namespace"] == "cvat-dev"
    assert dev.outputs["datasetBuckets"] == ["images"]
    assert dev.outputs["adminEmail"] == "admin@example.com"
    assert dev.outputs["backupBucket"] == "labeling-dev-backups-" + BUCKET_SUFFIX
    assert dev.outputs["backupPrefix"] == "dev/database/"
    assert dev.outputs["backupSchedule"] == "0 3 * * *"
    assert dev.outputs["backupRetentionDays"] == 30


def test_acme_outputs(acme):
    assert acme.outputs["annotationUrl"] == "https://label.acme.example"
    assert acme.outputs["adminUsername"] == "ml-lead"
    assert acme.outputs["datasetBuckets"] == ["acme-street-scenes", "acme-dashcam-videos"]
    assert acme.outputs["description"] == "ACME street scenes, batch 2026-11"


def test_https_url_with_an_existing_tls_secret():
    rendering = render({**DEV, "tlsSecretName": "cvat-tls"}, stack="dev")
    assert rendering.outputs["annotationUrl"] == "https://cvat.localhost"


def test_backup_bucket_is_created_retained_and_has_lifecycle_rules(acme):
    bucket = acme.one("aws:s3/bucket:Bucket")
    assert bucket.retain_on_delete
    assert bucket.inputs["bucket"] == "labeling-acme-backups-" + BUCKET_SUFFIX == acme.outputs["backupBucket"]
    assert not bucket.inputs.get("forceDestroy")
    rules = acme.one("pulumi-python:dynamic/labeling:BucketLifecycleRules")
    assert rules.inputs["bucket"] == bucket.inputs["bucket"]
    # Only the backups' temporary uploads expire, after a day; backups never do.
    assert rules.inputs["prefix"] == acme.outputs["backupPrefix"] + ".incoming/" == "acme/database/.incoming/"
    assert (rules.inputs["expiration_days"], rules.inputs["abort_multipart_days"]) == (1, 1)
    assert acme.outputs["backupRetentionDays"] == 14  # which the rule does not follow
    # A stack named as a DNS label keeps the rule ID of earlier versions: updated in place.
    assert rule_id(rules.inputs["rule_id_prefix"]) == "labeling-acme-backups"
    assert rules.inputs["endpoint_url"] == "https://s3.fr-par.scw.cloud"
    assert bucket.urn in rules.depends_on
    assert {"access_key", "secret_key"} <= rules.secret_paths
    assert {"access_key", "secret_key"} <= set(rules.additional_secret_outputs)


def test_configured_backup_bucket_name_is_used_as_is():
    rendering = render({**ACME, "backupBucket": "acme-cvat-backups"}, stack="acme", secrets=ACME_SECRETS)
    assert rendering.one("aws:s3/bucket:Bucket").inputs["bucket"] == "acme-cvat-backups"
    assert [r for r in rendering.of_type("random:index/randomId:RandomId") if "bucket" in r.name] == []
    assert rendering.outputs["backupBucket"] == "acme-cvat-backups"


def test_dataset_buckets_are_never_managed(acme, dev):
    for rendering in (acme, dev):
        buckets = [r.inputs.get("bucket") for r in rendering.of_type("aws:s3/bucket:Bucket")]
        for name in rendering.outputs["datasetBuckets"]:
            assert name not in buckets
        # Nothing else from the S3 API is declared (no policies, ACLs, versioning on user buckets).
        s3_types = {r.type for r in rendering.registrations if r.type.startswith("aws:")}
        assert s3_types <= {"aws:s3/bucket:Bucket"}


def test_storage_provider_settings_suit_s3_compatible_servers(acme):
    provider = acme.one("pulumi:providers:aws")
    inputs = provider.inputs
    assert json.loads(inputs["s3UsePathStyle"]) is True
    for flag in ("skipCredentialsValidation", "skipRequestingAccountId", "skipMetadataApiCheck", "skipRegionValidation"):
        assert json.loads(inputs[flag]) is True, flag
    assert inputs["s3UsEast1RegionalEndpoint"] == "regional"
    assert {"accessKey", "secretKey"} <= provider.secret_paths


def test_in_cluster_minio_replaces_the_aws_provider(dev):
    assert dev.of_type("pulumi:providers:aws") == []
    assert dev.of_type("aws:s3/bucket:Bucket") == []
    job = dev.one("kubernetes:batch/v1:Job", "ensure-buckets")
    env = {e["name"]: e for e in job.inputs["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["AWS_ENDPOINT_URL"]["value"] == "http://minio.cvat-dev.svc:9000"
    assert env["BUCKETS"]["value"] == f"{dev.outputs['backupBucket']} images"
    assert env["LIFECYCLE_BUCKET"]["value"] == dev.outputs["backupBucket"] == f"labeling-dev-backups-{BUCKET_SUFFIX}"
    assert env["LIFECYCLE_PREFIX"]["value"] == dev.outputs["backupPrefix"] + ".incoming/" == "dev/database/.incoming/"
    assert env["LIFECYCLE_EXPIRATION_DAYS"]["value"] == "1"
    assert env["LIFECYCLE_RULE_ID"]["value"] == "labeling-dev"
    assert "RETENTION_DAYS" not in env
    assert env["AWS_REQUEST_CHECKSUM_CALCULATION"]["value"] == "when_required"
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {"name": "minio-root", "key": "accessKeyId"}
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "minio-root", "key": "secretAccessKey"}
    server = dev.one("kubernetes:apps/v1:Deployment", "minio")
    assert server.urn in job.depends_on


def test_bucket_job_reruns_only_when_its_work_changes():
    def job_name(config):
        rendering = render(config, stack="dev")
        return rendering.one("kubernetes:batch/v1:Job", "ensure-buckets").inputs["metadata"]["name"]

    base = job_name(DEV)
    assert base == job_name(DEV)
    assert base == job_name({**DEV, "backupRetentionDays": 7})  # the rule no longer follows the retention
    assert base != job_name({**DEV, "datasetBuckets": ["images", "videos"]})
    assert base == job_name({**DEV, "description": "changed"})


def test_admin_password_is_generated_once_and_stays_secret(dev):
    password = dev.one("random:index/randomPassword:RandomPassword", "admin")
    assert password.inputs["length"] >= 20
    assert "keepers" not in password.inputs  # nothing makes it change on later updates
    secret = dev.one("kubernetes:core/v1:Secret", "admin")
    assert secret.inputs["metadata"]["name"] == "admin-credentials"
    assert "stringData" in secret.secret_paths
    # The password is the generated resource's output, as it made it.
    assert secret.inputs["stringData"] == {
        "username": "admin",
        "email": "admin@example.com",
        "password": ADMIN_PASSWORD,
    }


def test_configured_admin_password_is_used_and_nothing_generated():
    config = {**DEV, "adminPassword": "a-configured-Passw0rd"}
    rendering = render(config, stack="dev", secrets=["adminPassword"])
    passwords = [r.name for r in rendering.of_type("random:index/randomPassword:RandomPassword")]
    assert passwords and not [name for name in passwords if "admin" in name]
    assert rendering.outputs["adminPassword"] == "a-configured-Passw0rd"
    assert "adminPassword" in rendering.secret_outputs
    secret = rendering.one("kubernetes:core/v1:Secret", "admin")
    assert secret.inputs["stringData"]["password"] == "a-configured-Passw0rd"
    assert "stringData" in secret.secret_paths


def test_s3_credentials_secret_for_external_storage(acme):
    secret = acme.one("kubernetes:core/v1:Secret", "storage-credentials")
    assert secret.inputs["metadata"] == {
        "name": "s3-credentials",
        "namespace": "cvat-acme",
        "labels": secret.inputs["metadata"]["labels"],
    }
    assert secret.inputs["stringData"] == {"accessKeyId": "SCWXXXXXXXXXXXXXXXXX", "secretAccessKey": "acme-secret-key-0123"}
    assert "stringData" in secret.secret_paths


def test_namespace_is_labelled_with_the_workspace(dev):
    namespace = dev.kubernetes_object("Namespace", "cvat-dev")
    assert namespace["metadata"]["labels"]["labeling.dev/workspace"] == "dev"
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/warn"] == "restricted"


def test_unsupported_lifecycle_rules_warn(monkeypatch):
    monkeypatch.setattr(harness.Mocks, "lifecycle_supported", False)
    rendering = render(ACME, stack="acme", secrets=ACME_SECRETS)
    assert any("does not implement lifecycle rules" in warning for warning in rendering.warnings)
    monkeypatch.setattr(harness.Mocks, "lifecycle_supported", True)
    assert render(ACME, stack="acme", secrets=ACME_SECRETS).warnings == []


def test_look_alike_stacks_sharing_a_bucket_keep_their_own_rule():
    shared = {**ACME, "backupBucket": "acme-cvat-backups"}
    found = {}
    for stack in ("acme_prod", "acme-prod"):
        rendering = render(shared, stack=stack, secrets=ACME_SECRETS)
        rules = rendering.one("pulumi-python:dynamic/labeling:BucketLifecycleRules")
        assert rules.inputs["bucket"] == "acme-cvat-backups"
        assert rules.inputs["prefix"] == rendering.outputs["backupPrefix"] + ".incoming/"
        found[stack] = (rule_id(rules.inputs["rule_id_prefix"]), rules.inputs["prefix"])
    assert found["acme-prod"] == ("labeling-acme-prod-backups", "acme-prod/database/.incoming/")
    (underscore_id, underscore_prefix) = found["acme_prod"]
    assert underscore_id != "labeling-acme-prod-backups" and underscore_id.startswith("labeling-acme-prod-")
    assert underscore_prefix != "acme-prod/database/.incoming/" and underscore_prefix.startswith("acme-prod-")
    # The rule ID and the prefix come from the same key.
    assert underscore_id == f"labeling-{underscore_prefix.split('/')[0]}-backups"
