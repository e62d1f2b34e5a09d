"""Shared test setup: import paths, and the S3-compatible server the integration tests use."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def free_port() -> int:
    """A TCP port on loopback that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, process: subprocess.Popen, timeout: float = 30.0) -> None:
    """Waits until `url` answers any HTTP response, or fails with the server's output."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early: {process.stdout.read()}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-compatible HTTP server (moto's server mode) on loopback, for the whole run."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def s3_settings(s3_server):
    """Client settings for the test server (any key pair is accepted)."""
    return {
        "endpoint_url": s3_server,
        "region": "us-east-1",
        "access_key": "test-access-key",
        "secret_key": "test-secret-key",
    }


@pytest.fixture
def s3(s3_settings):
    """A boto3 client for the test server, built like the program builds its own."""
    from components.endpoint import s3_client

    return s3_client(**s3_settings)


@pytest.fixture
def bucket(s3, request):
    """A fresh, empty bucket on the test server."""
    import uuid

    name = f"test-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name
