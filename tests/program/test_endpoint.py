"""S3Endpoint: Scaleway regions, MinIO URLs, what it hands to pods."""

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from components.config import SCALEWAY_REGIONS
from components.endpoint import CHECKSUM_ENV, S3Endpoint, scaleway_endpoint_url
from support.s3_stub import StubS3Server


@pytest.mark.parametrize("region", SCALEWAY_REGIONS)
def test_scaleway_url_is_derived_from_the_region(region):
    endpoint = S3Endpoint.from_settings("scaleway", region, "", "key", "secret")
    assert endpoint.url == f"https://s3.{region}.scw.cloud" == scaleway_endpoint_url(region)
    assert endpoint.reachable_from_program


def test_minio_url_is_taken_as_given_without_trailing_slash():
    endpoint = S3Endpoint.from_settings("minio", "us-east-1", "https://minio.acme.example:9000/", "key", "secret")
    assert endpoint.url == "https://minio.acme.example:9000"


def test_minio_without_url_is_refused():
    with pytest.raises(ValueError, match="needs a URL"):
        S3Endpoint.from_settings("minio", "us-east-1", "", "key", "secret")


def test_cli_environment_has_no_credentials():
    env = S3Endpoint.from_settings("scaleway", "pl-waw", "", "SCWKEY0123", "secret-value").cli_environment()
    assert env["AWS_ENDPOINT_URL"] == "https://s3.pl-waw.scw.cloud" and env["AWS_DEFAULT_REGION"] == "pl-waw"
    assert not [name for name in env if "KEY" in name or "SECRET" in name or "TOKEN" in name]
    assert not {"SCWKEY0123", "secret-value"} & {str(value) for value in env.values()}


def localhost(url):
    """The same server under a host name: only path-style requests reach it (`<bucket>.localhost` does not resolve)."""
    return url.replace("127.0.0.1", "localhost")


def checksum_headers(request):
    """The checksum headers of a request (boto3 >= 1.36 and the CLI send them unless told otherwise)."""
    return sorted(name.lower() for name in request.headers if name.lower().startswith(("x-amz-checksum", "x-amz-sdk-checksum")))


def cli_requests(tmp_path, stub, environment):
    """What the AWS CLI, given `environment` and nothing else, sends for an upload and a download."""
    aws = shutil.which("aws", path=str(Path(sys.executable).parent))
    assert aws, "the AWS CLI is not installed in the test environment"
    (tmp_path / "dump").write_bytes(b"backup bytes")
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),  # no configuration or credentials of the machine's
        "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
        "AWS_ACCESS_KEY_ID": "key",
        "AWS_SECRET_ACCESS_KEY": "secret",
        **environment,
    }
    stub.requests.clear()
    for command in (
        ["s3api", "put-object", "--bucket", "backups", "--key", "acme/x.dump", "--body", str(tmp_path / "dump")],
        ["s3api", "get-object", "--bucket", "backups", "--key", "acme/x.dump", str(tmp_path / "out")],
    ):
        result = subprocess.run([aws, *command], env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
    put, get = stub.requests
    return put, get


@pytest.mark.integration  # runs the AWS CLI the pod scripts run
def test_the_cli_environment_makes_the_aws_cli_talk_to_the_endpoint_without_checksums(tmp_path):
    with StubS3Server("recording") as stub:
        environment = S3Endpoint.from_settings("minio", "nl-ams", stub.url, "key", "secret").cli_environment()
        put, get = cli_requests(tmp_path, stub, environment)
        # The same CLI without the checksum settings: what the settings turn off.
        plain = {name: value for name, value in environment.items() if name not in CHECKSUM_ENV}
        default_put, default_get = cli_requests(tmp_path, stub, plain)
    assert (put.method, put.path, get.method, get.path) == ("PUT", "/backups/acme/x.dump", "GET", "/backups/acme/x.dump")
    assert "/nl-ams/s3/aws4_request" in put.headers["Authorization"]  # signed for the endpoint's region
    assert put.body == b"backup bytes"  # sent as is, not aws-chunked with a trailing checksum
    assert checksum_headers(put) == [] and checksum_headers(get) == []
    assert checksum_headers(default_put) and "x-amz-checksum-mode" in checksum_headers(default_get), (
        "this AWS CLI sends no checksums by default: the test no longer shows what CHECKSUM_ENV does"
    )


def test_the_client_talks_path_style_without_checksums(moto, tmp_path):
    from components.endpoint import s3_client

    # Against the real server under a host name: a virtual-hosted request would go to <bucket>.localhost.
    client = s3_client(localhost(moto.url), "us-east-1", moto.access_key, moto.secret_key)
    bucket = f"path-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=bucket, Key="a/b.jpg", Body=b"jpeg")
    assert client.get_object(Bucket=bucket, Key="a/b.jpg")["Body"].read() == b"jpeg"
    assert [item["Key"] for item in client.list_objects_v2(Bucket=bucket)["Contents"]] == ["a/b.jpg"]
    # What it sends: no checksum headers on an upload or a download that do not require one.
    with StubS3Server("recording") as stub:
        client = s3_client(localhost(stub.url), "fr-par", "key", "secret")
        client.put_object(Bucket="backups", Key="a/b.jpg", Body=b"jpeg")
        client.get_object(Bucket="backups", Key="a/b.jpg")
    put, get = stub.requests
    assert (put.path, get.path) == ("/backups/a/b.jpg", "/backups/a/b.jpg")
    assert put.headers["Host"] == localhost(stub.url).split("//")[1]
    assert put.body == b"jpeg"
    assert checksum_headers(put) == [] and checksum_headers(get) == []


def test_in_cluster_endpoint_builds_no_aws_provider():
    endpoint = S3Endpoint("minio", "us-east-1", "http://minio.cvat-dev.svc:9000", "key", "secret", in_cluster=True)
    assert not endpoint.reachable_from_program
    with pytest.raises(ValueError, match="not reachable"):
        endpoint.aws_provider("s3")
    with pytest.raises(ValueError, match="reachable from the Pulumi program"):
        endpoint.program_client("secret")


def test_the_program_client_talks_to_the_endpoint_with_the_plain_secret(moto):
    endpoint = S3Endpoint.from_settings("minio", "us-east-1", moto.url + "/", moto.access_key, "not-this-one")
    bucket = f"program-{uuid.uuid4().hex[:10]}"
    client = endpoint.program_client(moto.secret_key, attempts=1)
    client.create_bucket(Bucket=bucket)
    assert client.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


# ----- one endpoint: the storage section builds it, and the operator command derives the same -------

STORAGE = {"adminEmail": "lead@acme.example", "hostname": "label.acme.example", "kubeContext": "lab",
           "allowInsecureHttp": True, "storageAccessKey": "SCWABCDEFGHIJKLMNOPQ", "storageSecretKey": "secret-key-value"}


@pytest.mark.parametrize(
    "settings, region, url",
    [
        ({}, "fr-par", "https://s3.fr-par.scw.cloud"),
        ({"storageRegion": "pl-waw"}, "pl-waw", "https://s3.pl-waw.scw.cloud"),
        ({"storageProvider": " Scaleway ", "storageRegion": " nl-ams "}, "nl-ams", "https://s3.nl-ams.scw.cloud"),
        ({"storageProvider": "scaleway", "storageEndpoint": "https://s3.example.com/"}, "fr-par", "https://s3.example.com"),
        ({"storageProvider": "minio", "storageEndpoint": "https://minio.acme.example:9000/"}, "minio",
         "https://minio.acme.example:9000"),
        ({"storageProvider": "MINIO", "storageRegion": "eu-1", "storageEndpoint": " http://10.1.2.3:9000 "}, "eu-1",
         "http://10.1.2.3:9000"),
    ],
)
def test_the_storage_section_builds_the_endpoint_and_storage_location_agrees(settings, region, url):
    from components.config import storage_location
    from support.harness import render

    rendering = render({**STORAGE, **settings}, stack="acme", secrets=["storageSecretKey"])
    provider = rendering.one("pulumi:providers:aws")
    assert (provider.inputs["region"], json.loads(provider.inputs["endpoints"])) == (region, [{"s3": url}])
    # What the operator command derives from the same raw values (None: unset).
    raw = [settings.get(key) for key in ("storageProvider", "storageRegion", "storageEndpoint")]
    assert storage_location(*raw)[1:] == (region, url)


def test_storage_location_of_unset_values_is_scaleways_default():
    from components.config import storage_location

    assert storage_location(None, None, None) == ("scaleway", "fr-par", "https://s3.fr-par.scw.cloud")
    assert storage_location("", "", "") == ("scaleway", "fr-par", "https://s3.fr-par.scw.cloud")
    assert storage_location("minio", "", "") == ("minio", "minio", "")  # a MinIO needs its URL


def test_every_client_comes_from_a_session_of_its_own(monkeypatch, s3_settings):
    # boto3 sessions are not thread-safe and the dynamic provider host serves
    # requests on several threads: no client may come from a shared session.
    import boto3
    import boto3.session

    from components.endpoint import client_from_inputs, s3_client

    made = []

    class CountingSession(boto3.session.Session):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(boto3.session, "Session", CountingSession)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    first = s3_client(**s3_settings)
    second = client_from_inputs(s3_settings)
    assert len(made) == 2
    assert boto3.DEFAULT_SESSION is None  # boto3.client() would have made the shared one
    assert first is not second and first.meta.events is not second.meta.events


def test_clients_made_on_many_threads_at_once_all_work(s3, bucket, s3_settings):
    from concurrent.futures import ThreadPoolExecutor

    from components.endpoint import client_from_inputs

    s3.put_object(Bucket=bucket, Key="a.jpg", Body=b"x")
    start = __import__("threading").Barrier(12)

    def list_keys(_):
        start.wait()  # every thread makes its client at the same moment
        client = client_from_inputs(s3_settings)
        return [item["Key"] for item in client.list_objects_v2(Bucket=bucket)["Contents"]]

    with ThreadPoolExecutor(12) as pool:
        assert list(pool.map(list_keys, range(12))) == [["a.jpg"]] * 12
