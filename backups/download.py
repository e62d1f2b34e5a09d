"""Downloading a backup: its dump streamed, checked and written atomically; its archive read back; its data restored.

The SHA-256 of the bytes tells three cases apart: the bytes are the manifest's (ok); they
are the ones the dump's own sha256 metadata names but not the manifest's (the manifest
describes another dump: a mismatch, not a corruption); or they are neither (the dump is
corrupt). A download that fails leaves nothing at its target, and says so; a download
into a scratch folder for `verify` has nothing to say about it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, TextIO

from botocore.exceptions import ClientError

from backups import layout
from backups.catalog import Entry
from backups.display import Progress
from backups.errors import BackupsError
from backups.location import Location
from backups.restic import Restic, find_snapshot
from backups.s3 import code_of, status_of
from backups.tools import installed, last_line

# Bytes read per request while downloading; a dropped connection resumes where it stopped.
CHUNK_SIZE = 1024 * 1024
DOWNLOAD_ATTEMPTS = 5
NOTHING_WRITTEN = "nothing was written"


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


def file_kind(mode: int) -> str:
    """What a file that is not a regular one is, in words."""
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
        raise BackupsError(f"-o {target} is {file_kind(mode)}, not a regular file: a download writes a new file, "
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
    try:
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    except OSError as error:
        raise BackupsError(f"cannot write in {target.parent}: {error.strerror}") from error
    try:
        try:
            checked = write_checked(location, entry, handle, Path(temporary), progress, pg_restore if check_legacy else None)
        except BackupsError as error:
            raise type(error)(f"{error}; {NOTHING_WRITTEN}") from error
        check_target(target, force)  # again: something may have appeared there during the download
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return checked


def download_to_check(location: Location, entry: Entry, folder: Path, progress: Optional[TextIO] = None) -> tuple[Path, str]:
    """Downloads a backup's dump into a scratch `folder` to be read back (`verify`); its path and what was checked."""
    path = folder / layout.dump_name(entry.stamp)
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    return path, write_checked(location, entry, handle, path, progress, None)


def write_checked(location: Location, entry: Entry, handle: int, path: Path, progress: Optional[TextIO],
                  pg_restore: Optional[str]) -> str:
    """Streams the dump into the open file `handle` (at `path`), to disk, and checks it; returns what was checked.

    A dump without a checksum (legacy) is read with `pg_restore --list` when `pg_restore` is given.
    """
    with os.fdopen(handle, "wb") as stream:
        digest = fetch_object(location, entry.dump_key or "", entry.stored_size or 0, stream, progress)
        stream.flush()
        os.fsync(stream.fileno())
    return digest_verdict(location, entry, digest.hexdigest()) or legacy_verdict(path, pg_restore)


def digest_verdict(location: Location, entry: Entry, got: str) -> Optional[str]:
    """What the SHA-256 of the downloaded bytes says: what was checked (None without a checksum to compare).

    Raises when the bytes are not the expected ones, telling a manifest that describes another
    dump (the bytes are the ones of the dump's own sha256 metadata) from a corrupt dump.
    """
    manifest, metadata = entry.expected_sha256, entry.stored_sha256
    url = location.url(entry.dump_key or "")
    if manifest and got == manifest:
        if metadata and metadata != manifest:
            return "size and SHA-256 match the manifest (its sha256 metadata differs: the bytes are the manifest's)"
        return "size and SHA-256 match the manifest"
    if manifest and metadata and got == metadata:
        raise BackupsError(
            f"{url} does not match its manifest: the dump is whole (its SHA-256 {got[:16]}… is its sha256 metadata's) "
            f"but the manifest {entry.manifest_key} says {manifest[:16]}…: the manifest describes another dump"
        )
    if manifest or metadata:
        source, expected = ("manifest", manifest) if manifest else ("sha256 metadata", metadata)
        also = " and from its sha256 metadata" if manifest and metadata else ""
        raise BackupsError(f"the download of {url} is corrupt: its SHA-256 {got[:16]}… differs from "
                           f"the {source}'s {expected[:16]}…{also}")
    return None


def legacy_verdict(path: Path, pg_restore: Optional[str]) -> str:
    """What was checked of a dump without a checksum: its table of contents, when pg_restore can read it."""
    if pg_restore is None:
        return "legacy dump without a checksum"
    if installed(pg_restore):
        return f"legacy dump without a checksum: pg_restore --list reads its {pg_restore_list(path, pg_restore)} entries"
    return "legacy dump without a checksum: NOT verified (run `verify`, which needs pg_restore)"


def transient_errors() -> tuple[type[BaseException], ...]:
    """The failures of a read that another request may not have: the download resumes after them."""
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.exceptions import IncompleteReadError, ReadTimeoutError, ResponseStreamingError
    from urllib3.exceptions import HTTPError as Urllib3Error

    return (BotoConnectionError, IncompleteReadError, ReadTimeoutError, ResponseStreamingError, Urllib3Error, ConnectionError, TimeoutError)


def fetch_object(location: Location, key: str, size: int, stream: Any, progress: Optional[TextIO] = None) -> Any:
    """Streams an object into `stream`; returns its SHA-256. A dropped connection resumes (same ETag)."""
    transient = transient_errors()
    reporter = Progress(size, progress) if progress else None
    transfer = Transfer(location, key, size, stream, reporter)
    failures = 0
    while True:
        try:
            transfer.read()
        except transient as error:
            failures += 1
            if failures >= DOWNLOAD_ATTEMPTS:
                raise BackupsError(f"the download of {location.url(key)} broke off {failures} times ({error})") from error
            time.sleep(min(0.5 * failures, 3))
            continue
        if transfer.done == size:
            break
        failures += 1
        if failures >= DOWNLOAD_ATTEMPTS:
            raise BackupsError(f"the download of {location.url(key)} stopped at {transfer.done} of {size} bytes")
    if reporter:
        reporter.finish()
    return transfer.digest


@dataclass
class Transfer:
    """One object's download: where it stands (bytes done, the ETag they came from) and their SHA-256."""

    location: Location
    key: str
    size: int
    stream: Any
    reporter: Optional[Progress]
    done: int = 0
    etag: Optional[str] = None

    def __post_init__(self) -> None:
        self.digest = hashlib.sha256()

    def read(self) -> None:
        """One GET from where the last one stopped, of the same version of the object (If-Match its ETag)."""
        request = {"Bucket": self.location.bucket, "Key": self.key}
        if self.etag:
            request["IfMatch"] = self.etag
        if self.done:
            request["Range"] = f"bytes={self.done}-"
        try:
            response = self.location.client().get_object(**request)
            self.etag = self.etag or response.get("ETag")
            for chunk in response["Body"].iter_chunks(CHUNK_SIZE):
                self.take(chunk)
        except ClientError as error:
            if code_of(error) == "PreconditionFailed" or status_of(error) == 412:
                raise BackupsError(f"{self.location.url(self.key)} changed during the download") from error
            if code_of(error) == "NoSuchKey":
                raise BackupsError(f"{self.location.url(self.key)} vanished during the download") from error
            raise

    def take(self, chunk: bytes) -> None:
        """Writes, hashes and counts a chunk; more bytes than the object had means it changed."""
        try:
            self.stream.write(chunk)
        except OSError as error:  # not a transient read error: the disk is full or gone
            raise BackupsError(f"cannot write the download: {error.strerror}") from error
        self.digest.update(chunk)
        self.done += len(chunk)
        if self.reporter:
            self.reporter(len(chunk))
        if self.done > self.size:
            raise BackupsError(f"{self.location.url(self.key)} is longer than its {self.size} bytes: it changed during the download")


def pg_restore_list(path: Path, pg_restore: str = "pg_restore") -> int:
    """`pg_restore --list`: the archive's table of contents; returns its number of entries."""
    listing = subprocess.run([pg_restore, "--list", str(path)], capture_output=True, text=True)
    if listing.returncode != 0:
        raise BackupsError(f"not a readable pg_dump archive: {last_line(listing.stderr)}")
    return sum(1 for line in listing.stdout.splitlines() if line and not line.startswith(";"))


def read_archive(path: Path, pg_restore: str = "pg_restore") -> int:
    """Reads a dump back completely with pg_restore; returns its number of entries."""
    if not installed(pg_restore):
        raise BackupsError("pg_restore is not installed (PostgreSQL 15 client tools are needed to verify)")
    entries = pg_restore_list(path, pg_restore)
    full = subprocess.run([pg_restore, "--file=/dev/null", str(path)], capture_output=True, text=True)
    if full.returncode != 0:
        raise BackupsError(f"the archive is damaged: {last_line(full.stderr)}")
    return entries


def data_directory(path: Path) -> Path:
    """`--with-data DIR`: a new or empty folder in an existing one (nothing is overwritten)."""
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise BackupsError(f"--with-data {path}: give a new or empty folder (nothing is overwritten)")
    if not path.absolute().parent.is_dir():
        raise BackupsError(f"--with-data {path}: the folder {path.absolute().parent} does not exist")
    return path.absolute()


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
            raise BackupsError(f"restic restore of snapshot {snapshot_id[:8]} failed: {last_line(result.stderr)}")
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
