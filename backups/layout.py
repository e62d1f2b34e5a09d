"""The key layout of docs/backups.md, in one module: stamps, keys, the manifest, the clock rule.

Everything a workspace keeps in its backup bucket is under its root `<key>/`:

    <key>/database/<stamp>.dump            a database dump (sha256 metadata since manifests)
    <key>/database/.incoming/<stamp>.dump  an upload in progress or abandoned: never a backup
    <key>/backups/<stamp>.json             the manifest of one whole-workspace backup, written last
    <key>/data                             the restic repository of CVAT's data volume
    <key>/data-password                    its password

The stack output backupPrefix is the database prefix `<key>/database/`; the other keys
are worked out from it here, and only here.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from typing import Optional

# The bare form (one backup a second) and the suffixed one (random per run, sorts after the bare stamp).
STAMP = r"[0-9]{8}T[0-9]{6}Z(?:-[0-9a-f]{8})?"
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
DUMP_EXTENSION = ".dump"
MANIFEST_EXTENSION = ".json"
DUMP_NAME = re.compile(rf"^{STAMP}\.dump$")
MANIFEST_NAME = re.compile(rf"^{STAMP}\.json$")
# What an operator may give for a backup by its stamp: the stamp, or the name of its dump or manifest.
STAMP_REFERENCE = re.compile(rf"^({STAMP})(\.dump|\.json)?$")
# A key that tells whose backup it is: `<key>/backups/<stamp>.json` or `<key>/database/<stamp>.dump`.
WORKSPACE_KEY = re.compile(r"^(.*/)?(backups/[^/]+\.json|database/[^/]+\.dump)$")

DATABASE = "database/"
INCOMING = ".incoming/"
MANIFESTS = "backups/"
DATA = "data"
PASSWORD = "data-password"

# A manifest is a few hundred bytes; anything this large is not one (and is not read further).
MAX_MANIFEST_SIZE = 1024 * 1024
# A stamp is the pod's time when a backup started, the server's time of its manifest when it
# ended: a stamp may trail by as long as a backup can run (the scheduled Job's deadline) plus
# the tolerance, and lead by the tolerance only. Further apart, the pod's clock was wrong.
CLOCK_TOLERANCE = timedelta(minutes=10)
# components.backups.SCHEDULED_DEADLINE_SECONDS (not imported: it would load the Kubernetes SDK; a test ties them).
LONGEST_BACKUP = timedelta(hours=6)


def is_stamp(text: str) -> bool:
    """Whether `text` is a stamp, in either form."""
    return re.fullmatch(STAMP, text) is not None


def stamp_time(stamp: str) -> Optional[datetime]:
    """The time in a stamp (the pod's clock when the backup started); None when it is no stamp."""
    if not is_stamp(stamp):
        return None
    try:
        return datetime.strptime(stamp[:16], STAMP_FORMAT).replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def leading_stamp(name: str) -> str:
    """The stamp an upload's name starts with, or the whole name when it starts with none."""
    match = re.match(STAMP, name)
    return match.group(0) if match else name


def database_prefix(prefix: str) -> str:
    """`acme`, `acme/` or `acme/database` -> `acme/database/` (the stack's backupPrefix); "" for an empty prefix."""
    prefix = prefix.strip().strip("/")
    if not prefix:
        return ""
    if prefix != "database" and not prefix.endswith("/database"):
        prefix += "/database"
    return prefix + "/"


def root_of(prefix: str) -> str:
    """`<key>/` from the database prefix `<key>/database/`."""
    return prefix[: -len(DATABASE)]


def manifests_prefix(root: str) -> str:
    """Where the manifests are: `<key>/backups/`."""
    return root + MANIFESTS


def incoming_prefix(root: str) -> str:
    """Where uploads in progress are: `<key>/database/.incoming/`."""
    return root + DATABASE + INCOMING


def data_repository(root: str) -> str:
    """The restic repository of CVAT's data volume: `<key>/data`."""
    return root + DATA


def snapshots_prefix(root: str) -> str:
    """Where restic keeps one file per snapshot, named by its id."""
    return data_repository(root) + "/snapshots/"


def password_key(root: str) -> str:
    """The restic repository's password: `<key>/data-password`."""
    return root + PASSWORD


def dump_name(stamp: str) -> str:
    """The file name of a backup's dump: `<stamp>.dump`."""
    return stamp + DUMP_EXTENSION


def dump_key(root: str, stamp: str) -> str:
    """A backup's database dump: `<key>/database/<stamp>.dump`."""
    return f"{root}{DATABASE}{dump_name(stamp)}"


def manifest_key(root: str, stamp: str) -> str:
    """A backup's manifest: `<key>/backups/<stamp>.json`."""
    return f"{manifests_prefix(root)}{stamp}{MANIFEST_EXTENSION}"


def is_manifest_key(key: str) -> bool:
    """Whether a key names a manifest (by its extension)."""
    return key.endswith(MANIFEST_EXTENSION)


def is_dump_key(key: str) -> bool:
    """Whether a key names a dump (by its extension)."""
    return key.endswith(DUMP_EXTENSION)


def stamp_of_name(name: str) -> str:
    """The stamp of a dump's or a manifest's name (or key): its last part without the extension."""
    name = name_of(name)
    for extension in (DUMP_EXTENSION, MANIFEST_EXTENSION):
        if name.endswith(extension):
            return name[: -len(extension)]
    return name


def name_of(key: str) -> str:
    """The last part of a key."""
    return key.rsplit("/", 1)[-1]


def prefix_of_key(key: str) -> Optional[str]:
    """The database prefix of the workspace a manifest or dump key belongs to (its repository is beside it)."""
    match = WORKSPACE_KEY.match(key)
    return f"{match.group(1) or ''}{DATABASE}" if match else None


def manifest_key_of_dump(key: str) -> Optional[str]:
    """Where the manifest of a dump is, when the dump's key follows the layout (`<key>/database/<stamp>.dump`)."""
    name = name_of(key)
    if not key.endswith(f"/{DATABASE}{name}") or not STAMP_REFERENCE.match(name):
        return None
    return manifest_key(key[: -len(DATABASE + name)], stamp_of_name(name))


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
    problem = database_problem(manifest.get("database"))
    if problem:
        return None, problem
    data = manifest.get("data")
    if data is not None and (not isinstance(data, dict) or not isinstance(data.get("snapshot"), str) or not data["snapshot"]):
        return None, "manifest's data has no snapshot"
    return manifest, None


def database_problem(database: object) -> Optional[str]:
    """What is wrong with a manifest's `database` part, or None."""
    if not isinstance(database, dict) or not isinstance(database.get("key"), str) or not database["key"]:
        return "manifest has no database.key"
    if not isinstance(database.get("size"), int) or database["size"] < 0:
        return "manifest has no database.size"
    if not isinstance(database.get("sha256"), str) or not re.fullmatch(r"[0-9a-f]{64}", database["sha256"]):
        return "manifest has no database.sha256"
    return None
