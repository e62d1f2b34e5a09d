"""`python -m backups`: the options, the entry point, and the exit codes.

Exit codes: 0 ok, 1 error, 2 usage error (a bad option or argument), 3 `status`
found the newest good backup too old (2 before), 130 interrupted. Every error is
one `error:` line on stderr, without a traceback and without credentials.
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from pathlib import Path
from typing import Callable, Optional, TextIO

from botocore.exceptions import BotoCoreError, ClientError

from backups.commands import PROGRAM, command_download, command_list, command_now, command_status, command_verify
from backups.display import redact_text
from backups.errors import BackupsError, UsageError
from backups.kubectl import REASONS
from backups.location import Location, Stack, resolve_location, run_pulumi
from backups.s3 import describe_error
from backups.schedule import parse_duration, schedule_interval

DESCRIPTION = (
    "List, download, verify, start and watch a workspace's backups (see docs/backups.md). "
    "Where the backups are comes from the selected Pulumi stack (or --stack); without one, pass --endpoint, "
    "--bucket and --prefix, with the keys in --access-key and --secret-key (or AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY). `now` needs --namespace instead (and --context), `status` --schedule or --max-age."
)
EXIT_CODES = ("Exit codes: 0 ok, 1 error, 2 usage error (a bad option or argument), 3 (status) the newest good "
              "backup is too old (2 before), 130 interrupted.")
REFERENCE_HELP = ("latest (the newest good backup), a stamp (20261130T030000Z or 20261130T030000Z-0a1b2c3d), a manifest key "
                  "(acme/backups/<stamp>.json), a dump key (acme/database/<stamp>.dump), or s3://bucket/key")


class _Parser(argparse.ArgumentParser):
    """argparse's usage errors as a UsageError: one `error:` line on the command's stream, exit 2."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(f"{message} (see {self.prog} --help)")


def parser() -> argparse.ArgumentParser:
    """The command line: where the backups are, then one of the five commands."""
    top = _Parser(prog=PROGRAM, description=DESCRIPTION, epilog=EXIT_CODES)
    top.add_argument("--stack", help="Pulumi stack (default: the selected one)")
    top.add_argument("--endpoint", help="S3 endpoint URL, e.g. https://s3.fr-par.scw.cloud or http://localhost:9000 "
                                        "(default: the stack's; needed without a stack)")
    top.add_argument("--region", help="S3 region (default: from a Scaleway endpoint, else 'minio')")
    top.add_argument("--bucket", help="backup bucket (default: stack output backupBucket; needed without a stack)")
    top.add_argument("--prefix", help="the workspace's prefix: acme/database/ or acme/ "
                                      "(default: stack output backupPrefix; needed without a stack)")
    top.add_argument("--access-key", help="S3 access key (or AWS_ACCESS_KEY_ID; default: the stack's)")
    top.add_argument("--secret-key", help="S3 secret key (or AWS_SECRET_ACCESS_KEY; default: the stack's)")
    top.add_argument("--restic", default="restic", help=argparse.SUPPRESS)
    top.add_argument("--pg-restore", default="pg_restore", help=argparse.SUPPRESS)
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_reading_commands(commands)
    add_cluster_commands(commands)
    return top


def add_reading_commands(commands: argparse._SubParsersAction) -> None:
    """list, download, verify: they read the bucket."""
    listing = commands.add_parser("list", help="the backups, newest first, with their checks")
    listing.add_argument("--json", action="store_true", help="print JSON")

    download = commands.add_parser("download", help="download a backup's database dump (and restore its data snapshot)")
    download.add_argument("backup", metavar="REF", help=REFERENCE_HELP)
    download.add_argument("-o", "--output", metavar="PATH",
                          help="file to write, or an existing folder to write <stamp>.dump into (default: the current folder)")
    download.add_argument("--force", action="store_true", help="replace an existing file")
    download.add_argument("--with-data", type=Path, metavar="DIR",
                          help="also restore the data snapshot (CVAT's data volume) into DIR, a new or empty folder (needs restic)")

    verify = commands.add_parser("verify", help="download a backup and read it back with pg_restore (and restic check)")
    verify.add_argument("backup", metavar="REF", help=REFERENCE_HELP)
    verify.add_argument("--read-data-subset", default="5%", metavar="SUBSET",
                        help="share of the data repository restic check reads (default 5%%; 0: structure only)")
    for command in (listing, download, verify):
        add_no_data_check(command)


def add_cluster_commands(commands: argparse._SubParsersAction) -> None:
    """now (it starts a Job in the cluster), status (the age of the newest good backup)."""
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
    add_no_data_check(status)


def add_no_data_check(command: argparse.ArgumentParser) -> None:
    """--no-data-check, for the commands that list the backups."""
    command.add_argument("--no-data-check", action="store_true",
                         help="don't run restic to read the data snapshots (their files are still looked for)")


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
        if args.command == "status":
            return command_status(args, location, stack, out, err)
        reading = {"list": command_list, "download": command_download, "verify": command_verify}
        return reading[args.command](args, location, out, err)
    except KeyboardInterrupt:
        err.write("\nerror: interrupted\n")
        return 130
    except BackupsError as error:
        err.write(f"error: {redact_text(str(error))}\n")
        return error.code
    except (BotoCoreError, ClientError) as error:
        err.write(f"error: {redact_text(describe_error(error, location))}\n")
        return 1
