"""The lifecycle dynamic provider, against a real S3-compatible HTTP server."""

import pytest
from botocore.exceptions import ClientError

from components.endpoint import s3_client
from components.lifecycle import BucketLifecycleRulesProvider, rule_id
from s3_stub import StubS3Server

USER_RULE = {"ID": "user-archive", "Filter": {"Prefix": "archive/"}, "Status": "Enabled", "Expiration": {"Days": 365}}


def props(settings, bucket, **changes):
    values = {
        **settings,
        "bucket": bucket,
        "rule_id_prefix": "labeling-acme",
        "prefix": "acme/",
        "expiration_days": 30,
        "abort_multipart_days": 1,
    }
    values.update(changes)
    return values


def rules_of(s3, bucket):
    try:
        return {rule["ID"]: rule for rule in s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
    except ClientError as error:
        if error.response["Error"]["Code"] == "NoSuchLifecycleConfiguration":
            return {}
        raise


def test_create_puts_expiry_and_abort_rules(s3, s3_settings, bucket):
    result = BucketLifecycleRulesProvider().create(props(s3_settings, bucket))
    assert result.outs["supported"] is True
    assert result.id == f"{bucket}/labeling-acme"
    rules = rules_of(s3, bucket)
    assert set(rules) == {"labeling-acme-backups"} == {rule_id("labeling-acme")}
    rule = rules["labeling-acme-backups"]
    assert rule["Expiration"] == {"Days": 30}
    assert rule["Filter"]["Prefix"] == "acme/"
    assert rule["Status"] == "Enabled"
    assert rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}


def test_update_changes_the_days_and_keeps_other_rules(s3, s3_settings, bucket):
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [USER_RULE]})
    provider = BucketLifecycleRulesProvider()
    old = provider.create(props(s3_settings, bucket)).outs
    new = props(s3_settings, bucket, expiration_days=7)
    result = provider.update(f"{bucket}/labeling-acme", old, new)
    assert result.outs["expiration_days"] == 7
    rules = rules_of(s3, bucket)
    assert rules["labeling-acme-backups"]["Expiration"] == {"Days": 7}
    assert rules["user-archive"]["Expiration"] == {"Days": 365}
    assert len(rules) == 2


def test_delete_removes_only_its_rules(s3, s3_settings, bucket):
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [USER_RULE]})
    provider = BucketLifecycleRulesProvider()
    outs = provider.create(props(s3_settings, bucket)).outs
    provider.delete(f"{bucket}/labeling-acme", outs)
    assert set(rules_of(s3, bucket)) == {"user-archive"}


def test_delete_leaves_no_configuration_when_none_remains(s3, s3_settings, bucket):
    provider = BucketLifecycleRulesProvider()
    outs = provider.create(props(s3_settings, bucket)).outs
    provider.delete(f"{bucket}/labeling-acme", outs)
    assert rules_of(s3, bucket) == {}
    # Deleting again, or on a bucket that is gone, is not an error.
    provider.delete(f"{bucket}/labeling-acme", outs)
    provider.delete("gone/labeling-acme", props(s3_settings, "bucket-that-does-not-exist"))


def test_two_workspaces_share_a_bucket_without_touching_each_other(s3, s3_settings, bucket):
    provider = BucketLifecycleRulesProvider()
    acme = provider.create(props(s3_settings, bucket)).outs
    beta = provider.create(props(s3_settings, bucket, rule_id_prefix="labeling-beta", prefix="beta/", expiration_days=5)).outs
    assert len(rules_of(s3, bucket)) == 2
    provider.delete("x", acme)
    rules = rules_of(s3, bucket)
    assert set(rules) == {"labeling-beta-backups"}
    assert rules["labeling-beta-backups"]["Expiration"] == {"Days": 5}
    provider.delete("y", beta)


def test_read_reports_drift_that_diff_then_repairs(s3, s3_settings, bucket):
    provider = BucketLifecycleRulesProvider()
    desired = props(s3_settings, bucket)
    provider.create(desired)
    s3.delete_bucket_lifecycle(Bucket=bucket)
    state = provider.read(f"{bucket}/labeling-acme", desired).outs
    assert state["expiration_days"] is None
    diff = provider.diff(f"{bucket}/labeling-acme", state, desired)
    assert diff.changes and not diff.replaces
    provider.update(f"{bucket}/labeling-acme", state, desired)
    assert provider.read(f"{bucket}/labeling-acme", desired).outs["expiration_days"] == 30


def test_diff(s3_settings):
    provider = BucketLifecycleRulesProvider()
    old = {**props(s3_settings, "backups"), "supported": True}
    assert not provider.diff("id", old, props(s3_settings, "backups")).changes
    days = provider.diff("id", old, props(s3_settings, "backups", expiration_days=7))
    assert days.changes and days.replaces == []
    keys = provider.diff("id", old, props(s3_settings, "backups", secret_key="rotated"))
    assert keys.changes and keys.replaces == []
    moved = provider.diff("id", old, props(s3_settings, "other-backups"))
    assert moved.changes and moved.replaces == ["bucket"]
    # The same bucket under another URL is updated in place: a replacement would
    # create the rule and then delete it as the old one.
    endpoint = provider.diff("id", old, props({**s3_settings, "endpoint_url": "https://s3.example.net"}, "backups"))
    assert endpoint.changes and endpoint.replaces == []
    renamed = provider.diff("id", old, props(s3_settings, "backups", rule_id_prefix="labeling-other"))
    assert renamed.replaces == ["rule_id_prefix"]


def test_server_without_lifecycle_api_is_reported_not_failed():
    with StubS3Server("no-lifecycle") as stub:
        settings = {"endpoint_url": stub.url, "region": "fr-par", "access_key": "a", "secret_key": "b"}
        provider = BucketLifecycleRulesProvider()
        created = provider.create(props(settings, "backups"))
        assert created.outs["supported"] is False
        assert provider.update("id", created.outs, props(settings, "backups", expiration_days=3)).outs["supported"] is False
        assert provider.read("id", created.outs).outs["supported"] is False
        provider.delete("id", created.outs)
        assert any("lifecycle" in request.query for request in stub.requests)


def test_content_md5_is_sent_for_servers_that_require_it():
    # The stub refuses the rules without a correct Content-MD5, as some servers do.
    with StubS3Server("md5-required") as stub:
        settings = {"endpoint_url": stub.url, "region": "fr-par", "access_key": "a", "secret_key": "b"}
        created = BucketLifecycleRulesProvider().create(props(settings, "backups"))
        assert created.outs["supported"] is True
        puts = [r for r in stub.requests if r.method == "PUT" and "lifecycle" in r.query]
        assert puts and b"<ID>labeling-acme-backups</ID>" in puts[-1].body
        # Path-style addressing: the bucket is in the path, not the host name.
        assert puts[-1].path == "/backups"


def test_other_errors_fail_the_operation():
    with StubS3Server("access-denied") as stub:
        settings = {"endpoint_url": stub.url, "region": "fr-par", "access_key": "a", "secret_key": "b"}
        with pytest.raises(ClientError, match="AccessDenied"):
            BucketLifecycleRulesProvider().create(props(settings, "backups"))


def test_client_uses_path_style_and_checksums_only_when_required(s3_settings):
    client = s3_client(**s3_settings)
    config = client.meta.config
    assert config.s3["addressing_style"] == "path"
    assert config.request_checksum_calculation == "when_required"
    assert config.response_checksum_validation == "when_required"


def test_read_of_a_deleted_bucket_reports_the_resource_gone(s3, s3_settings, bucket):
    provider = BucketLifecycleRulesProvider()
    outs = provider.create(props(s3_settings, bucket)).outs
    s3.delete_bucket_lifecycle(Bucket=bucket)
    s3.delete_bucket(Bucket=bucket)
    result = provider.read(f"{bucket}/labeling-acme", outs)
    assert result.id == "" and result.outs == {}


def test_rules_are_accepted_by_servers_that_want_an_expiry_in_every_rule():
    # MinIO refuses a rule whose only action is AbortIncompleteMultipartUpload.
    with StubS3Server("minio-rules") as stub:
        settings = {"endpoint_url": stub.url, "region": "minio", "access_key": "a", "secret_key": "b"}
        assert BucketLifecycleRulesProvider().create(props(settings, "backups")).outs["supported"] is True


def test_provider_unpickles_in_a_fresh_process_from_the_project_directory():
    # The dynamic provider host starts in the project directory and imports the
    # provider's module by name: this must work without the test's import paths.
    import base64
    import subprocess
    import sys

    from pulumi.dynamic.dynamic import serialize_provider

    from harness import ROOT

    blob = serialize_provider(BucketLifecycleRulesProvider())
    code = (
        "import base64, sys, dill; "
        "p = dill.loads(base64.b64decode(sys.argv[1])); "
        "print(type(p).__module__, type(p).__name__)"
    )
    result = subprocess.run([sys.executable, "-c", code, blob], cwd=ROOT, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["components.lifecycle", "BucketLifecycleRulesProvider"]
    # And the pickle is a reference, not a copy of the code: outside the project it cannot load.
    elsewhere = subprocess.run([sys.executable, "-c", code, blob], cwd="/", capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert elsewhere.returncode != 0 and "components" in elsewhere.stderr
    assert base64.b64decode(blob)
