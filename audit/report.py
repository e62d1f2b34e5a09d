"""`report`: coverage and label × value association of every audited attribute, as JSON and HTML.

For each attribute, over the items where it is audited (value other than
`unlabeled`) and whose target label carries it:

- the contingency table of target label × value, and coverage per label;
- the test of independence (`stats.association_test`): chi-square, or exact
  (Fisher for 2×2, a permutation test otherwise) when an expected count is
  below 5; when items are clustered (objects of one image, frames of one
  video, tags of one image: `Item.cluster`) a permutation test that
  exchanges the values of whole clusters among clusters of similar size.
  Permutation tests draw B = `stats.permutations_needed(alpha, m)`
  permutations, seeded from `--seed` and the attribute's name;
- Benjamini–Hochberg q-values over the m attributes of the report that have a
  computable test (at least two labels and two values with audited items);
  an attribute without one is `not computable` and does not count in m;
- Cramér's V, Bergsma's bias-corrected V, and the 95 % interval of the
  population V from the noncentral chi-square; with clustered items, from
  χ²/δ and n/δ, δ the design effect the permutation test measures
  (`design_effect`; 1 for independent items). When the interval says
  nothing (χ² below chance), `v_high` is null and a note says why;
- every cell's observed ÷ expected with its 95 % interval and adjusted residual.

Its state is one of:
- `flagged`: q < alpha and the lower bound of that 95 % interval of V (the
  lower end of a two-sided interval: a one-sided 97.5 % bound) is at least
  `--min-v`: an association that is there (q) and not negligible (V). The
  bound rises towards the true V as data grows, so a real association of
  V above `--min-v` stays flagged (a gate on the point estimate of plain V
  at 0.3 made a true 0.2 vanish);
- `inconclusive`: not flagged, and too few audited items for a real
  association of V = 0.2 to be flagged with 80 % probability, by the flag's
  own rule (`stats.power`: p < alpha and the lower end of the interval of V
  at least `--min-v`, for the tested table's shape; at alpha itself, the
  level of one test, not the stricter one Benjamini–Hochberg may apply).
  The power planner gives the audited units needed in all and, spread over
  the labels, how many more per label, in the unit it counts: the items
  (images, tracks), or their clusters when items are clustered (images,
  videos: conservative, a cluster counts as one). With `--min-v` at or
  above 0.2 no amount of data gets V = 0.2 flagged: no plan is given, and
  no attribute is inconclusive;
- `ok`: neither;
- `not computable`: no test (fewer than two labels or two values audited).

The HTML page is self-contained (charts embedded as base64 PNG); the same
charts are also written as files under `charts/`.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import html
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from .charts import association_chart
from .dataset import CONDITION, PROTECTED, Attribute, Dataset
from .errors import AuditError
from .output import clean, p_text, significant, write_json
from .sources import gather, unit_interval
from .stats import (
    NOT_INFORMATIVE,
    TableTest,
    association_test,
    benjamini_hochberg,
    cell_diagnostics,
    items_needed,
    permutations_needed,
    power,
)

FLAGGED = "flagged"
INCONCLUSIVE = "inconclusive"
OK = "ok"
NOT_COMPUTABLE = "not computable"
# The association the power planner is about, and the power it asks for.
DETECTABLE_V = 0.2
TARGET_POWER = 0.8

MEANING = {
    CONDITION: (
        "The target label depends on this condition: a model can learn to recognise the condition "
        "instead of the object, a possible shortcut (the classic story is a tank detector that had learned the "
        "weather of the photos). Balance the condition across labels in the training data, evaluate on a split "
        "balanced over it (`split`) and compare error rates per value (`errors`)."
    ),
    PROTECTED: (
        "The target labels are distributed unequally across the groups of this protected attribute: some "
        "labels are over- or under-represented for some groups, so a model may work worse for some groups or use "
        "group membership as a cue. Compare error rates per group (`errors`), and consider collecting more data "
        "for the thin cells or re-weighting the loss (`errors` writes weights.csv)."
    ),
}
EXCLUDED_WORDS = {
    "no_tag": "frames without a tag",
    "several_tags": "frames with several tags",
    "empty_label": "annotations with an empty label",
}


@dataclass
class Tabulation:
    """One attribute over the items whose label carries it: the audited observations and the counts."""

    attribute: Attribute
    labels: list[str]
    # One entry per audited item: its label, its value and its cluster.
    observed_labels: list[str]
    observed_values: list[str]
    observed_clusters: list[str]
    table: dict[str, dict[str, int]]
    items_per_label: dict[str, int]

    @property
    def audited(self) -> int:
        """The number of audited items."""
        return len(self.observed_labels)

    @property
    def testable(self) -> bool:
        """True when at least two labels and two values have audited items: the test can be computed."""
        rows = sum(1 for row in self.table.values() if sum(row.values()) > 0)
        columns = sum(1 for value in self.attribute.values if any(row[value] for row in self.table.values()))
        return rows >= 2 and columns >= 2


def tabulate(dataset: Dataset, attribute: Attribute) -> Tabulation:
    """The audited items of `attribute` among those whose label carries it, and their label × value counts."""
    coverage = dataset.coverage(attribute)
    labels = list(coverage)
    table = {label: dict.fromkeys(attribute.values, 0) for label in labels}
    observed_labels, observed_values, observed_clusters = [], [], []
    for item in dataset.items:
        if item.label in coverage and item.audited(attribute):
            value = item.values[attribute.name]
            table[item.label][value] += 1
            observed_labels.append(item.label)
            observed_values.append(value)
            observed_clusters.append(item.cluster)
    items_per_label = {label: total for label, (_, total) in coverage.items()}
    return Tabulation(attribute, labels, observed_labels, observed_values, observed_clusters, table, items_per_label)


def attribute_seed(seed: int, name: str) -> int:
    """The seed of one attribute's permutations: from the report's seed and the attribute's name, not its position."""
    return int.from_bytes(hashlib.sha256(f"audit-report/{seed}/{name}".encode()).digest()[:8], "big")


def test_tabulation(tabulation: Tabulation, permutations: int, seed: int) -> TableTest:
    """The association test of one attribute's audited items, their clusters exchanged whole (see `stats`)."""
    return association_test(
        tabulation.observed_labels,
        tabulation.observed_values,
        tabulation.observed_clusters,
        row_order=tabulation.labels,
        column_order=tabulation.attribute.values,
        permutations=permutations,
        seed=attribute_seed(seed, tabulation.attribute.name),
    )


def planner(tabulation: Tabulation, result: TableTest, alpha: float, min_v: float, unit_words: tuple[str, str]) -> dict:
    """The power planner: audited units needed for V = DETECTABLE_V to be flagged with TARGET_POWER.

    Flagged by the report's rule: p < `alpha` and the lower end of the
    interval of V at least `min_v` (`stats.power`). The units are the
    audited items, or their clusters when items are clustered (a cluster's
    items may tell little more than one of them, so counting items would
    promise power that is not there); `unit_words` names them (items,
    clusters), e.g. ("tracks", "videos"). The shape is the tested table's;
    without a test, the labels with items that carry the attribute × its
    values (no plan when either is below two). Gives `power` (now),
    `power_unit` (its word), `audited_units` (now), `items_needed` (in all;
    None when no amount will do) and `more_per_label` (what is missing,
    spread over the labels).
    """
    clustered = result.clusters is not None and result.clusters < tabulation.audited
    units = result.clusters if clustered else tabulation.audited
    plan = {"power": None, "power_unit": unit_words[1] if clustered else unit_words[0], "audited_units": units}
    plan.update(items_needed=None, more_per_label=None)
    if result.computable:
        rows, columns = result.rows, result.columns
    else:
        rows = len(tabulation.labels)
        columns = len(tabulation.attribute.values)
    if rows < 2 or columns < 2:
        return plan
    needed = items_needed(DETECTABLE_V, rows, columns, alpha, TARGET_POWER, min_v)
    plan["items_needed"] = needed
    if needed is not None:
        plan["more_per_label"] = math.ceil(max(0, needed - units) / rows)
    plan["power"] = power(units, DETECTABLE_V, rows, columns, alpha, min_v) if units else 0.0
    return plan


def state_of(result: TableTest, q_value: float | None, current_power: float | None, alpha: float, min_v: float) -> str:
    """flagged, inconclusive, ok or not computable (see the module's docstring)."""
    if not result.computable:
        return NOT_COMPUTABLE
    if q_value is not None and q_value < alpha and result.v_low is not None and result.v_low >= min_v:
        return FLAGGED
    if current_power is not None and current_power < TARGET_POWER:
        return INCONCLUSIVE
    return OK


def cells_of(tabulation: Tabulation) -> dict[str, dict[str, dict]]:
    """Every cell's diagnostics, as {label: {value: {observed, expected, ratio, ratio_low, ratio_high, residual}}}."""
    values = tabulation.attribute.values
    grid = cell_diagnostics([[tabulation.table[label][value] for value in values] for label in tabulation.labels])
    return {
        label: {
            value: {
                "observed": cell.observed,
                "expected": clean(cell.expected),
                "ratio": clean(cell.ratio),
                "ratio_low": clean(cell.ratio_low),
                "ratio_high": clean(cell.ratio_high),
                "residual": clean(cell.residual),
            }
            for value, cell in zip(values, row)
        }
        for label, row in zip(tabulation.labels, grid)
    }


def coverage_per_label(tabulation: Tabulation) -> dict[str, dict]:
    """Per label that carries the attribute: its items, how many are audited, and the share."""
    coverage = {}
    for label in tabulation.labels:
        items = tabulation.items_per_label[label]
        audited = sum(tabulation.table[label].values())
        coverage[label] = {"items": items, "audited": audited, "share": clean(audited / items) if items else None}
    return coverage


def attribute_entry(
    tabulation: Tabulation,
    result: TableTest,
    q_value: float | None,
    alpha: float,
    min_v: float,
    unit_words: tuple[str, str] = ("items", "clusters"),
) -> dict:
    """The JSON entry of one attribute, once its test and q-value are known (`unit_words`: see `planner`)."""
    attribute = tabulation.attribute
    plan = planner(tabulation, result, alpha, min_v, unit_words)
    # Without a plan (no amount of data gets V = 0.2 flagged at this --min-v), nothing is inconclusive for want of it.
    state = state_of(result, q_value, plan["power"] if plan["items_needed"] is not None else None, alpha, min_v)
    carried = sum(tabulation.items_per_label.values())
    return {
        "name": attribute.name,
        "kind": attribute.kind,
        "values": list(attribute.values),
        "labels": tabulation.labels,
        "coverage": tabulation.audited,
        "coverage_share": clean(tabulation.audited / carried) if carried else None,
        "coverage_per_label": coverage_per_label(tabulation),
        "table": tabulation.table,
        "state": state,
        "flagged": state == FLAGGED,
        "method": result.method,
        "permutations": result.permutations,
        "clusters": result.clusters,
        "chi2": clean(result.chi2),
        "dof": result.dof,
        "min_expected": clean(result.min_expected),
        "p_value": clean(result.p_value),
        "q_value": clean(q_value),
        "cramers_v": clean(result.cramers_v),
        "v_corrected": clean(result.v_corrected),
        "v_low": clean(result.v_low),
        "v_high": clean(result.v_high),
        "design_effect": clean(result.design_effect),
        "power": clean(plan["power"]),
        "power_unit": plan["power_unit"],
        "audited_units": plan["audited_units"],
        "items_needed": plan["items_needed"],
        "more_per_label": plan["more_per_label"],
        "cells": cells_of(tabulation),
        "notes": list(result.notes),
    }


def build_report(dataset: Dataset, exports: list[str], alpha: float, min_v: float, seed: int = 0) -> dict:
    """The whole report.json document: every attribute tested, q-values across them, flags from q and V."""
    tabulations = [tabulate(dataset, attribute) for attribute in dataset.attributes]
    # m counts the attributes with a computable test: those are the p-values Benjamini–Hochberg adjusts.
    tests = sum(1 for tabulation in tabulations if tabulation.testable)
    permutations = permutations_needed(alpha, tests)
    results = [test_tabulation(tabulation, permutations, seed) for tabulation in tabulations]
    q_values = benjamini_hochberg([result.p_value for result in results])
    return {
        "items": len(dataset.items),
        "units": dataset.units,
        "mode": dataset.mode,
        "exports": exports,
        "excluded": dict(dataset.excluded),
        "labels": dict(sorted(Counter(item.label for item in dataset.items).items())),
        "fully_audited": len(dataset.fully_audited()),
        "alpha": alpha,
        "min_v": min_v,
        "seed": seed,
        "tests": sum(1 for result in results if result.computable),
        "detectable_v": DETECTABLE_V,
        "target_power": TARGET_POWER,
        "notes": list(dataset.notes),
        "attributes": [
            attribute_entry(tabulation, result, q_value, alpha, min_v, (dataset.item_unit, dataset.cluster_unit))
            for tabulation, result, q_value in zip(tabulations, results, q_values)
        ],
    }


def chart_file_name(index: int, name: str) -> str:
    """A safe file name for an attribute's chart."""
    return f"{index + 1:02d}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)[:60]}.png"


def driving_cell(entry: dict) -> tuple[str, str, dict] | None:
    """(label, value, cell) of the cell with the largest |adjusted residual|; over-represented cells win ties."""
    best = None
    for label, row in entry["cells"].items():
        for value, cell in row.items():
            if cell["residual"] is None:
                continue
            # Rounded, so that the two cells of a two-valued row (equal |residual|) tie exactly.
            key = (round(abs(cell["residual"]), 9), cell["observed"] > cell["expected"])
            if best is None or key > best[0]:
                best = (key, label, value, cell)
    return None if best is None else best[1:]


def cell_sentence(entry: dict) -> str | None:
    """The cell that drives the association, in words (backticks around names from the exports)."""
    found = driving_cell(entry)
    if found is None:
        return None
    label, value, cell = found
    return (
        f"`{label}` is `{entry['name']}` = `{value}` {significant(cell['ratio'])}× as often as expected "
        f"under independence (95% {significant(cell['ratio_low'])}–{significant(cell['ratio_high'])}; "
        f"{cell['observed']} items where {significant(cell['expected'])} were expected, "
        f"adjusted residual {significant(cell['residual'])})."
    )


def interval_text(entry: dict) -> str:
    """The 95 % interval of V, rounded, or why it says nothing."""
    if entry["v_high"] is None:
        return NOT_INFORMATIVE
    return f"95% {significant(entry['v_low'])}–{significant(entry['v_high'])}"


def v_text(entry: dict) -> str:
    """The bias-corrected V and the 95 % interval of V, rounded (or that the interval says nothing)."""
    if entry["v_high"] is None:
        return f"{significant(entry['v_corrected'])}, {NOT_INFORMATIVE}"
    return f"{significant(entry['v_corrected'])} ({interval_text(entry)})"


def method_text(entry: dict) -> str:
    """The test, with its permutations and clusters when it has them."""
    text = entry["method"] or "no test"
    if entry["permutations"]:
        text += f", {entry['permutations']} permutations"
    if entry["method"] == "cluster permutation" and entry["clusters"] is not None:
        text += f" of {entry['clusters']} clusters"
    return text


def power_units(entry: dict) -> tuple[str, int]:
    """What the power planner counts (images, tracks, or the clusters of clustered items), and how many are audited."""
    return entry["power_unit"], entry["audited_units"]


def flag_rule(report: dict) -> str:
    """The flag's rule at one test's level, in words."""
    alpha, min_v = significant(report["alpha"]), significant(report["min_v"])
    return f"p < {alpha} and the lower end of the 95% interval of V ≥ {min_v}"


def planner_sentence(entry: dict, report: dict) -> str:
    """How many more audited units per label would get V = 0.2 flagged, in words (in the unit counted)."""
    unit, now = power_units(entry)
    if entry["items_needed"] is None:
        return (
            f"no number of audited {unit} would get a real V = {report['detectable_v']} flagged: --min-v "
            f"{significant(report['min_v'])} is not below it"
        )
    return (
        f"about {entry['more_per_label']} more audited {unit} per label would get a real V = "
        f"{report['detectable_v']} flagged {report['target_power']:.0%} of the time ({flag_rule(report)}; "
        f"{entry['items_needed']} audited {unit} in all, {now} now)"
    )


def explanation(entry: dict, report: dict) -> str:
    """What the attribute's result means, in words."""
    alpha, min_v = significant(report["alpha"]), significant(report["min_v"])
    state = entry["state"]
    if state == NOT_COMPUTABLE:
        return "Not enough audited data to test: fewer than two labels or two values have audited items."
    if state == FLAGGED:
        return MEANING[entry["kind"]]
    if state == INCONCLUSIVE:
        return (
            f"Inconclusive: no flag, but too few audited {entry['power_unit']} to tell. Even a real association of "
            f"V = {report['detectable_v']} would be flagged less than {report['target_power']:.0%} of the time; "
            f"{planner_sentence(entry, report)}."
        )
    if entry["q_value"] < report["alpha"]:
        return (
            f"An association is likely (q < {alpha}), but it may be negligible: the 95% interval of V reaches "
            f"below {min_v} ({interval_text(entry)})."
        )
    unit, now = power_units(entry)
    if entry["items_needed"] is None:
        return (
            f"No association found (q ≥ {alpha}). With --min-v {min_v}, an association of V = "
            f"{report['detectable_v']} counts as negligible and is never flagged, so there is no plan for it."
        )
    return (
        f"No association found (q ≥ {alpha}), and the {now} audited {unit} were enough for a real association "
        f"of V = {report['detectable_v']} to be flagged at least {report['target_power']:.0%} of the time."
    )


def console_line(entry: dict, report: dict) -> str:
    """The console summary of one attribute: state, q, p, V corrected with its interval, method, coverage; notes below."""
    state = entry["state"].upper() if entry["state"] == FLAGGED else entry["state"]
    line = (
        f"{entry['name']} ({entry['kind']}): {state}, "
        f"coverage {entry['coverage']}/{sum(row['items'] for row in entry['coverage_per_label'].values())}"
    )
    if entry["state"] != NOT_COMPUTABLE:
        line += (
            f", q {q_or_p(entry['q_value'])}, p {q_or_p(entry['p_value'])}, V corrected {v_text(entry)}, "
            f"{method_text(entry)}"
        )
    if entry["state"] == INCONCLUSIVE:
        line += f"\n  inconclusive: {planner_sentence(entry, report)}"
    for note in entry["notes"]:
        line += f"\n  note: {note}"
    return line


def q_or_p(value) -> str:
    """A p- or q-value after `=` or as `< 0.001`."""
    text = p_text(value)
    return text if text.startswith("<") else f"= {text}"


def chart_arguments(entry: dict) -> dict:
    """What the chart of one attribute shows: its table, state, q, p, and the bias-corrected V named so."""
    return {
        "attribute": entry["name"],
        "kind": entry["kind"],
        "table": entry["table"],
        "values": entry["values"],
        "flagged": entry["flagged"],
        "p_value": entry["p_value"],
        "cramers_v": entry["v_corrected"],
        "q_value": entry["q_value"],
        "state": entry["state"],
        "v_low": entry["v_low"],
        "v_high": entry["v_high"],
        "v_name": "V corrected",
    }


def write_report(report: dict, out: Path) -> None:
    """report.json, report.html and charts/*.png under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "report.json", report)
    charts_dir = out / "charts"
    charts_dir.mkdir(exist_ok=True)
    charts = []
    for index, entry in enumerate(report["attributes"]):
        data = association_chart(**chart_arguments(entry))
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
STATE_CLASS = {FLAGGED: "flag", INCONCLUSIVE: "inconclusive", OK: "ok", NOT_COMPUTABLE: "na"}
# The report's own states, on top of the shared STYLE.
REPORT_STYLE = (
    ".inconclusive{color:#8a5a00;font-weight:bold}.na{color:#666}.driver{font-weight:bold}"
    ".unsure{background:#fff8e6;border-left:4px solid #8a5a00;padding:.5rem 1rem}"
)
# The box around an attribute's explanation, by state.
EXPLANATION_CLASS = {FLAGGED: "meaning", INCONCLUSIVE: "unsure", OK: "plain", NOT_COMPUTABLE: "plain"}


def words_html(text: str) -> str:
    """Text with names in backticks: escaped, the names shown as code."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def render_html(report: dict, charts: list[str]) -> str:
    """The self-contained report page; every string from the exports is escaped."""
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Label audit</title>",
        f"<style>{STYLE}{REPORT_STYLE}</style></head><body>",
        "<h1>Label audit</h1>",
        header_html(report),
        intro_html(report),
    ]
    for note in report["notes"]:
        parts.append(f"<p class='flag'>Note: {html.escape(note)}</p>")
    parts.append(summary_html(report))
    for entry, chart in zip(report["attributes"], charts):
        parts.append(attribute_html(entry, report, chart))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def header_html(report: dict) -> str:
    """What was read: items and their unit, exports, what was left out."""
    e = html.escape
    excluded = ", ".join(
        f"{count} {e(EXCLUDED_WORDS.get(key, key.replace('_', ' ')))}" for key, count in report["excluded"].items()
    )
    return (
        f"<p>{report['items']} items ({e(report['mode'])} mode); the unit of analysis: <b>{e(report['units'])}</b>. "
        f"From {len(report['exports'])} export(s): "
        f"{', '.join('<code>' + e(path) + '</code>' for path in report['exports'])}. "
        f"Left out: {excluded or 'nothing'}. {report['fully_audited']} items have every attribute audited.</p>"
    )


def intro_html(report: dict) -> str:
    """How to read the page: the test, q-values, the flag, inconclusive, the unit of analysis."""
    alpha, min_v = significant(report["alpha"]), significant(report["min_v"])
    return (
        "<p>Each attribute is tested for association with the target label over the items where it is audited "
        "(value other than <code>unlabeled</code>) and whose label carries it: the chi-square test of independence, "
        "or an exact test when an expected count is below 5 (Fisher's for two labels and two values, a permutation "
        "test otherwise). Cramér's V measures the strength, from 0 (independent) to 1; the page shows the "
        "bias-corrected V (Bergsma 2013), near 0 for independent data at any sample size, with the 95% interval "
        "of V in the population.</p>"
        f"<p><b>q-values.</b> With {report['tests']} attributes tested, some small p-values happen by chance. "
        "The q-value (Benjamini–Hochberg) adjusts p for the number of tests: flagging every attribute with "
        f"q &lt; {alpha} keeps the expected share of false flags among the flags at most {alpha}.</p>"
        f"<p><b>Flagged</b>: q &lt; {alpha} and the lower bound of the 95% interval of V is at least {min_v}: "
        "an association that is there and not negligible. <b>Inconclusive</b>: not flagged, but with so few "
        f"audited items that even an association of V = {report['detectable_v']} would go unflagged more than "
        f"{1 - report['target_power']:.0%} of the time (by the rule of the flag, the lower bound of V included); "
        "the page says how many more audited units per label would tell, counting images or tracks, or the images "
        "and videos that hold clustered items. <b>ok</b>: no association found with enough items, or a likely but "
        "negligible one.</p>"
        f"<p><b>The unit of analysis</b> is one item ({html.escape(report['units'])}). Items that are not "
        "independent (objects of one image, frames of one video, tags of one image) belong to a cluster, and their "
        "p-value comes from a permutation test that exchanges the values of whole clusters among clusters of similar "
        "size, never from counting them as independent; their V and its interval allow for the clustering (the "
        "design effect). "
        "An association is not proof of a problem, and no association does not prove its absence: it tells where "
        "to look.</p>"
    )


def state_html(state: str) -> str:
    """The state as a coloured word."""
    return f"<span class='{STATE_CLASS[state]}'>{html.escape(state)}</span>"


def summary_html(report: dict) -> str:
    """One row per attribute: state, q, p, V corrected with its interval, method, coverage."""
    e = html.escape
    columns = ["attribute", "kind", "coverage", "state", "q", "p", "V corrected (95%)", "test"]
    rows = ["<h2>Summary</h2><table><tr>" + "".join(f"<th>{e(column)}</th>" for column in columns) + "</tr>"]
    for entry in report["attributes"]:
        carried = sum(row["items"] for row in entry["coverage_per_label"].values())
        rows.append(
            f"<tr><td><a href='#attr-{e(entry['name'])}'>{e(entry['name'])}</a></td><td>{e(entry['kind'])}</td>"
            f"<td>{entry['coverage']} / {carried}</td><td>{state_html(entry['state'])}</td>"
            f"<td>{e(p_text(entry['q_value']))}</td><td>{e(p_text(entry['p_value']))}</td>"
            f"<td>{e(v_text(entry)) if entry['p_value'] is not None else 'n/a'}</td>"
            f"<td>{e(method_text(entry))}</td></tr>"
        )
    rows.append("</table>")
    return "\n".join(rows)


def attribute_html(entry: dict, report: dict, chart: str) -> str:
    """One attribute's section: statistics, meaning, counts, cell diagnostics, coverage per label, chart."""
    e = html.escape
    parts = [f"<h2 id='attr-{e(entry['name'])}'>{e(entry['name'])} <small>({e(entry['kind'])})</small></h2>"]
    share = entry["coverage_share"]
    statistics = ""
    if entry["p_value"] is not None:
        statistics = (
            f" Test: {e(method_text(entry))}. χ² = {significant(entry['chi2'])}, dof = {entry['dof']}, "
            f"p {e(q_or_p(entry['p_value']))}, q {e(q_or_p(entry['q_value']))}; Cramér's V = "
            f"{significant(entry['cramers_v'])}, bias-corrected V = {e(v_text(entry))}"
            + (
                f" (from χ² ÷ {significant(entry['design_effect'])}, the design effect of the clusters)"
                if entry["design_effect"] is not None and entry["design_effect"] > 1
                else ""
            )
            + "."
        )
    parts.append(
        f"<p>State: {state_html(entry['state'])}. Coverage: {entry['coverage']} audited items"
        + (f" ({share:.0%} of the items whose label carries it)" if share is not None else "")
        + f".{statistics}</p>"
    )
    for note in entry["notes"]:
        parts.append(f"<p>Note: {e(note)}</p>")
    parts.append(f"<p class='{EXPLANATION_CLASS[entry['state']]}'>{words_html(explanation(entry, report))}</p>")
    if entry["flagged"]:
        sentence = cell_sentence(entry)
        if sentence:
            parts.append(f"<p class='driver'>The cell that drives the flag: {words_html(sentence)}</p>")
    parts.append(counts_html(entry))
    if entry["p_value"] is not None:
        parts.append(cells_html(entry))
    parts.append(coverage_html(entry))
    parts.append(f"<img alt='{e(entry['name'])} by target label' src='data:image/png;base64,{chart}'>")
    return "\n".join(parts)


def counts_html(entry: dict) -> str:
    """The label × value table of audited items."""
    e = html.escape
    header = "".join(f"<th>{e(value)}</th>" for value in entry["values"])
    rows = [f"<table><tr><th>label</th>{header}<th>audited</th></tr>"]
    for label, row in entry["table"].items():
        rows.append(
            f"<tr><td>{e(label)}</td>"
            + "".join(f"<td>{row[value]}</td>" for value in entry["values"])
            + f"<td>{sum(row.values())}</td></tr>"
        )
    rows.append("</table>")
    return "\n".join(rows)


def cells_html(entry: dict) -> str:
    """Every cell: observed, expected, observed ÷ expected with its 95 % interval, adjusted residual."""
    e = html.escape
    rows = [
        "<table><tr><th>label</th><th>value</th><th>observed</th><th>expected</th><th>observed ÷ expected</th>"
        "<th>95% interval</th><th>adjusted residual</th></tr>"
    ]
    for label, row in entry["cells"].items():
        for value, cell in row.items():
            interval = "n/a"
            if cell["ratio"] is not None:
                interval = f"{significant(cell['ratio_low'])}–{significant(cell['ratio_high'])}"
            rows.append(
                f"<tr><td>{e(label)}</td><td>{e(value)}</td><td>{cell['observed']}</td>"
                f"<td>{significant(cell['expected'])}</td><td>{significant(cell['ratio'])}</td>"
                f"<td>{interval}</td><td>{significant(cell['residual'])}</td></tr>"
            )
    rows.append("</table>")
    return "\n".join(rows)


def coverage_html(entry: dict) -> str:
    """Coverage per label that carries the attribute."""
    e = html.escape
    rows = ["<table><tr><th>label</th><th>items</th><th>audited</th><th>coverage</th></tr>"]
    for label, coverage in entry["coverage_per_label"].items():
        share = f"{coverage['share']:.0%}" if coverage["share"] is not None else "n/a"
        rows.append(
            f"<tr><td>{e(label)}</td><td>{coverage['items']}</td><td>{coverage['audited']}</td><td>{share}</td></tr>"
        )
    rows.append("</table>")
    return "\n".join(rows)


def add_command(commands, sources: argparse.ArgumentParser) -> None:
    """The `report` subcommand, its options and its runner."""
    parser = commands.add_parser("report", parents=[sources], help="coverage and label × attribute association")
    parser.add_argument("--out", type=Path, required=True, help="directory for report.html, report.json and charts/")
    parser.add_argument(
        "--alpha", type=unit_interval, default=0.01, help="flag when the q-value is below alpha (default: %(default)s)"
    )
    parser.add_argument(
        "--min-v",
        type=unit_interval,
        default=0.1,
        help="and the lower 95%% bound of Cramér's V is at least this (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the permutation tests (default: %(default)s)")
    parser.set_defaults(run=run_report)


def run_report(args) -> int:
    """`report`: write report.json, report.html and the charts; one line per attribute on the console."""
    if args.alpha <= 0:
        # A test at level 0 never rejects, and needs infinitely many permutations.
        raise AuditError("--alpha must be above 0")
    dataset, paths = gather(args)
    report = build_report(dataset, paths, args.alpha, args.min_v, args.seed)
    write_report(report, args.out)
    print(f"{report['items']} items ({report['units']}), {report['tests']} tests at alpha = {significant(args.alpha)}")
    for entry in report["attributes"]:
        print(console_line(entry, report))
    print(f"report written to {args.out / 'report.html'}")
    return 0
