"""Which backup an operator names: latest, a stamp, a manifest or dump key, or s3://bucket/key."""

from __future__ import annotations

from dataclasses import replace

from backups import layout
from backups.catalog import Entry, check_against_manifest, inventory
from backups.errors import BackupsError, UsageError
from backups.location import Location
from backups.s3 import check_bucket, get_manifest, head


def resolve(location: Location, reference: str, check_data: bool = True, with_data: bool = False,
            restic: str = "restic") -> tuple[Location, Entry]:
    """The backup a reference names, and where it is (a key or URL may name another workspace or bucket)."""
    reference = reference.strip()
    if reference.startswith("s3://"):
        bucket, _, key = reference[len("s3://") :].partition("/")
        if not bucket or not key:
            raise UsageError(f"{reference!r} is not s3://<bucket>/<key>")
        location = replace(location, bucket=bucket)
        reference = key
    if reference == "latest":
        return location, latest(location, check_data, with_data, restic)
    if match := layout.STAMP_REFERENCE.match(reference):
        return location, by_stamp(location, match.group(1))
    if "/" in reference and (layout.is_manifest_key(reference) or layout.is_dump_key(reference)):
        # The key tells whose backup it is: its data repository and password are beside it.
        if prefix := layout.prefix_of_key(reference):
            location = replace(location, prefix=prefix)
        if layout.is_manifest_key(reference):
            return location, usable(location, entry_from_manifest_key(location, reference))
        return location, usable(location, entry_from_dump_key(location, reference))
    raise UsageError(
        f"{reference!r} is not a backup: give latest, a stamp (20261130T030000Z or 20261130T030000Z-0a1b2c3d), a manifest key "
        f"({location.manifests}<stamp>.json) or a dump key ({location.prefix}<stamp>.dump); see `list`"
    )


def latest(location: Location, check_data: bool, with_data: bool, restic: str) -> Entry:
    """The newest good backup (with a data snapshot, when asked)."""
    inv = inventory(location, check_data, restic)
    entry = inv.latest(with_data=with_data)
    if entry is None:
        bad = sum(1 for e in inv.entries if not e.good)
        what = "good backup with a data snapshot" if with_data else "good backup"
        raise BackupsError(f"no {what} under {location.url(location.root)} ({bad} incomplete or unverifiable: see `list`)")
    return entry


def by_stamp(location: Location, stamp: str) -> Entry:
    """The backup of a stamp; an upload in progress is never one."""
    # A named backup is checked by its download; restic is asked when its data is restored.
    inv = inventory(location, check_data=False)
    entry = inv.find(stamp)
    if entry is None and any(e.stamp == stamp for e in inv.entries):
        raise BackupsError(f"{stamp} is an incomplete upload (.incoming/): it is never restored")
    if entry is None:
        raise BackupsError(f"no backup {stamp} under {location.url(location.root)} (see `list`)")
    return usable(location, entry)


def entry_from_manifest_key(location: Location, key: str) -> Entry:
    """The backup of a manifest, checked against its dump."""
    client = location.client()
    manifest, problem, modified = get_manifest(client, location.bucket, key)
    if manifest is None and problem is None:
        check_bucket(location)
        raise BackupsError(f"no manifest {location.url(key)} (see `list`)")
    stamp = layout.stamp_of_name(key)
    entry = Entry(stamp, "backup", manifest_key=key, manifest=manifest, modified=modified)
    if problem or manifest is None:
        entry.problems.append(problem or "unreadable manifest")
        return entry
    check_against_manifest(entry, manifest, head(client, location.bucket, manifest["database"]["key"]))
    return entry


def entry_from_dump_key(location: Location, key: str) -> Entry:
    """The backup of a dump: with its manifest when the layout puts one beside it, else the dump alone."""
    if f"/{layout.INCOMING}" in key:
        raise BackupsError(f"{key} is an incomplete upload (.incoming/): it is never restored")
    client = location.client()
    found = head(client, location.bucket, key)
    if found is None:
        check_bucket(location)
        raise BackupsError(f"no backup {location.url(key)} (see `list`)")
    stamp = layout.stamp_of_name(key)
    sha256 = (found.get("Metadata") or {}).get("sha256")
    entry = Entry(stamp, "orphan" if sha256 else "legacy", dump_key=key, stored_size=found["ContentLength"], stored_sha256=sha256,
                  modified=found.get("LastModified"))
    if manifest_key := layout.manifest_key_of_dump(key):
        manifest, _, modified = get_manifest(client, location.bucket, manifest_key)
        if manifest and manifest["database"]["key"] == key:
            entry = Entry(stamp, "backup", manifest_key=manifest_key, manifest=manifest, modified=modified)
            check_against_manifest(entry, manifest, found)
    return entry


def usable(location: Location, entry: Entry) -> Entry:
    """Refuses, before any download, a backup that cannot be restored; the bytes themselves are the download's to check."""
    if entry.kind == "backup" and entry.manifest is None:
        raise BackupsError(f"backup {entry.stamp} cannot be used: {'; '.join(entry.problems)}")
    if entry.stored_size is None:
        raise BackupsError(f"backup {entry.stamp} cannot be used: its dump is missing ({location.url(entry.dump_key or '')})")
    if entry.expected_size is not None and entry.stored_size != entry.expected_size:
        raise BackupsError(
            f"backup {entry.stamp} is damaged: its dump does not match its manifest "
            f"(the dump holds {entry.stored_size} bytes, the manifest says {entry.expected_size})"
        )
    return entry
