"""What the tests of `python -m backups` share.

`Layout` writes backups the way docs/backups.md lays them out (manifests, dumps with sha256
metadata, legacy dumps, uploads under .incoming/), with the faults the command must mark or refuse.
The S3 server here (the `moto` fixture, which overrides conftest's) is moto with a settable clock
(support/clocked_s3.py): a backup "taken 2 hours ago" is stored with LastModified 2 hours ago, as a
real server would have stored it, since the command dates backups by the server's time.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import io
import json
import os
import subprocess
import threading
import uuid
from argparse import Namespace
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional

import pytest

from backups import cli
from support.clocked_s3 import ClockedMotoServer, shared_server

KEY = "acme"


def stamp_at(age: timedelta, suffix: Optional[str] = None) -> str:
    """The stamp of a backup taken `age` ago; with `suffix` (8 hex digits), the form of two backups in one second."""
    stamp = (datetime.now(timezone.utc) - age).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{suffix}" if suffix else stamp


def new_suffix() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
def moto():
    """This file's S3 server: moto whose clock Layout sets (see the module's docstring)."""
    server = shared_server()
    server.set_clock(timedelta(0))
    yield server
    server.set_clock(timedelta(0))


class Layout:
    """Writes a workspace's backups into a bucket as docs/backups.md says (and as it must not).

    `age` is how long ago the server stored a backup (its LastModified, when the server's
    clock can be set); `skew` how far the pod's clock, and so the stamp, was ahead of the
    server (negative: behind); `suffix` True or 8 hex digits gives the stamp its suffix;
    `at` stops the server's clock at that moment instead (several backups in one second).
    """

    def __init__(self, s3, bucket: str, key: str = KEY, server: Optional[ClockedMotoServer] = None):
        self.s3, self.bucket, self.key, self.server = s3, bucket, key, server

    def stored(self, age: timedelta, at: Optional[datetime] = None):
        """The server's clock set `age` back (or stopped `at`) while the block writes (when it can be set)."""
        if self.server is None:
            return contextlib.nullcontext()
        return self.server.frozen(at) if at else self.server.clock(-age)

    @staticmethod
    def stamp(age: timedelta, skew: timedelta = timedelta(0), suffix=None) -> str:
        return stamp_at(age - skew, new_suffix() if suffix is True else suffix)

    def dump_key(self, stamp: str) -> str:
        return f"{self.key}/database/{stamp}.dump"

    def manifest_key(self, stamp: str) -> str:
        return f"{self.key}/backups/{stamp}.json"

    def backup(self, age: timedelta, body: bytes, reason: str = "scheduled", data: Optional[dict] = None,
               fault: Optional[str] = None, skew: timedelta = timedelta(0), suffix=None, stamp: Optional[str] = None,
               at: Optional[datetime] = None) -> str:
        """A whole backup: dump with sha256 metadata, then its manifest. `fault` breaks one thing:
        "sha-metadata" (metadata differs from the manifest), "no-metadata", "missing-dump",
        "size" (the manifest's size is wrong), "bytes" (stored bytes differ from what manifest and
        metadata say: a corrupt download), "other-dump" (another dump of the same size, whole, with
        its own sha256 metadata, as another run would have written it: the manifest does not
        describe it), "bad-json" (the manifest is not JSON)."""
        if at is not None:
            age = datetime.now(timezone.utc) - at
            suffix = new_suffix() if suffix is True else suffix
            stamp = stamp or (at + skew).strftime("%Y%m%dT%H%M%SZ") + (f"-{suffix}" if suffix else "")
        stamp = stamp or self.stamp(age, skew, suffix)
        with self.stored(age, at):
            return self._backup(stamp, body, reason, data, fault)

    def _backup(self, stamp: str, body: bytes, reason: str, data: Optional[dict], fault: Optional[str]) -> str:
        digest = hashlib.sha256(body).hexdigest()
        stored = body[: len(body) // 2] + bytes(len(body) - len(body) // 2) if fault in ("bytes", "other-dump") else body
        metadata = {} if fault == "no-metadata" else {"sha256": "0" * 64 if fault == "sha-metadata" else digest}
        if fault == "other-dump":
            metadata["sha256"] = hashlib.sha256(stored).hexdigest()
        if fault != "missing-dump":
            self.s3.put_object(Bucket=self.bucket, Key=self.dump_key(stamp), Body=stored, Metadata=metadata)
        manifest = {
            "format": 1,
            "stamp": stamp,
            "workspace": self.key,
            "cvatVersion": "v2.73.0",
            "reason": reason,
            "database": {"key": self.dump_key(stamp), "size": len(body) + (1 if fault == "size" else 0), "sha256": digest},
            "data": data,
        }
        text = b"{not json" if fault == "bad-json" else json.dumps(manifest).encode()
        self.s3.put_object(Bucket=self.bucket, Key=self.manifest_key(stamp), Body=text)
        return stamp

    def snapshot_file(self, snapshot: str) -> None:
        """A stand-in of the restic repository's snapshot file (restic itself cannot read it)."""
        self.s3.put_object(Bucket=self.bucket, Key=f"{self.key}/data/snapshots/{snapshot}", Body=b"encrypted")

    def legacy(self, age: timedelta, body: bytes, skew: timedelta = timedelta(0), suffix=None) -> str:
        """A dump from before manifests: no sha256 metadata."""
        stamp = self.stamp(age, skew, suffix)
        with self.stored(age):
            self.s3.put_object(Bucket=self.bucket, Key=self.dump_key(stamp), Body=body)
        return stamp

    def orphan(self, age: timedelta, body: bytes, suffix=None) -> str:
        """A dump of the new layout whose manifest was never written."""
        stamp = self.stamp(age, suffix=suffix)
        with self.stored(age):
            self.s3.put_object(Bucket=self.bucket, Key=self.dump_key(stamp), Body=body,
                               Metadata={"sha256": hashlib.sha256(body).hexdigest()})
        return stamp

    def incoming(self, age: timedelta, body: bytes, suffix=None) -> str:
        stamp = self.stamp(age, suffix=suffix)
        with self.stored(age):
            self.s3.put_object(Bucket=self.bucket, Key=f"{self.key}/database/.incoming/{stamp}.dump", Body=body)
        return stamp


@pytest.fixture(scope="session")
def archive(postgres, tmp_path_factory):
    """A real pg_dump archive of a small database (once per run: the other test_backups_* files share it)."""
    name = f"archive_{uuid.uuid4().hex[:8]}"  # imported by other modules too: each makes its own
    env = postgres.create_database(name, f"{name}_owner", "pw")
    postgres.admin("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT n, md5(n::text) FROM generate_series(1, 2000) n;", name)
    path = tmp_path_factory.mktemp("archive") / "db.dump"
    subprocess.run([str(postgres.bindir / "pg_dump"), "--format=custom", f"--file={path}"], env={**os.environ, **env}, check=True)
    return path.read_bytes()


@pytest.fixture
def layout(moto):
    bucket = f"backups-{uuid.uuid4().hex[:10]}"
    s3 = moto.client()
    s3.create_bucket(Bucket=bucket)
    return Layout(s3, bucket, server=moto if isinstance(moto, ClockedMotoServer) else None)


@pytest.fixture(autouse=True)
def postgres_tools(postgres, monkeypatch):
    """pg_restore 15 first on PATH, as on an operator's machine with the PostgreSQL 15 client."""
    monkeypatch.setenv("PATH", f"{postgres.bindir}{os.pathsep}{os.environ['PATH']}")


def command(moto, bucket, *args, prefix="acme/database/"):
    argv = ["--endpoint", moto.url, "--region", "us-east-1", "--bucket", bucket, "--prefix", prefix,
            "--access-key", moto.access_key, "--secret-key", moto.secret_key, *args]
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(argv, out, err)
    return code, out.getvalue(), err.getvalue()


def one_error(err: str, *fragments: str) -> str:
    """The error output is one `error:` line (after any progress), no traceback; returns it."""
    assert "Traceback" not in err
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], err
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def only_one_line(err: str, *fragments: str) -> None:
    assert len(err.splitlines()) == 1, err
    one_error(err, *fragments)


def rows(out: str) -> dict[str, str]:
    """Listing rows by stamp."""
    return {line.split()[0]: line for line in out.splitlines()[1:] if line[:1].isdigit()}


class DroppingProxy:
    """Forwards to the S3 server; the first full GET of `key` sends half the body and drops the connection."""

    def __init__(self, upstream: str, key: str):
        self.upstream, self.key = upstream.split("//", 1)[1], key
        self.dropped, self.ranges = 0, []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                connection = http.client.HTTPConnection(proxy.upstream, timeout=30)
                headers = {k: v for k, v in self.headers.items()}
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
                if self.command == "GET" and proxy.key in self.path:
                    proxy.ranges.append(self.headers.get("Range"))
                drop = self.command == "GET" and proxy.key in self.path and "Range" not in self.headers and not proxy.dropped
                self.send_response(response.status)
                for name, value in response.getheaders():
                    if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(name, value)
                length = response.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length or str(len(data)))
                self.end_headers()
                if drop:
                    proxy.dropped += 1
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def fake_pulumi(outputs, config, calls=None):
    def run(command):
        if calls is not None:
            calls.append(command)
        assert command[0] == "pulumi"
        if command[1:3] == ["stack", "output"]:
            return json.dumps(outputs)
        if command[1] == "config":
            shown = "--show-secrets" in command
            return json.dumps({f"labeling:{k}": {"value": v if shown or k != "storageSecretKey" else "[secret]",
                                                 "secret": k == "storageSecretKey"} for k, v in config.items()})
        raise AssertionError(command)

    return run


def no_options(**changes):
    values = dict(stack=None, endpoint=None, region=None, bucket=None, prefix=None, access_key=None, secret_key=None)
    return Namespace(**{**values, **changes})


@pytest.fixture
def no_env_keys(monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
