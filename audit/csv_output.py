"""The CSV files the commands write (`sample`, `split`, `weights.csv`), safe to open in a spreadsheet.

The item ids, labels and attribute values come from the exports, which
annotators write into: a cell such as `=HYPERLINK("http://…")` would be run
as a formula by Excel, LibreOffice Calc or Google Sheets. Following OWASP's
"CSV Injection" guidance, a cell whose first character is `=`, `+`, `-`, `@`,
a tab or a carriage return gets a leading `'`, which spreadsheets take as
"text" and do not show. A cell that starts with `'` gets one too, so that
the escape can be undone exactly: `spreadsheet_value` removes one leading
`'` (as a spreadsheet does on display), and `errors` accepts item ids and
labels in either form. Everything else is written as it is (RFC 4180
quoting by Python's csv module).

Attribute columns are named `attr:<name>`, so that no attribute name (`item`,
`label`) can give two columns the same name.
"""

from __future__ import annotations

import csv
from pathlib import Path

TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "'")
ATTRIBUTE_COLUMN = "attr:"


def spreadsheet_cell(value: str) -> str:
    """`value` as written to a CSV cell: with a leading `'` when a spreadsheet would read it as a formula."""
    return "'" + value if value.startswith(TRIGGERS) else value


def spreadsheet_value(cell: str) -> str:
    """The value a cell written by `spreadsheet_cell` holds."""
    return cell[1:] if cell.startswith("'") else cell


def attribute_column(name: str) -> str:
    """The column of the attribute `name`: prefixed, so it cannot be `item` or `label`."""
    return ATTRIBUTE_COLUMN + name


def write_csv(path: Path, header: list[str], rows) -> None:
    """A CSV file (UTF-8, comma-separated, header first), every cell escaped with `spreadsheet_cell`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow([spreadsheet_cell(cell) for cell in header])
        writer.writerows([spreadsheet_cell(cell) for cell in row] for row in rows)
