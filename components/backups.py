"""The backups command: list, download and verify a workspace's database backups.

    python -m components.backups list                  # the current stack's backups
    python -m components.backups download latest -o cvat.dump
    python -m components.backups verify 20261130T030000Z.dump
    python -m components.backups --stack acme list

Where the backups are comes from the stack (``pulumi stack output`` and
``pulumi config``), or from explicit options: ``--endpoint --region --bucket
--prefix``, with the keys in ``--access-key``/``--secret-key`` or the
environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional, TextIO

from botocore.exceptions import BotoCoreError, ClientError

from components.config import DEFAULTS, MINIO_DEFAULT_REGION, default_region
from components.endpoint import MULTIPART_CHUNK_SIZE, endpoint_url, s3_client

BACKUP_NAME = re.compile(r"^\d{8}T\d{6}Z\.dump$")


class BackupsError(Exception):
    """A problem to report to the operator, without a traceback."""


@dataclass(frozen=True)
class Location:
    """Where a workspace's backups are, and how to reach them."""

    endpoint_url: str
    region: str
    bucket: str
    prefix: str
    access_key: str
    secret_key: str

    def client(self) -> Any:
        return s3_client(self.endpoint_url, self.region, self.access_key, self.secret_key)


@dataclass(frozen=True)
class Backup:
    """One backup object."""

    key: str
    size: int
    modified: datetime

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]

    @property
    def taken(self) -> datetime:
        """When the backup was taken, from its name."""
        return datetime.strptime(self.name, "%Y%m%dT%H%M%SZ.dump").replace(tzinfo=timezone.utc)


def list_backups(location: Location) -> list[Backup]:
    """The backups under the location's prefix, newest first (other objects are ignored)."""
    client = location.client()
    backups = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=location.bucket, Prefix=location.prefix):
        for item in page.get("Contents", []):
            name = item["Key"][len(location.prefix) :]
            if BACKUP_NAME.match(name):
                backups.append(Backup(item["Key"], item["Size"], item["LastModified"]))
    return sorted(backups, key=lambda backup: backup.key, reverse=True)


def resolve_key(location: Location, reference: str) -> str:
    """A full object key from 'latest', a backup name, or a full key."""
    if reference == "latest":
        backups = list_backups(location)
        if not backups:
            raise BackupsError(f"no backup found under s3://{location.bucket}/{location.prefix}")
        return backups[0].key
    if "/" not in reference:
        return location.prefix + reference
    return reference


def download(location: Location, key: str, target: Path, progress: Optional[TextIO] = None) -> int:
    """Downloads one backup to `target`; reports progress on `progress`. Returns the size."""
    from boto3.s3.transfer import TransferConfig
    from botocore.exceptions import ClientError

    client = location.client()
    try:
        size = client.head_object(Bucket=location.bucket, Key=key)["ContentLength"]
    except ClientError as error:
        raise BackupsError(f"cannot read s3://{location.bucket}/{key}: {error}") from error
    reporter = Progress(size, progress) if progress else None
    partial = target.with_name(target.name + ".partial")
    config = TransferConfig(multipart_chunksize=MULTIPART_CHUNK_SIZE, multipart_threshold=MULTIPART_CHUNK_SIZE)
    try:
        client.download_file(location.bucket, key, str(partial), Config=config, Callback=reporter)
    except ClientError as error:
        partial.unlink(missing_ok=True)
        raise BackupsError(f"cannot download s3://{location.bucket}/{key}: {error}") from error
    if reporter:
        reporter.finish()
    partial.replace(target)
    return size


def verify(path: Path, pg_restore: str = "pg_restore") -> int:
    """Reads a dump back completely with pg_restore; returns its number of entries."""
    if shutil.which(pg_restore) is None:
        raise BackupsError("pg_restore is not installed (PostgreSQL 15 client tools are needed to verify)")
    listing = subprocess.run([pg_restore, "--list", str(path)], capture_output=True, text=True)
    if listing.returncode != 0:
        raise BackupsError(f"not a readable pg_dump archive: {listing.stderr.strip()}")
    full = subprocess.run([pg_restore, "--file=/dev/null", str(path)], capture_output=True, text=True)
    if full.returncode != 0:
        raise BackupsError(f"the archive is damaged: {full.stderr.strip()}")
    return sum(1 for line in listing.stdout.splitlines() if line and not line.startswith(";"))


class Progress:
    """Thread-safe download progress, printed at most twice a second."""

    def __init__(self, total: int, stream: TextIO, clock: Callable[[], float] = time.monotonic):
        self.total, self.stream, self.clock = total, stream, clock
        self.done = 0
        self.started = clock()
        self.last_report = 0.0
        self.lock = threading.Lock()

    def __call__(self, chunk: int) -> None:
        with self.lock:
            self.done += chunk
            now = self.clock()
            if now - self.last_report >= 0.5:
                self.last_report = now
                self._report(now)

    def finish(self) -> None:
        with self.lock:
            self._report(self.clock())
            self.stream.write("\n")
            self.stream.flush()

    def _report(self, now: float) -> None:
        elapsed = max(now - self.started, 1e-6)
        percent = 100.0 * self.done / self.total if self.total else 100.0
        rate = self.done / elapsed
        self.stream.write(f"\r{percent:5.1f}%  {human_size(self.done)} of {human_size(self.total)}  {human_size(rate)}/s")
        self.stream.flush()


def human_size(size: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def human_age(moment: datetime, now: datetime) -> str:
    """How long ago, e.g. '3d 4h', '25m'."""
    seconds = int((now - moment).total_seconds())
    if seconds < 3600:
        return f"{max(seconds, 0) // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h {seconds % 3600 // 60}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600}h"


def location_from_stack(stack: Optional[str], run: Callable[[list[str]], str]) -> dict[str, str]:
    """Endpoint, bucket, prefix and keys of a stack, from the Pulumi CLI."""
    suffix = ["--stack", stack] if stack else []
    outputs = json.loads(run(["pulumi", "stack", "output", "--json", *suffix]))
    config = json.loads(run(["pulumi", "config", "--json", "--show-secrets", *suffix]))

    def value(key: str) -> Any:
        entry = config.get(f"labeling:{key}")
        if entry is None:
            return DEFAULTS.get(key, "")
        return entry.get("value", "") if isinstance(entry, dict) else entry

    if str(value("minioInCluster")).lower() == "true":
        raise BackupsError(
            "this stack's MinIO runs inside the cluster: forward it "
            "(kubectl -n <namespace> port-forward svc/minio 9000:9000) and pass "
            "--endpoint http://localhost:9000 with the keys of the Secret minio-root"
        )
    provider = value("storageProvider") or "scaleway"
    region = value("storageRegion") or default_region(provider)
    endpoint = endpoint_url(provider, region, value("storageEndpoint"))
    if "backupBucket" not in outputs or "backupPrefix" not in outputs:
        raise BackupsError("the stack has no backupBucket/backupPrefix outputs: run `pulumi up` first")
    return {
        "endpoint_url": endpoint,
        "region": region,
        "bucket": outputs["backupBucket"],
        "prefix": outputs["backupPrefix"],
        "access_key": value("storageAccessKey"),
        "secret_key": value("storageSecretKey"),
    }


def _run_pulumi(command: list[str]) -> str:
    if shutil.which(command[0]) is None:
        raise BackupsError("the Pulumi CLI is not installed: pass --endpoint, --bucket and --prefix instead")
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise BackupsError(f"`{' '.join(command[:3])}` failed: {result.stderr.strip()}")
    return result.stdout


def resolve_location(args: argparse.Namespace, run: Callable[[list[str]], str] = _run_pulumi) -> Location:
    """Explicit options win; what they leave out comes from the stack."""
    explicit = {
        "endpoint_url": args.endpoint,
        "region": args.region,
        "bucket": args.bucket,
        "prefix": args.prefix,
        "access_key": args.access_key or os.environ.get("AWS_ACCESS_KEY_ID"),
        "secret_key": args.secret_key or os.environ.get("AWS_SECRET_ACCESS_KEY"),
    }
    if all(explicit[key] for key in ("endpoint_url", "bucket", "prefix")):
        settings = {**explicit, "region": explicit["region"] or MINIO_DEFAULT_REGION}
    else:
        from_stack = location_from_stack(args.stack, run)
        settings = {key: explicit[key] or from_stack[key] for key in explicit}
    missing = [key for key in ("access_key", "secret_key") if not settings[key]]
    if missing:
        raise BackupsError("no S3 keys: pass --access-key/--secret-key or set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
    prefix = settings["prefix"]
    return Location(**{**settings, "prefix": prefix if prefix.endswith("/") else prefix + "/"})


def main(argv: Optional[list[str]] = None, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m components.backups", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", help="Pulumi stack (default: the current one)")
    parser.add_argument("--endpoint", help="S3 endpoint URL")
    parser.add_argument("--region", help="S3 region")
    parser.add_argument("--bucket", help="backup bucket")
    parser.add_argument("--prefix", help="key prefix of the backups, e.g. acme/database/")
    parser.add_argument("--access-key", help="S3 access key (or AWS_ACCESS_KEY_ID)")
    parser.add_argument("--secret-key", help="S3 secret key (or AWS_SECRET_ACCESS_KEY)")
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="list the backups, newest first")
    listing.add_argument("--json", action="store_true", help="print JSON")
    fetch = commands.add_parser("download", help="download a backup")
    fetch.add_argument("backup", help="'latest', a backup name (20261130T030000Z.dump) or a full key")
    fetch.add_argument("-o", "--output", type=Path, help="file to write (default: the backup's name)")
    check = commands.add_parser("verify", help="download a backup and read it back with pg_restore")
    check.add_argument("backup", help="'latest', a backup name or a full key")
    args = parser.parse_args(argv)

    try:
        location = resolve_location(args)
        if args.command == "list":
            backups = list_backups(location)
            now = datetime.now(timezone.utc)
            if args.json:
                rows = [{"key": b.key, "size": b.size, "taken": b.taken.isoformat()} for b in backups]
                out.write(json.dumps(rows, indent=2) + "\n")
            elif not backups:
                out.write(f"no backups under s3://{location.bucket}/{location.prefix}\n")
            else:
                width = max(len(b.key) for b in backups)
                out.write(f"{'KEY'.ljust(width)}  {'SIZE':>10}  AGE\n")
                for backup in backups:
                    out.write(f"{backup.key.ljust(width)}  {human_size(backup.size):>10}  {human_age(backup.taken, now)}\n")
        elif args.command == "download":
            key = resolve_key(location, args.backup)
            target = args.output or Path(key.rsplit("/", 1)[-1])
            size = download(location, key, target, progress=err)
            out.write(f"downloaded s3://{location.bucket}/{key} to {target} ({human_size(size)})\n")
        elif args.command == "verify":
            key = resolve_key(location, args.backup)
            with tempfile.TemporaryDirectory() as scratch:
                path = Path(scratch) / "backup.dump"
                download(location, key, path, progress=err)
                entries = verify(path)
            out.write(f"ok: s3://{location.bucket}/{key} is a complete pg_dump archive ({entries} entries)\n")
    except BackupsError as error:
        err.write(f"error: {error}\n")
        return 1
    except (BotoCoreError, ClientError) as error:
        # Unreachable endpoint, missing bucket, refused keys: a message, not a traceback.
        err.write(f"error: {error}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
