"""Shared test setup: import paths, and the S3-compatible server the integration tests use."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))


from servers import MotoServer, PostgresServer, free_port  # noqa: E402  (after the path set-up)

__all__ = ["free_port"]


# The program refuses a loopback storageEndpoint (inside a pod it is the pod itself), so the
# stacks of the preflight tests name the test server by this host instead, which only this
# process resolves, to loopback (pod_visible_url).
TEST_S3_HOST = "s3.labeling.test"


@pytest.fixture(scope="session", autouse=True)
def test_s3_host_resolves_to_loopback():
    """Names under TEST_S3_HOST resolve to 127.0.0.1 in this process (the program's preflight runs here)."""
    import socket

    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if isinstance(host, str) and (host == TEST_S3_HOST or host.endswith("." + TEST_S3_HOST)):
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo
    yield
    socket.getaddrinfo = real


def pod_visible_url(url: str) -> str:
    """A test server's URL as a stack's storageEndpoint: its loopback address replaced by TEST_S3_HOST."""
    return url.replace("://127.0.0.1:", f"://{TEST_S3_HOST}:")


@pytest.fixture(scope="session")
def moto():
    """A real S3-compatible HTTP server (moto's server mode) on loopback, for the whole run."""
    server = MotoServer()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_server(moto):
    return moto.url


@pytest.fixture(scope="session")
def moto_with_auth():
    """An S3 server that checks signatures: wrong keys are refused."""
    server = MotoServer(authenticated=True)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL 15 server on loopback, for the whole run."""
    server = PostgresServer()
    yield server
    server.stop()


@pytest.fixture
def s3_settings(moto):
    """Client settings for the test server."""
    return moto.settings()


@pytest.fixture
def s3(moto):
    """A boto3 client for the test server, built like the program builds its own."""
    return moto.client()


@pytest.fixture
def bucket(s3, request):
    """A fresh, empty bucket on the test server."""
    import uuid

    name = f"test-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name
