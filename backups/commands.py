"""The five commands: list, download, verify, now, status. Each returns its exit code or raises a BackupsError."""

from __future__ import annotations

import argparse
import json
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Optional, TextIO

from backups import layout
from backups.catalog import Entry, Inventory, inventory
from backups.display import clock_window, human_age, human_duration, human_size, listing_document, print_listing, redact_text
from backups.download import (check_target, data_directory, download_to, download_to_check, output_path, read_archive,
                              restore_data)
from backups.errors import BackupsError, Interrupted, StaleBackups
from backups.kubectl import CRONJOB, NOT_INSTALLED, Kubectl, follow, start_backup
from backups.location import Location, Stack
from backups.reference import resolve
from backups.restic import Restic, find_snapshot
from backups.schedule import schedule_interval
from backups.tools import installed, last_line

# How the operator calls the command, in the hints it prints.
PROGRAM = "python -m backups"


def command_list(args: argparse.Namespace, location: Location, out: TextIO, err: TextIO) -> int:
    """`list`: every backup, newest first, with its checks (or as JSON)."""
    inv = inventory(location, check_data=not args.no_data_check, restic=args.restic)
    now = datetime.now(timezone.utc)
    print_warnings(inv, err)
    if args.json:
        out.write(json.dumps(listing_document(inv, now), indent=2) + "\n")
    else:
        print_listing(inv, now, out)
    return 0


def print_warnings(inv: Inventory, err: TextIO) -> None:
    """What could not be checked, one `warning:` line each."""
    for warning in inv.warnings:
        err.write(f"warning: {redact_text(warning)}\n")


def command_download(args: argparse.Namespace, location: Location, out: TextIO, err: TextIO) -> int:
    """`download`: a backup's dump, checked, into a file or folder; with --with-data its data snapshot too."""
    data = None
    if args.with_data is not None:
        if not Restic.installed(args.restic):
            raise BackupsError("restic is not installed: it restores the data snapshot (--with-data); install restic "
                               "(e.g. apt install restic) or leave --with-data out")
        data = data_directory(args.with_data)
    if args.output is not None:
        # The folder must exist, and a file named by -o be one that may be written, before anything is downloaded.
        named = output_path(args.output, layout.dump_name("x"))
        if not Path(args.output).expanduser().is_dir():
            check_target(named, args.force)
    location, entry = resolve(location, args.backup, check_data=not args.no_data_check, with_data=data is not None,
                              restic=args.restic)
    if data is not None and not entry.data:
        raise BackupsError(f"backup {entry.stamp} holds no data snapshot (database only): leave --with-data out")
    target = output_path(args.output, entry.name if layout.is_dump_key(entry.name) else layout.dump_name(entry.stamp))
    check_target(target, args.force)
    err.write(f"downloading {location.url(entry.dump_key or '')} ({human_size(entry.size or 0)}) to {target}\n")
    checked = download_to(location, entry, target, force=args.force, progress=err)
    out.write(f"downloaded {entry.stamp} to {target} ({human_size(entry.size or 0)}): {checked}\n")
    if data is not None:
        restore_data(location, entry, data, out, args.restic)
        out.write(f"restored data snapshot {entry.data['snapshot'][:8]} into {data}\n")
    elif entry.data:
        out.write(f"this backup also holds a data snapshot ({entry.data_details()}): add --with-data DIR to restore it\n")
    return 0


def command_verify(args: argparse.Namespace, location: Location, out: TextIO, err: TextIO) -> int:
    """`verify`: a backup's dump downloaded to a scratch folder and read back whole; its data checked by restic."""
    if not installed(args.pg_restore):
        raise BackupsError("pg_restore is not installed (PostgreSQL 15 client tools are needed to verify)")
    location, entry = resolve(location, args.backup, check_data=not args.no_data_check, restic=args.restic)
    with tempfile.TemporaryDirectory(prefix="labeling-verify-") as scratch:
        path, checked = download_to_check(location, entry, Path(scratch), progress=err)
        entries = read_archive(path, args.pg_restore)
    out.write(f"database: ok, {location.url(entry.dump_key or '')} ({human_size(entry.size or 0)}): {checked}; "
              f"pg_restore reads all {entries} entries\n")
    out.write(verify_data(location, entry, args.restic, args.read_data_subset) + "\n")
    return 0


def verify_data(location: Location, entry: Entry, restic: str, subset: str) -> str:
    """The data line of `verify`: its snapshot listed, and `restic check` reading `subset` of the repository."""
    if not entry.data:
        return "data: none in this backup" if entry.kind == "backup" else "data: none (a dump without a manifest holds the database only)"
    snapshot_id = entry.data["snapshot"]
    if not Restic.installed(restic):
        return f"data: skipped: restic is not installed (snapshot {snapshot_id[:8]} not checked)"
    tool = Restic(location, restic)
    if find_snapshot(tool.snapshots(), snapshot_id) is None:
        raise BackupsError(f"data snapshot {snapshot_id[:8]} is not in {location.url(location.data_repository)}")
    reads = subset not in ("0", "0%", "")
    check = tool.run("check", *([f"--read-data-subset={subset}"] if reads else []))
    if check.returncode != 0:
        raise BackupsError(f"restic check of {location.url(location.data_repository)} failed: "
                           f"{last_line(check.stderr) or last_line(check.stdout)}")
    read = f"read {subset} of its data" if reads else "structure only"
    return f"data: ok, snapshot {snapshot_id[:8]} ({entry.data_details()}) is listed; restic check ({read}): no errors"


def command_now(args: argparse.Namespace, stack: Stack, out: TextIO, err: TextIO) -> int:
    """`now`: a backup Job started from the CronJob and followed; Ctrl-C leaves it running."""
    if not installed("kubectl"):
        raise BackupsError(NOT_INSTALLED)
    namespace, context = cluster_of(args, stack)
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
    out.write(f"the new backup: {PROGRAM} list\n")
    return 0


def cluster_of(args: argparse.Namespace, stack: Stack) -> tuple[str, Optional[str]]:
    """The namespace and kubectl context: the options, else the stack's namespace output and kubeContext."""
    namespace, context = args.namespace, args.context
    if namespace:
        return namespace, context
    try:
        namespace = stack.outputs().get("namespace")
        context = context or stack.value("kubeContext") or None
    except BackupsError as error:
        raise BackupsError(f"{error}: pass --namespace (and --context)") from error
    if not namespace:
        raise BackupsError("the stack has no namespace output: run `pulumi up` first, or pass --namespace")
    return namespace, context


def command_status(args: argparse.Namespace, location: Location, stack: Stack, out: TextIO, err: TextIO) -> int:
    """`status`: the newest good backup's age against the limit; StaleBackups (exit 3) past it."""
    limit, why = age_limit(args, stack)
    inv = inventory(location, check_data=not args.no_data_check, restic=args.restic)
    print_warnings(inv, err)
    latest = inv.latest()
    if latest is None:
        raise BackupsError(f"no good backup under {location.url(location.root)} ({len(inv.entries)} incomplete or unverifiable: see `list`)")
    now = datetime.now(timezone.utc)
    newer = sum(1 for entry in inv.entries if entry.order() > latest.order() and not entry.good)
    note = f"; {newer} newer incomplete or bad (see `list`)" if newer else ""
    # Its age is the server's (LastModified): a stamp from a clock a year ahead does not make it new.
    out.write(f"newest good backup: {latest.stamp} ({latest.reason or latest.kind}), {human_age(latest.taken, now)} old; "
              f"limit {human_duration(limit)}: {why}{note}\n")
    print_clock_warnings(inv, latest, err)
    if now - latest.taken > limit:
        raise StaleBackups(
            f"the newest good backup ({latest.stamp}) is {human_age(latest.taken, now)} old, more than {human_duration(limit)} "
            f"({why}): the backups are failing or not running"
        )
    return 0


def age_limit(args: argparse.Namespace, stack: Stack) -> tuple[timedelta, str]:
    """How old the newest good backup may be, and why: --max-age, else twice the longest interval of the schedule."""
    if args.max_age is not None:
        return args.max_age, f"--max-age {human_duration(args.max_age)}"
    schedule = args.schedule
    if not schedule:
        try:
            schedule = stack.outputs().get("backupSchedule")
        except BackupsError as error:
            raise BackupsError(f"{error}: pass --schedule (the stack's backupSchedule) or --max-age") from error
        if not schedule:
            raise BackupsError("the stack has no backupSchedule output: pass --schedule or --max-age")
    interval = schedule_interval(schedule, "--schedule" if args.schedule else "the stack's backupSchedule")
    return 2 * interval, f"twice the longest interval of the schedule {schedule!r} ({human_duration(interval)})"


def print_clock_warnings(inv: Inventory, latest: Entry, err: TextIO) -> None:
    """`status`: a warning when the newest good backup's stamp is off the server's time, one line for the others."""
    if clock := latest.clock_problem():
        err.write(f"warning: CLOCK: the newest good backup {latest.stamp} was stored at {latest.taken:%Y-%m-%d %H:%M:%S} UTC "
                  f"by the server's clock, its {clock}: the clock of the pod that took it was wrong; "
                  "its age above is the server's\n")
    others = [entry for entry in inv.clock_flagged() if entry is not latest]
    if others:
        err.write(f"warning: CLOCK: {len(others)} other backup stamp{'s are' if len(others) > 1 else ' is'} {clock_window()} "
                  "the server's time (see `list`)\n")
