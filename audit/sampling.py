"""`sample`: a random subset of items, stratified by target label, to send for the additional labels.

Proportional allocation: each label gets `size × (its items / all items)`
places, rounded by the largest-remainder method (the floors first, then one
more place to the labels with the largest fractional parts; ties go to the
larger label, then to the name), so the quotas add up to `size` exactly.
Within a label, the items are drawn uniformly without replacement by a
generator seeded from (seed, label) over the items sorted by id: the same
exports and seed give the same sample, whatever the order of the files.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from pathlib import Path

from .csv_output import write_csv
from .dataset import Item
from .sources import gather, positive_int


def proportional_quotas(counts: dict[str, int], size: int) -> dict[str, int]:
    """Places per label, proportional to `counts`, adding up to min(size, total)."""
    total = sum(counts.values())
    size = min(size, total)
    if total == 0:
        return {label: 0 for label in counts}
    exact = {label: size * count / total for label, count in counts.items()}
    quotas = {label: math.floor(value) for label, value in exact.items()}
    left = size - sum(quotas.values())
    by_remainder = sorted(counts, key=lambda label: (-(exact[label] - quotas[label]), -counts[label], label))
    for label in by_remainder[:left]:
        quotas[label] += 1
    return quotas


def stratified_sample(items: list[Item], size: int, seed: int) -> list[Item]:
    """`size` items (or all of them, if fewer), stratified by label; sorted by label, then id."""
    strata: dict[str, list[Item]] = {}
    for item in sorted(items, key=lambda item: item.id):
        strata.setdefault(item.label, []).append(item)
    quotas = proportional_quotas({label: len(members) for label, members in strata.items()}, size)
    chosen = []
    for label in sorted(strata):
        generator = random.Random(f"audit-sample/{seed}/{label}")
        chosen.extend(sorted(generator.sample(strata[label], quotas[label]), key=lambda item: item.id))
    return chosen

def add_command(commands, sources: argparse.ArgumentParser) -> None:
    """The `sample` subcommand, its options and its runner."""
    parser = commands.add_parser("sample", parents=[sources], help="a random subset stratified by label, to annotate")
    parser.add_argument("--size", type=positive_int, required=True, help="how many items to draw")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random draw (default: %(default)s)")
    parser.add_argument("--out", type=Path, required=True, help="CSV with item,label")
    parser.set_defaults(run=run_sample)


def run_sample(args) -> int:
    """`sample`: write the stratified sample."""
    dataset, _ = gather(args)
    chosen = stratified_sample(dataset.items, args.size, args.seed)
    if args.size > len(dataset.items):
        print(f"note: --size {args.size} is more than the {len(dataset.items)} items: all of them are listed", file=sys.stderr)
    write_csv(args.out, ["item", "label"], [[item.id, item.label] for item in chosen])
    counts = {}
    for item in chosen:
        counts[item.label] = counts.get(item.label, 0) + 1
    print(
        f"{len(chosen)} items written to {args.out} (" + ", ".join(f"{label}: {count}" for label, count in counts.items()) + ")"
    )
    return 0
