"""The command line: `python -m audit {sample,report,split,errors} EXPORT... [options]`.

Every mistake a user can make ends with one `error: ...` line on stderr and
exit status 1 (2 for a malformed command line, from argparse); nothing the
user does should show a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from .archive import DEFAULT_MAX_UNPACKED_BYTES
from .balance import balanced_split
from .csv_output import attribute_column, write_csv
from .cvat_client import fetch_export
from .dataset import Dataset, build_dataset, require_items
from .errors import AuditError
from .exports import load_export
from .model import FORMAT_IMAGES, FORMATS, KEEP_OBJECTS, KEEP_TAGS
from .model_errors import attribute_errors, group_weights, read_predictions, score
from .report import build_report, clean, write_report
from .sampling import stratified_sample
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


def build_parser() -> argparse.ArgumentParser:
    """The parser of all subcommands, sharing the options that say where the exports come from."""
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
        "--per-object", action="store_true", help="every object is an item (default: every image/frame, labelled by its one tag)"
    )
    group.add_argument(
        "--max-unpacked-mb",
        type=positive_int,
        default=DEFAULT_MAX_UNPACKED_BYTES // 1024**2,
        help="refuse exports whose annotations unpack to more (default: %(default)s)",
    )

    parser = argparse.ArgumentParser(
        prog="python -m audit", description="Audit the additional labels (conditions, protected attributes) of CVAT exports."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sample = commands.add_parser("sample", parents=[sources], help="a random subset stratified by label, to annotate")
    sample.add_argument("--size", type=positive_int, required=True, help="how many items to draw")
    sample.add_argument("--seed", type=int, default=0, help="seed of the random draw (default: %(default)s)")
    sample.add_argument("--out", type=Path, required=True, help="CSV with item,label")
    sample.set_defaults(run=run_sample)

    report = commands.add_parser("report", parents=[sources], help="coverage and label × attribute association")
    report.add_argument("--out", type=Path, required=True, help="directory for report.html, report.json and charts/")
    report.add_argument("--alpha", type=unit_interval, default=0.01, help="flag when p < alpha (default: %(default)s)")
    report.add_argument("--min-v", type=unit_interval, default=0.3, help="and Cramér's V >= this (default: %(default)s)")
    report.set_defaults(run=run_report)

    split = commands.add_parser("split", parents=[sources], help="a validation set balanced over labels and attributes")
    amount = split.add_mutually_exclusive_group(required=True)
    amount.add_argument("--per-cell", type=positive_int, help="items wanted in every (label, attribute=value) cell")
    amount.add_argument("--size", type=positive_int, help="total items, shared equally by the labels")
    split.add_argument("--seed", type=int, default=0, help="seed of the random order of candidates (default: %(default)s)")
    split.add_argument("--out", type=Path, required=True, help="manifest CSV: item,label and a column attr:<name> per attribute")
    split.add_argument("--json", type=Path, help="also write the cells and shortfalls as JSON")
    split.set_defaults(run=run_split)

    errors = commands.add_parser("errors", parents=[sources], help="error rates per group and loss weights")
    errors.add_argument("--predictions", required=True, help="CSV with item,predicted")
    errors.add_argument("--out", type=Path, required=True, help="directory for weights.csv")
    errors.add_argument("--json", type=Path, help="also write the error rates as JSON")
    errors.set_defaults(run=run_errors)
    return parser


def gather(args) -> tuple[Dataset, list[str]]:
    """The dataset of the exports the command names (files, and the one fetched with --url), and their names."""
    paths = list(args.exports)
    sources = list(args.exports)
    schema = load_schema(args.schema, args.project) if args.schema else None
    with tempfile.TemporaryDirectory(prefix="audit-") as scratch:
        if args.url:
            paths.append(str(fetch(args, Path(scratch))))
            sources.append(str(args.save_export) if args.save_export else f"{args.url} project {args.project}")
        elif args.user or args.org:
            raise AuditError("--user and --org only make sense with --url")
        if not paths:
            raise AuditError("no export given: pass export files, or --url, --user and --project to fetch one")
        keep = KEEP_OBJECTS if args.per_object else KEEP_TAGS
        exports = [load_export(path, args.max_unpacked_mb * 1024**2, keep) for path in paths]
    dataset = build_dataset(exports, args.per_object, schema)
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


def write_json(path: Path, document: dict) -> None:
    """A JSON file; non-finite numbers are refused, so statistics must already be None where undefined."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n", encoding="utf-8")


def run_sample(args) -> int:
    """`sample`: write the stratified sample."""
    dataset, _ = gather(args)
    chosen = stratified_sample(dataset.items, args.size, args.seed)
    if args.size > len(dataset.items):
        print(f"note: --size {args.size} is more than the {len(dataset.items)} items: all of them are listed", file=sys.stderr)
    write_csv(args.out, ["item", "label"], [[item.id, item.label] for item in chosen])
    counts = {}
    for item in chosen:
        counts[item.label] = counts.get(item.label, 0) + 1
    print(
        f"{len(chosen)} items written to {args.out} (" + ", ".join(f"{label}: {count}" for label, count in counts.items()) + ")"
    )
    return 0


def run_report(args) -> int:
    """`report`: write report.json, report.html and the charts."""
    dataset, paths = gather(args)
    report = build_report(dataset, paths, args.alpha, args.min_v)
    write_report(report, args.out)
    for entry in report["attributes"]:
        verdict = "FLAGGED" if entry["flagged"] else "ok"
        print(
            f"{entry['name']} ({entry['kind']}): coverage {entry['coverage']}/{report['items']}, "
            f"p={entry['p_value']}, V={entry['cramers_v']}: {verdict}"
        )
    print(f"report written to {args.out / 'report.html'}")
    return 0


def run_split(args) -> int:
    """`split`: write the balanced validation manifest and its shortfalls."""
    dataset, _ = gather(args)
    if not dataset.attributes:
        raise AuditError("nothing to balance: no audited attribute (see the note above)")
    result = balanced_split(dataset, args.seed, per_cell=args.per_cell, size=args.size)
    names = [attribute.name for attribute in dataset.attributes]
    write_csv(
        args.out,
        ["item", "label", *(attribute_column(name) for name in names)],
        [[item.id, item.label, *(item.values[name] for name in names)] for item in result.items],
    )
    print(f"{len(result.items)} items written to {args.out} (from {len(dataset.fully_audited())} fully audited items)")
    for shortfall in result.shortfalls:
        print(f"short: {shortfall.sentence()}")
    if args.json:
        write_json(
            args.json,
            {
                "size": len(result.items),
                "seed": args.seed,
                "per_cell": args.per_cell,
                "requested_size": args.size,
                "cells": result.cells,
                "shortfalls": [{"cell": shortfall.cell, "missing": shortfall.missing} for shortfall in result.shortfalls],
            },
        )
    return 0


def run_errors(args) -> int:
    """`errors`: error rates per group, flags, and weights.csv."""
    dataset, _ = gather(args)
    predictions = read_predictions(args.predictions)
    scored, unknown = score(dataset, predictions)
    if unknown:
        print(f"note: {len(unknown)} predictions name no item of the exports (e.g. {unknown[0]!r}): ignored", file=sys.stderr)
    missing = len(dataset.items) - len(scored)
    if missing:
        print(f"note: {missing} items have no prediction: left out of the error rates", file=sys.stderr)
    results = [attribute_errors(attribute, scored) for attribute in dataset.attributes]
    overall = sum(wrong for _, wrong in scored)
    print(f"{len(scored)} predictions scored, {overall} errors ({overall / len(scored):.1%})")
    for result in results:
        verdict = "FLAGGED: intervals do not overlap" if result.flagged else "ok"
        disparity = f"{result.disparity:.2f}" if result.disparity is not None else "n/a"
        print(f"{result.attribute.name} ({result.attribute.kind}): disparity {disparity}: {verdict}")
        for value, group in result.groups.items():
            if group.n:
                print(f"  {value}: {group.errors}/{group.n} = {group.rate:.1%} [{group.low:.1%}, {group.high:.1%}]")
            else:
                print(f"  {value}: no item")
    weights = group_weights(dataset)
    write_csv(
        args.out / "weights.csv", ["item", "weight"], [[item_id, f"{weight:.6f}"] for item_id, weight in sorted(weights.items())]
    )
    print(f"weights written to {args.out / 'weights.csv'}")
    if args.json:
        write_json(
            args.json,
            {
                "items": len(scored),
                "errors": overall,
                "attributes": [
                    {
                        "name": result.attribute.name,
                        "kind": result.attribute.kind,
                        "groups": {
                            value: {
                                "n": group.n,
                                "errors": group.errors,
                                "rate": clean(group.rate),
                                "low": clean(group.low),
                                "high": clean(group.high),
                            }
                            for value, group in result.groups.items()
                        },
                        "disparity": clean(result.disparity),
                        "flagged": result.flagged,
                    }
                    for result in results
                ],
            },
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line; the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except AuditError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        # Writing an output can fail too (read-only directory, full disk): the user's to fix.
        where = f"{error.filename}: " if error.filename else ""
        print(f"error: {where}{error.strerror or error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
