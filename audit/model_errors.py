"""`errors`: does the model err more for some groups, is it calibrated for each, and loss weights.

An item's prediction is an error when it names another label than the
item's target label. The groups of an audited attribute are its values
(items `unlabeled` for it are in none); `--intersect a,b` adds the
intersectional groups of those attributes, one per combination of values
(an item missing any of the values is in none), tested and reported like one
more attribute. For each attribute or intersection:

- every group's error rate, with its Wilson 95 % interval;
- a test of homogeneity of the error rate across the groups: the table of
  {error, correct} × group, tested by `stats.association_test`: Pearson's
  chi-square (for two groups this is the pooled two-proportion z-test,
  χ² = z²), exact when an expected count is below 5 (Fisher for two groups,
  a permutation test for more), and, when items are clustered (objects of
  one image, frames of one track), a permutation test that exchanges whole
  clusters of similar size. Permutation tests draw `stats.permutations_needed(alpha, m)`
  permutations, m being the number of tests, seeded by the attribute's
  position (the same exports and predictions give the same p-values);
- Benjamini–Hochberg q-values across everything tested (`tests` = m): the
  attribute is flagged when q < alpha; the test's notes (e.g. clusters that
  could not be exchanged) and its design effect go with it;
- `difference` (highest − lowest rate) whenever two groups have items, and
  `ratio` (highest / lowest), None when the lowest rate is 0;
- per class, one-vs-rest from each group's confusion matrix, the
  false-negative rate (items of the class predicted as another / items of the
  class) and the false-positive rate (items of other classes predicted as the
  class / items of other classes), with the counts behind them;
- with a `score` column (the model's probability of its prediction), the
  top-label expected calibration error over 10 equal-width bins,
  ECE = Σ_b (n_b / n) · |accuracy_b − mean score_b|, per group and overall.
  Bin b holds the scores in [b/10, (b+1)/10); a score of 1 is in the last.
  An ECE below ROUNDING is the floating-point noise of a sum of means
  (1.8e-15 for perfectly calibrated scores), and is 0.

Loss weights are Kamiran–Calders reweighing (`weights`), written to
weights.csv. Everything goes into one document (`errors_document`), which is
written as JSON (full precision, null where undefined), rendered as the
self-contained errors.html and summarised on the console (both rounded).
"""

from __future__ import annotations

import argparse
import csv
import html
import sys
from collections import Counter
from dataclasses import dataclass, replace
from itertools import product
from pathlib import Path

from .csv_output import spreadsheet_cell
from .dataset import Attribute, Dataset, Item
from .errors import AuditError
from .output import clean, p_text, significant, write_json
from .report import STYLE
from .sources import gather
from .stats import CLUSTER_PERMUTATION, TableTest, association_test, benjamini_hochberg, permutations_needed, wilson_interval
from .weights import DEFAULT_MAX_WEIGHT, describe, max_weight_option, reweighing, weights_json, write_weights

ERROR = "error"
CORRECT = "correct"
INTERSECTION = "intersection"
# Joins the values that name an intersectional group, and the attributes that name the intersection.
JOIN = " × "
CALIBRATION_BINS = 10
# An expected calibration error below this is floating-point noise: 0.
ROUNDING = 1e-12
SCORE_COLUMN = "score"
DEFAULT_ALPHA = 0.01


@dataclass(frozen=True)
class Prediction:
    """One line of the predictions: the label predicted, and its probability when the CSV gives a score."""

    predicted: str
    score: float | None = None


@dataclass(frozen=True)
class Scored:
    """An item with a prediction: the label predicted (the CSV's escape undone), whether it is wrong, and its score."""

    item: Item
    predicted: str
    wrong: bool
    score: float | None = None


@dataclass(frozen=True)
class Grouping:
    """What items are grouped by: one audited attribute, or the intersection of several."""

    name: str
    kind: str
    attributes: tuple[Attribute, ...]
    # The groups: one value of each attribute.
    combinations: tuple[tuple[str, ...], ...]

    def group_of(self, item: Item) -> tuple[str, ...] | None:
        """The item's group, its value of each attribute; None when any of them is not audited for it."""
        values = []
        for attribute in self.attributes:
            if not item.audited(attribute):
                return None
            values.append(item.values[attribute.name])
        return tuple(values)


@dataclass(frozen=True)
class ClassRates:
    """One class, one-vs-rest, inside one group: misses and false alarms with their counts."""

    positives: int
    false_negatives: int
    negatives: int
    false_positives: int

    @property
    def false_negative_rate(self) -> float | None:
        """Items of the class predicted as another, over the items of the class; None without such items."""
        return self.false_negatives / self.positives if self.positives else None

    @property
    def false_positive_rate(self) -> float | None:
        """Items of other classes predicted as the class, over the items of other classes; None without such items."""
        return self.false_positives / self.negatives if self.negatives else None


@dataclass(frozen=True)
class CalibrationBin:
    """One bin of scores [low, high): its items, their accuracy and mean score (None when empty)."""

    low: float
    high: float
    n: int
    accuracy: float | None
    confidence: float | None


@dataclass(frozen=True)
class Calibration:
    """The top-label expected calibration error of some items, and its bins."""

    n: int
    ece: float
    bins: tuple[CalibrationBin, ...]


@dataclass(frozen=True)
class GroupErrors:
    """One group: its values, items, errors, error rate with its Wilson interval, per-class rates, confusion, calibration."""

    values: dict[str, str]
    n: int
    errors: int
    rate: float | None
    low: float | None
    high: float | None
    classes: dict[str, ClassRates]
    confusion: dict[str, dict[str, int]]
    calibration: Calibration | None


@dataclass(frozen=True)
class GroupingErrors:
    """The groups of one attribute or intersection, the spread of their rates, and the test of homogeneity."""

    grouping: Grouping
    groups: dict[str, GroupErrors]
    difference: float | None
    ratio: float | None
    highest: str | None
    lowest: str | None
    test: TableTest | None
    untested: str | None
    q_value: float | None = None
    flagged: bool = False


@dataclass(frozen=True)
class Analysis:
    """Everything `errors` computes from the scored items, but the weights."""

    results: list[GroupingErrors]
    tests: int
    permutations: int
    alpha: float
    items: int
    errors: int
    calibration: Calibration | None


def parse_score(text: str, path: str, line: int) -> float:
    """The score of one line: a probability, 0 to 1; an error naming the line otherwise."""
    if not text:
        raise AuditError(f"{path}: bad CSV: line {line} has no score (once there is a score column, every line needs one)")
    try:
        value = float(text)
    except ValueError:
        raise AuditError(f"{path}: bad CSV: line {line}: the score {text!r} is not a number") from None
    # The comparison is False for NaN too.
    if not 0 <= value <= 1:
        raise AuditError(f"{path}: bad CSV: line {line}: the score {text!r} is not a probability between 0 and 1")
    return value


def read_predictions(path: str) -> dict[str, Prediction]:
    """`{item: Prediction}` from a CSV with the columns `item,predicted` and optionally `score`."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            reader = csv.DictReader(file)
            columns = reader.fieldnames or []
            if "item" not in columns or "predicted" not in columns:
                found = ", ".join(columns) or "none"
                raise AuditError(f"{path}: bad CSV: expected the columns item,predicted (found: {found})")
            with_scores = SCORE_COLUMN in columns
            predictions = {}
            for row in reader:
                item, predicted = (row.get("item") or "").strip(), (row.get("predicted") or "").strip()
                if not item or not predicted:
                    raise AuditError(f"{path}: bad CSV: line {reader.line_num} lacks an item or a prediction")
                if item in predictions:
                    raise AuditError(f"{path}: bad CSV: the item {item!r} is predicted twice (line {reader.line_num})")
                score = parse_score((row.get(SCORE_COLUMN) or "").strip(), path, reader.line_num) if with_scores else None
                predictions[item] = Prediction(predicted, score)
    except OSError as error:
        raise AuditError(f"cannot read the predictions {path}: {error.strerror}") from None
    except (UnicodeDecodeError, csv.Error) as error:
        raise AuditError(f"{path}: bad CSV: {error}") from None
    if not predictions:
        raise AuditError(f"{path}: bad CSV: no prediction in it")
    return predictions


def label_names(labels: list[str]) -> dict[str, str]:
    """What a prediction may say for each label: the label, or its escaped CSV form; the label literally wins."""
    names = {spreadsheet_cell(label): label for label in labels}
    names.update({label: label for label in labels})
    return names


def score_predictions(dataset: Dataset, predictions: dict[str, Prediction]) -> tuple[list[Scored], list[str]]:
    """The items that have a prediction, scored, and the predicted ids that match no item.

    An item id or a label may be given as the CSV files of this tool write it,
    escaped against formula injection (`'=x` for `=x`, see `csv_output`).
    """
    ids = {item.id for item in dataset.items}
    names = label_names(dataset.labels())
    scored = []
    matched = set()
    for item in dataset.items:
        escaped = spreadsheet_cell(item.id)
        # The escaped form never stands for another item: an id that is literally `'=x` is that item's.
        name = item.id if item.id in predictions else escaped if escaped not in ids else None
        if name in predictions:
            prediction = predictions[name]
            predicted = names.get(prediction.predicted, prediction.predicted)
            scored.append(Scored(item, predicted, predicted != item.label, prediction.score))
            matched.add(name)
    unknown = sorted(set(predictions) - matched)
    if not scored:
        example = next(iter(predictions))
        looks_like = f"; item ids look like {dataset.items[0].id!r}" if dataset.items else ""
        raise AuditError(f"no prediction names an item of the exports (e.g. {example!r}){looks_like}")
    return scored, unknown


def attribute_grouping(attribute: Attribute) -> Grouping:
    """The groups of one attribute: its values."""
    return Grouping(attribute.name, attribute.kind, (attribute,), tuple((value,) for value in attribute.values))


def intersection_grouping(dataset: Dataset, spec: str) -> Grouping:
    """The groups of `--intersect spec` (attribute names separated by commas): every combination of their values."""
    names = [name.strip() for name in spec.split(",")]
    if any(not name for name in names) or len(names) < 2:
        raise AuditError(f"--intersect {spec!r}: give two or more attribute names separated by commas, e.g. a,b")
    if len(set(names)) < len(names):
        raise AuditError(f"--intersect {spec!r}: an attribute is named twice")
    audited = {attribute.name: attribute for attribute in dataset.attributes}
    for name in names:
        if name not in audited:
            known = ", ".join(sorted(audited)) or "none"
            raise AuditError(f"--intersect {spec!r}: {name!r} is not an audited attribute (audited: {known})")
    attributes = tuple(audited[name] for name in names)
    combinations = tuple(product(*(attribute.values for attribute in attributes)))
    if len({JOIN.join(values) for values in combinations}) < len(combinations):
        raise AuditError(f"--intersect {spec!r}: values containing {JOIN.strip()!r} give two groups the same name")
    return Grouping(JOIN.join(names), INTERSECTION, attributes, combinations)


def groupings(dataset: Dataset, intersect: list[str] | None = None) -> list[Grouping]:
    """Every audited attribute, then each `--intersect`; the same intersection twice is an error."""
    intersections = [intersection_grouping(dataset, spec) for spec in intersect or []]
    seen = set()
    for grouping in intersections:
        key = frozenset(attribute.name for attribute in grouping.attributes)
        if key in seen:
            names = ",".join(attribute.name for attribute in grouping.attributes)
            raise AuditError(f"--intersect {names!r} is given twice")
        seen.add(key)
    return [attribute_grouping(attribute) for attribute in dataset.attributes] + intersections


def calibration(pairs: list[tuple[float, bool]]) -> Calibration | None:
    """The top-label expected calibration error of `(score, correct)` pairs over equal-width bins; None without pairs."""
    if not pairs:
        return None
    counts = [0] * CALIBRATION_BINS
    correct = [0] * CALIBRATION_BINS
    score_sums = [0.0] * CALIBRATION_BINS
    for score, right in pairs:
        index = min(int(score * CALIBRATION_BINS), CALIBRATION_BINS - 1)
        counts[index] += 1
        correct[index] += right
        score_sums[index] += score
    bins = []
    ece = 0.0
    for index, count in enumerate(counts):
        accuracy = correct[index] / count if count else None
        confidence = score_sums[index] / count if count else None
        if count:
            ece += count / len(pairs) * abs(accuracy - confidence)
        bins.append(CalibrationBin(index / CALIBRATION_BINS, (index + 1) / CALIBRATION_BINS, count, accuracy, confidence))
    return Calibration(len(pairs), 0.0 if ece < ROUNDING else ece, tuple(bins))


def scored_calibration(members: list[Scored]) -> Calibration | None:
    """The calibration of scored items, when every one of them has a score."""
    if not members or any(entry.score is None for entry in members):
        return None
    return calibration([(entry.score, not entry.wrong) for entry in members])


def group_errors(members: list[Scored], labels: list[str], values: dict[str, str]) -> GroupErrors:
    """One group's error rate, per-class rates (one-vs-rest, from its confusion matrix) and calibration."""
    n = len(members)
    errors = sum(entry.wrong for entry in members)
    low, high = wilson_interval(errors, n)
    confusion: dict[str, dict[str, int]] = {}
    for (label, predicted), count in sorted(Counter((entry.item.label, entry.predicted) for entry in members).items()):
        confusion.setdefault(label, {})[predicted] = count
    classes = {}
    for label in labels:
        row = confusion.get(label, {})
        positives = sum(row.values())
        false_positives = sum(other.get(label, 0) for actual, other in confusion.items() if actual != label)
        classes[label] = ClassRates(positives, positives - row.get(label, 0), n - positives, false_positives)
    rate = errors / n if n else None
    return GroupErrors(values, n, errors, rate, low, high, classes, confusion, scored_calibration(members))


def spread(groups: dict[str, GroupErrors]) -> tuple[float | None, float | None, str | None, str | None]:
    """(difference, ratio, highest group, lowest group) over the groups that have items; None with fewer than two."""
    present = {name: group.rate for name, group in groups.items() if group.n > 0}
    if len(present) < 2:
        return None, None, None, None
    highest = max(present, key=present.get)
    # Another group than the highest, even when every rate is the same.
    lowest = min((name for name in present if name != highest), key=present.get)
    ratio = present[highest] / present[lowest] if present[lowest] > 0 else None
    return present[highest] - present[lowest], ratio, highest, lowest


def why_untested(members: dict[str, list[Scored]]) -> str | None:
    """Why the error rates of these groups cannot be tested; None when they can."""
    present = [scored for scored in members.values() if scored]
    if len(present) < 2:
        return "fewer than two groups have items"
    wrong = sum(entry.wrong for scored in present for entry in scored)
    if wrong == 0:
        return "no prediction of these groups is wrong"
    if wrong == sum(len(scored) for scored in present):
        return "every prediction of these groups is wrong"
    return None


def homogeneity_test(members: dict[str, list[Scored]], permutations: int, seed: int) -> TableTest:
    """The test that the error rate is the same in every group: {error, correct} × group, clusters moved whole.

    The groups are the columns, which a cluster permutation shuffles: a
    group is usually constant within a cluster (the lighting of an image),
    while errors vary between its objects.
    """
    outcomes, groups, clusters = [], [], []
    for group, scored in members.items():
        for entry in scored:
            outcomes.append(ERROR if entry.wrong else CORRECT)
            groups.append(group)
            clusters.append(entry.item.cluster)
    return association_test(
        outcomes,
        groups,
        clusters,
        row_order=(ERROR, CORRECT),
        column_order=tuple(members),
        permutations=permutations,
        seed=seed,
    )


def members_of(grouping: Grouping, scored: list[Scored]) -> dict[tuple[str, ...], list[Scored]]:
    """The scored items of each group of `grouping` (keyed by its values), in the grouping's order."""
    members: dict[tuple[str, ...], list[Scored]] = {values: [] for values in grouping.combinations}
    for entry in scored:
        values = grouping.group_of(entry.item)
        if values is not None:
            members.setdefault(values, []).append(entry)
    return members


def named_groups(grouping: Grouping, scored: list[Scored]) -> dict[str, tuple[dict[str, str], list[Scored]]]:
    """Each group of `grouping` by name (its values joined: `female`, `female × night`): its values and scored items."""
    names = [attribute.name for attribute in grouping.attributes]
    return {
        JOIN.join(values): (dict(zip(names, values)), entries) for values, entries in members_of(grouping, scored).items()
    }


def analyse(dataset: Dataset, scored: list[Scored], alpha: float, intersect: list[str] | None = None) -> Analysis:
    """Error rates, tests, q-values and flags of every attribute and intersection; calibration overall."""
    labels = dataset.labels()
    every = groupings(dataset, intersect)
    named = [named_groups(grouping, scored) for grouping in every]
    memberships = [{name: entries for name, (_, entries) in groups.items()} for groups in named]
    reasons = [why_untested(members) for members in memberships]
    # m is known before testing, so that the permutation tests draw enough permutations for alpha / m.
    tests = sum(reason is None for reason in reasons)
    permutations = permutations_needed(alpha, tests)
    results = []
    for seed, (grouping, groups_of, members, reason) in enumerate(zip(every, named, memberships, reasons)):
        groups = {name: group_errors(entries, labels, values) for name, (values, entries) in groups_of.items()}
        test = homogeneity_test(members, permutations, seed) if reason is None else None
        results.append(GroupingErrors(grouping, groups, *spread(groups), test, reason))
    q_values = benjamini_hochberg([result.test.p_value if result.test else None for result in results])
    results = [
        replace(result, q_value=q_value, flagged=q_value is not None and q_value < alpha)
        for result, q_value in zip(results, q_values)
    ]
    errors = sum(entry.wrong for entry in scored)
    return Analysis(results, tests, permutations, alpha, len(scored), errors, scored_calibration(scored))


def calibration_document(result: Calibration | None) -> dict | None:
    """The JSON of a calibration: ECE and bins."""
    if result is None:
        return None
    return {
        "n": result.n,
        "ece": clean(result.ece),
        "bins": [
            {"low": b.low, "high": b.high, "n": b.n, "accuracy": clean(b.accuracy), "confidence": clean(b.confidence)}
            for b in result.bins
        ],
    }


def group_document(group: GroupErrors) -> dict:
    """The JSON of one group."""
    return {
        "values": group.values,
        "n": group.n,
        "errors": group.errors,
        "rate": clean(group.rate),
        "low": clean(group.low),
        "high": clean(group.high),
        "classes": {
            label: {
                "positives": rates.positives,
                "false_negatives": rates.false_negatives,
                "false_negative_rate": clean(rates.false_negative_rate),
                "negatives": rates.negatives,
                "false_positives": rates.false_positives,
                "false_positive_rate": clean(rates.false_positive_rate),
            }
            for label, rates in group.classes.items()
        },
        "confusion": group.confusion,
        "calibration": calibration_document(group.calibration),
    }


def result_document(result: GroupingErrors) -> dict:
    """The JSON of one attribute or intersection."""
    test = result.test
    return {
        "name": result.grouping.name,
        "kind": result.grouping.kind,
        "attributes": [attribute.name for attribute in result.grouping.attributes],
        "groups": {name: group_document(group) for name, group in result.groups.items()},
        "difference": clean(result.difference),
        "ratio": clean(result.ratio),
        "highest": result.highest,
        "lowest": result.lowest,
        "untested": result.untested,
        "method": test.method if test else None,
        "chi2": clean(test.chi2) if test else None,
        "dof": test.dof if test else None,
        "min_expected": clean(test.min_expected) if test else None,
        "permutations": test.permutations if test else None,
        "clusters": test.clusters if test else None,
        "design_effect": clean(test.design_effect) if test else None,
        "p_value": clean(test.p_value) if test else None,
        "q_value": clean(result.q_value),
        "flagged": result.flagged,
        "notes": list(test.notes) if test else [],
    }


def errors_document(analysis: Analysis, dataset: Dataset, exports: list[str], unmatched: int, weights: dict | None) -> dict:
    """The whole errors.json document."""
    return {
        "items": analysis.items,
        "units": dataset.units,
        "errors": analysis.errors,
        "error_rate": clean(analysis.errors / analysis.items) if analysis.items else None,
        "mode": dataset.mode,
        "exports": exports,
        "without_prediction": len(dataset.items) - analysis.items,
        "unmatched_predictions": unmatched,
        "alpha": analysis.alpha,
        "tests": analysis.tests,
        "permutations": analysis.permutations,
        "calibration": calibration_document(analysis.calibration),
        "attributes": [result_document(result) for result in analysis.results],
        "weights": weights,
    }


def percent(rate) -> str:
    """A rate as a percentage with 3 significant figures; 'n/a' for None."""
    return "n/a" if rate is None else f"{significant(rate * 100)}%"


def points(difference) -> str:
    """A difference of rates in percentage points, 3 significant figures; 'n/a' for None."""
    return "n/a" if difference is None else significant(difference * 100)


def p_phrase(value) -> str:
    """`= 0.0123`, or `< 0.001`."""
    text = p_text(value)
    return text if text.startswith("<") else f"= {text}"


def spread_text(entry: dict) -> str:
    """`highest vs lowest: difference, ratio` of one attribute's document, rounded; empty with fewer than two groups."""
    if entry["difference"] is None:
        return ""
    groups = entry["groups"]
    highest, lowest = entry["highest"], entry["lowest"]
    return (
        f"{highest} {percent(groups[highest]['rate'])} vs {lowest} {percent(groups[lowest]['rate'])}: "
        f"difference {points(entry['difference'])} percentage points, ratio {significant(entry['ratio'])}"
    )


def verdict_text(entry: dict) -> str:
    """The test's result in words, rounded: method, p, q and the flag."""
    if entry["untested"]:
        return f"not tested: {entry['untested']}"
    verdict = "FLAGGED" if entry["flagged"] else "ok"
    return f"{entry['method']} p {p_phrase(entry['p_value'])}, q {p_phrase(entry['q_value'])}: {verdict}"


def print_summary(document: dict) -> None:
    """The console summary of the document's rates and tests, rounded."""
    print(f"{document['items']} predictions scored, {document['errors']} errors ({percent(document['error_rate'])})")
    print(
        f"{document['tests']} tests of equal error rates across groups ({document['units']}), "
        f"q-values by Benjamini-Hochberg, flagged when q < {significant(document['alpha'])}"
    )
    if document["calibration"] is not None:
        print(f"expected calibration error (10 bins): {significant(document['calibration']['ece'])} overall")
    for entry in document["attributes"]:
        spread_part = spread_text(entry)
        print(f"{entry['name']} ({entry['kind']}): " + (spread_part + "; " if spread_part else "") + verdict_text(entry))
        for note in entry["notes"]:
            print(f"  note: {note}")
        for name, group in entry["groups"].items():
            if not group["n"]:
                print(f"  {name}: no item")
                continue
            line = (
                f"  {name}: {group['errors']}/{group['n']} = {percent(group['rate'])} "
                f"[{percent(group['low'])}, {percent(group['high'])}]"
            )
            if group["calibration"] is not None:
                line += f", ECE {significant(group['calibration']['ece'])}"
            print(line)


FLAGGED_MEANING = (
    "The model's error rate differs between these groups by more than chance explains (q < {alpha}). "
    "The per-class rates below tell which classes drive it: a high false-negative rate of a class in one group "
    "means the model misses that class there; a high false-positive rate means it sees that class there too often. "
    "Consider more training data for that group, or the loss weights (weights.csv)."
)
NOT_FLAGGED_MEANING = (
    "No difference in error rate that can be told apart from chance at q < {alpha}. With few items per group a real "
    "difference can go undetected: the intervals show how precise each rate is."
)


def html_number(value) -> str:
    """A statistic for the page: 3 significant figures, 'n/a' for None."""
    return html.escape(significant(value))


def html_row(cells: list[str], header: bool = False) -> str:
    """A table row of cells already escaped."""
    tag = "th" if header else "td"
    return "<tr>" + "".join(f"<{tag}>{cell}</{tag}>" for cell in cells) + "</tr>"


def html_summary(document: dict) -> list[str]:
    """The summary table: one row per attribute or intersection."""
    e = html.escape
    parts = [
        "<h2>Summary</h2><table>",
        html_row(
            ["attribute", "kind", "highest", "lowest", "difference (points)", "ratio", "test", "p", "q", "flag"], header=True
        ),
    ]
    for index, entry in enumerate(document["attributes"]):
        groups = entry["groups"]
        highest, lowest = entry["highest"], entry["lowest"]
        flag = "<span class='flag'>flagged</span>" if entry["flagged"] else "<span class='ok'>—</span>"
        parts.append(
            html_row(
                [
                    f"<a href='#errors-{index}'>{e(entry['name'])}</a>",
                    e(entry["kind"]),
                    f"{e(highest)} {e(percent(groups[highest]['rate']))}" if highest is not None else "n/a",
                    f"{e(lowest)} {e(percent(groups[lowest]['rate']))}" if lowest is not None else "n/a",
                    e(points(entry["difference"])),
                    html_number(entry["ratio"]),
                    e(entry["method"] or f"not tested: {entry['untested']}"),
                    e(p_text(entry["p_value"])),
                    e(p_text(entry["q_value"])),
                    flag,
                ]
            )
        )
    parts.append("</table>")
    return parts


def html_groups(entry: dict) -> list[str]:
    """The error rate of every group, with its interval and calibration."""
    e = html.escape
    with_scores = any(group["calibration"] is not None for group in entry["groups"].values())
    header = ["group", "items", "errors", "error rate", "95 % interval"] + (["ECE"] if with_scores else [])
    parts = ["<table>", html_row(header, header=True)]
    for name, group in entry["groups"].items():
        interval = f"{percent(group['low'])} – {percent(group['high'])}" if group["n"] else "n/a"
        cells = [e(name), str(group["n"]), str(group["errors"]), e(percent(group["rate"])), e(interval)]
        if with_scores:
            cells.append(html_number(group["calibration"]["ece"]) if group["calibration"] else "n/a")
        parts.append(html_row(cells))
    parts.append("</table>")
    return parts


def html_classes(entry: dict) -> list[str]:
    """Per class and group: misses (false negatives) and false alarms (false positives), with their counts."""
    e = html.escape
    header = ["class", "group", "false negatives", "false-negative rate", "false positives", "false-positive rate"]
    parts = ["<table>", html_row(header, header=True)]
    labels = sorted({label for group in entry["groups"].values() for label in group["classes"]})
    for label in labels:
        for name, group in entry["groups"].items():
            rates = group["classes"].get(label)
            if not group["n"] or rates is None:
                continue
            cells = [
                e(label),
                e(name),
                f"{rates['false_negatives']} of {rates['positives']}",
                e(percent(rates["false_negative_rate"])),
                f"{rates['false_positives']} of {rates['negatives']}",
                e(percent(rates["false_positive_rate"])),
            ]
            parts.append(html_row(cells))
    parts.append("</table>")
    return parts


def html_test(entry: dict) -> str:
    """The sentence about the test of one attribute, with the numbers behind it."""
    e = html.escape
    spread_part = spread_text(entry)
    words = f"{e(spread_part + '. ' if spread_part else '')}Test of equal error rates: {e(verdict_text(entry))}."
    if entry["method"]:
        words += (
            f" χ² = {html_number(entry['chi2'])}, dof = {entry['dof']}, "
            f"smallest expected count {html_number(entry['min_expected'])}"
        )
        if entry["permutations"]:
            words += f", {entry['permutations']} permutations"
        if entry["method"] == CLUSTER_PERMUTATION:
            words += f" (whole images or tracks exchanged among those of similar size: {entry['clusters']} of them)"
        words += "."
    return f"<p>{words}</p>"


def html_attribute(index: int, entry: dict, alpha: float) -> list[str]:
    """The section of one attribute or intersection."""
    e = html.escape
    parts = [f"<h2 id='errors-{index}'>{e(entry['name'])} <small>({e(entry['kind'])})</small></h2>", html_test(entry)]
    parts += [f"<p>Note: {e(note)}</p>" for note in entry["notes"]]
    if not entry["untested"]:
        css, words = ("meaning", FLAGGED_MEANING) if entry["flagged"] else ("plain", NOT_FLAGGED_MEANING)
        parts.append(f"<p class='{css}'>{e(words.format(alpha=significant(alpha)))}</p>")
    parts += html_groups(entry)
    parts.append("<h3>Per class (one-vs-rest)</h3>")
    parts += html_classes(entry)
    return parts


def html_weights(weights: dict) -> list[str]:
    """The loss weights section."""
    if not weights["protected"]:
        return [
            "<h2>Loss weights</h2>",
            "<p>There is no protected attribute to weigh by (name them under <code>protected</code> in the schema, "
            "<code>--schema</code>): every item weighs 1 in <code>weights.csv</code>.</p>",
        ]
    return [
        "<h2>Loss weights</h2>",
        "<p>Kamiran–Calders reweighing: w = P(label) · P(group) / P(label, group) over the combinations of the "
        "protected attributes, so that in the weighted data the label does not depend on the group; weights clipped "
        f"at {html_number(weights['max_weight'])}. {weights['grouped']} of {weights['items']} items in a group, "
        f"{weights['clipped']} clipped; largest / smallest weight {html_number(weights['ratio'])}; effective sample "
        f"size {html_number(weights['effective_sample_size'])}. Label × group association (Cramér's V): "
        f"{html_number(weights['association_before'])} before, {html_number(weights['association_after'])} after "
        "weighting. The weights are in <code>weights.csv</code>.</p>",
    ]


def render_html(document: dict) -> str:
    """The self-contained errors page; every string from the exports and the predictions is escaped."""
    e = html.escape
    alpha = document["alpha"]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Model errors by group</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>Model errors by group</h1>",
        f"<p>{document['items']} predictions scored ({e(document['units'])}), {document['errors']} errors "
        f"({e(percent(document['error_rate']))}); {document['without_prediction']} items without a prediction, "
        f"{document['unmatched_predictions']} predictions naming no item. Exports: "
        f"{', '.join('<code>' + e(path) + '</code>' for path in document['exports'])}.</p>",
        "<p>For every attribute, the error rate is tested for being the same in every group: chi-square test of "
        "homogeneity (for two groups, the two-proportion z-test), exact when an expected count is below 5, and a "
        "permutation of whole images or tracks (among those of similar size) when items are clustered in them. "
        f"{document['tests']} tests; q-values by Benjamini–Hochberg across them; an attribute is <b>flagged</b> "
        f"when q &lt; {html_number(alpha)}. The difference is the highest group's rate minus the lowest's; the ratio "
        "is n/a when the lowest rate is 0.</p>",
    ]
    if document["calibration"] is not None:
        parts.append(
            "<p>Calibration: top-label expected calibration error over 10 equal-width score bins, "
            f"{html_number(document['calibration']['ece'])} overall (per group in the tables).</p>"
        )
    parts += html_summary(document)
    for index, entry in enumerate(document["attributes"]):
        parts += html_attribute(index, entry, alpha)
    if document["weights"] is not None:
        parts += html_weights(document["weights"])
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def alpha_level(text: str) -> float:
    """An argparse type: a significance level, strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not strictly between 0 and 1")
    return value


def add_command(commands, sources: argparse.ArgumentParser) -> None:
    """The `errors` subcommand, its options and its runner."""
    parser = commands.add_parser("errors", parents=[sources], help="error rates per group, calibration and loss weights")
    parser.add_argument(
        "--predictions", required=True, help="CSV with item,predicted and optionally score (the probability of predicted)"
    )
    parser.add_argument("--out", type=Path, required=True, help="directory for errors.html and weights.csv")
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    parser.add_argument(
        "--alpha", type=alpha_level, default=DEFAULT_ALPHA, help="flag when the q-value is below this (default: %(default)s)"
    )
    parser.add_argument(
        "--intersect",
        action="append",
        metavar="A,B",
        help="also test the groups of these attributes' combined values (repeatable)",
    )
    parser.add_argument(
        "--max-weight",
        type=max_weight_option,
        default=DEFAULT_MAX_WEIGHT,
        help="clip the loss weights at this value (default: %(default)s)",
    )
    parser.set_defaults(run=run_errors)


def run_errors(args) -> int:
    """`errors`: tests and rates per group, errors.html, weights.csv, and the JSON when asked."""
    dataset, exports = gather(args)
    predictions = read_predictions(args.predictions)
    scored, unknown = score_predictions(dataset, predictions)
    if unknown:
        example = unknown[0]
        print(f"note: {len(unknown)} predictions name no item of the exports (e.g. {example!r}): ignored", file=sys.stderr)
    missing = len(dataset.items) - len(scored)
    if missing:
        print(f"note: {missing} items have no prediction: left out of the error rates", file=sys.stderr)
    analysis = analyse(dataset, scored, args.alpha, args.intersect)
    weights = reweighing(dataset, args.max_weight)
    write_weights(weights, args.out / "weights.csv")
    document = errors_document(analysis, dataset, exports, len(unknown), weights_json(weights))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "errors.html").write_text(render_html(document), encoding="utf-8")
    if args.json:
        write_json(args.json, document)
    print_summary(document)
    for line in describe(weights):
        print(line)
    if weights.grouped and not weights.clipped:
        print(f"  no weight clipped at --max-weight {significant(weights.max_weight)}")
    print(f"weights written to {args.out / 'weights.csv'}")
    print(f"per-class false-positive and false-negative rates, and the tests: {args.out / 'errors.html'}")
    return 0
