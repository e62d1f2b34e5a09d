"""S3Endpoint: Scaleway regions, MinIO URLs, what it hands to pods."""

import pytest

from components.config import SCALEWAY_REGIONS
from components.endpoint import CHECKSUM_ENV, S3Endpoint, scaleway_endpoint_url


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
    env = S3Endpoint.from_settings("scaleway", "pl-waw", "", "key", "secret").cli_environment()
    assert env == {"AWS_ENDPOINT_URL": "https://s3.pl-waw.scw.cloud", "AWS_DEFAULT_REGION": "pl-waw", **CHECKSUM_ENV}
    assert CHECKSUM_ENV == {
        "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
        "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
    }


def test_in_cluster_endpoint_builds_no_aws_provider():
    endpoint = S3Endpoint("minio", "us-east-1", "http://minio.cvat-dev.svc:9000", "key", "secret", in_cluster=True)
    assert not endpoint.reachable_from_program
    with pytest.raises(ValueError, match="not reachable"):
        endpoint.aws_provider("s3")


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
