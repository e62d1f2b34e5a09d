"""ObjectStorage under mocks: adopting a kept backup bucket, the bucket Job's bounds.

`run_component` (also used by the MinIO and cloud-storage tests) builds one
component under Pulumi mocks and records every registration with the options
the harness does not keep (import ID, ignore_changes), and the warnings logged.
"""

from __future__ import annotations


import pulumi
import pytest

from support import harness
from components.endpoint import S3Endpoint
from support.components import (
    ComponentRun,
    run_component,
    timeout_seconds,
)

KEEP_BACKUPS = "acme-backups-kept"
# The random suffix of a generated bucket name, as the provider would make it (a value of
# the test's own, so that a name ending with it is known to come from that resource).
BUCKET_SUFFIX = "5eed1e55"


def suffix_mocks() -> harness.Mocks:
    mocks = harness.Mocks()
    mocks.state_overrides = {"storage-backup-bucket-suffix": {"hex": BUCKET_SUFFIX}}
    return mocks


def storage_args(endpoint: S3Endpoint, **changes) -> dict:
    return {
        "endpoint": endpoint,
        "namespace": "cvat-acme",
        "workspace": "acme",
        "backup_bucket": KEEP_BACKUPS,
        "backup_bucket_prefix": "labeling-acme-backups",
        "workspace_prefix": "acme/",
        "retention_days": 30,
        "dataset_buckets": ["acme-images"],
        "credentials_secret_name": None,
        "server": None,
        **changes,
    }


def external_storage(**changes) -> ComponentRun:
    from components.storage import ObjectStorage

    def build():
        endpoint = S3Endpoint.from_settings("scaleway", "fr-par", "", "SCWXXXXXXXXXXXXXXXXX", "secret-key")
        s3 = endpoint.aws_provider("s3")
        ObjectStorage("storage", storage_args(endpoint, **changes), opts=pulumi.ResourceOptions(providers=[s3]))

    return run_component(build, suffix_mocks())


def in_cluster_storage(**changes) -> ComponentRun:
    from components.storage import ObjectStorage

    def build():
        endpoint = S3Endpoint("minio", "us-east-1", "http://minio.cvat-dev.svc:9000", "user", "password", in_cluster=True)
        ObjectStorage("storage", storage_args(endpoint, backup_bucket="", **changes))

    return run_component(build, suffix_mocks())


# ----- adopting a kept backup bucket -------------------------------------------

def test_a_kept_backup_bucket_is_imported_by_its_name():
    run = external_storage(adopt_backup_bucket=True)
    bucket = run.one("aws:s3/bucket:Bucket")
    assert run.options[bucket.name]["import_id"] == KEEP_BACKUPS
    # What the import is compared with: the name, and force_destroy, which only the
    # provider's state holds (never a replacement, which the engine refuses for an import).
    assert bucket.inputs == {"bucket": KEEP_BACKUPS, "forceDestroy": False}
    assert bucket.retain_on_delete
    # Its lifecycle rule is still this workspace's own, beside the bucket's other rules.
    rules = run.one("pulumi-python:dynamic/labeling:BucketLifecycleRules")
    assert rules.inputs["bucket"] == KEEP_BACKUPS and rules.inputs["rule_id_prefix"] == "labeling-acme"
    assert bucket.urn in rules.depends_on


@pytest.mark.parametrize("changes", [{}, {"adopt_backup_bucket": False}])
def test_a_new_backup_bucket_is_created_not_imported(changes):
    run = external_storage(**changes)
    bucket = run.one("aws:s3/bucket:Bucket")
    assert run.options[bucket.name]["import_id"] == ""
    assert bucket.inputs["bucket"] == KEEP_BACKUPS and bucket.retain_on_delete


def test_a_generated_bucket_name_is_never_imported():
    run = external_storage(backup_bucket="", adopt_backup_bucket=True)
    bucket = run.one("aws:s3/bucket:Bucket")
    assert run.options[bucket.name]["import_id"] == ""
    assert bucket.inputs["bucket"] == f"labeling-acme-backups-{BUCKET_SUFFIX}"


def test_the_bucket_keeps_its_urn_when_adopted():
    # Adoption must not rename the resource: an existing stack passes through it at every up.
    adopted = external_storage(adopt_backup_bucket=True).one("aws:s3/bucket:Bucket")
    created = external_storage().one("aws:s3/bucket:Bucket")
    assert adopted.urn == created.urn


# ----- the in-cluster bucket Job ------------------------------------------------

def test_bucket_job_is_bounded_and_replaced_when_it_failed():
    from components.storage import JOB_AWAIT_SECONDS, JOB_DEADLINE_SECONDS

    run = in_cluster_storage()
    job = run.one("kubernetes:batch/v1:Job", "ensure-buckets")
    annotations = job.inputs["metadata"]["annotations"]
    assert annotations["pulumi.com/replaceUnready"] == "true"
    deadline = job.inputs["spec"]["activeDeadlineSeconds"]
    assert deadline == JOB_DEADLINE_SECONDS > 0
    # Pulumi waits a little longer than the Job may run: the Job's own failure is what shows.
    awaited = int(annotations["pulumi.com/timeoutSeconds"])
    assert awaited == JOB_AWAIT_SECONDS
    assert deadline < awaited <= deadline + 300
    # The custom timeouts win over the annotation in pulumi-kubernetes: they must agree with it.
    assert timeout_seconds(job.custom_timeouts.create) == awaited
    assert timeout_seconds(job.custom_timeouts.update) == awaited
    # The script's own wait for the server fits in the deadline.
    env = {e["name"]: e.get("value") for e in job.inputs["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert int(env.get("WAIT_SECONDS") or 300) < deadline


# ----- the backup bucket's lifecycle rule ----------------------------------------

def job_env(run: ComponentRun) -> dict:
    job = run.one("kubernetes:batch/v1:Job", "ensure-buckets")
    return {e["name"]: e.get("value") for e in job.inputs["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_the_rule_cleans_up_temporary_uploads_and_never_expires_backups():
    rules = external_storage().one("pulumi-python:dynamic/labeling:BucketLifecycleRules")
    assert rules.inputs["prefix"] == "acme/database/.incoming/"
    assert (rules.inputs["expiration_days"], rules.inputs["abort_multipart_days"]) == (1, 1)
    # Nothing of the workspace but abandoned uploads is under the prefix (docs/backups.md).
    for key in ("acme/database/20261130T030000Z.dump", "acme/backups/20261130T030000Z.json", "acme/data/config", "acme/data-password"):
        assert not key.startswith(rules.inputs["prefix"]), key


def test_the_temporary_upload_prefix_is_the_one_of_the_backup_layout():
    from components.storage import INCOMING_PREFIX

    layout = (harness.ROOT / "docs" / "backups.md").read_text()
    assert f"`<key>/{INCOMING_PREFIX}<stamp>.dump`" in layout


@pytest.mark.parametrize("retention_days", [1, 30, 3650])
def test_the_retention_no_longer_reaches_the_rule(retention_days):
    external = external_storage(retention_days=retention_days).one("pulumi-python:dynamic/labeling:BucketLifecycleRules")
    assert external.inputs["expiration_days"] == 1
    env = job_env(in_cluster_storage(retention_days=retention_days))
    assert env["LIFECYCLE_EXPIRATION_DAYS"] == "1"
    assert not [name for name in env if "RETENTION" in name]


def test_the_in_cluster_job_puts_the_same_rule():
    external = external_storage().one("pulumi-python:dynamic/labeling:BucketLifecycleRules")
    env = job_env(in_cluster_storage())
    assert env["LIFECYCLE_PREFIX"] == external.inputs["prefix"] == "acme/database/.incoming/"
    assert env["LIFECYCLE_RULE_ID"] == external.inputs["rule_id_prefix"] == "labeling-acme"
    assert int(env["LIFECYCLE_EXPIRATION_DAYS"]) == external.inputs["expiration_days"]
    assert env["LIFECYCLE_BUCKET"] == f"labeling-acme-backups-{BUCKET_SUFFIX}" == env["BUCKETS"].split()[0]


@pytest.mark.parametrize(
    "stack",
    [
        "acme",  # a DNS-label stack: the ID earlier versions gave its rule, updated in place
        "acme_prod",  # look-alikes: the same workspace name (acme-prod), other keys
        "acme-prod",
        "Acme.Prod",
    ],
)
def test_the_rule_id_comes_from_the_workspace_key_not_the_workspace_name(stack):
    from components.config import dns_label, workspace_key
    from components.lifecycle import rule_id

    workspace, key = dns_label(stack), workspace_key("labeling", stack)
    external = external_storage(workspace=workspace, workspace_prefix=f"{key}/")
    rules = external.one("pulumi-python:dynamic/labeling:BucketLifecycleRules")
    assert rule_id(rules.inputs["rule_id_prefix"]) == f"labeling-{key}-backups"
    assert rules.inputs["prefix"] == f"{key}/database/.incoming/"
    env = job_env(in_cluster_storage(workspace=workspace, workspace_prefix=f"{key}/"))
    assert env["LIFECYCLE_RULE_ID"] == f"labeling-{key}"


def test_the_bucket_job_runs_again_when_the_rule_changes_only():
    def job_name(**changes):
        return in_cluster_storage(**changes).one("kubernetes:batch/v1:Job", "ensure-buckets").inputs["metadata"]["name"]

    base = job_name()
    assert base == job_name(retention_days=7)  # the Job does nothing with the retention
    assert base != job_name(workspace_prefix="acme-2/")
    assert base != job_name(dataset_buckets=["acme-images", "acme-videos"])


@pytest.mark.parametrize("workspace_prefix", ["", "/", "acme", "acme//", "acme/database/"])
def test_a_workspace_prefix_that_is_not_one_key_is_refused(workspace_prefix):
    from components.storage import lifecycle_rule_id_prefix

    with pytest.raises(ValueError, match="is not '<workspace key>/'"):
        lifecycle_rule_id_prefix(workspace_prefix)
