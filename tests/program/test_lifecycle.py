"""The lifecycle dynamic provider, against a real S3-compatible HTTP server."""

import base64
import hashlib
import socket
import time

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

import components.lifecycle as lifecycle
from components.lifecycle import BucketLifecycleRulesProvider, LifecycleRuleError, check_prefix, rule_id
from support.fault_proxy import FaultProxy
from support.s3_stub import StubS3Server
from support.servers import free_port

USER_RULE = {"ID": "user-archive", "Filter": {"Prefix": "archive/"}, "Status": "Enabled", "Expiration": {"Days": 365}}
# What the rule looked like before issue 10: the workspace's whole prefix expired
# a week after the retention.
OLD_RULE = {
    "ID": "labeling-acme-backups",
    "Filter": {"Prefix": "acme/"},
    "Status": "Enabled",
    "Expiration": {"Days": 37},
    "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
}
# A workspace's objects (docs/backups.md): none may ever be expired by the rule.
BACKUP_KEYS = [
    "acme/database/20261130T030000Z.dump",
    "acme/backups/20261130T030000Z.json",
    "acme/data/config",
    "acme/data/data/00/0123456789abcdef",
    "acme/data-password",
]


def props(settings, bucket, **changes):
    values = {
        **settings,
        "bucket": bucket,
        "rule_id_prefix": "labeling-acme",
        "prefix": "acme/database/.incoming/",
        "expiration_days": 1,
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


def expired_by(rules, key):
    """The IDs of the rules that would expire `key` (prefix filters, as this project writes them)."""
    return [
        rule["ID"]
        for rule in rules.values()
        if "Expiration" in rule and key.startswith(rule.get("Filter", {}).get("Prefix", rule.get("Prefix", "")))
    ]


def localhost(url):
    """The same server under a host name: only path-style requests reach it (`<bucket>.localhost` does not resolve)."""
    return url.replace("127.0.0.1", "localhost")


def test_create_puts_the_clean_up_rule(s3, s3_settings, bucket):
    result = BucketLifecycleRulesProvider().create(props(s3_settings, bucket))
    assert result.outs["supported"] is True
    assert result.id == f"{bucket}/labeling-acme"
    rules = rules_of(s3, bucket)
    assert set(rules) == {"labeling-acme-backups"} == {rule_id("labeling-acme")}
    rule = rules["labeling-acme-backups"]
    assert rule["Filter"] == {"Prefix": "acme/database/.incoming/"}
    assert rule["Expiration"] == {"Days": 1}
    assert rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    assert rule["Status"] == "Enabled"


def test_the_rule_never_expires_a_backup_only_abandoned_uploads(s3, s3_settings, bucket):
    BucketLifecycleRulesProvider().create(props(s3_settings, bucket))
    rules = rules_of(s3, bucket)
    for key in BACKUP_KEYS:
        assert expired_by(rules, key) == [], key
    assert expired_by(rules, "acme/database/.incoming/20261130T030000Z.dump") == ["labeling-acme-backups"]


@pytest.mark.parametrize(
    "prefix",
    ["acme/", "", "acme/database/", "acme/database/.incoming", "/.incoming/", ".incoming/", None],
)
def test_a_rule_on_anything_but_temporary_uploads_is_refused(s3, s3_settings, bucket, prefix):
    with pytest.raises(LifecycleRuleError, match="never expires anything else"):
        BucketLifecycleRulesProvider().create(props(s3_settings, bucket, prefix=prefix))
    assert rules_of(s3, bucket) == {}
    with pytest.raises(LifecycleRuleError):
        check_prefix(prefix)


def test_an_existing_stacks_rule_is_updated_in_place_and_expires_backups_no_more(s3, s3_settings, bucket):
    # The bucket as an earlier version left it: its rule on the whole prefix, and a rule of the user's.
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [USER_RULE, OLD_RULE]})
    assert expired_by(rules_of(s3, bucket), BACKUP_KEYS[0]) == ["labeling-acme-backups"]
    old_state = props(s3_settings, bucket, prefix="acme/", expiration_days=37, supported=True)
    new = props(s3_settings, bucket)
    provider = BucketLifecycleRulesProvider()
    diff = provider.diff(f"{bucket}/labeling-acme", old_state, new)
    assert diff.changes and diff.replaces == []  # an update of the same rule, not a replacement
    result = provider.update(f"{bucket}/labeling-acme", old_state, new)
    assert (result.outs["prefix"], result.outs["expiration_days"]) == ("acme/database/.incoming/", 1)
    rules = rules_of(s3, bucket)
    assert set(rules) == {"user-archive", "labeling-acme-backups"}
    assert rules["labeling-acme-backups"]["Filter"] == {"Prefix": "acme/database/.incoming/"}
    assert rules["user-archive"] == USER_RULE
    for key in BACKUP_KEYS:
        assert expired_by(rules, key) == [], key


def test_delete_removes_only_its_rules(s3, s3_settings, bucket):
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [USER_RULE]})
    provider = BucketLifecycleRulesProvider()
    outs = provider.create(props(s3_settings, bucket)).outs
    provider.delete(f"{bucket}/labeling-acme", outs)
    assert rules_of(s3, bucket) == {"user-archive": USER_RULE}


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
    beta = provider.create(props(s3_settings, bucket, rule_id_prefix="labeling-beta", prefix="beta/database/.incoming/")).outs
    assert len(rules_of(s3, bucket)) == 2
    provider.delete("x", acme)
    rules = rules_of(s3, bucket)
    assert set(rules) == {"labeling-beta-backups"}
    assert rules["labeling-beta-backups"]["Filter"] == {"Prefix": "beta/database/.incoming/"}
    provider.delete("y", beta)
    assert rules_of(s3, bucket) == {}


def test_delete_leaves_a_rule_of_the_same_id_that_another_workspace_wrote(s3, s3_settings, bucket):
    # Before rule IDs came from the workspace key, `acme_prod` and `acme-prod` both kept
    # `labeling-acme-prod-backups`. When `acme_prod` moves to its own ID, the old rule is
    # deleted as part of the replacement: only if it is still the one `acme_prod` wrote.
    provider = BucketLifecycleRulesProvider()
    theirs = props(s3_settings, bucket, rule_id_prefix="labeling-acme-prod", prefix="acme-prod/database/.incoming/")
    provider.create(theirs)
    our_old_state = props(s3_settings, bucket, rule_id_prefix="labeling-acme-prod", prefix="acme-prod-1a2b3c4d/")
    provider.delete(f"{bucket}/labeling-acme-prod", our_old_state)
    assert rules_of(s3, bucket)["labeling-acme-prod-backups"]["Filter"] == {"Prefix": "acme-prod/database/.incoming/"}
    # Its own rule (same prefix as in its state) it does delete.
    provider.delete(f"{bucket}/labeling-acme-prod", theirs)
    assert rules_of(s3, bucket) == {}


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
    assert provider.read(f"{bucket}/labeling-acme", desired).outs["expiration_days"] == 1


def test_read_reports_a_rule_changed_by_hand(s3, s3_settings, bucket):
    provider = BucketLifecycleRulesProvider()
    desired = props(s3_settings, bucket)
    provider.create(desired)
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [OLD_RULE]})
    state = provider.read(f"{bucket}/labeling-acme", desired).outs
    assert (state["prefix"], state["expiration_days"]) == ("acme/", 37)
    assert provider.diff(f"{bucket}/labeling-acme", state, desired).changes


def test_diff(s3_settings):
    provider = BucketLifecycleRulesProvider()
    old = {**props(s3_settings, "backups"), "supported": True}
    assert not provider.diff("id", old, props(s3_settings, "backups")).changes
    days = provider.diff("id", old, props(s3_settings, "backups", expiration_days=2))
    assert days.changes and days.replaces == []
    prefix = provider.diff("id", old, props(s3_settings, "backups", prefix="acme-2/database/.incoming/"))
    assert prefix.changes and prefix.replaces == []
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


def test_content_md5_of_the_body_sent_is_sent_path_style():
    # The stub refuses the rules without a correct Content-MD5, as some servers do.
    with StubS3Server("md5-required") as stub:
        settings = {"endpoint_url": localhost(stub.url), "region": "fr-par", "access_key": "a", "secret_key": "b"}
        created = BucketLifecycleRulesProvider().create(props(settings, "backups"))
        assert created.outs["supported"] is True
        (put,) = [r for r in stub.requests if r.method == "PUT" and "lifecycle" in r.query]
    assert put.headers["Content-MD5"] == base64.b64encode(hashlib.md5(put.body).digest()).decode()
    assert b"<ID>labeling-acme-backups</ID>" in put.body and b"<Prefix>acme/database/.incoming/</Prefix>" in put.body
    # Path-style addressing: the bucket is in the path and the host is the endpoint's.
    assert put.path == "/backups" and put.headers["Host"] == localhost(stub.url).split("//")[1]


def test_other_errors_fail_the_operation():
    with StubS3Server("access-denied") as stub:
        settings = {"endpoint_url": stub.url, "region": "fr-par", "access_key": "a", "secret_key": "b"}
        with pytest.raises(ClientError, match="AccessDenied"):
            BucketLifecycleRulesProvider().create(props(settings, "backups"))


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
        stored = stub.lifecycle["backups"]
    assert stored.count(b"<Rule>") == 1
    assert b"<Expiration><Days>1</Days></Expiration>" in stored
    assert b"<AbortIncompleteMultipartUpload><DaysAfterInitiation>1</DaysAfterInitiation>" in stored


def test_provider_unpickles_in_a_fresh_process_from_the_project_directory():
    # The dynamic provider host starts in the project directory and imports the
    # provider's module by name: this must work without the test's import paths.
    import subprocess
    import sys

    from pulumi.dynamic.dynamic import serialize_provider

    from support.harness import ROOT

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
    assert elsewhere.returncode != 0 and "No module named 'components'" in elsewhere.stderr
    pickled = base64.b64decode(blob)
    assert b"components.lifecycle" in pickled and b"BucketLifecycleRulesProvider" in pickled
    assert b"put_bucket_lifecycle_configuration" not in pickled  # no code of the provider travels in the state


# ----- delete when the endpoint cannot be used ------------------------------------
# The rule only expires temporary uploads: a destroy that cannot remove it leaves it
# behind with a warning (on stderr: what the dynamic provider host shows the user)
# instead of stopping half-way. Other answers of the server still fail the delete.

SECRET = "never-shown-secret-key"


def left_behind_warning(stderr, bucket, reason):
    """The one warning line of a rule left on `bucket`, after checking what it says."""
    (line,) = [line for line in stderr.splitlines() if line.startswith("warning: ")]
    assert "lifecycle rule 'labeling-acme-backups' was not removed" in line
    assert f"from bucket {bucket!r}" in line
    assert reason in line, line
    assert "acme/database/.incoming/" in line and "The destroy goes on" in line
    assert SECRET not in line
    return line


def timed_delete(values):
    started = time.monotonic()
    result = BucketLifecycleRulesProvider().delete(f"{values['bucket']}/labeling-acme", values)
    return result, time.monotonic() - started


@pytest.mark.parametrize(
    "url",
    [pytest.param("closed-port", id="connection-refused"), pytest.param("http://labeling-test.invalid:9000", id="dns-failure")],
)
def test_delete_with_an_unreachable_endpoint_warns_and_returns(capsys, url):
    url = f"http://127.0.0.1:{free_port()}" if url == "closed-port" else url
    settings = {"endpoint_url": url, "region": "fr-par", "access_key": "a", "secret_key": SECRET}
    result, elapsed = timed_delete(props(settings, "backups"))
    assert result is None
    assert elapsed < 15  # refused at once, even with the client's retries
    line = left_behind_warning(capsys.readouterr().err, "backups", "the endpoint cannot be reached (EndpointConnectionError")
    assert url in line


def test_delete_with_a_stalled_endpoint_gives_up_at_the_deadline(capsys, monkeypatch, moto, s3, s3_settings, bucket):
    # The server accepts the connection and never answers: without a deadline, the
    # client's read timeout and retries would hold the destroy 4 x 60 s.
    BucketLifecycleRulesProvider().create(props(s3_settings, bucket))
    monkeypatch.setattr(lifecycle, "DELETE_DEADLINE_SECONDS", 2.0)
    with FaultProxy(moto.url) as proxy:
        stall = proxy.inject("stall", method="GET", query_contains="lifecycle", stall_seconds=120)
        result, elapsed = timed_delete(props({**s3_settings, "endpoint_url": proxy.url}, bucket, secret_key=SECRET))
        assert stall.stalled.is_set()  # the request did reach the proxy, and hung there
    assert result is None
    assert 2.0 <= elapsed < 6
    left_behind_warning(capsys.readouterr().err, bucket, "the endpoint did not answer within 2 s")
    assert set(rules_of(s3, bucket)) == {"labeling-acme-backups"}  # left behind, as said


def test_delete_with_a_blackholed_endpoint_gives_up_at_the_deadline(capsys, monkeypatch):
    # A listening socket whose backlog is full drops new connections' SYNs: connects hang.
    with socket.socket() as listener, socket.socket() as queued:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        queued.connect(listener.getsockname())
        monkeypatch.setattr(lifecycle, "DELETE_DEADLINE_SECONDS", 2.0)
        settings = {"endpoint_url": f"http://127.0.0.1:{listener.getsockname()[1]}", "region": "fr-par",
                    "access_key": "a", "secret_key": SECRET}
        result, elapsed = timed_delete(props(settings, "backups"))
    assert result is None and 2.0 <= elapsed < 6
    left_behind_warning(capsys.readouterr().err, "backups", "the endpoint did not answer within 2 s")


def test_delete_reports_a_connect_timeout_as_unreachable(capsys, monkeypatch):
    # The same blackhole with s3_client(attempts=1) (connect timeout 5 s, botocore makes
    # 2 attempts): the client's own ConnectTimeoutError, within the (default) deadline,
    # is reported as such.
    from botocore.config import Config

    from components import endpoint

    # The client's own settings but a connect timeout of 0.5 s, so the test takes 1 s, not 10.
    real_config = endpoint.client_config
    monkeypatch.setattr(endpoint, "client_config",
                        lambda attempts=3: real_config(attempts).merge(Config(connect_timeout=0.5)))
    monkeypatch.setattr(lifecycle, "client_from_inputs", lambda p: endpoint.s3_client(
        p["endpoint_url"], p["region"], p["access_key"], p["secret_key"], attempts=1))
    with socket.socket() as listener, socket.socket() as queued:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        queued.connect(listener.getsockname())
        settings = {"endpoint_url": f"http://127.0.0.1:{listener.getsockname()[1]}", "region": "fr-par",
                    "access_key": "a", "secret_key": SECRET}
        result, elapsed = timed_delete(props(settings, "backups"))
    assert result is None and elapsed < lifecycle.DELETE_DEADLINE_SECONDS
    left_behind_warning(capsys.readouterr().err, "backups", "the endpoint cannot be reached (ConnectTimeoutError")


def test_delete_with_connections_closed_without_answer_warns(capsys, moto, s3, s3_settings, bucket):
    BucketLifecycleRulesProvider().create(props(s3_settings, bucket))
    with FaultProxy(moto.url) as proxy:
        proxy.inject("drop", method="GET", query_contains="lifecycle")
        result, _ = timed_delete(props({**s3_settings, "endpoint_url": proxy.url}, bucket))
        faults = [seen.fault for seen in proxy.requests]
        assert len(faults) >= 3 and set(faults) == {"drop"}  # the client retried: every attempt was dropped
    assert result is None
    left_behind_warning(capsys.readouterr().err, bucket, "the endpoint cannot be reached (ConnectionClosedError")
    assert set(rules_of(s3, bucket)) == {"labeling-acme-backups"}


def test_delete_with_refused_keys_warns_and_returns(capsys, moto_with_auth):
    # The stack's keys were rotated or revoked: the destroy is not held by a rule that
    # only cleans temporary uploads.
    s3 = moto_with_auth.client()
    bucket = f"test-{time.monotonic_ns()}"
    s3.create_bucket(Bucket=bucket)
    BucketLifecycleRulesProvider().create(props(moto_with_auth.settings(), bucket))
    result, _ = timed_delete(props(moto_with_auth.settings(), bucket, secret_key=SECRET))
    assert result is None
    left_behind_warning(capsys.readouterr().err, bucket, "refused the S3 keys kept in the stack's state (SignatureDoesNotMatch)")
    assert set(rules_of(s3, bucket)) == {"labeling-acme-backups"}
    # With the right keys, the same delete removes it, without a warning.
    BucketLifecycleRulesProvider().delete(f"{bucket}/labeling-acme", props(moto_with_auth.settings(), bucket))
    assert rules_of(s3, bucket) == {} and capsys.readouterr().err == ""


def test_delete_still_fails_when_the_server_answers_with_an_error(capsys, moto, s3, s3_settings, bucket):
    # A 5xx after the client's retries is transient: the destroy stops, and a second one
    # removes the rule.
    BucketLifecycleRulesProvider().create(props(s3_settings, bucket))
    with FaultProxy(moto.url) as proxy:
        values = props({**s3_settings, "endpoint_url": proxy.url}, bucket)
        proxy.inject("error", method="GET", query_contains="lifecycle")
        with pytest.raises(ClientError, match="InternalError"):
            BucketLifecycleRulesProvider().delete(f"{bucket}/labeling-acme", values)
        assert set(rules_of(s3, bucket)) == {"labeling-acme-backups"}
        proxy.clear()
        BucketLifecycleRulesProvider().delete(f"{bucket}/labeling-acme", values)
    assert rules_of(s3, bucket) == {}
    assert "warning" not in capsys.readouterr().err


@pytest.mark.parametrize(
    "error",
    [
        EndpointConnectionError(endpoint_url="https://s3.example.net/backups?lifecycle"),
        ConnectTimeoutError(endpoint_url="https://s3.example.net/backups?lifecycle"),
        ReadTimeoutError(endpoint_url="https://s3.example.net/backups?lifecycle"),
        ConnectionClosedError(endpoint_url="https://s3.example.net/backups?lifecycle"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_each_way_of_being_unreachable_is_left_with_a_warning(capsys, monkeypatch, s3_settings, error):
    def unreachable(_):
        raise error

    monkeypatch.setattr(lifecycle, "remove_rules", unreachable)
    assert BucketLifecycleRulesProvider().delete("backups/labeling-acme", props(s3_settings, "backups")) is None
    left_behind_warning(capsys.readouterr().err, "backups", f"the endpoint cannot be reached ({type(error).__name__}")


@pytest.mark.parametrize(
    "error",
    [
        ClientError({"Error": {"Code": "InternalError"}, "ResponseMetadata": {"HTTPStatusCode": 500}}, "GetBucketLifecycleConfiguration"),
        ClientError({"Error": {"Code": "MalformedXML"}, "ResponseMetadata": {"HTTPStatusCode": 400}}, "PutBucketLifecycleConfiguration"),
        KeyError("bucket"),
    ],
    ids=["InternalError", "MalformedXML", "KeyError"],
)
def test_other_errors_still_fail_the_delete(capsys, monkeypatch, s3_settings, error):
    def failing(_):
        raise error

    monkeypatch.setattr(lifecycle, "remove_rules", failing)
    with pytest.raises(type(error)) as raised:
        BucketLifecycleRulesProvider().delete("backups/labeling-acme", props(s3_settings, "backups"))
    assert raised.value is error
    assert capsys.readouterr().err == ""


def test_the_warning_reaches_the_stderr_of_the_dynamic_provider_host():
    # The real host (`python -m pulumi.dynamic`, as pulumi-resource-pulumi-python runs it)
    # has no engine connection: pulumi.log.warn would print to its stderr, which the
    # engine relays to the user. The Delete call over gRPC succeeds, and stderr has the line.
    import asyncio
    import subprocess
    import sys

    import grpc
    from pulumi.dynamic.dynamic import serialize_provider
    from pulumi.runtime import proto, rpc
    from pulumi.runtime.proto import provider_pb2_grpc

    from support.harness import ROOT

    settings = {"endpoint_url": f"http://127.0.0.1:{free_port()}", "region": "fr-par", "access_key": "a", "secret_key": SECRET}
    values = {**props(settings, "backups"), "supported": True, "__provider": serialize_provider(BucketLifecycleRulesProvider())}
    host = subprocess.Popen([sys.executable, "-u", "-m", "pulumi.dynamic", "127.0.0.1:1"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={"PATH": "/usr/bin:/bin"})
    try:
        port = host.stdout.readline().strip()
        assert port.isdigit(), host.stderr.read() if host.poll() is not None else port
        loop = asyncio.new_event_loop()
        try:
            properties = loop.run_until_complete(rpc.serialize_properties(values, {}))
        finally:
            loop.close()
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = provider_pb2_grpc.ResourceProviderStub(channel)
            stub.Delete(proto.DeleteRequest(id="backups/labeling-acme", urn="urn:pulumi:acme::labeling::x::y",
                                            properties=properties), timeout=60)
    finally:
        host.kill()
        _, stderr = host.communicate(timeout=10)
    left_behind_warning(stderr, "backups", "the endpoint cannot be reached (EndpointConnectionError")
