"""docs/configuration.md and the README's short configuration table, generated from the key table.

    venv/bin/python -m components.config.docs           # rewrites docs/configuration.md
    venv/bin/python -m components.config.docs --check   # exits 1 when it is not up to date
    venv/bin/python -m components.config.docs --readme  # prints the README's short table

tests/program/test_config_table.py holds the committed files to what this module generates.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Iterable

from components.config.keys import KEYS, SECTIONS, Key

ROOT = Path(__file__).resolve().parents[2]
CONFIGURATION_MD = ROOT / "docs" / "configuration.md"
TABLE_HEADER = "| key | type | default | meaning |\n|---|---|---|---|"

_INTRO = """\
# Configuration

<!-- Generated from the key table in components/config/keys.py by
`venv/bin/python -m components.config.docs`: edit the table, not this file. -->

Every key is in the `labeling:` namespace: `pulumi config set <key> <value>`, or
`pulumi config set --path '<key>[0]' <value>` for a list. Every problem in the
configuration is reported at once, naming the key and the reason, before anything
is created. `Pulumi.yaml` declares the same keys, types and defaults (a test holds
it to the table); the README lists the keys a first stack needs.

Secrets: `storageSecretKey` and `adminPassword` must be set with
`pulumi config set --secret`; a plain value is refused. They stay encrypted in
the state, reach pods only through Kubernetes Secrets and `secretKeyRef`, and
never appear in a ConfigMap, label, annotation or plain output.

Bucket names follow the S3 rules: 3–63 characters, lowercase letters, digits,
dots and hyphens, starting and ending with a letter or digit, no `..`, no `.-`
or `-.`, not an IP address. Scaleway bucket names are global across all
customers, which is why the default backup bucket name ends with a random suffix
(kept in the stack state, so it never changes).

In the program the keys are read into sections (`components/config/`): the
section of each key below is the part of `WorkspaceConfig` that holds it
(`config.storage`, `config.backups`, ...).
"""


def _cell(text: str) -> str:
    """Text made safe for a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def table_row(key: Key, meaning: str) -> str:
    """One row of a key table: key, type, default, meaning."""
    return f"| `{key.name}` | {key.shown_type} | {_cell(key.shown_default_text)} | {_cell(meaning)} |"


def key_table(keys: Iterable[Key], detailed: bool) -> str:
    """A Markdown table of `keys`, with the longer text (`detailed`) or the one-line description."""
    rows = [table_row(key, key.details if detailed and key.details else key.description) for key in keys]
    return "\n".join([TABLE_HEADER, *rows])


def configuration_markdown() -> str:
    """The whole of docs/configuration.md."""
    parts = [_INTRO]
    for section, (title, summary) in SECTIONS.items():
        keys = [key for key in KEYS if key.section == section]
        parts.append(f"## {title}\n\n{summary} In the program: `config.{section}`.\n\n{key_table(keys, detailed=True)}\n")
    return "\n".join(parts)


def readme_table() -> str:
    """The README's short table: the keys a first stack needs, with their one-line description."""
    return key_table([key for key in KEYS if key.first_stack], detailed=False)


def main(argv: list[str] | None = None) -> int:
    """Writes docs/configuration.md (or checks it, or prints the README's table)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/configuration.md is not up to date")
    parser.add_argument("--readme", action="store_true", help="print the README's short configuration table")
    args = parser.parse_args(argv)
    if args.readme:
        print(readme_table())
        return 0
    text = configuration_markdown()
    if args.check:
        current = CONFIGURATION_MD.read_text() if CONFIGURATION_MD.exists() else ""
        if current != text:
            print(f"{CONFIGURATION_MD} is not up to date: venv/bin/python -m components.config.docs", file=sys.stderr)
            return 1
        return 0
    CONFIGURATION_MD.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
