"""Where the exports come from: the options every subcommand shares, and the dataset they give.

Every subcommand takes the same sources (export files, or a project fetched
from a workspace with --url) and the same reading options (--schema,
--per-object, --multi-label, --max-unpacked-mb); `gather` reads them into a
`Dataset`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from .archive import DEFAULT_MAX_UNPACKED_BYTES
from .cvat_client import fetch_export
from .dataset import MODE_PER_OBJECT, Dataset, build_dataset, mode_of, require_items
from .errors import AuditError
from .exports import load_export
from .model import FORMAT_IMAGES, FORMATS, KEEP_OBJECTS, KEEP_TAGS
from .schema import load_schema

PASSWORD_VARIABLE = "CVAT_PASSWORD"


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is less than 1")
    return value


def unit_interval(text: str) -> float:
    """An argparse type: a number between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def sources_parser() -> argparse.ArgumentParser:
    """The parent parser of every subcommand: the options that say where the exports come from."""
    sources = argparse.ArgumentParser(add_help=False)
    group = sources.add_argument_group("exports")
    group.add_argument(
        "exports", nargs="*", metavar="EXPORT", help="CVAT export files: zip, annotations.xml or COCO instances JSON"
    )
    group.add_argument("--url", help="fetch the export from this CVAT workspace (password in $CVAT_PASSWORD)")
    group.add_argument("--user", help="CVAT user name for --url")
    group.add_argument("--project", help="the CVAT project to fetch, and the schema's project to use")
    group.add_argument("--org", help="the CVAT organization (slug) the project belongs to, for --url")
    group.add_argument(
        "--format",
        dest="export_format",
        default=FORMAT_IMAGES,
        choices=FORMATS,
        metavar="FORMAT",
        help="export format to fetch with --url: " + ", ".join(f"'{name}'" for name in FORMATS) + " (default: %(default)s)",
    )
    group.add_argument("--save-export", type=Path, metavar="FILE", help="keep the fetched export at this path")
    group.add_argument(
        "--poll-interval", type=float, default=3.0, help="seconds between checks of CVAT's export (default: %(default)s)"
    )
    group.add_argument(
        "--export-timeout",
        type=float,
        default=1800.0,
        help="seconds to wait for CVAT to prepare the export (default: %(default)s)",
    )
    group.add_argument("--schema", metavar="FILE", help="YAML with the `projects` list, or a stack file Pulumi.<stack>.yaml")
    group.add_argument(
        "--per-object",
        action="store_true",
        help="every object is an item, a video's track as a whole (default: every image/frame, labelled by its one tag)",
    )
    group.add_argument(
        "--multi-label",
        action="store_true",
        help="every tag of an image is an item, each label once per image (tags only; not with --per-object)",
    )
    group.add_argument(
        "--max-unpacked-mb",
        type=positive_int,
        default=DEFAULT_MAX_UNPACKED_BYTES // 1024**2,
        help="refuse exports whose annotations unpack to more (default: %(default)s)",
    )
    return sources


def gather(args) -> tuple[Dataset, list[str]]:
    """The dataset of the exports the command names (files, and the one fetched with --url), and their names."""
    paths = list(args.exports)
    sources = list(args.exports)
    mode = mode_of(args.per_object, args.multi_label)
    schema = load_schema(args.schema, args.project) if args.schema else None
    with tempfile.TemporaryDirectory(prefix="audit-") as scratch:
        if args.url:
            paths.append(str(fetch(args, Path(scratch))))
            sources.append(str(args.save_export) if args.save_export else f"{args.url} project {args.project}")
        elif args.user or args.org:
            raise AuditError("--user and --org only make sense with --url")
        if not paths:
            raise AuditError("no export given: pass export files, or --url, --user and --project to fetch one")
        keep = KEEP_OBJECTS if mode == MODE_PER_OBJECT else KEEP_TAGS
        exports = [load_export(path, args.max_unpacked_mb * 1024**2, keep) for path in paths]
    dataset = build_dataset(exports, args.per_object, schema, multi_label=args.multi_label)
    for note in dataset.notes:
        print(f"note: {note}", file=sys.stderr)
    require_items(dataset)
    return dataset, sources


def fetch(args, scratch: Path) -> Path:
    """Download the project's export from the workspace named by --url."""
    if not args.user or not args.project:
        raise AuditError("--url needs --user and --project")
    password = os.environ.get(PASSWORD_VARIABLE)
    if not password:
        raise AuditError(f"--url needs the password of {args.user!r} in the environment variable {PASSWORD_VARIABLE}")
    destination = args.save_export or scratch / "export.zip"
    print(f"exporting project {args.project!r} from {args.url} as {args.export_format} ...", file=sys.stderr)
    return fetch_export(
        args.url,
        args.user,
        password,
        args.project,
        args.export_format,
        destination,
        organization=args.org,
        poll_interval=args.poll_interval,
        timeout=args.export_timeout,
    )
