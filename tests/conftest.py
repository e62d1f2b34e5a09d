"""Shared test setup: import paths, and the S3-compatible server the integration tests use."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))


from servers import MotoServer, PostgresServer, free_port  # noqa: E402  (after the path set-up)

__all__ = ["free_port"]


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
