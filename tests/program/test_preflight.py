"""The preflight (components/preflight.py): what is checked over the network before anything is created.

Dataset buckets that exist and list with the configured keys, a configured backup bucket
to adopt or refuse, and an endpoint name that resolves to an address egressAllow keeps
closed. The checks run against a real S3 server (moto) and only ever list.
"""

import uuid

import pytest

from components.preflight import (
    BackupBucketError,
    DatasetError,
    bucket_status,
    check_backup_bucket,
    closed_endpoint_addresses,
)
from support.servers import pod_visible_url
from support.harness import render, render_failure
from support.s3_stub import StubS3Server
from support.stacks import SECRETS
from support.dataset_buckets import DEV, keys_denied, new_bucket, s3_config


# ----- preflight ------------------------------------------------------------

def test_preflight_passes_for_readable_buckets(moto):
    buckets = [new_bucket(moto), new_bucket(moto, {"a.jpg": 1})]
    rendering = render(s3_config(moto, buckets), stack="acme", secrets=SECRETS, preflight=True)
    assert rendering.outputs["datasetBuckets"] == buckets


def test_preflight_names_a_missing_bucket_before_anything_is_created(moto):
    present, missing = new_bucket(moto), f"missing-{uuid.uuid4().hex[:8]}"
    error, registrations = render_failure(s3_config(moto, [present, missing]), stack="acme", secrets=SECRETS, preflight=True)
    assert isinstance(error, DatasetError) and registrations == []
    assert error.problems == [(missing, f"does not exist on {pod_visible_url(moto.url)}")]
    assert f"- {missing}: does not exist" in str(error)


def test_preflight_reports_wrong_credentials(moto_with_auth):
    bucket = f"data-{uuid.uuid4().hex[:10]}"
    moto_with_auth.client().create_bucket(Bucket=bucket)
    config = s3_config(moto_with_auth, [bucket], storageSecretKey="not-the-secret-key")
    error, registrations = render_failure(config, stack="acme", secrets=SECRETS, preflight=True)
    assert registrations == []
    ((name, reason),) = error.problems
    assert name == bucket and reason.startswith("access denied (SignatureDoesNotMatch)")


def test_preflight_reports_an_unreachable_endpoint_once():
    from support.servers import free_port

    url = f"http://127.0.0.1:{free_port()}"
    config = {**s3_config(type("S", (), {"url": url, "access_key": "a", "secret_key": "b"}), ["one-bucket", "two-bucket"])}
    error, registrations = render_failure(config, stack="acme", secrets=SECRETS, preflight=True)
    assert registrations == []
    assert error.problems[0][0] == "one-bucket" and f"endpoint {pod_visible_url(url)} is unreachable" in error.problems[0][1]
    assert error.problems[1] == ("two-bucket", "not checked: the endpoint is unreachable")


def test_preflight_reports_a_wrong_region():
    with StubS3Server("wrong-region") as stub:
        config = {**s3_config(type("S", (), {"url": stub.url, "access_key": "a", "secret_key": "b"}), ["images"]),
                  "storageRegion": "fr-par"}
        error, _ = render_failure(config, stack="acme", secrets=SECRETS, preflight=True)
    ((name, reason),) = error.problems
    assert name == "images" and "another region" in reason and "set storageRegion to nl-ams" in reason


def test_preflight_never_writes(moto):
    bucket = new_bucket(moto, {"a.jpg": 3})
    before = moto.client().list_objects_v2(Bucket=bucket)["Contents"]
    render(s3_config(moto, [bucket]), stack="acme", secrets=SECRETS, preflight=True)
    assert moto.client().list_objects_v2(Bucket=bucket)["Contents"] == before


def test_in_cluster_minio_skips_the_preflight():
    render(DEV, stack="dev", preflight=True)  # the in-cluster server is not reachable from here: no check


# ----- the backup bucket preflight ------------------------------------------

def under_program(config, action, stack="acme"):
    """What `action(load_config())` returns for this stack config, run as the program would run it."""
    import pulumi
    from pulumi.runtime import settings
    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    from support import harness
    from components.config import load_config

    answer = {}
    settings.ROOT.set(None)
    mocks = harness.Mocks()
    pulumi.runtime.set_mocks(mocks, project="labeling", stack=stack, preview=False, monitor=harness.RecordingMonitor(mocks))
    pulumi.runtime.set_all_config(harness.encode_config(config), [f"labeling:{key}" for key in SECRETS])
    _sync_await(run_pulumi_func(lambda: answer.update(value=action(load_config()))))
    return answer["value"]


def backup_bucket_check(config, stack="acme"):
    """check_backup_bucket on the config the program would load for this stack."""
    return under_program(config, check_backup_bucket, stack)


def test_a_kept_usable_backup_bucket_is_adopted(moto):
    kept = new_bucket(moto, {"acme/database/2026-01-01.dump": 5})
    before = moto.client().list_objects_v2(Bucket=kept)["Contents"]
    assert backup_bucket_check(s3_config(moto, [], backupBucket=kept)) is True
    assert moto.client().list_objects_v2(Bucket=kept)["Contents"] == before  # only listed


def test_a_missing_backup_bucket_is_to_be_created(moto):
    assert backup_bucket_check(s3_config(moto, [], backupBucket=f"missing-{uuid.uuid4().hex[:8]}")) is False


def test_a_backup_bucket_these_keys_may_not_use_is_refused_by_name(moto_with_auth):
    taken = new_bucket(moto_with_auth)
    config = s3_config(moto_with_auth, [], backupBucket=taken, **{
        ("storageAccessKey" if key == "access_key" else "storageSecretKey"): value
        for key, value in keys_denied(moto_with_auth, taken).items()
    })
    with pytest.raises(BackupBucketError) as raised:
        backup_bucket_check(config)
    assert raised.value.problems[0][0] == "backupBucket"
    message = str(raised.value)
    assert "backupBucket" in message and taken in message and "access denied" in message
    assert "someone else" in message


def test_backup_bucket_check_reports_refused_keys(moto_with_auth):
    config = s3_config(moto_with_auth, [], backupBucket=new_bucket(moto_with_auth), storageSecretKey="wrong-secret-key")
    with pytest.raises(BackupBucketError, match="SignatureDoesNotMatch") as raised:
        backup_bucket_check(config)
    assert "someone else" not in str(raised.value)  # the keys are wrong, not the name


def test_nothing_to_adopt_without_a_configured_name_or_with_the_in_cluster_minio(moto):
    assert backup_bucket_check(s3_config(moto, [])) is False
    assert backup_bucket_check({**DEV, "backupBucket": "dev-backups"}, stack="dev") is False


def _resolving(monkeypatch, name, address):
    import socket

    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if host == name:
            return [(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, 0))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.mark.parametrize("address,warns", [("10.20.0.5", True), ("100.64.3.4", True), ("fd12::5", True),
                                           ("203.0.113.5", False), ("127.0.0.1", False)])
def test_an_endpoint_name_resolving_to_a_closed_address_warns(monkeypatch, address, warns):
    # Backups, restores and cloud storages reach the endpoint through egress policies that keep private
    # ranges closed unless egressAllow opens them; the preflight resolves the name and says so.
    _resolving(monkeypatch, "minio.corp.example", address)
    server = type("S", (), {"url": "https://minio.corp.example:9000", "access_key": "a", "secret_key": "b"})
    rendering = render(s3_config(server, []), stack="acme", secrets=SECRETS, preflight=True)
    assert any(f"resolves here to {address}" in warning for warning in rendering.warnings) is warns
    if warns:
        opened = render(s3_config(server, [], egressAllow=[address]), stack="acme", secrets=SECRETS, preflight=True)
        assert not any("resolves here" in warning for warning in opened.warnings)


def test_closed_addresses_are_those_of_the_name_that_egress_allow_does_not_open():
    server = type("S", (), {"url": "https://minio.corp.example:9000", "access_key": "a", "secret_key": "b"})

    def resolve(host, port):
        assert host == "minio.corp.example"  # the host of the endpoint the storage section built
        return [(2, 1, 6, "", ("10.20.0.5", 0)), (2, 1, 6, "", ("10.20.0.5", 0)), (2, 1, 6, "", ("203.0.113.5", 0)),
                (10, 1, 6, "", ("fd12::5%eth0", 0, 0, 0))]

    closed = under_program(s3_config(server, []), lambda config: closed_endpoint_addresses(config, resolve))
    assert closed == ["10.20.0.5", "fd12::5"]
    opened = under_program(s3_config(server, [], egressAllow=["10.20.0.0/16"]), lambda config: closed_endpoint_addresses(config, resolve))
    assert opened == ["fd12::5"]


def test_an_endpoint_given_as_an_ip_or_a_name_not_resolvable_here_has_no_closed_address():
    def unresolvable(host, port):
        raise OSError("no such host")

    by_ip = type("S", (), {"url": "http://10.20.0.5:9000", "access_key": "a", "secret_key": "b"})
    assert under_program(s3_config(by_ip, []), lambda config: closed_endpoint_addresses(config, unresolvable)) == []
    by_name = type("S", (), {"url": "https://minio.corp.example", "access_key": "a", "secret_key": "b"})
    assert under_program(s3_config(by_name, []), lambda config: closed_endpoint_addresses(config, unresolvable)) == []


def test_the_preflight_uses_the_endpoint_the_storage_section_built(moto):
    bucket = new_bucket(moto)
    endpoint = under_program(s3_config(moto, [bucket]), lambda config: config.storage.endpoint)
    assert endpoint.url == pod_visible_url(moto.url) and endpoint.region == "us-east-1"
    client = endpoint.program_client(moto.secret_key, attempts=1)
    assert bucket_status(client, bucket, endpoint.url) == ("ok", None)


class _Refusing:
    """A client whose listing fails with this S3 error."""

    def __init__(self, code, status, message="", region=None):
        self.error = {"Error": {"Code": code, "Message": message, **({"Region": region} if region else {})},
                      "ResponseMetadata": {"HTTPStatusCode": status}}

    def list_objects_v2(self, **_):
        from botocore.exceptions import ClientError

        raise ClientError(self.error, "ListObjectsV2")


@pytest.mark.parametrize(
    "code, status, message, region, kind, words",
    [
        ("NoSuchBucket", 404, "", None, "missing", "does not exist on https://s3.example.com"),
        ("", 404, "", None, "missing", "does not exist"),
        ("PermanentRedirect", 301, "", "nl-ams", "region", "set storageRegion to nl-ams (PermanentRedirect)"),
        ("AuthorizationHeaderMalformed", 400, "the region 'fr-par' is wrong; expecting 'pl-waw'", None, "region",
         "set storageRegion to pl-waw"),
        ("IllegalLocationConstraintException", 400, "", None, "region", ": check storageRegion"),
        ("AccessDenied", 403, "", None, "denied", "access denied (AccessDenied)"),
        ("InvalidAccessKeyId", 403, "", None, "keys", "access denied (InvalidAccessKeyId)"),
        ("SignatureDoesNotMatch", 403, "", None, "keys", "check storageAccessKey/storageSecretKey"),
        ("InternalError", 500, "try again", None, "error", "cannot be listed: InternalError try again"),
    ],
)
def test_each_listing_error_is_told_apart(code, status, message, region, kind, words):
    found, reason = bucket_status(_Refusing(code, status, message, region), "images", "https://s3.example.com")
    assert found == kind and words in reason, reason
