"""The backups command: list, download, verify, start and watch a workspace's backups.

    python -m components.backups list                       # the current stack's backups
    python -m components.backups download latest -o .       # the newest good database dump
    python -m components.backups download latest -o . --with-data ./data   # and CVAT's data (restic)
    python -m components.backups verify 20261130T030000Z    # download + pg_restore (+ restic check)
    python -m components.backups now                        # run a backup in the cluster (kubectl)
    python -m components.backups status                     # exit 3 when the newest good one is too old
    python -m components.backups --stack acme list

It reads the layout of docs/backups.md: manifests `<key>/backups/<stamp>.json`
(one whole-workspace backup each), dumps `<key>/database/<stamp>.dump` with
their `sha256` metadata, uploads in progress under `<key>/database/.incoming/`,
and the restic repository `<key>/data` with its password `<key>/data-password`.
A stamp is `YYYYmmddTHHMMSSZ`, or `YYYYmmddTHHMMSSZ-xxxxxxxx` (8 lowercase hex
digits, random per run) since two backups may start in the same second.

When a backup was made is the server's time: the `LastModified` of its manifest
(written last, in one PUT; for a dump without a manifest, of the dump). `latest`
and ages use it, the stamp (the pod's clock) only breaks ties, and a stamp more
than 10 minutes off that time is flagged: the pod's clock was wrong.

Where the backups are comes from the stack (``pulumi stack output`` and
``pulumi config``), or from explicit options: ``--endpoint --region --bucket
--prefix``, with the keys in ``--access-key``/``--secret-key`` or the
environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY). Local tools it uses
when present: ``pg_restore`` (verify), ``restic`` (data snapshots), ``kubectl``
(now). Exit codes: 0 ok, 1 error, 2 usage error (a bad option or argument), 3
`status` found the newest good backup too old (2 before), 130 interrupted.
Endpoints are printed without their user:password@ part.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Optional, TextIO
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, ClientError
from botocore.utils import is_valid_endpoint_url, is_valid_ipv6_endpoint_url

from components import cron
from components.config import DEFAULTS, MINIO_DEFAULT_REGION, default_region
from components.endpoint import endpoint_url, s3_client

# The bare form (one backup a second) and the suffixed one (random per run, sorts after the bare stamp).
STAMP = r"[0-9]{8}T[0-9]{6}Z(?:-[0-9a-f]{8})?"
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
BACKUP_NAME = re.compile(rf"^{STAMP}\.dump$")
MANIFEST_NAME = re.compile(rf"^{STAMP}\.json$")
STAMP_REFERENCE = re.compile(rf"^({STAMP})(\.dump|\.json)?$")
SCALEWAY_HOST = re.compile(r"^s3\.([a-z0-9-]+)\.scw\.cloud$")
CRONJOB = "database-backup"
REASONS = ("manual", "final", "before-upgrade")
# Bytes read per request while downloading; a dropped connection resumes where it stopped.
CHUNK_SIZE = 1024 * 1024
DOWNLOAD_ATTEMPTS = 5
MAX_MANIFEST_SIZE = 1024 * 1024
# A stamp is the pod's time when a backup started, the server's time of its manifest when it
# ended: a stamp may trail by as long as a backup can run (the scheduled Job's deadline) plus
# the tolerance, and lead by the tolerance only. Further apart, the pod's clock was wrong.
CLOCK_TOLERANCE = timedelta(minutes=10)
# components.database.SCHEDULED_DEADLINE_SECONDS (not imported: it would load the Kubernetes SDK; a test ties them).
LONGEST_BACKUP = timedelta(hours=6)


class BackupsError(Exception):
    """A problem to report to the operator in one line, without a traceback."""

    code = 1


class Interrupted(BackupsError):
    """Ctrl-C."""

    code = 130


class UsageError(BackupsError):
    """A bad option or argument (the exit code of argparse's own usage errors)."""

    code = 2


class StaleBackups(BackupsError):
    """`status`: the newest good backup is older than the schedule allows (2 before usage errors had it)."""

    code = 3


# ---------------------------------------------------------------- where the backups are


_CLIENTS: dict[tuple[str, str, str, str], Any] = {}
_CLIENTS_LOCK = threading.Lock()


@dataclass(frozen=True)
class Location:
    """Where a workspace's backups are, and how to reach them.

    `prefix` is the database prefix (stack output backupPrefix, `<key>/database/`);
    the other parts of the layout are beside it under `root` (`<key>/`).
    """

    endpoint_url: str
    region: str
    bucket: str
    prefix: str
    access_key: str
    secret_key: str

    def client(self) -> Any:
        """One client per endpoint and keys for the whole run (building one takes a third of a second)."""
        settings = (self.endpoint_url, self.region, self.access_key, self.secret_key)
        with _CLIENTS_LOCK:
            if settings not in _CLIENTS:
                _CLIENTS[settings] = s3_client(*settings)
            return _CLIENTS[settings]

    @property
    def root(self) -> str:
        return self.prefix[: -len("database/")]

    @property
    def manifests(self) -> str:
        return self.root + "backups/"

    @property
    def incoming(self) -> str:
        return self.prefix + ".incoming/"

    @property
    def data_repository(self) -> str:
        return self.root + "data"

    @property
    def password_key(self) -> str:
        return self.root + "data-password"

    def url(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{key}"


def database_prefix(prefix: str) -> str:
    """`acme`, `acme/` or `acme/database` -> `acme/database/` (the stack's backupPrefix)."""
    prefix = prefix.strip().strip("/")
    if not prefix:
        raise UsageError(f"--prefix is empty: {PREFIX_HINT}")
    if prefix != "database" and not prefix.endswith("/database"):
        prefix += "/database"
    return prefix + "/"


PREFIX_HINT = "give the workspace's key prefix, e.g. acme/database/ or acme/ (stack output backupPrefix)"
ENDPOINT_EXAMPLES = "e.g. http://localhost:9000 or https://s3.fr-par.scw.cloud"


def redact_url(url: str) -> str:
    """`url` without its userinfo: `http://user:pw@host:9000` -> `http://***@host:9000`.

    Works on URLs that do not parse, and takes everything up to the last `@` (a password
    may hold an unescaped `/` or `@`).
    """
    if "@" not in url:
        return url
    scheme, separator, rest = url.partition("://")
    if not separator:
        scheme, rest = "", url
    return f"{scheme}{separator}***@{rest.rsplit('@', 1)[1]}"


_USERINFO = re.compile(r"""(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^\s'"`]*@""")


def redact_text(text: str) -> str:
    """Every `scheme://user:password@` in a message, redacted (the last guard before printing)."""
    return _USERINFO.sub(lambda match: f"{match.group('scheme')}***@", text)


def endpoint_problem(url: str, what: str = "--endpoint") -> Optional[str]:
    """Why `url` cannot be an S3 endpoint, or None; `what` names where it came from. Never prints credentials."""
    shown = f"{what} {redact_url(url)!r}"
    if "@" in url:
        return f"{shown} must not hold credentials (user:password@): pass --access-key/--secret-key"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        return f"{shown} is not a URL ({error}): {ENDPOINT_EXAMPLES}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{shown} needs a scheme and a host, {ENDPOINT_EXAMPLES}"
    if port == 0:
        return f"{shown}: port 0 is not a port, {ENDPOINT_EXAMPLES}"
    if not (is_valid_endpoint_url(url) or is_valid_ipv6_endpoint_url(url)):
        return (f"{shown}: {parts.hostname!r} is not a valid host name (letters, digits, hyphens and dots; "
                f"an IP address; or an IPv6 address in brackets), {ENDPOINT_EXAMPLES}")
    if parts.query or parts.fragment:
        return f"{shown} must not have a query or a fragment, {ENDPOINT_EXAMPLES}"
    return None


def region_for_endpoint(url: str) -> str:
    """The region an endpoint implies: Scaleway's from `s3.<region>.scw.cloud`, else MinIO's."""
    match = SCALEWAY_HOST.match(urlsplit(url).hostname or "")
    return match.group(1) if match else MINIO_DEFAULT_REGION


class Stack:
    """The Pulumi stack's outputs and config, read once each through `run` (the Pulumi CLI)."""

    def __init__(self, name: Optional[str], run: Callable[[list[str]], str]):
        self.name, self.run = name, run
        self._outputs: Optional[dict] = None
        self._config: dict[bool, dict] = {}

    def _suffix(self) -> list[str]:
        return ["--stack", self.name] if self.name else []

    def outputs(self) -> dict:
        if self._outputs is None:
            self._outputs = _json(self.run(["pulumi", "stack", "output", "--json", *self._suffix()]), "pulumi stack output")
        return self._outputs

    def config(self, secrets: bool = False) -> dict:
        if secrets not in self._config:
            command = ["pulumi", "config", "--json", *(["--show-secrets"] if secrets else []), *self._suffix()]
            self._config[secrets] = _json(self.run(command), "pulumi config")
        return self._config[secrets]

    def value(self, key: str, secrets: bool = False) -> Any:
        entry = self.config(secrets).get(f"labeling:{key}")
        if entry is None:
            return DEFAULTS.get(key, "")
        value = entry.get("value", "") if isinstance(entry, dict) else entry
        return "" if value is None else value


def _json(text: str, what: str) -> dict:
    try:
        value = json.loads(text or "{}")
    except ValueError as error:
        raise BackupsError(f"`{what}` did not print JSON: {error}") from error
    if not isinstance(value, dict):
        raise BackupsError(f"`{what}` did not print a JSON object")
    return value


def location_from_stack(stack: Stack, endpoint_given: bool = False) -> dict[str, str]:
    """Endpoint, region, bucket, prefix and keys of a stack."""
    outputs = stack.outputs()
    if str(stack.value("minioInCluster", secrets=True)).lower() == "true" and not endpoint_given:
        namespace = outputs.get("namespace") or "<namespace>"
        raise BackupsError(
            f"this stack's MinIO runs inside the cluster: forward it (kubectl -n {namespace} port-forward "
            "svc/minio 9000:9000) and pass --endpoint http://localhost:9000 with the keys of the Secret minio-root"
        )
    if "backupBucket" not in outputs or "backupPrefix" not in outputs:
        raise BackupsError("the stack has no backupBucket/backupPrefix outputs: run `pulumi up` first, or pass --bucket and --prefix")
    provider = stack.value("storageProvider", secrets=True) or "scaleway"
    region = stack.value("storageRegion", secrets=True) or default_region(provider)
    return {
        "endpoint_url": endpoint_url(provider, region, stack.value("storageEndpoint", secrets=True)),
        "region": region,
        "bucket": outputs["backupBucket"],
        "prefix": outputs["backupPrefix"],
        "access_key": stack.value("storageAccessKey", secrets=True),
        "secret_key": stack.value("storageSecretKey", secrets=True),
    }


def run_pulumi(command: list[str]) -> str:
    """Runs the Pulumi CLI; its output, or a BackupsError."""
    if shutil.which(command[0]) is None:
        raise BackupsError("the Pulumi CLI is not installed")
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise BackupsError(f"`{' '.join(command[:3])}` failed: {_last_line(result.stderr)}")
    return result.stdout


def check_options(args: argparse.Namespace) -> None:
    """Refuses, before the stack or the server is asked, options whose value can never work (exit 2)."""
    hints = {
        "endpoint": ENDPOINT_EXAMPLES,
        "region": "leave it out to derive it from the endpoint",
        "bucket": "give the backup bucket (stack output backupBucket)",
        "prefix": PREFIX_HINT,
    }
    for name, hint in hints.items():
        value = getattr(args, name, None)
        if value is not None and not value.strip():
            raise UsageError(f"--{name} is empty: {hint}")
    if args.endpoint and (problem := endpoint_problem(args.endpoint.strip().rstrip("/"))):
        raise UsageError(problem)
    if args.prefix is not None:
        database_prefix(args.prefix)


def resolve_location(args: argparse.Namespace, run: Callable[[list[str]], str] = run_pulumi, stack: Optional[Stack] = None) -> Location:
    """Explicit options win; what they leave out comes from the stack."""
    check_options(args)
    endpoint = (args.endpoint or "").strip().rstrip("/")
    explicit = {
        "endpoint_url": endpoint,
        "region": args.region,
        "bucket": args.bucket,
        "prefix": args.prefix,
        "access_key": args.access_key or os.environ.get("AWS_ACCESS_KEY_ID"),
        "secret_key": args.secret_key or os.environ.get("AWS_SECRET_ACCESS_KEY"),
    }
    if all(explicit[key] for key in ("endpoint_url", "bucket", "prefix")):
        settings = {**explicit, "region": explicit["region"] or region_for_endpoint(endpoint)}
    else:
        stack = stack or Stack(args.stack, run)
        try:
            from_stack = location_from_stack(stack, endpoint_given=bool(endpoint))
        except BackupsError as error:
            if "not installed" in str(error):
                raise BackupsError(f"{error}: pass --endpoint, --bucket and --prefix instead") from error
            raise
        settings = {key: explicit[key] or from_stack[key] for key in explicit}
        if endpoint and not args.region:
            settings["region"] = region_for_endpoint(endpoint)
        if not endpoint:
            if not settings["endpoint_url"]:
                raise BackupsError("the stack has no storageEndpoint: pass --endpoint")
            if problem := endpoint_problem(settings["endpoint_url"], "the stack's storageEndpoint"):
                raise BackupsError(f"{problem}; or pass --endpoint")
        if not args.prefix and not str(settings["prefix"] or "").strip().strip("/"):
            raise BackupsError(f"the stack's backupPrefix output is empty: pass --prefix ({PREFIX_HINT})")
    if not settings["access_key"] or not settings["secret_key"]:
        raise BackupsError("no S3 keys: pass --access-key/--secret-key or set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
    return Location(**{**settings, "prefix": database_prefix(settings["prefix"])})


# ---------------------------------------------------------------- what is stored


@dataclass
class Entry:
    """One row of the listing: a whole-workspace backup, a legacy dump, or something incomplete.

    kind: "backup" (has a manifest), "legacy" (a dump from before manifests: no
    sha256 metadata), "orphan" (a dump with sha256 metadata but no manifest: the
    backup never finished, or is still running), "incoming" (an upload under
    .incoming/).
    """

    stamp: str
    kind: str
    manifest_key: Optional[str] = None
    manifest: Optional[dict] = None
    dump_key: Optional[str] = None
    stored_size: Optional[int] = None  # the dump in the bucket
    stored_sha256: Optional[str] = None  # its sha256 metadata
    expected_size: Optional[int] = None  # what the manifest says
    expected_sha256: Optional[str] = None
    # The server's time of the object that completes the entry: the manifest of a backup
    # (written last), the dump of one without a manifest, the upload under .incoming/.
    modified: Optional[datetime] = None
    problems: list[str] = field(default_factory=list)
    data_state: str = ""  # "", "ok" (restic listed it), "not read (why)"

    @property
    def name(self) -> str:
        return (self.dump_key or self.manifest_key or self.stamp).rsplit("/", 1)[-1]

    @property
    def stamped(self) -> Optional[datetime]:
        """The time in the stamp: the pod's clock when the backup started (None for an odd upload name)."""
        if not re.fullmatch(STAMP, self.stamp):
            return None
        try:
            return datetime.strptime(self.stamp[:16], STAMP_FORMAT).replace(tzinfo=timezone.utc)
        except ValueError:
            return None

    @property
    def taken(self) -> datetime:
        """When the backup was made, by the server's clock (LastModified); the stamp when that is unknown."""
        return self.modified or self.stamped or datetime.fromtimestamp(0, timezone.utc)

    def order(self) -> tuple:
        """Sort key, newest last: the server's time, then the stamp (a tie in the same second)."""
        return (self.taken, self.stamp, self.kind != "incoming")

    @property
    def skew(self) -> Optional[timedelta]:
        """How far the stamp is ahead of (positive) or behind the server's time, when both are known."""
        if self.kind == "incoming" or self.modified is None or self.stamped is None:
            return None
        return self.stamped - self.modified

    def clock_problem(self) -> str:
        """'stamp 365d 0h ahead of the server's time', when the stamp is more than CLOCK_TOLERANCE ahead of the
        server's time or more than LONGEST_BACKUP + CLOCK_TOLERANCE behind it (see CLOCK_TOLERANCE)."""
        skew = self.skew
        if skew is None or -(LONGEST_BACKUP + CLOCK_TOLERANCE) <= skew <= CLOCK_TOLERANCE:
            return ""
        rounded = timedelta(minutes=round(abs(skew).total_seconds() / 60))  # both times are to the second
        return f"stamp {human_span(rounded)} {'ahead of' if skew > timedelta(0) else 'behind'} the server's time"

    @property
    def reason(self) -> str:
        return str((self.manifest or {}).get("reason") or "")

    @property
    def data(self) -> Optional[dict]:
        data = (self.manifest or {}).get("data")
        return data if isinstance(data, dict) else None

    @property
    def good(self) -> bool:
        """Usable for a restore: a backup whose checks all pass, or a legacy dump (checked once downloaded)."""
        return self.kind in ("backup", "legacy") and not self.problems

    @property
    def size(self) -> Optional[int]:
        return self.stored_size if self.stored_size is not None else self.expected_size

    def data_details(self) -> str:
        """'1,204 files, 3.4 GiB' from the manifest."""
        files, size = (self.data or {}).get("files"), (self.data or {}).get("bytes")
        return ", ".join(text for text in (
            f"{files:,} file{'' if files == 1 else 's'}" if isinstance(files, int) else "",
            human_size(size) if isinstance(size, (int, float)) else "",
        ) if text)

    def holds(self) -> str:
        if self.kind == "incoming":
            return "database (partial)"
        parts = ["database"] if self.dump_key else []
        if self.data:
            parts.append(f"data ({self.data_details()})" if self.data_details() else "data")
        return ", ".join(parts) or "-"

    def state(self) -> str:
        if self.kind == "incoming":
            return "INCOMPLETE: upload in progress or abandoned (.incoming/), never restored"
        if self.problems:
            return "BAD: " + "; ".join(self.problems)
        if self.kind == "orphan":
            return "INCOMPLETE: no manifest (the backup did not finish, or is running)"
        if self.kind == "legacy":
            return "legacy, unverified until downloaded"
        if self.data and self.data_state and self.data_state != "ok":
            return f"ok, data {self.data_state}"
        return "ok"

    def flagged_state(self) -> str:
        """The state, with the clock warning when the stamp disagrees with the server's time."""
        clock = self.clock_problem()
        return f"{self.state()}; CLOCK: {clock}" if clock else self.state()

    def as_json(self, now: datetime) -> dict:
        return {
            "stamp": self.stamp,
            "kind": self.kind,
            "good": self.good,
            "state": self.state(),
            "problems": self.problems,
            "taken": self.stamped.isoformat() if self.stamped else None,
            "completed": self.modified.isoformat() if self.modified else None,
            "ageSeconds": int((now - self.taken).total_seconds()),
            "clockSkewSeconds": int(self.skew.total_seconds()) if self.skew is not None else None,
            "clock": self.clock_problem() or None,
            "reason": self.reason or None,
            "cvatVersion": (self.manifest or {}).get("cvatVersion"),
            "manifest": self.manifest_key,
            "dump": self.dump_key,
            "size": self.size,
            "sha256": self.expected_sha256 or self.stored_sha256,
            "data": {**self.data, "state": self.data_state or ("bad" if self.problems else "not read")} if self.data else None,
        }


@dataclass
class Inventory:
    location: Location
    entries: list[Entry]
    warnings: list[str]

    def latest(self, with_data: bool = False) -> Optional[Entry]:
        for entry in self.entries:
            if entry.good and (entry.data or not with_data):
                return entry
        return None

    def find(self, stamp: str) -> Optional[Entry]:
        """The backup of a stamp; a bare stamp also names the one suffixed backup of that second."""
        matches = [entry for entry in self.entries if entry.stamp == stamp and entry.kind != "incoming"]
        if not matches and re.fullmatch(STAMP, stamp) and "-" not in stamp:
            matches = [entry for entry in self.entries if entry.stamp.startswith(stamp + "-") and entry.kind != "incoming"]
            if len(matches) > 1:
                names = ", ".join(sorted(entry.stamp for entry in matches))
                raise UsageError(f"{stamp} names {len(matches)} backups ({names}): give the whole stamp")
        return matches[0] if matches else None

    def clock_flagged(self) -> list[Entry]:
        return [entry for entry in self.entries if entry.clock_problem()]


def _list_keys(client: Any, bucket: str, prefix: str) -> list[dict]:
    items = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        items.extend(page.get("Contents", []))
    return items


def _head(client: Any, bucket: str, key: str) -> Optional[dict]:
    """HeadObject, or None when the object does not exist."""
    try:
        return client.head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if _status(error) == 404:
            return None
        raise


def _status(error: ClientError) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code") or "")


def _read_manifest(client: Any, bucket: str, key: str) -> tuple[Optional[dict], Optional[str]]:
    """(manifest, None), or (None, why it cannot be used); None, None when it does not exist."""
    manifest, problem, _ = _get_manifest(client, bucket, key)
    return manifest, problem


def _get_manifest(client: Any, bucket: str, key: str) -> tuple[Optional[dict], Optional[str], Optional[datetime]]:
    """What `_read_manifest` returns, and the object's LastModified (None when it does not exist)."""
    try:
        response = client.get_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if _code(error) == "NoSuchKey" or _status(error) == 404:
            return None, None, None
        raise
    body = response["Body"].read(MAX_MANIFEST_SIZE + 1)
    modified = response.get("LastModified")
    if len(body) > MAX_MANIFEST_SIZE:
        return None, "manifest larger than 1 MiB", modified
    return (*parse_manifest(body), modified)


def parse_manifest(body: bytes) -> tuple[Optional[dict], Optional[str]]:
    """A manifest of docs/backups.md, or why it is not one."""
    try:
        manifest = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        return None, f"manifest is not JSON ({error.__class__.__name__})"
    if not isinstance(manifest, dict):
        return None, "manifest is not a JSON object"
    if manifest.get("format") != 1:
        return None, f"manifest format {manifest.get('format')!r} is not 1"
    database = manifest.get("database")
    if not isinstance(database, dict) or not isinstance(database.get("key"), str) or not database["key"]:
        return None, "manifest has no database.key"
    if not isinstance(database.get("size"), int) or database["size"] < 0:
        return None, "manifest has no database.size"
    if not isinstance(database.get("sha256"), str) or not re.fullmatch(r"[0-9a-f]{64}", database["sha256"]):
        return None, "manifest has no database.sha256"
    data = manifest.get("data")
    if data is not None and (not isinstance(data, dict) or not isinstance(data.get("snapshot"), str) or not data["snapshot"]):
        return None, "manifest's data has no snapshot"
    return manifest, None


def _parallel(function: Callable, items: list) -> list:
    if len(items) <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(8, len(items))) as pool:
        return list(pool.map(function, items))


def inventory(location: Location, check_data: bool = True, restic: str = "restic") -> Inventory:
    """Every backup, legacy dump and incomplete upload of the workspace, newest first, with its checks."""
    client = location.client()
    objects = _list_keys(client, location.bucket, location.prefix)
    dumps = {item["Key"]: item for item in objects if BACKUP_NAME.match(item["Key"][len(location.prefix) :])}
    incoming = [item for item in objects if item["Key"].startswith(location.incoming)]
    manifest_items = {
        item["Key"]: item for item in _list_keys(client, location.bucket, location.manifests)
        if MANIFEST_NAME.match(item["Key"][len(location.manifests) :])
    }
    manifest_keys = list(manifest_items)
    manifests = dict(zip(manifest_keys, _parallel(lambda key: _read_manifest(client, location.bucket, key), manifest_keys)))
    referenced = {m["database"]["key"] for m, _ in manifests.values() if m}
    heads = dict(zip(
        sorted(set(dumps) | referenced),
        _parallel(lambda key: _head(client, location.bucket, key), sorted(set(dumps) | referenced)),
    ))

    entries: list[Entry] = []
    for key, (manifest, problem) in manifests.items():
        stamp = key[len(location.manifests) :][: -len(".json")]
        entry = Entry(stamp, "backup", manifest_key=key, manifest=manifest, modified=manifest_items[key].get("LastModified"))
        if problem or manifest is None:
            entry.problems.append(problem or "manifest vanished while listing")
            # Its dump, by the layout's name, belongs to it: not listed apart as a dump without a manifest.
            dump = dumps.get(f"{location.prefix}{stamp}.dump")
            if dump:
                entry.dump_key, entry.stored_size = dump["Key"], dump["Size"]
                referenced.add(dump["Key"])
        else:
            _check_against_manifest(entry, manifest, heads.get(manifest["database"]["key"]))
        entries.append(entry)
    for key, item in dumps.items():
        if key in referenced:
            continue
        head = heads.get(key) or {}
        sha256 = (head.get("Metadata") or {}).get("sha256")
        stamp = key[len(location.prefix) :][: -len(".dump")]
        entries.append(Entry(stamp, "orphan" if sha256 else "legacy", dump_key=key, stored_size=item["Size"], stored_sha256=sha256,
                             modified=item.get("LastModified")))
    for item in incoming:
        name = item["Key"][len(location.incoming) :]
        match = re.match(STAMP, name)
        entries.append(Entry(match.group(0) if match else name, "incoming", dump_key=item["Key"], stored_size=item["Size"], modified=item["LastModified"]))
    entries.sort(key=Entry.order, reverse=True)
    result = Inventory(location, entries, [])
    check_snapshots(result, read=check_data, restic=restic)
    return result


def _check_against_manifest(entry: Entry, manifest: dict, head: Optional[dict]) -> None:
    database = manifest["database"]
    entry.dump_key = database["key"]
    entry.expected_size, entry.expected_sha256 = database["size"], database["sha256"]
    if manifest.get("stamp") not in (None, entry.stamp):
        entry.problems.append(f"manifest stamp {manifest.get('stamp')} differs from its name")
    if head is None:
        entry.problems.append(f"dump missing ({database['key']})")
        return
    entry.stored_size = head["ContentLength"]
    entry.stored_sha256 = (head.get("Metadata") or {}).get("sha256")
    if entry.stored_size != entry.expected_size:
        entry.problems.append(f"dump holds {entry.stored_size} bytes, the manifest says {entry.expected_size}")
    if not entry.stored_sha256:
        entry.problems.append("dump has no sha256 metadata (unverifiable)")
    elif entry.stored_sha256 != entry.expected_sha256:
        entry.problems.append("dump's sha256 metadata differs from the manifest")


# ---------------------------------------------------------------- restic (the data snapshots)


class Restic:
    """restic against the workspace's repository `s3:<endpoint>/<bucket>/<key>/data`."""

    def __init__(self, location: Location, binary: str = "restic"):
        self.location, self.binary = location, binary
        self._password: Optional[bytes] = None

    @staticmethod
    def installed(binary: str = "restic") -> bool:
        return shutil.which(binary) is not None

    @property
    def repository(self) -> str:
        return f"s3:{self.location.endpoint_url.rstrip('/')}/{self.location.bucket}/{self.location.data_repository}"

    def password(self) -> bytes:
        if self._password is None:
            try:
                response = self.location.client().get_object(Bucket=self.location.bucket, Key=self.location.password_key)
            except ClientError as error:
                if _code(error) == "NoSuchKey" or _status(error) == 404:
                    raise BackupsError(f"no repository password at {self.location.url(self.location.password_key)}") from error
                raise
            self._password = response["Body"].read()
        return self._password

    def run(self, *args: str) -> subprocess.CompletedProcess:
        """Runs restic with the repository, keys and password; leaves no cache, takes no lock.

        Without a lock, reading never makes a backup in the cluster fail on a locked
        repository, and read-only keys are enough.
        """
        env = {key: value for key, value in os.environ.items() if not key.startswith(("RESTIC_", "AWS_"))}
        env.update({
            "AWS_ACCESS_KEY_ID": self.location.access_key,
            "AWS_SECRET_ACCESS_KEY": self.location.secret_key,
            "AWS_DEFAULT_REGION": self.location.region,
        })
        with tempfile.TemporaryDirectory(prefix="labeling-restic-") as scratch:
            password_file = Path(scratch) / "password"
            password_file.touch(mode=0o600)
            password_file.write_bytes(self.password())
            command = [
                self.binary, "--repo", self.repository, "--password-file", str(password_file),
                "--option", f"s3.region={self.location.region}", "--option", "s3.bucket-lookup=path", "--no-cache", "--no-lock", *args,
            ]
            return subprocess.run(command, capture_output=True, text=True, env=env)

    def snapshots(self) -> list[dict]:
        result = self.run("snapshots", "--json")
        if result.returncode != 0:
            raise BackupsError(f"restic cannot list the snapshots of {self.location.url(self.location.data_repository)}: {_last_line(result.stderr)}")
        try:
            return json.loads(result.stdout or "[]") or []
        except ValueError as error:
            raise BackupsError(f"restic snapshots printed no JSON: {error}") from error


def find_snapshot(snapshots: list[dict], snapshot: str) -> Optional[dict]:
    for item in snapshots:
        if snapshot and (item.get("id", "").startswith(snapshot) or item.get("short_id") == snapshot):
            return item
    return None


def _repository_unusable(message: str) -> bool:
    """Whether restic's error means the data cannot be restored (not a passing failure)."""
    return any(text in message for text in ("wrong password", "no key found", "unable to open config file", "Is there a repository", "no repository password"))


def check_snapshots(inv: Inventory, read: bool = True, restic: str = "restic") -> None:
    """Marks the data part of each backup.

    Its snapshot file must be in the repository (`<key>/data/snapshots/<id>`, one
    listing, as the pods check it); then, with `read` and restic installed,
    `restic snapshots` must list it (the password opens the repository).
    """
    with_data = [entry for entry in inv.entries if entry.kind == "backup" and entry.manifest and entry.data]
    if not with_data:
        return
    location = inv.location
    names = [item["Key"].rsplit("/", 1)[-1] for item in _list_keys(location.client(), location.bucket, f"{location.data_repository}/snapshots/")]
    present = []
    for entry in with_data:
        if any(name.startswith(entry.data["snapshot"]) for name in names):
            present.append(entry)
        else:
            entry.problems.append(f"data snapshot {entry.data['snapshot'][:8]} not in the repository")
    why_not = "" if read else "--no-data-check"
    if present and read and not Restic.installed(restic):
        why_not = "restic not installed"
    if not present or why_not:
        for entry in present:
            entry.data_state = f"not read ({why_not})"
        return
    try:
        snapshots = Restic(location, restic).snapshots()
    except BackupsError as error:
        if _repository_unusable(str(error)):
            for entry in present:
                entry.problems.append(f"data unreadable: {_short(str(error))}")
        else:
            inv.warnings.append(f"data snapshots not read: {error}")
            for entry in present:
                entry.data_state = "not read (restic failed)"
        return
    for entry in present:
        if find_snapshot(snapshots, entry.data["snapshot"]):
            entry.data_state = "ok"
        else:
            entry.problems.append(f"data snapshot {entry.data['snapshot'][:8]} not listed by restic")


def _short(message: str) -> str:
    return message.split(": ", 1)[-1] if "restic cannot" in message else message


# ---------------------------------------------------------------- which backup


def resolve(location: Location, reference: str, check_data: bool = True, with_data: bool = False,
            restic: str = "restic") -> tuple[Location, Entry]:
    """The backup a reference names: latest, a stamp, a manifest or dump key, or s3://bucket/key."""
    reference = reference.strip()
    if reference.startswith("s3://"):
        bucket, _, key = reference[len("s3://") :].partition("/")
        if not bucket or not key:
            raise UsageError(f"{reference!r} is not s3://<bucket>/<key>")
        location = replace(location, bucket=bucket)
        reference = key
    if reference == "latest":
        inv = inventory(location, check_data, restic)
        entry = inv.latest(with_data=with_data)
        if entry is None:
            bad = sum(1 for e in inv.entries if not e.good)
            what = "good backup with a data snapshot" if with_data else "good backup"
            raise BackupsError(f"no {what} under {location.url(location.root)} ({bad} incomplete or unverifiable: see `list`)")
        return location, entry
    if match := STAMP_REFERENCE.match(reference):
        # A named backup is checked by its download; restic is asked when its data is restored.
        inv = inventory(location, check_data=False)
        entry = inv.find(match.group(1))
        if entry is None and any(e.stamp == match.group(1) for e in inv.entries):
            raise BackupsError(f"{match.group(1)} is an incomplete upload (.incoming/): it is never restored")
        if entry is None:
            raise BackupsError(f"no backup {match.group(1)} under {location.url(location.root)} (see `list`)")
        return location, _usable(location, entry)
    if "/" in reference and reference.endswith((".json", ".dump")):
        # The key tells whose backup it is: its data repository and password are beside it.
        if match := re.match(r"^(.*/)?(backups/[^/]+\.json|database/[^/]+\.dump)$", reference):
            location = replace(location, prefix=f"{match.group(1) or ''}database/")
        if reference.endswith(".json"):
            return location, _usable(location, _entry_from_manifest_key(location, reference))
        return location, _usable(location, _entry_from_dump_key(location, reference))
    raise UsageError(
        f"{reference!r} is not a backup: give latest, a stamp (20261130T030000Z or 20261130T030000Z-0a1b2c3d), a manifest key "
        f"({location.manifests}<stamp>.json) or a dump key ({location.prefix}<stamp>.dump); see `list`"
    )


def _missing_bucket(location: Location) -> None:
    """Raises a clear error when the bucket itself does not exist."""
    try:
        location.client().head_bucket(Bucket=location.bucket)
    except ClientError as error:
        if _status(error) == 404:
            raise BackupsError(f"bucket {location.bucket} does not exist at {redact_url(location.endpoint_url)}") from error
        raise


def _entry_from_manifest_key(location: Location, key: str) -> Entry:
    client = location.client()
    manifest, problem, modified = _get_manifest(client, location.bucket, key)
    if manifest is None and problem is None:
        _missing_bucket(location)
        raise BackupsError(f"no manifest {location.url(key)} (see `list`)")
    stamp = key.rsplit("/", 1)[-1][: -len(".json")]
    entry = Entry(stamp, "backup", manifest_key=key, manifest=manifest, modified=modified)
    if problem or manifest is None:
        entry.problems.append(problem or "unreadable manifest")
        return entry
    _check_against_manifest(entry, manifest, _head(client, location.bucket, manifest["database"]["key"]))
    return entry


def _entry_from_dump_key(location: Location, key: str) -> Entry:
    if "/.incoming/" in key:
        raise BackupsError(f"{key} is an incomplete upload (.incoming/): it is never restored")
    client = location.client()
    head = _head(client, location.bucket, key)
    if head is None:
        _missing_bucket(location)
        raise BackupsError(f"no backup {location.url(key)} (see `list`)")
    name = key.rsplit("/", 1)[-1]
    stamp = name[: -len(".dump")]
    sha256 = (head.get("Metadata") or {}).get("sha256")
    entry = Entry(stamp, "orphan" if sha256 else "legacy", dump_key=key, stored_size=head["ContentLength"], stored_sha256=sha256,
                  modified=head.get("LastModified"))
    # Its manifest, when it has one, is where the layout puts it: `<key>/backups/<stamp>.json`.
    if key.endswith(f"/database/{name}") and STAMP_REFERENCE.match(name):
        manifest_key = f"{key[: -len('database/' + name)]}backups/{stamp}.json"
        manifest, _, modified = _get_manifest(client, location.bucket, manifest_key)
        if manifest and manifest["database"]["key"] == key:
            entry = Entry(stamp, "backup", manifest_key=manifest_key, manifest=manifest, modified=modified)
            _check_against_manifest(entry, manifest, head)
    return entry


def _usable(location: Location, entry: Entry) -> Entry:
    """Refuses, before any download, a backup that cannot be restored; a checksum question is left to the download."""
    if entry.kind == "backup" and entry.manifest is None:
        raise BackupsError(f"backup {entry.stamp} cannot be used: {'; '.join(entry.problems)}")
    if entry.stored_size is None:
        raise BackupsError(f"backup {entry.stamp} cannot be used: its dump is missing ({location.url(entry.dump_key or '')})")
    if entry.expected_size is not None and entry.stored_size != entry.expected_size:
        raise BackupsError(
            f"backup {entry.stamp} is damaged: the dump holds {entry.stored_size} bytes, its manifest says {entry.expected_size}"
        )
    return entry


# ---------------------------------------------------------------- download


def output_path(text: Optional[str], name: str) -> Path:
    """Where a download goes: `-o FILE`, `-o FOLDER` (named after the backup), or the current folder."""
    if text is None:
        return Path(name)
    output = Path(text).expanduser()
    if output.is_dir():
        return output / name
    if text.endswith(("/", os.sep)):
        raise BackupsError(f"the folder {text} does not exist")
    parent = output.parent
    if not parent.is_dir():
        raise BackupsError(f"cannot write {text}: the folder {parent} does not exist")
    return output


def _file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISDIR, "a folder"), (stat.S_ISLNK, "a symbolic link"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a regular file"


def check_target(target: Path, force: bool) -> None:
    """A download goes to a missing path, or replaces a regular file (with --force); nothing else, ever.

    A device (/dev/full), folder, FIFO, socket or symbolic link is refused, --force or not: the
    download is renamed over its target at the end, and would replace the node itself.
    """
    try:
        mode = target.lstat().st_mode
    except FileNotFoundError:
        return
    except OSError as error:
        raise BackupsError(f"-o {target}: {error.strerror}") from error
    if not stat.S_ISREG(mode):
        raise BackupsError(f"-o {target} is {_file_kind(mode)}, not a regular file: a download writes a new file, "
                           "or replaces a regular one with --force; give another -o")
    if not force:
        raise BackupsError(f"{target} exists: remove it, choose another -o, or pass --force")


def download_to(location: Location, entry: Entry, target: Path, force: bool = False, progress: Optional[TextIO] = None,
                check_legacy: bool = True, pg_restore: str = "pg_restore") -> str:
    """Downloads a backup's dump to `target`, atomically, checking size and SHA-256 as it goes.

    The bytes go to a temporary file beside `target` (mode 0600), renamed at the
    end; any failure or interruption removes it. Returns what was checked.
    """
    check_target(target, force)
    expected_sha256 = entry.expected_sha256 or entry.stored_sha256
    size = entry.stored_size or 0
    try:
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    except OSError as error:
        raise BackupsError(f"cannot write in {target.parent}: {error.strerror}") from error
    try:
        with os.fdopen(handle, "wb") as stream:
            digest = fetch(location, entry.dump_key or "", size, stream, progress)
            stream.flush()
            os.fsync(stream.fileno())
        got = digest.hexdigest()
        if expected_sha256 and got != expected_sha256:
            source = "manifest" if entry.expected_sha256 else "sha256 metadata"
            raise BackupsError(
                f"the download of {location.url(entry.dump_key or '')} is corrupt: its SHA-256 {got[:16]}… differs from "
                f"the {source}'s {expected_sha256[:16]}…; nothing was written"
            )
        if expected_sha256:
            checked = f"size and SHA-256 match the {'manifest' if entry.expected_sha256 else 'sha256 metadata'}"
        elif not check_legacy:
            checked = "legacy dump without a checksum"
        elif shutil.which(pg_restore):
            entries = pg_restore_list(Path(temporary), pg_restore)
            checked = f"legacy dump without a checksum: pg_restore --list reads its {entries} entries"
        else:
            checked = "legacy dump without a checksum: NOT verified (run `verify`, which needs pg_restore)"
        check_target(target, force)  # again: something may have appeared there during the download
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return checked


def fetch(location: Location, key: str, size: int, stream: Any, progress: Optional[TextIO] = None) -> Any:
    """Streams an object into `stream`; returns its SHA-256. A dropped connection resumes (same ETag)."""
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.exceptions import IncompleteReadError, ReadTimeoutError, ResponseStreamingError
    from urllib3.exceptions import HTTPError as Urllib3Error

    transient = (BotoConnectionError, IncompleteReadError, ReadTimeoutError, ResponseStreamingError, Urllib3Error, ConnectionError, TimeoutError)
    client = location.client()
    digest = hashlib.sha256()
    reporter = Progress(size, progress) if progress else None
    done, etag, failures = 0, None, 0
    while True:
        request = {"Bucket": location.bucket, "Key": key}
        if etag:
            request["IfMatch"] = etag
        if done:
            request["Range"] = f"bytes={done}-"
        try:
            response = client.get_object(**request)
            etag = etag or response.get("ETag")
            chunks = response["Body"].iter_chunks(CHUNK_SIZE)
            while True:
                try:
                    chunk = next(chunks)
                except StopIteration:
                    break
                try:
                    stream.write(chunk)
                except OSError as error:
                    raise BackupsError(f"cannot write the download: {error.strerror}; nothing was kept") from error
                digest.update(chunk)
                done += len(chunk)
                if reporter:
                    reporter(len(chunk))
                if done > size:
                    raise BackupsError(f"{location.url(key)} is longer than its {size} bytes: it changed during the download")
        except ClientError as error:
            if _code(error) == "PreconditionFailed" or _status(error) == 412:
                raise BackupsError(f"{location.url(key)} changed during the download; nothing was written") from error
            if _code(error) == "NoSuchKey":
                raise BackupsError(f"{location.url(key)} vanished during the download; nothing was written") from error
            raise
        except transient as error:
            failures += 1
            if failures >= DOWNLOAD_ATTEMPTS:
                raise BackupsError(f"the download of {location.url(key)} broke off {failures} times ({error}); nothing was written") from error
            time.sleep(min(0.5 * failures, 3))
            continue
        if done == size:
            break
        failures += 1
        if failures >= DOWNLOAD_ATTEMPTS:
            raise BackupsError(f"the download of {location.url(key)} stopped at {done} of {size} bytes; nothing was written")
    if reporter:
        reporter.finish()
    return digest


def pg_restore_list(path: Path, pg_restore: str = "pg_restore") -> int:
    """`pg_restore --list`: the archive's table of contents; returns its number of entries."""
    listing = subprocess.run([pg_restore, "--list", str(path)], capture_output=True, text=True)
    if listing.returncode != 0:
        raise BackupsError(f"not a readable pg_dump archive: {_last_line(listing.stderr)}")
    return sum(1 for line in listing.stdout.splitlines() if line and not line.startswith(";"))


def verify(path: Path, pg_restore: str = "pg_restore") -> int:
    """Reads a dump back completely with pg_restore; returns its number of entries."""
    if shutil.which(pg_restore) is None:
        raise BackupsError("pg_restore is not installed (PostgreSQL 15 client tools are needed to verify)")
    entries = pg_restore_list(path, pg_restore)
    full = subprocess.run([pg_restore, "--file=/dev/null", str(path)], capture_output=True, text=True)
    if full.returncode != 0:
        raise BackupsError(f"the archive is damaged: {_last_line(full.stderr)}")
    return entries


def restore_data(location: Location, entry: Entry, directory: Path, out: TextIO, restic: str = "restic") -> Path:
    """Restores the backup's data snapshot into `directory` (new or empty), all or nothing."""
    snapshot_id = entry.data["snapshot"] if entry.data else ""
    tool = Restic(location, restic)
    snapshot = find_snapshot(tool.snapshots(), snapshot_id)
    if snapshot is None:
        raise BackupsError(f"data snapshot {snapshot_id} is not in {location.url(location.data_repository)}")
    out.write(f"restoring data snapshot {snapshot_id[:8]} ({entry.data_details()}) into {directory} ...\n")
    out.flush()
    scratch = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.partial-"))
    try:
        result = tool.run("restore", snapshot["id"], "--target", str(scratch), "--verify")
        if result.returncode != 0:
            raise BackupsError(f"restic restore of snapshot {snapshot_id[:8]} failed: {_last_line(result.stderr)}")
        # A snapshot of /home/django/data taken by path restores under that path; one taken in the folder, at the top.
        source = scratch
        paths = snapshot.get("paths") or []
        if len(paths) == 1 and (scratch / paths[0].lstrip("/")).is_dir() and paths[0].strip("/"):
            source = scratch / paths[0].lstrip("/")
        if directory.exists():
            directory.rmdir()
        os.rename(source, directory)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return directory


def _data_directory(path: Path) -> Path:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise BackupsError(f"--with-data {path}: give a new or empty folder (nothing is overwritten)")
    if not path.absolute().parent.is_dir():
        raise BackupsError(f"--with-data {path}: the folder {path.absolute().parent} does not exist")
    return path.absolute()


# ---------------------------------------------------------------- cron schedules


def cron_interval(schedule: str) -> timedelta:
    """The longest time between two firings of a schedule, in every form a CronJob accepts
    (components/cron.py: the same parser as the config's backupSchedule)."""
    try:
        return cron.interval(schedule.strip())
    except cron.CronError as error:
        raise BackupsError(f"bad schedule: {error}") from None


def parse_duration(text: str) -> timedelta:
    """`3600`, `90s`, `15m`, `1h30m`, `2d` -> a timedelta."""
    text = text.strip().lower()
    if re.fullmatch(r"\d+", text):
        return timedelta(seconds=int(text))
    parts = re.fullmatch(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text)
    if not text or not parts:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (e.g. 3600, 90s, 15m, 1h30m, 2d)")
    d, h, m, s = (int(value or 0) for value in parts.groups())
    return timedelta(days=d, hours=h, minutes=m, seconds=s)


def clock_window() -> str:
    """How far a stamp may be from the server's time, in words: 'more than 10m ahead of, or 6h 10m behind,'."""
    return f"more than {human_duration(CLOCK_TOLERANCE)} ahead of, or {human_duration(LONGEST_BACKUP + CLOCK_TOLERANCE)} behind,"


def human_duration(delta: timedelta) -> str:
    """48h, 7d, 15m, 1h 30m, 45s."""
    seconds = int(delta.total_seconds())
    if seconds % 86400 == 0 and seconds >= 3 * 86400:
        return f"{seconds // 86400}d"
    if seconds % 3600 == 0 and seconds >= 3600:
        return f"{seconds // 3600}h"
    if seconds < 3600:
        return f"{seconds // 60}m" if seconds % 60 == 0 else f"{seconds}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60}m"


# ---------------------------------------------------------------- kubectl (`now`)


class Kubectl:
    """kubectl with a context and a namespace."""

    def __init__(self, namespace: str, context: Optional[str], binary: str = "kubectl"):
        if shutil.which(binary) is None:
            raise BackupsError("kubectl is not installed: `backups now` starts the backup Job with kubectl (install it, with access to the cluster)")
        self.namespace, self.context, self.binary = namespace, context, binary

    def command(self, *args: str) -> list[str]:
        return [self.binary, *(["--context", self.context] if self.context else []), "--namespace", self.namespace, *args]

    def run(self, *args: str, input: Optional[str] = None, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(self.command(*args), capture_output=True, text=True, input=input)
        if check and result.returncode != 0:
            raise BackupsError(f"`kubectl {' '.join(args[:3])}` failed: {_last_line(result.stderr) or f'exit code {result.returncode}'}")
        return result


def start_backup(kubectl: Kubectl, name: str, reason: str) -> None:
    """Creates a Job from the CronJob, with BACKUP_REASON set on every container."""
    rendered = kubectl.run("create", "job", f"--from=cronjob/{CRONJOB}", name, "--dry-run=client", "--output=json")
    job = _json(rendered.stdout, "kubectl create job --dry-run")
    spec = job.get("spec", {}).get("template", {}).get("spec", {})
    for container in [*spec.get("initContainers", []), *spec.get("containers", [])]:
        env = [item for item in container.get("env", []) if item.get("name") != "BACKUP_REASON"]
        container["env"] = [*env, {"name": "BACKUP_REASON", "value": reason}]
    kubectl.run("create", "--filename=-", "--output=name", input=json.dumps(job))


def job_state(job: dict) -> tuple[str, str]:
    """("running" | "succeeded" | "failed", details) from a Job's status."""
    status = job.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") in ("Complete", "SuccessCriteriaMet"):
            return "succeeded", ""
        if condition.get("type") in ("Failed", "FailureTarget"):
            details = ": ".join(text for text in (condition.get("reason"), condition.get("message")) if text)
            return "failed", details
    active, failed = int(status.get("active") or 0), int(status.get("failed") or 0)
    details = f"{active} pod running" if active else "waiting for a pod"
    if failed:
        details += f", {failed} failed attempt(s)"
    return "running", details


def follow(kubectl: Kubectl, name: str, timeout: timedelta, poll: float, out: TextIO,
           clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
    """Waits for the Job, printing what changes; raises on failure or timeout (after printing its logs)."""
    started = clock()
    last, last_report = "", started
    while True:
        state, details = job_state(_json(kubectl.run("get", "job", name, "--output=json").stdout, "kubectl get job"))
        elapsed = clock() - started
        if state == "succeeded":
            out.write(f"job {name} succeeded in {human_duration(timedelta(seconds=int(elapsed)))}\n")
            return
        if state == "failed":
            _print_logs(kubectl, name, out)
            raise BackupsError(f"backup job {name} failed ({details}); its logs are above")
        if details != last or clock() - last_report >= 60:
            out.write(f"job {name}: {details} ({human_duration(timedelta(seconds=int(elapsed)))})\n")
            out.flush()
            last, last_report = details, clock()
        if elapsed >= timeout.total_seconds():
            _print_logs(kubectl, name, out)
            raise BackupsError(
                f"backup job {name} did not finish within {human_duration(timeout)}; it goes on in the cluster: "
                f"kubectl -n {kubectl.namespace} logs -f job/{name} --all-containers"
            )
        sleep(poll)


def _print_logs(kubectl: Kubectl, name: str, out: TextIO) -> None:
    logs = kubectl.run("logs", f"job/{name}", "--all-containers", check=False)
    out.write(f"--- logs of job/{name} ---\n{logs.stdout or logs.stderr}".rstrip("\n") + "\n--- end of logs ---\n")


# ---------------------------------------------------------------- printing


class Progress:
    """Thread-safe download progress, printed at most twice a second."""

    def __init__(self, total: int, stream: TextIO, clock: Callable[[], float] = time.monotonic):
        self.total, self.stream, self.clock = total, stream, clock
        self.done = 0
        self.started = clock()
        self.last_report = 0.0
        self.reported = -1
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
            if self.reported != self.done:
                self._report(self.clock())
            self.stream.write("\n")
            self.stream.flush()

    def _report(self, now: float) -> None:
        self.reported = self.done
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
    return human_span(now - moment)


def human_span(delta: timedelta) -> str:
    """A length of time, e.g. '3d 4h', '1h 5m', '25m' (0m for a negative one)."""
    seconds = int(delta.total_seconds())
    if seconds < 3600:
        return f"{max(seconds, 0) // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h {seconds % 3600 // 60}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600}h"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def print_listing(inv: Inventory, now: datetime, out: TextIO) -> None:
    location = inv.location
    if not inv.entries:
        out.write(f"no backups under {location.url(location.root)}\n")
        return
    latest = inv.latest()
    rows = [("STAMP", "AGE", "SIZE", "HOLDS", "REASON", "STATE")]
    for entry in inv.entries:
        state = entry.flagged_state() + (" (latest)" if entry is latest else "")
        size = human_size(entry.size) if entry.size is not None else "-"
        rows.append((entry.stamp, human_age(entry.taken, now), size, entry.holds(), entry.reason or "-", state))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        out.write("  ".join([row[0].ljust(widths[0]), row[1].rjust(widths[1]), row[2].rjust(widths[2]),
                             row[3].ljust(widths[3]), row[4].ljust(widths[4]), row[5]]).rstrip() + "\n")
    flagged = inv.clock_flagged()
    if flagged:
        out.write(f"CLOCK: {len(flagged)} stamp{'s' if len(flagged) > 1 else ''} {clock_window()} the server's time of the "
                  "backup: the clock of the pod that took it was wrong; ages and latest follow the server's time\n")
    if latest:
        out.write(f"latest good: {latest.stamp} ({location.url(latest.manifest_key or latest.dump_key or '')})\n")
    else:
        out.write(f"no good backup under {location.url(location.root)}\n")


# ---------------------------------------------------------------- the commands


def command_list(args: argparse.Namespace, location: Location, out: TextIO, err: TextIO) -> int:
    inv = inventory(location, check_data=not args.no_data_check, restic=args.restic)
    now = datetime.now(timezone.utc)
    for warning in inv.warnings:
        err.write(f"warning: {redact_text(warning)}\n")
    if args.json:
        latest = inv.latest()
        document = {
            "bucket": location.bucket,
            "root": location.root,
            "endpoint": redact_url(location.endpoint_url),
            "latest": latest.stamp if latest else None,
            "backups": [entry.as_json(now) for entry in inv.entries],
        }
        out.write(json.dumps(document, indent=2) + "\n")
    else:
        print_listing(inv, now, out)
    return 0


def command_download(args: argparse.Namespace, location: Location, out: TextIO, err: TextIO) -> int:
    data_directory = None
    if args.with_data is not None:
        if not Restic.installed(args.restic):
            raise BackupsError("restic is not installed: it restores the data snapshot (--with-data); install restic (e.g. apt install restic) or leave --with-data out")
        data_directory = _data_directory(args.with_data)
    if args.output is not None:
        # The folder must exist, and a file named by -o be one that may be written, before anything is downloaded.
        named = output_path(args.output, "x.dump")
        if not Path(args.output).expanduser().is_dir():
            check_target(named, args.force)
    location, entry = resolve(location, args.backup, check_data=not args.no_data_check, with_data=data_directory is not None,
                              restic=args.restic)
    if data_directory is not None and not entry.data:
        raise BackupsError(f"backup {entry.stamp} holds no data snapshot (database only): leave --with-data out")
    target = output_path(args.output, entry.name if entry.name.endswith(".dump") else f"{entry.stamp}.dump")
    check_target(target, args.force)
    err.write(f"downloading {location.url(entry.dump_key or '')} ({human_size(entry.size or 0)}) to {target}\n")
    checked = download_to(location, entry, target, force=args.force, progress=err)
    out.write(f"downloaded {entry.stamp} to {target} ({human_size(entry.size or 0)}): {checked}\n")
    if data_directory is not None:
        restore_data(location, entry, data_directory, out, args.restic)
        out.write(f"restored data snapshot {entry.data['snapshot'][:8]} into {data_directory}\n")
    elif entry.data:
        out.write(f"this backup also holds a data snapshot ({entry.data_details()}): add --with-data DIR to restore it\n")
    return 0


def command_verify(args: argparse.Namespace, location: Location, out: TextIO, err: TextIO) -> int:
    if shutil.which(args.pg_restore) is None:
        raise BackupsError("pg_restore is not installed (PostgreSQL 15 client tools are needed to verify)")
    location, entry = resolve(location, args.backup, check_data=not args.no_data_check, restic=args.restic)
    with tempfile.TemporaryDirectory(prefix="labeling-verify-") as scratch:
        path = Path(scratch) / f"{entry.stamp}.dump"
        checked = download_to(location, entry, path, progress=err, check_legacy=False)
        entries = verify(path, args.pg_restore)
    out.write(f"database: ok, {location.url(entry.dump_key or '')} ({human_size(entry.size or 0)}): {checked}; "
              f"pg_restore reads all {entries} entries\n")
    if not entry.data:
        out.write("data: none in this backup\n" if entry.kind == "backup" else "data: none (a dump without a manifest holds the database only)\n")
        return 0
    snapshot_id = entry.data["snapshot"]
    if not Restic.installed(args.restic):
        out.write(f"data: skipped: restic is not installed (snapshot {snapshot_id[:8]} not checked)\n")
        return 0
    tool = Restic(location, args.restic)
    if find_snapshot(tool.snapshots(), snapshot_id) is None:
        raise BackupsError(f"data snapshot {snapshot_id[:8]} is not in {location.url(location.data_repository)}")
    subset = args.read_data_subset
    check = tool.run("check", *([f"--read-data-subset={subset}"] if subset not in ("0", "0%", "") else []))
    if check.returncode != 0:
        raise BackupsError(f"restic check of {location.url(location.data_repository)} failed: {_last_line(check.stderr) or _last_line(check.stdout)}")
    read = f"read {subset} of its data" if subset not in ("0", "0%", "") else "structure only"
    out.write(f"data: ok, snapshot {snapshot_id[:8]} ({entry.data_details()}) is listed; restic check ({read}): no errors\n")
    return 0


def command_now(args: argparse.Namespace, stack: Stack, out: TextIO, err: TextIO) -> int:
    if shutil.which("kubectl") is None:
        raise BackupsError("kubectl is not installed: `backups now` starts the backup Job with kubectl (install it, with access to the cluster)")
    namespace, context = args.namespace, args.context
    if not namespace:
        try:
            namespace = stack.outputs().get("namespace")
            context = context or stack.value("kubeContext") or None
        except BackupsError as error:
            raise BackupsError(f"{error}: pass --namespace (and --context)") from error
        if not namespace:
            raise BackupsError("the stack has no namespace output: run `pulumi up` first, or pass --namespace")
    kubectl = Kubectl(namespace, context)
    name = args.name or f"backup-{args.reason}-{datetime.now(timezone.utc).strftime('%Y%m%d-%H%M%S')}"
    start_backup(kubectl, name, args.reason)
    where = f"namespace {namespace}" + (f", context {context}" if context else ", kubectl's current context")
    out.write(f"started job/{name} from cronjob/{CRONJOB} ({where}), reason {args.reason}\n")
    out.flush()
    try:
        follow(kubectl, name, args.timeout, args.poll, out)
    except KeyboardInterrupt as interrupt:
        raise Interrupted(f"interrupted; the job goes on in the cluster: kubectl -n {namespace} logs -f job/{name} --all-containers") from interrupt
    out.write("the new backup: python -m components.backups list\n")
    return 0


def command_status(args: argparse.Namespace, location: Location, stack: Stack, out: TextIO, err: TextIO) -> int:
    schedule = args.schedule
    if args.max_age is None and not schedule:
        try:
            schedule = stack.outputs().get("backupSchedule")
        except BackupsError as error:
            raise BackupsError(f"{error}: pass --schedule (the stack's backupSchedule) or --max-age") from error
        if not schedule:
            raise BackupsError("the stack has no backupSchedule output: pass --schedule or --max-age")
    if args.max_age is not None:
        limit, why = args.max_age, f"--max-age {human_duration(args.max_age)}"
    else:
        interval = schedule_interval(schedule, "--schedule" if args.schedule else "the stack's backupSchedule")
        limit = 2 * interval
        why = f"twice the longest interval of the schedule {schedule!r} ({human_duration(interval)})"
    inv = inventory(location, check_data=not args.no_data_check, restic=args.restic)
    for warning in inv.warnings:
        err.write(f"warning: {redact_text(warning)}\n")
    latest = inv.latest()
    if latest is None:
        bad = len(inv.entries)
        raise BackupsError(f"no good backup under {location.url(location.root)} ({bad} incomplete or unverifiable: see `list`)")
    now = datetime.now(timezone.utc)
    age = now - latest.taken
    newer = sum(1 for entry in inv.entries if entry.order() > latest.order() and not entry.good)
    note = f"; {newer} newer incomplete or bad (see `list`)" if newer else ""
    # Its age is the server's (LastModified): a stamp from a clock a year ahead does not make it new.
    out.write(f"newest good backup: {latest.stamp} ({latest.reason or latest.kind}), {human_age(latest.taken, now)} old; "
              f"limit {human_duration(limit)}: {why}{note}\n")
    if clock := latest.clock_problem():
        err.write(f"warning: CLOCK: the newest good backup {latest.stamp} was stored at {latest.taken:%Y-%m-%d %H:%M:%S} UTC "
                  f"by the server's clock, its {clock}: the clock of the pod that took it was wrong; "
                  "its age above is the server's\n")
    others = [entry for entry in inv.clock_flagged() if entry is not latest]
    if others:
        err.write(f"warning: CLOCK: {len(others)} other backup stamp{'s are' if len(others) > 1 else ' is'} {clock_window()} "
                  "the server's time (see `list`)\n")
    if age > limit:
        raise StaleBackups(
            f"the newest good backup ({latest.stamp}) is {human_age(latest.taken, now)} old, more than {human_duration(limit)} "
            f"({why}): the backups are failing or not running"
        )
    return 0


def schedule_interval(schedule: str, what: str) -> timedelta:
    """The longest interval of a schedule; a bad one named by where it came from (exit 2 for --schedule)."""
    try:
        return cron_interval(schedule)
    except BackupsError as error:
        raise (UsageError if what.startswith("--") else BackupsError)(f"{what} {schedule!r}: {error}") from error


class _Parser(argparse.ArgumentParser):
    """argparse's usage errors as a UsageError: one `error:` line on the command's stream, exit 2."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(f"{message} (see {self.prog} --help)")


def parser() -> argparse.ArgumentParser:
    top = _Parser(
        prog="python -m components.backups",
        description="List, download, verify, start and watch a workspace's backups (see docs/backups.md).",
        epilog="Exit codes: 0 ok, 1 error, 2 usage error (a bad option or argument), 3 (status) the newest good "
               "backup is too old (2 before), 130 interrupted.",
    )
    top.add_argument("--stack", help="Pulumi stack (default: the selected one)")
    top.add_argument("--endpoint", help="S3 endpoint URL, e.g. https://s3.fr-par.scw.cloud or http://localhost:9000")
    top.add_argument("--region", help="S3 region (default: from a Scaleway endpoint, else 'minio')")
    top.add_argument("--bucket", help="backup bucket (stack output backupBucket)")
    top.add_argument("--prefix", help="the workspace's prefix: acme/database/ (stack output backupPrefix) or acme/")
    top.add_argument("--access-key", help="S3 access key (or AWS_ACCESS_KEY_ID)")
    top.add_argument("--secret-key", help="S3 secret key (or AWS_SECRET_ACCESS_KEY)")
    top.add_argument("--restic", default="restic", help=argparse.SUPPRESS)
    top.add_argument("--pg-restore", default="pg_restore", help=argparse.SUPPRESS)
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    listing = commands.add_parser("list", help="the backups, newest first, with their checks")
    listing.add_argument("--json", action="store_true", help="print JSON")

    reference_help = "latest (the newest good backup), a stamp (20261130T030000Z or 20261130T030000Z-0a1b2c3d), a manifest key (acme/backups/<stamp>.json), a dump key (acme/database/<stamp>.dump), or s3://bucket/key"
    fetch_ = commands.add_parser("download", help="download a backup's database dump (and restore its data snapshot)")
    fetch_.add_argument("backup", metavar="REF", help=reference_help)
    fetch_.add_argument("-o", "--output", metavar="PATH",
                        help="file to write, or an existing folder to write <stamp>.dump into (default: the current folder)")
    fetch_.add_argument("--force", action="store_true", help="replace an existing file")
    fetch_.add_argument("--with-data", type=Path, metavar="DIR",
                        help="also restore the data snapshot (CVAT's data volume) into DIR, a new or empty folder (needs restic)")

    check = commands.add_parser("verify", help="download a backup and read it back with pg_restore (and restic check)")
    check.add_argument("backup", metavar="REF", help=reference_help)
    check.add_argument("--read-data-subset", default="5%", metavar="SUBSET",
                       help="share of the data repository restic check reads (default 5%%; 0: structure only)")

    now = commands.add_parser("now", help="run a backup in the cluster now (kubectl) and follow it")
    now.add_argument("--namespace", help="the workspace's namespace (default: stack output namespace)")
    now.add_argument("--context", help="kubectl context (default: the stack's kubeContext, else kubectl's current one)")
    now.add_argument("--reason", choices=REASONS, default="manual", help="reason written in the manifest (default: manual)")
    now.add_argument("--name", help="name of the Job (default: backup-<reason>-<UTC time>)")
    now.add_argument("--timeout", type=parse_duration, default=timedelta(hours=1),
                     help="give up waiting after this long (default 1h; e.g. 90m, 3600)")
    now.add_argument("--poll", type=float, default=5.0, metavar="SECONDS", help="seconds between checks of the Job (default 5)")

    status = commands.add_parser("status", help="age of the newest good backup; exit 3 when older than twice the schedule's interval")
    status.add_argument("--schedule", help="the backup schedule (default: stack output backupSchedule)")
    status.add_argument("--max-age", type=parse_duration, metavar="DURATION", help="alert past this age instead (e.g. 36h)")
    for command in (listing, fetch_, check, status):
        command.add_argument("--no-data-check", action="store_true",
                             help="don't run restic to read the data snapshots (their files are still looked for)")
    return top


def main(argv: Optional[list[str]] = None, out: TextIO = sys.stdout, err: TextIO = sys.stderr,
         run: Callable[[list[str]], str] = run_pulumi) -> int:
    """Entry point; returns the exit code."""
    location: Optional[Location] = None
    try:
        args = parser().parse_args(argv)
        stack = Stack(args.stack, run)
        if args.command == "now":
            return command_now(args, stack, out, err)
        if args.command == "status" and args.schedule and args.max_age is None:
            schedule_interval(args.schedule, "--schedule")  # a usage error before the stack or the server is asked
        location = resolve_location(args, run, stack)
        if args.command == "list":
            return command_list(args, location, out, err)
        if args.command == "download":
            return command_download(args, location, out, err)
        if args.command == "verify":
            return command_verify(args, location, out, err)
        if args.command == "status":
            return command_status(args, location, stack, out, err)
        raise AssertionError(args.command)
    except KeyboardInterrupt:
        err.write("\nerror: interrupted\n")
        return 130
    except BackupsError as error:
        err.write(f"error: {redact_text(str(error))}\n")
        return error.code
    except (BotoCoreError, ClientError) as error:
        err.write(f"error: {redact_text(describe_s3_error(error, location))}\n")
        return 1


def describe_s3_error(error: Exception, location: Optional[Location]) -> str:
    """One line for an S3 failure: unreachable endpoint, refused keys, missing bucket, wrong region."""
    endpoint = redact_url(location.endpoint_url) if location else "the S3 endpoint"
    if isinstance(error, ClientError):
        code, status = _code(error), _status(error)
        message = error.response.get("Error", {}).get("Message") or ""
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "AccessDenied", "403") or status == 403:
            return (f"the S3 server refused the keys ({code or status}{': ' + message if message else ''}): check "
                    "--access-key/--secret-key (or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or the stack's "
                    "storageAccessKey/storageSecretKey) and that they may read the backup bucket")
        if code == "NoSuchBucket":
            bucket = error.response.get("Error", {}).get("BucketName") or (location.bucket if location else "the backup bucket")
            return f"bucket {bucket} does not exist at {endpoint}"
        if code == "AuthorizationHeaderMalformed" or "region" in message.lower():
            return f"wrong region for {endpoint} ({message or code}): pass --region"
        return f"S3 request failed ({code or status}): {message or error}"
    from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError

    if isinstance(error, (EndpointConnectionError, ConnectTimeoutError)):
        return f"cannot reach the S3 endpoint {endpoint}: {error}"
    if isinstance(error, ReadTimeoutError):
        return f"the S3 endpoint {endpoint} stopped answering: {error}"
    return f"S3 request failed: {error}"


if __name__ == "__main__":
    sys.exit(main())
