"""Real servers for the integration tests and benchmarks, started on loopback.

- `MotoServer`: an S3-compatible HTTP server (moto's server mode), optionally
  checking signatures against IAM access keys like a real server.
- `PostgresServer`: a throwaway PostgreSQL cluster (the system's PostgreSQL 15
  binaries), with password authentication over TCP.
No root, docker or network needed (as root, PostgreSQL runs as `postgres`).
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional


def free_port() -> int:
    """A TCP port on loopback that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MotoServer:
    """moto's S3 server on 127.0.0.1; with `authenticated`, it refuses wrong keys."""

    def __init__(self, authenticated: bool = False):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.authenticated = authenticated
        self.access_key = "test-access-key"
        self.secret_key = "test-secret-key"
        env = dict(os.environ)
        # Every client uses path-style requests; a host name that is no IP (conftest.TEST_S3_HOST)
        # must not be read as a bucket name.
        env["S3_IGNORE_SUBDOMAIN_BUCKETNAME"] = "true"
        if authenticated:
            # The first requests (creating the IAM user and key) are let through; then signatures are checked.
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = "3"
        # A file, not a pipe: an unread pipe fills up and blocks the server.
        self.log = tempfile.NamedTemporaryFile(prefix="labeling-moto-", suffix=".log", delete=False)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self._wait()
        if authenticated:
            self._create_access_key()

    def _wait(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto exited early: {Path(self.log.name).read_text()}")
            try:
                urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1)
                return
            except urllib.error.HTTPError:
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"moto did not answer on {self.url} within {timeout}s")

    def _create_access_key(self) -> None:
        import boto3

        iam = boto3.client(
            "iam", endpoint_url=self.url, region_name="us-east-1", aws_access_key_id="setup", aws_secret_access_key="setup"
        )
        iam.create_user(UserName="workspace")
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        iam.put_user_policy(UserName="workspace", PolicyName="all", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="workspace")["AccessKey"]
        self.access_key, self.secret_key = key["AccessKeyId"], key["SecretAccessKey"]

    def settings(self, region: str = "us-east-1") -> dict:
        """Settings for components.endpoint.s3_client."""
        return {"endpoint_url": self.url, "region": region, "access_key": self.access_key, "secret_key": self.secret_key}

    def client(self, region: str = "us-east-1"):
        from components.endpoint import s3_client

        return s3_client(**self.settings(region))

    def environment(self, region: str = "us-east-1") -> dict[str, str]:
        """Environment for the AWS CLI."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_DEFAULT_REGION": region,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
        }

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        self.log.close()
        os.unlink(self.log.name)


def postgres_bindir() -> Optional[Path]:
    """The bin directory of the system's PostgreSQL 15 (or newest) server, if installed."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]))
    preferred = [c for c in candidates if "/15/" in c]
    chosen = (preferred or candidates or [shutil.which("initdb") or ""])[-1]
    return Path(chosen).parent if chosen else None


class PostgresServer:
    """A throwaway PostgreSQL cluster: trust on the local socket, scram-sha-256 over TCP."""

    def __init__(self):
        bindir = postgres_bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL server binaries not found (install postgresql-15)")
        self.bindir = bindir
        self.port = free_port()
        self.host = "127.0.0.1"
        self.root = Path(tempfile.mkdtemp(prefix="labeling-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root
        self.user = None
        if os.geteuid() == 0:
            # initdb refuses to run as root.
            self.user = "postgres"
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        os.chmod(self.root, 0o755)
        self._as_owner(
            [
                str(bindir / "initdb"),
                "--pgdata",
                str(self.data),
                "--username=postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
            ]
        )
        options = f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_owner(
            [str(bindir / "pg_ctl"), "--pgdata", str(self.data), "--log", str(self.root / "log"), "-o", options, "--wait", "start"]
        )

    def _as_owner(self, command: list[str]) -> subprocess.CompletedProcess:
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        return subprocess.run(command, check=True, capture_output=True, text=True)

    def admin(self, sql: str, database: str = "postgres") -> str:
        """Runs SQL as the superuser over the local socket; returns the unaligned output."""
        result = subprocess.run(
            [str(self.bindir / "psql"), "-h", str(self.socket_dir), "-p", str(self.port), "-U", "postgres", "-d", database,
             "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise RuntimeError(result.stderr)
        return result.stdout.strip()

    def create_database(self, name: str, owner: str, password: str) -> dict[str, str]:
        """Creates a role and its database; returns the libpq environment to reach it over TCP."""
        quoted = password.replace("'", "''")
        self.admin(f"CREATE ROLE \"{owner}\" LOGIN SUPERUSER PASSWORD '{quoted}'")
        self.admin(f'CREATE DATABASE "{name}" OWNER "{owner}"')
        return self.environment(name, owner, password)

    def environment(self, name: str, owner: str, password: str) -> dict[str, str]:
        return {"PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": owner, "PGPASSWORD": password, "PGDATABASE": name}

    def stop(self) -> None:
        self._as_owner([str(self.bindir / "pg_ctl"), "--pgdata", str(self.data), "--mode=immediate", "stop"])
        shutil.rmtree(self.root, ignore_errors=True)
