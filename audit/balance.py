"""`split`: a validation set balanced over target labels and every audited attribute at once.

Only fully audited items take part (a real value for every attribute). A cell
is a (label, attribute=value) pair. An item has one label, so each label is
solved on its own, over its candidates grouped by signature (their tuple of
values: items of one signature are interchangeable for balance, and are taken
in an order shuffled by a generator seeded from (seed, label), so the same
exports and seed give the same set).

`per_cell=N`: every cell of the label should hold at least N items.
  Greedy multi-cover: add one item at a time from the signature that (1)
  covers the most cells still below N, then (2) fills the least-filled cells
  (smallest sum of count / N), then (3) comes first in the seeded order; stop
  when no candidate covers a cell below N. Then drop, newest first, every
  picked item all of whose cells hold more than N. With attributes of 2 and 3
  values a label needs at least 3·N items, so the 2-valued attribute's cells
  hold about 1.5·N each: "equal as far as the data allows". A cell ends below
  N only when every candidate for it was taken, so its shortfall is exact:
  N − the items that exist.

`size=N`: each label gets N / (labels) items (the remainder goes to the
  labels with the most candidates, then by name), and each attribute's cells
  of the label aim at an equal share: t = (label's items) / (values). The set
  minimises the squared relative distance to the targets, sum((count − t)/t)²:
  greedy additions that lower it most, then pairwise swaps (one picked item
  out, one candidate of another signature in) while any swap lowers it. A
  cell is reported short when it holds fewer than floor(t) items; the local
  search leaves a shortfall only where the candidates cannot do better
  without unbalancing another cell (usually: they do not exist).

Both are deterministic and cost (picks + swaps) × signatures², signatures
being at most the product of the attributes' value counts; exact optima would
need an integer program.
"""

from __future__ import annotations

import argparse
import math
import random
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from .csv_output import attribute_column, write_csv
from .dataset import Attribute, Dataset, Item
from .errors import AuditError
from .output import write_json
from .sources import gather, positive_int


@dataclass
class Shortfall:
    """A cell that could not reach its target, and by how many items."""

    label: str
    attribute: str
    value: str
    missing: int

    @property
    def cell(self) -> str:
        """The cell's JSON key, `label|attribute=value`."""
        return cell_name(self.label, self.attribute, self.value)

    def sentence(self) -> str:
        """E.g. "12 more `lighting=night` items of `cat` needed"."""
        return f"{self.missing} more `{self.attribute}={self.value}` items of `{self.label}` needed"


@dataclass
class Split:
    """The chosen items, the count of every cell, and the cells that fall short."""

    items: list[Item]
    cells: dict[str, int]
    shortfalls: list[Shortfall]


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


def balanced_split(dataset: Dataset, seed: int, per_cell: int | None = None, size: int | None = None) -> Split:
    """The balanced validation set of `dataset` (exactly one of `per_cell` and `size`)."""
    if (per_cell is None) == (size is None):
        raise ValueError("give exactly one of per_cell and size")
    attributes = dataset.attributes
    labels = dataset.labels()
    candidates: dict[str, list[Item]] = {}
    for item in dataset.fully_audited():
        candidates.setdefault(item.label, []).append(item)
    quotas = label_quotas(candidates, labels, size) if size is not None else {}
    chosen: list[Item] = []
    cells: dict[str, int] = {}
    shortfalls: list[Shortfall] = []
    for label in labels:
        if per_cell is not None:
            targets = {attribute.name: float(per_cell) for attribute in attributes}
        else:
            targets = {attribute.name: quotas[label] / max(1, len(attribute.values)) for attribute in attributes}
        queues, rank = signature_queues(label, candidates.get(label, []), attributes, seed)
        if per_cell is not None:
            picked, counts = cover_cells(queues, rank, attributes, targets)
        else:
            picked, counts = fill_quota(queues, rank, attributes, targets, quotas[label])
        chosen.extend(picked)
        for attribute in attributes:
            for value in attribute.values:
                count = counts[attribute.name][value]
                cells[cell_name(label, attribute.name, value)] = count
                missing = math.floor(targets[attribute.name]) - count
                if missing > 0:
                    shortfalls.append(Shortfall(label, attribute.name, value, missing))
    chosen.sort(key=lambda item: (item.label, item.id))
    return Split(chosen, cells, shortfalls)


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
    """per_cell: greedy multi-cover of the cells below target, then removal of surplus items."""
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
    """size: `quota` items minimising sum((count − target) / target)², by greedy additions then pairwise swaps."""
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

def add_command(commands, sources: argparse.ArgumentParser) -> None:
    """The `split` subcommand, its options and its runner."""
    parser = commands.add_parser("split", parents=[sources], help="a validation set balanced over labels and attributes")
    amount = parser.add_mutually_exclusive_group(required=True)
    amount.add_argument("--per-cell", type=positive_int, help="items wanted in every (label, attribute=value) cell")
    amount.add_argument("--size", type=positive_int, help="total items, shared equally by the labels")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random order of candidates (default: %(default)s)")
    parser.add_argument("--out", type=Path, required=True, help="manifest CSV: item,label and a column attr:<name> per attribute")
    parser.add_argument("--json", type=Path, help="also write the cells and shortfalls as JSON")
    parser.set_defaults(run=run_split)


def run_split(args) -> int:
    """`split`: write the balanced validation manifest and its shortfalls."""
    dataset, _ = gather(args)
    if not dataset.attributes:
        raise AuditError("nothing to balance: no audited attribute (see the note above)")
    result = balanced_split(dataset, args.seed, per_cell=args.per_cell, size=args.size)
    names = [attribute.name for attribute in dataset.attributes]
    write_csv(
        args.out,
        ["item", "label", *(attribute_column(name) for name in names)],
        [[item.id, item.label, *(item.values[name] for name in names)] for item in result.items],
    )
    print(f"{len(result.items)} items written to {args.out} (from {len(dataset.fully_audited())} fully audited items)")
    for shortfall in result.shortfalls:
        print(f"short: {shortfall.sentence()}")
    if args.json:
        write_json(
            args.json,
            {
                "size": len(result.items),
                "seed": args.seed,
                "per_cell": args.per_cell,
                "requested_size": args.size,
                "cells": result.cells,
                "shortfalls": [{"cell": shortfall.cell, "missing": shortfall.missing} for shortfall in result.shortfalls],
            },
        )
    return 0
