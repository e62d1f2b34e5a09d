"""`errors`: the model's error rate per group, and loss weights per protected group.

An item's prediction is an error when it differs from the item's target
label. For every audited attribute, each value is a group (items whose value
is `unlabeled` are in none): its error rate with a Wilson 95 % interval; the
disparity is the highest rate over the lowest (None when fewer than two
groups have items, or when the lowest rate is 0); the attribute is flagged
when two groups' intervals do not overlap.
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass
from pathlib import Path

from .csv_output import spreadsheet_cell, write_csv
from .dataset import PROTECTED, Attribute, Dataset, Item
from .errors import AuditError
from .output import clean, write_json
from .sources import gather
from .stats import wilson_interval


@dataclass
class Group:
    """One value of an attribute: items, errors, rate and its Wilson interval."""

    n: int
    errors: int
    rate: float | None
    low: float | None
    high: float | None


@dataclass
class AttributeErrors:
    """Error rates of the groups of one attribute."""

    attribute: Attribute
    groups: dict[str, Group]
    disparity: float | None
    flagged: bool


def read_predictions(path: str) -> dict[str, str]:
    """`{item: predicted}` from a CSV with the columns `item,predicted`."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            reader = csv.DictReader(file)
            columns = reader.fieldnames or []
            if "item" not in columns or "predicted" not in columns:
                raise AuditError(f"{path}: bad CSV: expected the columns item,predicted (found: {', '.join(columns) or 'none'})")
            predictions = {}
            for row in reader:
                item, predicted = (row.get("item") or "").strip(), (row.get("predicted") or "").strip()
                if not item or not predicted:
                    raise AuditError(f"{path}: bad CSV: line {reader.line_num} lacks an item or a prediction")
                if item in predictions:
                    raise AuditError(f"{path}: bad CSV: the item {item!r} is predicted twice (line {reader.line_num})")
                predictions[item] = predicted
    except OSError as error:
        raise AuditError(f"cannot read the predictions {path}: {error.strerror}") from None
    except (UnicodeDecodeError, csv.Error) as error:
        raise AuditError(f"{path}: bad CSV: {error}") from None
    if not predictions:
        raise AuditError(f"{path}: bad CSV: no prediction in it")
    return predictions


def attribute_errors(attribute: Attribute, scored: list[tuple[Item, bool]]) -> AttributeErrors:
    """Error rates per value of `attribute`, over `(item, is_error)` pairs."""
    groups = {}
    for value in attribute.values:
        outcomes = [wrong for item, wrong in scored if item.values[attribute.name] == value]
        n, errors = len(outcomes), sum(outcomes)
        low, high = wilson_interval(errors, n)
        groups[value] = Group(n, errors, errors / n if n else None, low, high)
    present = [group for group in groups.values() if group.n > 0]
    disparity = None
    if len(present) >= 2:
        lowest = min(group.rate for group in present)
        if lowest > 0:
            disparity = max(group.rate for group in present) / lowest
    flagged = len(present) >= 2 and max(group.low for group in present) > min(group.high for group in present)
    return AttributeErrors(attribute, groups, disparity, flagged)


def score(dataset: Dataset, predictions: dict[str, str]) -> tuple[list[tuple[Item, bool]], list[str]]:
    """`(item, is_error)` for the items that have a prediction, and the predicted ids that match no item.

    An item id or a label may be given as the CSV files of this tool write it,
    escaped against formula injection (`'=x` for `=x`, see `csv_output`).
    """
    ids = {item.id for item in dataset.items}
    scored = []
    matched = set()
    for item in dataset.items:
        escaped = spreadsheet_cell(item.id)
        # The escaped form never stands for another item: an id that is literally `'=x` is that item's.
        name = item.id if item.id in predictions else escaped if escaped not in ids else None
        if name in predictions:
            scored.append((item, predictions[name] not in (item.label, spreadsheet_cell(item.label))))
            matched.add(name)
    unknown = sorted(set(predictions) - matched)
    if not scored:
        example = next(iter(predictions))
        looks_like = f"; item ids look like {dataset.items[0].id!r}" if dataset.items else ""
        raise AuditError(f"no prediction names an item of the exports (e.g. {example!r}){looks_like}")
    return scored, unknown


def group_weights(dataset: Dataset) -> dict[str, float]:
    """Inverse-frequency loss weights per protected group, normalised to a mean of 1 over all items.

    A group is a combination of values of all protected attributes (with
    several protected attributes, the intersections are the groups). An item
    in group g gets N / (G · n_g), where N is the number of items that belong
    to a group, G the number of groups that have items and n_g the items of g:
    every group then carries the same total weight N / G, and the weights of
    grouped items average 1. Items outside every group (a protected attribute
    `unlabeled`) and all items when there is no protected attribute get 1, so
    the mean over all items is 1 too and the loss keeps its scale.
    """
    protected = [attribute for attribute in dataset.attributes if attribute.kind == PROTECTED]
    weights = {item.id: 1.0 for item in dataset.items}
    if not protected:
        return weights
    groups: dict[tuple[str, ...], list[Item]] = {}
    for item in dataset.items:
        if all(item.audited(attribute) for attribute in protected):
            groups.setdefault(tuple(item.values[attribute.name] for attribute in protected), []).append(item)
    grouped = sum(len(members) for members in groups.values())
    for members in groups.values():
        weight = grouped / (len(groups) * len(members))
        for item in members:
            weights[item.id] = weight
    return weights

def add_command(commands, sources: argparse.ArgumentParser) -> None:
    """The `errors` subcommand, its options and its runner."""
    parser = commands.add_parser("errors", parents=[sources], help="error rates per group and loss weights")
    parser.add_argument("--predictions", required=True, help="CSV with item,predicted")
    parser.add_argument("--out", type=Path, required=True, help="directory for weights.csv")
    parser.add_argument("--json", type=Path, help="also write the error rates as JSON")
    parser.set_defaults(run=run_errors)


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
