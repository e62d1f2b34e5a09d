"""`split`: a validation set balanced over target labels and every audited attribute at once.

Only audited items take part: those with a real value for every attribute
their label carries (every attribute, unless the dataset says which labels
carry it). A cell is a (label, attribute=value) pair. Balanced means equal
counts in the cells that share a label and an attribute: for each label, each
attribute's values are equally represented, for every attribute at once. An
item has one label, so each label is solved on its own, over its candidates
grouped by signature (their tuple of values: items of one signature are
interchangeable for balance, and are taken in an order shuffled by a
generator seeded from (seed, label), so the same exports and seed give the
same set).

How many items a label gets (its total T):
- `per_cell=N`: every cell should hold at least N items; with the cells of
  each attribute equal, that takes T = N × (the most values any attribute
  has): with attributes of 2 and 3 values, 3·N items, the 2-valued
  attribute's cells holding 1.5·N each. T is rounded up to a multiple of
  every attribute's value count, so that the cells can be exactly equal
  (N = 5 with 2 and 3 values: 18 items, not 15), unless that would more than
  double it. A cell's target is T / (its attribute's values).
- `size=N`: each label gets N / (labels) items (the remainder goes to the
  labels with the most candidates, then by name); a cell's target is again
  T / (its attribute's values).

Default (cut): when a cell has fewer candidates than its target, the label's
total is lowered until that cell can match the others: T = the smallest
(values × candidates) over the label's cells, so the other cells of the label
are cut to match (and with them the cells of every other attribute of the
label, since they share the total). A total lowered so is rounded down to a
multiple of every attribute's value count, so that the cells can be exactly
equal (unless that leaves nothing). Then exactly T items are chosen to make
every attribute's cells as equal as possible: each cell aims at
T / (its attribute's values), and the set minimises the squared relative
distance to those aims, sum((count − aim) / aim)², by greedy additions then
pairwise swaps (one picked item out, one candidate of another signature in)
while any swap lowers it. When an attribute's value count does not divide T,
its cells differ by one (17/16); when the candidates' signatures make
equality impossible (the values of two attributes tied together), the set
is the closest the search finds; either way the max/min count per label and
attribute that is left is reported (1 means perfectly equal).

`fill=True` (--fill): the cells are filled as far as the data allows
instead, unequal when a cell is short:
- per_cell: greedy multi-cover: add one item at a time from the signature
  that (1) covers the most cells still below N, then (2) fills the
  least-filled cells (smallest sum of count / N), then (3) comes first in the
  seeded order; stop when no candidate covers a cell below N; then drop,
  newest first, every picked item all of whose cells hold more than N. A
  cell's target is N.
- size: the label's quota of items, by the same squared-distance search as
  above, aiming at quota / values per cell: a short cell leaves its share to
  the other values.

A value that no audited item has, in any label, is left out of the balance
(it would cut every label to nothing) and named in the notes. A cell is
`short` when its label has fewer candidates with that value than its target
(the shortfall, target − candidates rounded down, is how many more audited
items it needs), `cut` when the candidates were there but the set holds
fewer than the target, `ok` otherwise. When the request exceeds the data, or
the set holds every audited item, the notes say so.

The search is deterministic and costs (picks + swaps) × signatures²,
signatures being at most the product of the attributes' value counts; exact
optima would need an integer program.
"""

from __future__ import annotations

import argparse
import html
import math
import random
import re
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from .csv_output import attribute_column, write_csv
from .dataset import Attribute, Dataset, Item
from .errors import AuditError
from .output import clean, significant, write_json
from .sampling import carries
from .sources import gather, positive_int

OK, SHORT, CUT = "ok", "short", "cut"


@dataclass
class Shortfall:
    """A cell whose label has fewer candidates than its target, and how many more audited items it needs."""

    label: str
    attribute: str
    value: str
    missing: int
    target: float = 0.0
    available: int = 0

    @property
    def cell(self) -> str:
        """The cell's JSON key, `label|attribute=value`."""
        return cell_name(self.label, self.attribute, self.value)

    def sentence(self) -> str:
        """E.g. "12 more `lighting=night` items of `car` needed (30 wanted, 18 exist)".

        Counts are whole and shown exactly; "wanted" is the target rounded
        down, the number the shortfall is counted from.
        """
        return (
            f"{self.missing} more `{self.attribute}={self.value}` items of `{self.label}` needed "
            f"({math.floor(self.target)} wanted, {self.available} exist)"
        )


def target_text(target: float) -> str:
    """A cell's target for people: a whole target exactly, a fractional one to two decimals (5000 / 3: 1666.67).

    Not to 3 significant figures: a count of 1667 must not read 1670.
    """
    if float(target).is_integer():
        return str(int(target))
    return f"{target:.2f}".rstrip("0")


@dataclass
class Cell:
    """One (label, attribute=value) cell: items in the set, its target, the candidates that have it, its status."""

    label: str
    attribute: str
    value: str
    count: int
    target: float
    available: int
    status: str

    @property
    def name(self) -> str:
        """`label|attribute=value`."""
        return cell_name(self.label, self.attribute, self.value)


@dataclass
class Spread:
    """What is left of the imbalance of one attribute within one label: its smallest and largest cell."""

    label: str
    attribute: str
    smallest: int
    largest: int

    @property
    def ratio(self) -> float | None:
        """Largest / smallest count: 1 when the cells are equal; None when a cell is empty."""
        return self.largest / self.smallest if self.smallest > 0 else None


@dataclass
class LabelTotal:
    """A label's items in the set, how many were requested, and how many candidates it had."""

    label: str
    count: int
    requested: int
    candidates: int


@dataclass
class Split:
    """The chosen items, every cell, the shortfalls, the imbalance left, and what the user must be told."""

    items: list[Item]
    cells: list[Cell]
    shortfalls: list[Shortfall]
    spreads: list[Spread] = field(default_factory=list)
    labels: list[LabelTotal] = field(default_factory=list)
    candidates: int = 0
    fill: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def cut(self) -> list[Cell]:
        """The cells that hold fewer items than their target although the data had them."""
        return [cell for cell in self.cells if cell.status == CUT]


def cell_name(label: str, attribute: str, value: str) -> str:
    """`label|attribute=value`, the cell's key in JSON."""
    return f"{label}|{attribute}={value}"


def label_quotas(candidates: dict[str, list[Item]], labels: list[str], size: int) -> dict[str, int]:
    """`size` shared equally by the labels; the remainder to those with the most candidates, then by name."""
    base, left = divmod(size, len(labels))
    quotas = {label: base for label in labels}
    for label in sorted(labels, key=lambda label: (-len(candidates.get(label, [])), label))[:left]:
        quotas[label] += 1
    return quotas


def split_candidates(dataset: Dataset) -> dict[str, list[Item]]:
    """The items that can take part, by label: audited for every attribute their label carries."""
    candidates: dict[str, list[Item]] = {}
    for item in dataset.items:
        if all(item.audited(attribute) for attribute in dataset.attributes if carries(attribute, item.label)):
            candidates.setdefault(item.label, []).append(item)
    return candidates


def used_values(attributes: list[Attribute], candidates: dict[str, list[Item]]) -> dict[str, tuple[str, ...]]:
    """Each attribute's values that some candidate has, in declared order (the others cannot be balanced)."""
    seen: dict[str, set[str]] = {attribute.name: set() for attribute in attributes}
    for items in candidates.values():
        for item in items:
            for attribute in attributes:
                if carries(attribute, item.label):
                    seen[attribute.name].add(item.values[attribute.name])
    used = {}
    for attribute in attributes:
        used[attribute.name] = tuple(value for value in attribute.values if value in seen[attribute.name])
    return used


def balanced_split(
    dataset: Dataset, seed: int, per_cell: int | None = None, size: int | None = None, fill: bool = False
) -> Split:
    """The balanced validation set of `dataset` (exactly one of `per_cell` and `size`); see the module docstring."""
    if (per_cell is None) == (size is None):
        raise ValueError("give exactly one of per_cell and size")
    labels = dataset.labels()
    candidates = split_candidates(dataset)
    values = used_values(dataset.attributes, candidates)
    quotas = label_quotas(candidates, labels, size) if size is not None else {}
    split = Split([], [], [], candidates=sum(len(items) for items in candidates.values()), fill=fill)
    for attribute in dataset.attributes:
        for value in attribute.values:
            if value not in values[attribute.name]:
                split.notes.append(f"no audited item has `{attribute.name}={value}`: left out of the balance")
    for label in labels:
        attributes = [
            Attribute(attribute.name, attribute.kind, values[attribute.name])
            for attribute in dataset.attributes
            if carries(attribute, label) and values[attribute.name]
        ]
        solve_label(split, label, attributes, candidates.get(label, []), seed, per_cell, quotas.get(label))
    split.items.sort(key=lambda item: (item.label, item.id))
    split.notes.extend(exceeded_notes(split, size))
    return split


def solve_label(
    split: Split, label: str, attributes: list[Attribute], candidates: list[Item], seed: int, per_cell: int | None, quota
) -> None:
    """Choose the items of one label and add them, with its cells, shortfalls and spreads, to `split`."""
    step = math.lcm(*(len(attribute.values) for attribute in attributes))
    # --fill's cover does not aim at equal cells, so its request is not rounded for them.
    requested = per_cell_total(per_cell, attributes, 1 if split.fill else step) if per_cell is not None else quota
    available = empty_counts(attributes)
    for item in candidates:
        for attribute in attributes:
            available[attribute.name][item.values[attribute.name]] += 1
    queues, rank = signature_queues(label, candidates, attributes, seed)
    if split.fill and per_cell is not None:
        targets = {attribute.name: float(per_cell) for attribute in attributes}
        picked, counts = cover_cells(queues, rank, attributes, targets)
    else:
        targets = {attribute.name: requested / len(attribute.values) for attribute in attributes}
        total = requested if split.fill else cut_total(requested, len(candidates), attributes, available, step)
        aims = {attribute.name: total / len(attribute.values) for attribute in attributes}
        picked, counts = fill_quota(queues, rank, attributes, aims, total)
    split.items.extend(picked)
    split.labels.append(LabelTotal(label, len(picked), requested, len(candidates)))
    for attribute in attributes:
        target = targets[attribute.name]
        for value in attribute.values:
            count, exist = counts[attribute.name][value], available[attribute.name][value]
            wanted = math.floor(target)
            status = SHORT if exist < wanted else CUT if count < wanted else OK
            split.cells.append(Cell(label, attribute.name, value, count, target, exist, status))
            if status == SHORT:
                split.shortfalls.append(Shortfall(label, attribute.name, value, wanted - exist, target, exist))
        cell_counts = list(counts[attribute.name].values())
        split.spreads.append(Spread(label, attribute.name, min(cell_counts), max(cell_counts)))
    if candidates and not picked:
        short = [cell.name for cell in split.cells if cell.label == label and cell.available == 0]
        if short and not split.fill:
            split.notes.append(
                f"`{label}` has no audited item in {', '.join(f'`{name}`' for name in short)}: every cell of `{label}` "
                "was cut to 0 to match (--fill keeps the label's other cells)"
            )


def per_cell_total(per_cell: int, attributes: list[Attribute], step: int) -> int:
    """The label total that gives every cell at least `per_cell` with each attribute's cells equal.

    N × (the most values an attribute has), rounded up to a multiple of every
    attribute's value count (`step`) so that the cells can be exactly equal,
    unless that would more than double it (then the cells differ by one).
    """
    base = per_cell * max((len(attribute.values) for attribute in attributes), default=1)
    rounded = -(-base // step) * step
    return rounded if rounded <= 2 * base else base


def cut_total(requested: int, candidates: int, attributes: list[Attribute], available, step: int) -> int:
    """The label total once its short cells are matched: at most values × the candidates of each cell.

    When a cell cuts the total, it is rounded down to a multiple of every
    attribute's value count (`step`), so that the cells can be exactly equal,
    unless that leaves nothing (then the cells differ by one).
    """
    limits = [len(attribute.values) * min(available[attribute.name].values()) for attribute in attributes]
    total = min([requested, candidates] + limits)
    if total < requested and total >= step:
        total -= total % step
    return total


def exceeded_notes(split: Split, size: int | None) -> list[str]:
    """What the user must be told when the request exceeded the data: never a silent 'take everything'."""
    notes = []
    if split.shortfalls:
        done = (
            "the cells were filled as far as the data allows, so those labels' cells are unequal"
            if split.fill
            else "the other cells of those labels were cut to match (--fill fills them as far as the data allows instead)"
        )
        cells = f"{len(split.shortfalls)} cell" + ("s" if len(split.shortfalls) > 1 else "")
        notes.append(f"the request exceeds the data in {cells} (see `short`): {done}")
    if size is not None and size > split.candidates:
        notes.append(f"--size {size} is more than the {split.candidates} audited items")
    if split.candidates and len(split.items) == split.candidates:
        notes.append(f"every one of the {split.candidates} audited items is in the set: there was no more to choose from")
    return notes


Signature = tuple[str, ...]


def signature_queues(label: str, candidates: list[Item], attributes: list[Attribute], seed: int):
    """The label's candidates grouped by signature, each group in seeded order, and every item's rank in that order."""
    names = [attribute.name for attribute in attributes]
    order = sorted(candidates, key=lambda item: item.id)
    random.Random(f"audit-split/{seed}/{label}").shuffle(order)
    rank = {item.id: position for position, item in enumerate(order)}
    queues: dict[Signature, deque[Item]] = {}
    for item in order:
        queues.setdefault(tuple(item.values[name] for name in names), deque()).append(item)
    return queues, rank


def empty_counts(attributes: list[Attribute]) -> dict[str, dict[str, int]]:
    """Zero for every cell of a label."""
    return {attribute.name: {value: 0 for value in attribute.values} for attribute in attributes}


def cover_cells(queues, rank, attributes: list[Attribute], targets: dict[str, float]):
    """per_cell with --fill: greedy multi-cover of the cells below target, then removal of surplus items."""
    names = [attribute.name for attribute in attributes]
    counts = empty_counts(attributes)
    picked: list[tuple[Signature, Item]] = []
    while True:
        best_key, best = None, None
        for signature, queue in queues.items():
            if not queue:
                continue
            below = sum(1 for name, value in zip(names, signature) if counts[name][value] < targets[name])
            fill = sum(counts[name][value] / targets[name] for name, value in zip(names, signature))
            key = (-below, fill, rank[queue[0].id])
            if best_key is None or key < best_key:
                best_key, best = key, signature
        if best is None or best_key[0] == 0:
            # No candidate brings any cell closer to its target.
            break
        picked.append((best, queues[best].popleft()))
        for name, value in zip(names, best):
            counts[name][value] += 1
    for position in range(len(picked) - 1, -1, -1):
        signature, item = picked[position]
        if all(counts[name][value] > targets[name] for name, value in zip(names, signature)):
            del picked[position]
            for name, value in zip(names, signature):
                counts[name][value] -= 1
    return [item for _, item in picked], counts


def fill_quota(queues, rank, attributes: list[Attribute], targets: dict[str, float], quota: int):
    """`quota` items minimising sum((count − target) / target)², by greedy additions then pairwise swaps."""
    names = [attribute.name for attribute in attributes]
    counts = empty_counts(attributes)

    def cost(name: str, count: int) -> float:
        """The squared relative distance of one cell's count to its target."""
        return ((count - targets[name]) / targets[name]) ** 2 if targets[name] > 0 else 0.0

    def change(signature: Signature, step: int) -> float:
        """How the total cost changes when an item of `signature` is added (+1) or removed (-1)."""
        return sum(
            cost(name, counts[name][value] + step) - cost(name, counts[name][value]) for name, value in zip(names, signature)
        )

    def move(signature: Signature, step: int) -> None:
        """Count an item of `signature` in (+1) or out (-1)."""
        for name, value in zip(names, signature):
            counts[name][value] += step

    taken: dict[Signature, list[Item]] = {}
    for _ in range(quota):
        options = [(change(signature, 1), rank[queue[0].id], signature) for signature, queue in queues.items() if queue]
        if not options:
            break
        _, _, signature = min(options)
        taken.setdefault(signature, []).append(queues[signature].popleft())
        move(signature, 1)
    while True:
        best = None
        for out in sorted(signature for signature, items in taken.items() if items):
            move(out, -1)
            removal = sum(cost(n, counts[n][v]) - cost(n, counts[n][v] + 1) for n, v in zip(names, out))
            for into in sorted(signature for signature, queue in queues.items() if queue and signature != out):
                delta = removal + change(into, 1)
                if delta < -1e-12 and (best is None or delta < best[0]):
                    best = (delta, out, into)
            move(out, 1)
        if best is None:
            break
        _, out, into = best
        queues[out].appendleft(taken[out].pop())
        move(out, -1)
        taken.setdefault(into, []).append(queues[into].popleft())
        move(into, 1)
    return [item for items in taken.values() for item in items], counts


# --- output ---------------------------------------------------------------------------


def split_json(split: Split, args) -> dict:
    """The --json document: every cell with its count, target and status, the shortfalls, the cut cells, the spreads."""
    return {
        "size": len(split.items),
        "seed": args.seed,
        "per_cell": args.per_cell,
        "requested_size": args.size,
        "fill": split.fill,
        "candidates": split.candidates,
        "all_candidates_taken": bool(split.candidates) and len(split.items) == split.candidates,
        "labels": {
            total.label: {"count": total.count, "requested": total.requested, "candidates": total.candidates}
            for total in split.labels
        },
        "cells": {
            cell.name: {
                "label": cell.label,
                "attribute": cell.attribute,
                "value": cell.value,
                "count": cell.count,
                "target": cell.target,
                "available": cell.available,
                "status": cell.status,
            }
            for cell in split.cells
        },
        "shortfalls": [
            {
                "cell": shortfall.cell,
                "missing": shortfall.missing,
                "target": shortfall.target,
                "available": shortfall.available,
            }
            for shortfall in split.shortfalls
        ],
        "cut": [cell.name for cell in split.cut],
        "balance": [
            {
                "label": spread.label,
                "attribute": spread.attribute,
                "smallest": spread.smallest,
                "largest": spread.largest,
                "ratio": clean(spread.ratio),
            }
            for spread in split.spreads
        ],
        "notes": split.notes,
    }


def console_lines(split: Split) -> list[str]:
    """Every label's total, and per attribute its cells (count, status) and the max/min left; numbers rounded."""
    lines = []
    for total in split.labels:
        lines.append(f"{total.label}: {total.count} items of {total.requested} requested ({total.candidates} audited)")
        for spread in (spread for spread in split.spreads if spread.label == total.label):
            cells = [cell for cell in split.cells if cell.label == total.label and cell.attribute == spread.attribute]
            described = ", ".join(
                f"{cell.value} {cell.count}" + ("" if cell.status == OK else f" {cell.status}") for cell in cells
            )
            lines.append(
                f"  {spread.attribute} (target {target_text(cells[0].target)} each): {described}; "
                f"max/min {significant(spread.ratio)}"
            )
    return lines


def code(sentence: str) -> str:
    """A console sentence as HTML: escaped, its `backticked` parts shown as code."""
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(sentence))


def split_html(split: Split, args, sources: list[str]) -> str:
    """A self-contained summary page: label totals, the imbalance left, every cell, the shortfalls; strings escaped."""
    from .report import STYLE  # the report page's look; imported here so `split` does not load the charts unless asked

    e = html.escape
    request = f"--per-cell {args.per_cell}" if args.per_cell is not None else f"--size {args.size}"
    mode = (
        "cells filled as far as the data allows (--fill)"
        if split.fill
        else "cells of a label and attribute cut to equal counts"
    )
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Validation split</title>",
        f"<style>{STYLE}</style></head><body><h1>Validation split</h1>",
        f"<p>{len(split.items)} items from {split.candidates} audited items of "
        f"{', '.join('<code>' + e(source) + '</code>' for source in sources)}; request <code>{e(request)}</code>, "
        f"seed {e(str(args.seed))}; {e(mode)}. Manifest: <code>{e(str(args.out))}</code>.</p>",
        "<p>Balanced means equal counts in the cells (label, attribute = value) that share a label and an attribute. "
        "A cell is <b>short</b> when the data has fewer audited items than its target, and <b>cut</b> when it had "
        "them but holds fewer, to match a short cell or to keep the other attributes equal.</p>",
    ]
    parts.extend(f"<p class='flag'>Note: {code(note)}</p>" for note in split.notes)
    parts.append("<h2>Labels</h2><table><tr><th>label</th><th>items</th><th>requested</th><th>audited</th></tr>")
    for total in split.labels:
        parts.append(
            f"<tr><td>{e(total.label)}</td><td>{total.count}</td><td>{total.requested}</td><td>{total.candidates}</td></tr>"
        )
    parts.append("</table><h2>Balance left</h2><table><tr><th>label</th><th>attribute</th><th>smallest</th>")
    parts.append("<th>largest</th><th>max/min</th></tr>")
    for spread in split.spreads:
        css = "ok" if spread.ratio == 1 else "flag"
        parts.append(
            f"<tr><td>{e(spread.label)}</td><td>{e(spread.attribute)}</td>"
            f"<td>{spread.smallest}</td><td>{spread.largest}</td>"
            f"<td class='{css}'>{e(significant(spread.ratio))}</td></tr>"
        )
    parts.append("</table><h2>Cells</h2><table><tr><th>label</th><th>attribute</th><th>value</th><th>count</th>")
    parts.append("<th>target</th><th>audited</th><th>status</th></tr>")
    for cell in split.cells:
        css = "ok" if cell.status == OK else "flag"
        parts.append(
            f"<tr><td>{e(cell.label)}</td><td>{e(cell.attribute)}</td><td>{e(cell.value)}</td><td>{cell.count}</td>"
            f"<td>{e(target_text(cell.target))}</td><td>{cell.available}</td><td class='{css}'>{e(cell.status)}</td></tr>"
        )
    parts.append("</table><h2>Shortfalls</h2>")
    if split.shortfalls:
        parts.append("<ul>" + "".join(f"<li>{code(shortfall.sentence())}</li>" for shortfall in split.shortfalls) + "</ul>")
    else:
        parts.append("<p class='ok'>None: every cell had the audited items its target needs.</p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def add_command(commands, sources: argparse.ArgumentParser) -> None:
    """The `split` subcommand, its options and its runner."""
    parser = commands.add_parser("split", parents=[sources], help="a validation set balanced over labels and attributes")
    amount = parser.add_mutually_exclusive_group(required=True)
    amount.add_argument("--per-cell", type=positive_int, help="items wanted in every (label, attribute=value) cell")
    amount.add_argument("--size", type=positive_int, help="total items, shared equally by the labels")
    parser.add_argument(
        "--fill",
        action="store_true",
        help="fill short cells' labels as far as the data allows (unequal cells) instead of cutting the others to match",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random order of candidates (default: %(default)s)")
    parser.add_argument(
        "--out", type=Path, required=True, help="manifest CSV: item,label and a column attr:<name> per attribute"
    )
    parser.add_argument("--json", type=Path, help="also write the cells, shortfalls and balance as JSON")
    parser.add_argument("--html", type=Path, metavar="FILE", help="also write a summary page: cells, balance, shortfalls")
    parser.set_defaults(run=run_split)


def run_split(args) -> int:
    """`split`: write the balanced validation manifest, and say what falls short, what was cut and what is left."""
    dataset, sources = gather(args)
    if not dataset.attributes:
        raise AuditError("nothing to balance: no audited attribute (see the note above)")
    split = balanced_split(dataset, args.seed, per_cell=args.per_cell, size=args.size, fill=args.fill)
    names = [attribute.name for attribute in dataset.attributes]
    write_csv(
        args.out,
        ["item", "label", *(attribute_column(name) for name in names)],
        [[item.id, item.label, *(item.values[name] for name in names)] for item in split.items],
    )
    print(f"{len(split.items)} items written to {args.out} (from {split.candidates} audited items)")
    for line in console_lines(split):
        print(line)
    for shortfall in split.shortfalls:
        print(f"short: {shortfall.sentence()}")
    if split.cut:
        print("cut: " + ", ".join(f"{cell.name} {cell.count} of {target_text(cell.target)}" for cell in split.cut))
    for note in split.notes:
        print(f"note: {note}")
    if args.json:
        write_json(args.json, split_json(split, args))
    if args.html:
        args.html.parent.mkdir(parents=True, exist_ok=True)
        args.html.write_text(split_html(split, args, sources), encoding="utf-8")
    return 0
