"""The lifecycle dynamic provider, against a real S3-compatible HTTP server."""

import pytest
from botocore.exceptions import ClientError

from components.endpoint import s3_client
from components.lifecycle import BucketLifecycleRulesProvider, rule_ids
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
    expire_id, abort_id = rule_ids("labeling-acme")
    assert set(rules) == {expire_id, abort_id}
    assert rules[expire_id]["Expiration"] == {"Days": 30}
    assert rules[expire_id]["Filter"]["Prefix"] == "acme/"
    assert rules[expire_id]["Status"] == "Enabled"
    assert rules[abort_id]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    assert rules[abort_id]["Filter"]["Prefix"] == "acme/"


def test_update_changes_the_days_and_keeps_other_rules(s3, s3_settings, bucket):
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [USER_RULE]})
    provider = BucketLifecycleRulesProvider()
    old = provider.create(props(s3_settings, bucket)).outs
    new = props(s3_settings, bucket, expiration_days=7)
    result = provider.update(f"{bucket}/labeling-acme", old, new)
    assert result.outs["expiration_days"] == 7
    rules = rules_of(s3, bucket)
    assert rules[rule_ids("labeling-acme")[0]]["Expiration"] == {"Days": 7}
    assert rules["user-archive"]["Expiration"] == {"Days": 365}
    assert len(rules) == 3


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
    assert len(rules_of(s3, bucket)) == 4
    provider.delete("x", acme)
    rules = rules_of(s3, bucket)
    assert set(rules) == set(rule_ids("labeling-beta"))
    assert rules[rule_ids("labeling-beta")[0]]["Expiration"] == {"Days": 5}
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
    endpoint = provider.diff("id", old, props({**s3_settings, "endpoint_url": "https://s3.nl-ams.scw.cloud"}, "backups"))
    assert endpoint.replaces == ["endpoint_url"]


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
        assert puts and b"labeling-acme-expire-backups" in puts[-1].body
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


def test_provider_pickles_by_reference_for_the_dynamic_provider_host():
    # The dynamic provider host imports the provider's module from the project directory.
    from pulumi.dynamic.dynamic import serialize_provider

    import base64

    import dill

    restored = dill.loads(base64.b64decode(serialize_provider(BucketLifecycleRulesProvider())))
    assert type(restored).__module__ == "components.lifecycle"
