"""`report`: coverage and label × value association of every audited attribute, as JSON and HTML.

For each attribute: coverage (items with a value other than `unlabeled`), the
contingency table of target label × value over the audited items, the
chi-square test of independence and Cramér's V (see `stats`), and `flagged`
when p < alpha and V ≥ min_v. The HTML page is self-contained (charts embedded
as base64 PNG); the same charts are also written as files under `charts/`.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import re
from pathlib import Path

from .charts import association_chart
from .dataset import CONDITION, Attribute, Dataset
from .output import clean
from .sources import gather, unit_interval
from .stats import table_test

MEANING = {
    CONDITION: (
        "The target label depends strongly on this condition: a model can learn to recognise the condition "
        "instead of the object, a possible shortcut (the classic story is a tank detector that had learned the "
        "weather of the photos). Balance the condition across labels in the training data, evaluate on a split "
        "balanced over it (`split`) and compare error rates per value (`errors`)."
    ),
    "protected": (
        "The target labels are distributed unequally across the groups of this protected attribute: some "
        "labels are over- or under-represented for some groups, so a model may work worse for some groups or use "
        "group membership as a cue. Compare error rates per group (`errors`), and consider collecting more data "
        "for the thin cells or re-weighting the loss (`errors` writes weights.csv)."
    ),
}
NOT_FLAGGED = "No strong association: p ≥ {alpha} or Cramér's V < {min_v}."
NOT_COMPUTABLE = "Not enough audited data to test: fewer than two labels or two values have audited items."


def attribute_report(dataset: Dataset, attribute: Attribute, alpha: float, min_v: float) -> dict:
    """The JSON entry of one attribute."""
    labels = dataset.labels()
    table = {label: {value: 0 for value in attribute.values} for label in labels}
    coverage = 0
    for item in dataset.items:
        if item.audited(attribute):
            coverage += 1
            table[item.label][item.values[attribute.name]] += 1
    result = table_test([[table[label][value] for value in attribute.values] for label in labels])
    flagged = result.p_value is not None and result.p_value < alpha and result.cramers_v >= min_v
    return {
        "name": attribute.name,
        "kind": attribute.kind,
        "values": list(attribute.values),
        "coverage": coverage,
        "coverage_share": clean(coverage / len(dataset.items)) if dataset.items else None,
        "table": table,
        "chi2": clean(result.chi2),
        "dof": result.dof,
        "p_value": clean(result.p_value),
        "cramers_v": clean(result.cramers_v),
        "min_expected": clean(result.min_expected),
        "flagged": bool(flagged),
    }


def build_report(dataset: Dataset, exports: list[str], alpha: float, min_v: float) -> dict:
    """The whole report.json document."""
    return {
        "items": len(dataset.items),
        "mode": dataset.mode,
        "exports": exports,
        "excluded": dataset.excluded,
        "labels": {label: sum(1 for item in dataset.items if item.label == label) for label in dataset.labels()},
        "fully_audited": len(dataset.fully_audited()),
        "alpha": alpha,
        "min_v": min_v,
        "notes": dataset.notes,
        "attributes": [attribute_report(dataset, attribute, alpha, min_v) for attribute in dataset.attributes],
    }


def chart_file_name(index: int, name: str) -> str:
    """A safe file name for an attribute's chart."""
    return f"{index + 1:02d}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)[:60]}.png"


def explanation(entry: dict, alpha: float, min_v: float) -> str:
    """What the attribute's result means, in words."""
    if entry["p_value"] is None:
        return NOT_COMPUTABLE
    if entry["flagged"]:
        return MEANING[entry["kind"]]
    return NOT_FLAGGED.format(alpha=alpha, min_v=min_v)


def number(value, digits: int = 3) -> str:
    """A statistic for display; 'n/a' for None."""
    if value is None:
        return "n/a"
    if isinstance(value, float) and value != 0 and abs(value) < 10**-digits:
        return f"{value:.2e}"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def write_report(report: dict, out: Path) -> None:
    """report.json, report.html and charts/*.png under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    charts_dir = out / "charts"
    charts_dir.mkdir(exist_ok=True)
    charts = []
    for index, entry in enumerate(report["attributes"]):
        data = association_chart(
            entry["name"], entry["kind"], entry["table"], entry["values"], entry["flagged"], entry["p_value"], entry["cramers_v"]
        )
        (charts_dir / chart_file_name(index, entry["name"])).write_bytes(data)
        charts.append(base64.b64encode(data).decode("ascii"))
    (out / "report.html").write_text(render_html(report, charts), encoding="utf-8")


STYLE = """
body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1rem}td,th{border:1px solid #ccc;padding:.25rem .6rem;text-align:right}
th:first-child,td:first-child{text-align:left}.flag{color:#B00020;font-weight:bold}.ok{color:#2e7d32}
.meaning{background:#fff4f4;border-left:4px solid #B00020;padding:.5rem 1rem}
.plain{background:#f4f8f4;border-left:4px solid #2e7d32;padding:.5rem 1rem}
img{max-width:100%}code{background:#f2f2f2;padding:0 .2rem}
"""


def render_html(report: dict, charts: list[str]) -> str:
    """The self-contained report page; every string from the exports is escaped."""
    e = html.escape
    alpha, min_v = report["alpha"], report["min_v"]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Label audit</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>Label audit</h1>",
        f"<p>{report['items']} items ({e(report['mode'])} mode) from {len(report['exports'])} export(s): "
        f"{', '.join('<code>' + e(path) + '</code>' for path in report['exports'])}. "
        f"Left out: {report['excluded'].get('no_tag', 0)} frames without a tag, "
        f"{report['excluded'].get('several_tags', 0)} with several tags. "
        f"{report['fully_audited']} items have every attribute audited.</p>",
        "<p>Each attribute is tested for association with the target label over the items where it is audited "
        f"(value other than <code>unlabeled</code>): chi-square test of independence and Cramér's V; an attribute is "
        f"<b>flagged</b> when p &lt; {alpha} and V ≥ {min_v}. An association is not proof of a problem, "
        "and no association does not prove its absence: it tells where to look.</p>",
    ]
    for note in report["notes"]:
        parts.append(f"<p class='flag'>Note: {e(note)}</p>")
    columns = ["attribute", "kind", "coverage", "χ²", "p", "Cramér's V", "flag"]
    parts.append("<h2>Summary</h2><table><tr>" + "".join(f"<th>{e(column)}</th>" for column in columns) + "</tr>")
    for entry in report["attributes"]:
        flag = "<span class='flag'>flagged</span>" if entry["flagged"] else "<span class='ok'>—</span>"
        parts.append(
            f"<tr><td><a href='#attr-{e(entry['name'])}'>{e(entry['name'])}</a></td><td>{e(entry['kind'])}</td>"
            f"<td>{entry['coverage']} / {report['items']}</td><td>{number(entry['chi2'], 1)}</td>"
            f"<td>{number(entry['p_value'])}</td><td>{number(entry['cramers_v'])}</td><td>{flag}</td></tr>"
        )
    parts.append("</table>")
    for entry, chart in zip(report["attributes"], charts):
        parts.append(f"<h2 id='attr-{e(entry['name'])}'>{e(entry['name'])} <small>({e(entry['kind'])})</small></h2>")
        share = entry["coverage_share"]
        parts.append(
            f"<p>Coverage: {entry['coverage']} of {report['items']} items"
            + (f" ({share:.0%})" if share is not None else "")
            + f". χ² = {number(entry['chi2'], 2)}, dof = {entry['dof'] if entry['dof'] is not None else 'n/a'}, "
            f"p = {number(entry['p_value'])}, Cramér's V = {number(entry['cramers_v'])}"
            + (
                " (smallest expected count below 5: the p-value is approximate)"
                if entry["min_expected"] is not None and entry["min_expected"] < 5
                else ""
            )
            + ".</p>"
        )
        css = "meaning" if entry["flagged"] else "plain"
        # The explanation names commands in backticks, as the command line prints it: shown as code here.
        words = re.sub(r"`([^`]+)`", r"<code>\1</code>", e(explanation(entry, alpha, min_v)))
        parts.append(f"<p class='{css}'>{words}</p>")
        parts.append(
            "<table><tr><th>label</th>" + "".join(f"<th>{e(value)}</th>" for value in entry["values"]) + "<th>audited</th></tr>"
        )
        for label, row in entry["table"].items():
            parts.append(
                f"<tr><td>{e(label)}</td>"
                + "".join(f"<td>{row[value]}</td>" for value in entry["values"])
                + f"<td>{sum(row.values())}</td></tr>"
            )
        parts.append("</table>")
        parts.append(f"<img alt='{e(entry['name'])} by target label' src='data:image/png;base64,{chart}'>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"

def add_command(commands, sources: argparse.ArgumentParser) -> None:
    """The `report` subcommand, its options and its runner."""
    parser = commands.add_parser("report", parents=[sources], help="coverage and label × attribute association")
    parser.add_argument("--out", type=Path, required=True, help="directory for report.html, report.json and charts/")
    parser.add_argument("--alpha", type=unit_interval, default=0.01, help="flag when p < alpha (default: %(default)s)")
    parser.add_argument("--min-v", type=unit_interval, default=0.3, help="and Cramér's V >= this (default: %(default)s)")
    parser.set_defaults(run=run_report)


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
