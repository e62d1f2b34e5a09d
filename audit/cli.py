"""The command line: `python -m audit {sample,report,split,errors} EXPORT... [options]`.

Each subcommand lives with what it computes: `sampling` (sample), `report`,
`balance` (split) and `model_errors` (errors) each define `add_command` and
their runner; `sources` holds the options they share and reads the exports.

Every mistake a user can make ends with one `error: ...` line on stderr and
exit status 1 (2 for a malformed command line, from argparse); nothing the
user does should show a traceback.
"""

from __future__ import annotations

import argparse
import sys

from . import balance, model_errors, report, sampling
from .errors import AuditError
from .sources import sources_parser


def build_parser() -> argparse.ArgumentParser:
    """The parser of all subcommands, sharing the options that say where the exports come from."""
    sources = sources_parser()
    parser = argparse.ArgumentParser(
        prog="python -m audit", description="Audit the additional labels (conditions, protected attributes) of CVAT exports."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (sampling, report, balance, model_errors):
        module.add_command(commands, sources)
    return parser


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
