"""The CSV files the audit writes (issue 15, item 17): no duplicated column, no formula a spreadsheet would run.

- attribute columns of `split` are named `attr:<name>`, so an attribute named
  `label` or `item` cannot collide with the fixed columns;
- a cell whose first character is `=`, `+`, `-`, `@`, a tab or a carriage
  return (OWASP, "CSV Injection") gets a leading `'`, so that a spreadsheet
  shows it as text; so does one that starts with `'` itself, so that the
  escape can be undone exactly. `errors` reads the escaped ids back.
"""

import csv

import pytest
from support.audit_exports import Image, images_xml

from audit.cli import main


def read_rows(path):
    with path.open(newline="", encoding="utf-8") as file:
        return list(csv.reader(file))


def test_attributes_named_like_the_fixed_columns_get_their_own_columns(tmp_path):
    attributes = {"label": ["big", "small"], "item": ["x", "y"]}
    images = [
        Image(f"{name}{index}.jpg", tags=[(name, {"label": "big" if index % 2 else "small", "item": "x" if index % 3 else "y"})])
        for name in ("car", "bicycle")
        for index in range(24)
    ]
    export = tmp_path / "annotations.xml"
    export.write_bytes(images_xml(images, labels=["car", "bicycle"], attributes=attributes))
    out = tmp_path / "manifest.csv"
    assert main(["split", str(export), "--per-cell", "2", "--out", str(out)]) == 0
    rows = read_rows(out)
    assert rows[0] == ["item", "label", "attr:label", "attr:item"]
    body = [dict(zip(rows[0], row)) for row in rows[1:]]
    assert body and {row["label"] for row in body} == {"car", "bicycle"}
    assert {row["attr:label"] for row in body} == {"big", "small"} and {row["attr:item"] for row in body} == {"x", "y"}
    for row in body:
        assert row["item"].startswith(row["label"])


HOSTILE = ["=HYPERLINK(\"http://evil.example\")", "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx", "'quoted"]


@pytest.mark.parametrize("value", HOSTILE + ["plain", "", "a=b", "1-2"])
def test_cells_that_a_spreadsheet_would_read_as_formulas_are_escaped(value):
    from audit.csv_output import TRIGGERS, spreadsheet_cell, spreadsheet_value

    escaped = spreadsheet_cell(value)
    if value[:1] in TRIGGERS:
        assert escaped == "'" + value
    else:
        assert escaped == value
    assert spreadsheet_value(escaped) == value


def test_sample_split_and_weights_escape_every_cell(tmp_path, capsys):
    from audit.csv_output import TRIGGERS, spreadsheet_value

    names = [f"{prefix}img{index}.jpg" for prefix in HOSTILE for index in range(4)]
    images = [
        Image(name, tags=[("-car" if index % 2 else "@bike", {"group": "=a" if index % 3 else "+b"})])
        for index, name in enumerate(names)
    ]
    export = tmp_path / "annotations.xml"
    export.write_bytes(images_xml(images, labels=["-car", "@bike"], attributes={"group": ["=a", "+b"]}))
    schema = tmp_path / "schema.yaml"
    schema.write_text("projects:\n- name: p\n  protected:\n    group: ['=a', '+b']\n")

    sample = tmp_path / "sample.csv"
    assert main(["sample", str(export), "--size", str(len(names)), "--include-audited", "--out", str(sample)]) == 0
    split = tmp_path / "split.csv"
    assert main(["split", str(export), "--schema", str(schema), "--size", "8", "--out", str(split)]) == 0
    rows = read_rows(sample)
    assert rows[0] == ["item", "label"]
    assert sorted(spreadsheet_value(row[0]) for row in rows[1:]) == sorted(names)
    written = [cell for path in (sample, split) for row in read_rows(path) for cell in row]
    assert written and all(cell[:1] not in TRIGGERS or cell[:1] == "'" for cell in written)
    assert all(spreadsheet_value(cell)[:1] in TRIGGERS for row in read_rows(sample)[1:] for cell in row)
    assert {row[2] for row in read_rows(split)[1:]} == {"'=a", "'+b"}

    # Predictions made from the sample's escaped ids (and escaped labels) still name the items.
    predictions = tmp_path / "predictions.csv"
    with predictions.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["item", "predicted"])
        writer.writerows(rows[1:])
    out = tmp_path / "errors"
    assert main(["errors", str(export), "--schema", str(schema), "--predictions", str(predictions), "--out", str(out)]) == 0
    assert f"{len(names)} predictions scored, 0 errors" in capsys.readouterr().out
    weights = read_rows(out / "weights.csv")
    assert sorted(spreadsheet_value(row[0]) for row in weights[1:]) == sorted(names)
    assert all(row[0].startswith("'") for row in weights[1:])
