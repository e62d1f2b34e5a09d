"""restic, against the workspace's data repository `<key>/data` (the snapshots of CVAT's data volume)."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from botocore.exceptions import ClientError

from backups.errors import BackupsError
from backups.s3 import no_such_key
from backups.tools import installed, last_line

if TYPE_CHECKING:  # for the annotations only
    from backups.location import Location

# What restic says when the data cannot be restored at all (not a passing failure of the network).
UNUSABLE = ("wrong password", "no key found", "unable to open config file", "Is there a repository", "no repository password")


class Restic:
    """restic against the workspace's repository `s3:<endpoint>/<bucket>/<key>/data`."""

    def __init__(self, location: "Location", binary: str = "restic"):
        self.location, self.binary = location, binary
        self._password: Optional[bytes] = None

    @staticmethod
    def installed(binary: str = "restic") -> bool:
        """Whether restic is on PATH."""
        return installed(binary)

    @property
    def repository(self) -> str:
        """The repository as restic names it."""
        return f"s3:{self.location.endpoint_url.rstrip('/')}/{self.location.bucket}/{self.location.data_repository}"

    def password(self) -> bytes:
        """The repository's password, read once from `<key>/data-password`."""
        if self._password is None:
            try:
                response = self.location.client().get_object(Bucket=self.location.bucket, Key=self.location.password_key)
            except ClientError as error:
                if no_such_key(error):
                    raise BackupsError(f"no repository password at {self.location.url(self.location.password_key)}") from error
                raise
            self._password = response["Body"].read()
        return self._password

    def run(self, *args: str) -> subprocess.CompletedProcess:
        """Runs restic with the repository, keys and password; leaves no cache, takes no lock.

        Without a lock, reading never makes a backup in the cluster fail on a locked
        repository, and read-only keys are enough. The operator's own RESTIC_* and AWS_*
        variables are left out: they may name another repository or account.
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
        """`restic snapshots --json`."""
        result = self.run("snapshots", "--json")
        if result.returncode != 0:
            raise BackupsError(f"restic cannot list the snapshots of {self.location.url(self.location.data_repository)}: "
                               f"{last_line(result.stderr)}")
        try:
            return json.loads(result.stdout or "[]") or []
        except ValueError as error:
            raise BackupsError(f"restic snapshots printed no JSON: {error}") from error


def find_snapshot(snapshots: list[dict], snapshot: str) -> Optional[dict]:
    """The snapshot a manifest names (by its id or a prefix of it), or None."""
    for item in snapshots:
        if snapshot and (item.get("id", "").startswith(snapshot) or item.get("short_id") == snapshot):
            return item
    return None


def repository_unusable(message: str) -> bool:
    """Whether restic's error means the data cannot be restored (not a passing failure)."""
    return any(text in message for text in UNUSABLE)


def short_error(message: str) -> str:
    """restic's own words, without the command's preamble."""
    return message.split(": ", 1)[-1] if "restic cannot" in message else message
