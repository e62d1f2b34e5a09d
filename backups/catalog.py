"""What is stored: every backup, legacy dump and incomplete upload of a workspace, with its checks.

When a backup was made is the server's time: the `LastModified` of its manifest (written
last, in one PUT; for a dump without a manifest, of the dump). `latest` and ages use it,
the stamp (the pod's clock) only breaks ties, and a stamp too far from that time is
flagged (layout.CLOCK_TOLERANCE, layout.LONGEST_BACKUP): the pod's clock was wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Optional

from backups import layout
from backups.display import human_size, human_span
from backups.errors import BackupsError, UsageError
from backups.layout import CLOCK_TOLERANCE, LONGEST_BACKUP
from backups.location import Location
from backups.restic import Restic, find_snapshot, repository_unusable, short_error
from backups.s3 import head, list_objects, parallel, read_manifest


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
        """The file name of its dump (or of its manifest, or its stamp)."""
        return layout.name_of(self.dump_key or self.manifest_key or self.stamp)

    @property
    def stamped(self) -> Optional[datetime]:
        """The time in the stamp: the pod's clock when the backup started (None for an odd upload name)."""
        return layout.stamp_time(self.stamp)

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
        """Why the backup was made, from its manifest ("" without one)."""
        return str((self.manifest or {}).get("reason") or "")

    @property
    def data(self) -> Optional[dict]:
        """The manifest's data part (its restic snapshot), when it has one."""
        data = (self.manifest or {}).get("data")
        return data if isinstance(data, dict) else None

    @property
    def good(self) -> bool:
        """Usable for a restore: a backup whose checks all pass, or a legacy dump (checked once downloaded)."""
        return self.kind in ("backup", "legacy") and not self.problems

    @property
    def size(self) -> Optional[int]:
        """The dump's size: as stored, else as the manifest says."""
        return self.stored_size if self.stored_size is not None else self.expected_size

    def data_details(self) -> str:
        """'1,204 files, 3.4 GiB' from the manifest."""
        files, size = (self.data or {}).get("files"), (self.data or {}).get("bytes")
        return ", ".join(text for text in (
            f"{files:,} file{'' if files == 1 else 's'}" if isinstance(files, int) else "",
            human_size(size) if isinstance(size, (int, float)) else "",
        ) if text)

    def holds(self) -> str:
        """What the backup holds: 'database, data (2 files, 2.9 KiB)'."""
        if self.kind == "incoming":
            return "database (partial)"
        parts = ["database"] if self.dump_key else []
        if self.data:
            parts.append(f"data ({self.data_details()})" if self.data_details() else "data")
        return ", ".join(parts) or "-"

    def state(self) -> str:
        """Whether it can be restored, in words: ok, BAD: why, INCOMPLETE: why, legacy."""
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
        """The entry in `list --json`."""
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
    """A workspace's entries, newest first, and what could not be checked (warnings)."""

    location: Location
    entries: list[Entry]
    warnings: list[str]

    def latest(self, with_data: bool = False) -> Optional[Entry]:
        """The newest good backup (with a data snapshot, when asked)."""
        for entry in self.entries:
            if entry.good and (entry.data or not with_data):
                return entry
        return None

    def find(self, stamp: str) -> Optional[Entry]:
        """The backup of a stamp; a bare stamp also names the one suffixed backup of that second."""
        matches = [entry for entry in self.entries if entry.stamp == stamp and entry.kind != "incoming"]
        if not matches and layout.is_stamp(stamp) and "-" not in stamp:
            matches = [entry for entry in self.entries if entry.stamp.startswith(stamp + "-") and entry.kind != "incoming"]
            if len(matches) > 1:
                names = ", ".join(sorted(entry.stamp for entry in matches))
                raise UsageError(f"{stamp} names {len(matches)} backups ({names}): give the whole stamp")
        return matches[0] if matches else None

    def clock_flagged(self) -> list[Entry]:
        """The entries whose stamp is too far from the server's time."""
        return [entry for entry in self.entries if entry.clock_problem()]


def inventory(location: Location, check_data: bool = True, restic: str = "restic") -> Inventory:
    """Every backup, legacy dump and incomplete upload of the workspace, newest first, with its checks."""
    client = location.client()
    objects = list_objects(client, location.bucket, location.prefix)
    dumps = {item["Key"]: item for item in objects if layout.DUMP_NAME.match(item["Key"][len(location.prefix) :])}
    manifest_items = {
        item["Key"]: item for item in list_objects(client, location.bucket, location.manifests)
        if layout.MANIFEST_NAME.match(item["Key"][len(location.manifests) :])
    }
    keys = list(manifest_items)
    manifests = dict(zip(keys, parallel(lambda key: read_manifest(client, location.bucket, key), keys)))
    referenced = {manifest["database"]["key"] for manifest, _ in manifests.values() if manifest}
    wanted = sorted(set(dumps) | referenced)
    heads = dict(zip(wanted, parallel(lambda key: head(client, location.bucket, key), wanted)))

    entries = [backup_entry(location, key, manifests[key], manifest_items[key], dumps, heads, referenced) for key in keys]
    entries += [dump_entry(location, item, heads.get(key)) for key, item in dumps.items() if key not in referenced]
    entries += [incoming_entry(location, item) for item in objects if item["Key"].startswith(location.incoming)]
    entries.sort(key=Entry.order, reverse=True)
    result = Inventory(location, entries, [])
    check_snapshots(result, read=check_data, restic=restic)
    return result


def backup_entry(location: Location, key: str, read: tuple[Optional[dict], Optional[str]], item: dict,
                 dumps: dict[str, dict], heads: dict[str, Optional[dict]], referenced: set[str]) -> Entry:
    """The entry of a manifest, checked against its dump; a dump it claims is added to `referenced`."""
    manifest, problem = read
    stamp = layout.stamp_of_name(key[len(location.manifests) :])
    entry = Entry(stamp, "backup", manifest_key=key, manifest=manifest, modified=item.get("LastModified"))
    if problem or manifest is None:
        entry.problems.append(problem or "manifest vanished while listing")
        # Its dump, by the layout's name, belongs to it: not listed apart as a dump without a manifest.
        dump = dumps.get(layout.dump_key(location.root, stamp))
        if dump:
            entry.dump_key, entry.stored_size = dump["Key"], dump["Size"]
            referenced.add(dump["Key"])
    else:
        check_against_manifest(entry, manifest, heads.get(manifest["database"]["key"]))
    return entry


def dump_entry(location: Location, item: dict, found: Optional[dict]) -> Entry:
    """A dump no manifest claims: an orphan (sha256 metadata: a backup that did not finish) or a legacy dump."""
    sha256 = ((found or {}).get("Metadata") or {}).get("sha256")
    stamp = layout.stamp_of_name(item["Key"][len(location.prefix) :])
    return Entry(stamp, "orphan" if sha256 else "legacy", dump_key=item["Key"], stored_size=item["Size"], stored_sha256=sha256,
                 modified=item.get("LastModified"))


def incoming_entry(location: Location, item: dict) -> Entry:
    """An upload under .incoming/: listed, never restored."""
    stamp = layout.leading_stamp(item["Key"][len(location.incoming) :])
    return Entry(stamp, "incoming", dump_key=item["Key"], stored_size=item["Size"], modified=item["LastModified"])


def check_against_manifest(entry: Entry, manifest: dict, found: Optional[dict]) -> None:
    """Marks where the stored dump (`found`, its HeadObject) disagrees with the manifest."""
    database = manifest["database"]
    entry.dump_key = database["key"]
    entry.expected_size, entry.expected_sha256 = database["size"], database["sha256"]
    if manifest.get("stamp") not in (None, entry.stamp):
        entry.problems.append(f"manifest stamp {manifest.get('stamp')} differs from its name")
    if found is None:
        entry.problems.append(f"dump missing ({database['key']})")
        return
    entry.stored_size = found["ContentLength"]
    entry.stored_sha256 = (found.get("Metadata") or {}).get("sha256")
    if entry.stored_size != entry.expected_size:
        entry.problems.append(f"dump holds {entry.stored_size} bytes, the manifest says {entry.expected_size}")
    if not entry.stored_sha256:
        entry.problems.append("dump has no sha256 metadata (unverifiable)")
    elif entry.stored_sha256 != entry.expected_sha256:
        entry.problems.append("dump's sha256 metadata differs from the manifest")


def check_snapshots(inv: Inventory, read: bool = True, restic: str = "restic") -> None:
    """Marks the data part of each backup.

    Its snapshot file must be in the repository (`<key>/data/snapshots/<id>`, one
    listing, as the pods check it); then, with `read` and restic installed,
    `restic snapshots` must list it (the password opens the repository).
    """
    with_data = [entry for entry in inv.entries if entry.kind == "backup" and entry.manifest and entry.data]
    if not with_data:
        return
    present = snapshot_files_present(inv.location, with_data)
    why_not = "" if read else "--no-data-check"
    if present and read and not Restic.installed(restic):
        why_not = "restic not installed"
    if not present or why_not:
        for entry in present:
            entry.data_state = f"not read ({why_not})"
        return
    try:
        snapshots = Restic(inv.location, restic).snapshots()
    except BackupsError as error:
        unreadable(inv, present, error)
        return
    for entry in present:
        if find_snapshot(snapshots, entry.data["snapshot"]):
            entry.data_state = "ok"
        else:
            entry.problems.append(f"data snapshot {entry.data['snapshot'][:8]} not listed by restic")


def snapshot_files_present(location: Location, entries: list[Entry]) -> list[Entry]:
    """The entries whose snapshot file is in the repository; the others are marked bad."""
    prefix = layout.snapshots_prefix(location.root)
    names = [layout.name_of(item["Key"]) for item in list_objects(location.client(), location.bucket, prefix)]
    present = []
    for entry in entries:
        if any(name.startswith(entry.data["snapshot"]) for name in names):
            present.append(entry)
        else:
            entry.problems.append(f"data snapshot {entry.data['snapshot'][:8]} not in the repository")
    return present


def unreadable(inv: Inventory, entries: list[Entry], error: BackupsError) -> None:
    """restic could not list the snapshots: the data is bad when the repository cannot be opened, else unread."""
    if repository_unusable(str(error)):
        for entry in entries:
            entry.problems.append(f"data unreadable: {short_error(str(error))}")
        return
    inv.warnings.append(f"data snapshots not read: {error}")
    for entry in entries:
        entry.data_state = "not read (restic failed)"
