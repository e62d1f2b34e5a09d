"""Loss weights that make the target label independent of the protected group: Kamiran–Calders reweighing.

A group is a combination of values of every protected attribute (kind
`protected`; with several, their intersections are the groups). Over the
items that have a real value for every protected attribute (the grouped
items), an item of label l in group g gets

    w(l, g) = P(l) · P(g) / P(l, g) = n_l · n_g / (N · n_lg)

(Kamiran & Calders 2012, "Data preprocessing techniques for classification
without discrimination"; AIF360's `Reweighing`). In the weighted data every
(label, group) cell holds n_l · n_g / N, the count independence would give:
label and group are independent, and Cramér's V of the weighted label × group
table is 0. Items outside every group (a protected attribute `unlabeled`),
and every item when there is no protected attribute, get 1.

Clipping: a cell the data barely holds gets a large weight (a rare label in a
rare group), and a few heavy items make the training loss noisy. The final
weight of an item is min(c · w, max_weight), with c > 0 chosen so that the
weights of the grouped items average exactly 1 (the loss keeps its scale).
The cap is on the weight itself, not relative to the smallest weight: 1 is
the weight of an item whose cell is already at independence, and max_weight
is how many such items one item may count for. Scaling and clipping are
solved together (c is found exactly, cell by cell), so no clipped weight is
pushed over the cap again by the renormalisation: every weight is at most
max_weight. A clipped cell stays below its independence count, so some
association is left: `association_after` says how much.

An empty (label, group) cell cannot be weighted up: its weighted count stays
0, so with empty cells the association after reweighing is not 0 either.

Reported with the weights: the effective sample size of the weighted items
(Kish: (Σw)² / Σw², over every item, those of weight 1 included: the items
the loss sees), the clipped items, the ratio of the largest weight to the
smallest, and Cramér's V (plain, without bias correction) of the label ×
group table before and after weighting.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .csv_output import write_csv
from .dataset import PROTECTED, Dataset
from .errors import AuditError
from .output import clean, significant

DEFAULT_MAX_WEIGHT = 10.0
# Relative slack when comparing a scaled weight with the cap, so that a weight
# equal to it up to rounding is not counted as clipped.
TOLERANCE = 1e-12
# Cramér's V below this is floating-point noise of the weighted table.
ROUNDING = 1e-12


@dataclass(frozen=True)
class Weights:
    """Kamiran–Calders weights of every item, the cells they come from, and what they do to the data."""

    by_item: dict[str, float]  # item id -> weight (every item of the dataset)
    cells: list[dict]  # one per non-empty (label, group): label, group (attr -> value), n, kc_weight, weight, clipped
    clipped: int  # grouped items whose weight was capped at max_weight
    max_weight: float
    effective_sample_size: float
    ratio: float | None  # largest weight / smallest weight
    association_before: float | None  # Cramér's V, label × group, unweighted
    association_after: float | None  # the same, weighted
    grouped: int = 0  # items in a group (the ones reweighed)
    protected: tuple[str, ...] = ()  # the protected attributes the groups come from


def max_weight_option(text: str) -> float:
    """An argparse type for --max-weight: a number of at least 1 (the weights average 1, so a lower cap cannot hold)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 1 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not a finite number of at least 1")
    return value


def cramers_v(table: np.ndarray) -> float | None:
    """Cramér's V of a table of (possibly weighted) counts; None with fewer than two non-empty rows or columns."""
    observed = np.asarray(table, dtype=float)
    observed = observed[observed.sum(axis=1) > 0]
    if observed.size == 0:
        return None
    observed = observed[:, observed.sum(axis=0) > 0]
    rows, columns = observed.shape
    if rows < 2 or columns < 2:
        return None
    total = observed.sum()
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / total
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    v = float(min(1.0, (chi2 / (total * (min(rows, columns) - 1))) ** 0.5))
    # Weighted sums carry rounding errors: a V of 1e-16 is independence, said as 0.
    return 0.0 if v < ROUNDING else v


def capped_scale(counts: np.ndarray, raw: np.ndarray, max_weight: float) -> tuple[float, np.ndarray]:
    """The scale c and the clipped cells such that the weights min(c · raw, max_weight) average 1 over the items.

    Clipping a cell lowers the average, which raises c, which may push
    another cell over the cap: cells are clipped until none is left over it
    (at most one round per cell; c only grows).
    """
    total = counts.sum()
    clipped = np.zeros(len(raw), dtype=bool)
    while True:
        free = ~clipped
        free_mass = float((counts[free] * raw[free]).sum())
        if free_mass <= 0:
            # Every cell is at the cap: only possible with a cap of 1, where every weight is 1.
            return 1.0, clipped
        scale = (total - max_weight * counts[clipped].sum()) / free_mass
        over = free & (scale * raw > max_weight * (1 + TOLERANCE))
        if not over.any():
            return scale, clipped
        clipped |= over


def reweighing(dataset: Dataset, max_weight: float = DEFAULT_MAX_WEIGHT) -> Weights:
    """Kamiran–Calders weights of the items of `dataset`, clipped at `max_weight` (see the module docstring)."""
    if not max_weight >= 1:
        raise AuditError(f"--max-weight must be at least 1 (the weights average 1), not {max_weight}")
    protected = [attribute for attribute in dataset.attributes if attribute.kind == PROTECTED]
    by_item = {item.id: 1.0 for item in dataset.items}
    cell_items: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    if protected:
        for item in dataset.items:
            if all(item.audited(attribute) for attribute in protected):
                group = tuple(item.values[attribute.name] for attribute in protected)
                cell_items.setdefault((item.label, group), []).append(item.id)
    if not cell_items:
        names = tuple(attribute.name for attribute in protected)
        return Weights(by_item, [], 0, max_weight, float(len(by_item)), 1.0 if by_item else None, None, None, 0, names)
    keys = sorted(cell_items)
    labels = sorted({label for label, _ in keys})
    groups = sorted({group for _, group in keys})
    table = np.zeros((len(labels), len(groups)))
    for label, group in keys:
        table[labels.index(label), groups.index(group)] = len(cell_items[(label, group)])
    total = table.sum()
    label_counts, group_counts = table.sum(axis=1), table.sum(axis=0)
    counts = np.array([len(cell_items[key]) for key in keys], dtype=float)
    # w(l, g) = n_l · n_g / (N · n_lg): P(l) · P(g) / P(l, g) with every probability counted over the grouped items.
    raw = np.array(
        [
            label_counts[labels.index(label)] * group_counts[groups.index(group)] / (total * len(cell_items[(label, group)]))
            for label, group in keys
        ]
    )
    scale, clipped = capped_scale(counts, raw, max_weight)
    final = np.where(clipped, max_weight, scale * raw)
    cells = []
    weighted = np.zeros_like(table)
    for position, (label, group) in enumerate(keys):
        weight = float(final[position])
        for item_id in cell_items[(label, group)]:
            by_item[item_id] = weight
        weighted[labels.index(label), groups.index(group)] = weight * counts[position]
        cells.append(
            {
                "label": label,
                "group": dict(zip((attribute.name for attribute in protected), group)),
                "n": int(counts[position]),
                "kc_weight": float(raw[position]),
                "weight": weight,
                "clipped": bool(clipped[position]),
            }
        )
    values = np.fromiter(by_item.values(), dtype=float, count=len(by_item))
    return Weights(
        by_item=by_item,
        cells=cells,
        clipped=int(counts[clipped].sum()),
        max_weight=max_weight,
        effective_sample_size=float(values.sum() ** 2 / (values**2).sum()),
        ratio=float(values.max() / values.min()),
        association_before=cramers_v(table),
        association_after=cramers_v(weighted),
        grouped=int(total),
        protected=tuple(attribute.name for attribute in protected),
    )


def write_weights(weights: Weights, path: Path) -> None:
    """weights.csv: the columns item,weight, one row per item sorted by id, weights with 6 decimals."""
    write_csv(path, ["item", "weight"], [[item_id, f"{weight:.6f}"] for item_id, weight in sorted(weights.by_item.items())])


def weights_json(weights: Weights) -> dict:
    """The weights' summary as JSON (full precision; null where undefined); the per-item weights are in weights.csv."""
    return {
        "method": "Kamiran-Calders reweighing over label x protected group",
        "protected": list(weights.protected),
        "max_weight": weights.max_weight,
        "grouped": weights.grouped,
        "clipped": weights.clipped,
        "effective_sample_size": clean(weights.effective_sample_size),
        "items": len(weights.by_item),
        "ratio": clean(weights.ratio),
        "association_before": clean(weights.association_before),
        "association_after": clean(weights.association_after),
        "cells": weights.cells,
    }


def describe(weights: Weights) -> list[str]:
    """What the weights do, in lines for the console (numbers to 3 significant figures)."""
    if not weights.protected:
        return [
            "weights: every item 1 (there is no protected attribute to weigh by: name them under `protected` "
            "in the schema, --schema)"
        ]
    if not weights.grouped:
        return ["weights: every item 1 (no item has a value for every protected attribute)"]
    lines = [
        f"weights: Kamiran-Calders over {weights.grouped} grouped items "
        f"(label x protected group; the other {len(weights.by_item) - weights.grouped} items weigh 1)",
        f"  Cramér's V label x group: {significant(weights.association_before)} before, "
        f"{significant(weights.association_after)} after weighting",
        f"  effective sample size {significant(weights.effective_sample_size)} of {len(weights.by_item)} items; "
        f"largest/smallest weight {significant(weights.ratio)}",
    ]
    if weights.clipped:
        lines.append(
            f"  {weights.clipped} items clipped at --max-weight {significant(weights.max_weight)}: "
            "their cells stay under-weighted, so some association is left"
        )
    return lines
