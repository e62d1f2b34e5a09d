"""`sample`: a random subset of items still to audit, stratified by target label, to send for the additional labels.

Candidates: by default the items not yet audited, those without a real value
(other than `unlabeled`) for at least one audited attribute their label
carries; an item audited for everything is skipped (sending it again would
waste the annotators' time). With no audited attribute at all, nothing has
been audited yet and every item is a candidate. `include_audited` draws from
every item.

Allocation: labels are sampled in proportion to their candidates, except
that every label gets at least `min_per_label` places (all its candidates
when it has fewer): rare labels would otherwise get none, and the audit
could say nothing about them. The labels that proportional allocation would
leave below that minimum are fixed at it, and the rest of `size` is shared
by the others in proportion to their candidates, again and again until no
label is below its minimum; proportional shares are rounded by the
largest-remainder method (the floors first, then one more place to the
labels with the largest fractional parts; ties go to the larger label, then
to the name), so the quotas add up to `size` exactly. When `size` cannot
give every label its minimum, it is shared as equally as it allows (each
label at most its minimum; the last places to the labels with fewer
candidates, then by name). The command's default minimum is 5: a rare label
then shows up in the report with more than a stray item, and the minimum
barely moves the proportions of the others.

Within a label, the items are drawn uniformly without replacement by a
generator seeded from (seed, label) over the items sorted by id: the same
exports and seed give the same sample, whatever the order of the files.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from dataclasses import dataclass
from pathlib import Path

from .csv_output import write_csv
from .dataset import Attribute, Dataset, Item
from .sources import gather, positive_int

DEFAULT_MIN_PER_LABEL = 5


def carries(attribute: Attribute, label: str) -> bool:
    """True when items of `label` carry `attribute`: when the dataset says which labels do, only those; else every label."""
    # The dataset's own rule when its attributes have one (`carried_by`); else `labels`, the target labels that
    # carry the attribute, where an empty or missing one means every label.
    carried_by = getattr(attribute, "carried_by", None)
    if carried_by is not None:
        return bool(carried_by(label))
    labels = getattr(attribute, "labels", None)
    return not labels or label in labels


def not_yet_audited(item: Item, attributes: list[Attribute]) -> bool:
    """True when `item` lacks a real value for at least one audited attribute its label carries."""
    return any(not item.audited(attribute) for attribute in attributes if carries(attribute, item.label))


@dataclass(frozen=True)
class Candidates:
    """The items the sample is drawn from, and how many were skipped as already audited."""

    items: list[Item]
    skipped: int


def sample_candidates(dataset: Dataset, include_audited: bool = False) -> Candidates:
    """The items to draw from: those not yet audited (every item with `include_audited`, or with no attribute)."""
    if include_audited or not dataset.attributes:
        return Candidates(list(dataset.items), 0)
    items = [item for item in dataset.items if not_yet_audited(item, dataset.attributes)]
    return Candidates(items, len(dataset.items) - len(items))


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


def equal_quotas(caps: dict[str, int], size: int, counts: dict[str, int]) -> dict[str, int]:
    """`size` places shared as equally as possible, each label at most its cap; the last places to the rarer labels."""
    quotas = {label: 0 for label in caps}
    order = sorted(caps, key=lambda label: (counts[label], label))
    left = size
    while left > 0:
        open_labels = [label for label in order if quotas[label] < caps[label]]
        if not open_labels:
            break
        share, extra = divmod(left, len(open_labels))
        for position, label in enumerate(open_labels):
            give = min(caps[label] - quotas[label], share + (1 if position < extra else 0))
            quotas[label] += give
            left -= give
    return quotas


def allocate(counts: dict[str, int], size: int, min_per_label: int = 0) -> dict[str, int]:
    """Places per label, adding up to min(size, total): proportional to `counts`, at least min(min_per_label, count) each."""
    floors = {label: min(min_per_label, count) for label, count in counts.items()}
    size = min(size, sum(counts.values()))
    if sum(floors.values()) >= size:
        return equal_quotas(floors, size, counts)
    fixed: dict[str, int] = {}
    while True:
        rest = {label: count for label, count in counts.items() if label not in fixed}
        quotas = proportional_quotas(rest, size - sum(fixed.values()))
        below = {label for label, quota in quotas.items() if quota < floors[label]}
        if not below:
            return {**quotas, **fixed}
        for label in below:
            fixed[label] = floors[label]


def stratified_sample(items: list[Item], size: int, seed: int, min_per_label: int = 0) -> list[Item]:
    """`size` items (or all of them, if fewer), stratified by label (see `allocate`); sorted by label, then id."""
    strata: dict[str, list[Item]] = {}
    for item in sorted(items, key=lambda item: item.id):
        strata.setdefault(item.label, []).append(item)
    quotas = allocate({label: len(members) for label, members in strata.items()}, size, min_per_label)
    chosen = []
    for label in sorted(strata):
        generator = random.Random(f"audit-sample/{seed}/{label}")
        chosen.extend(sorted(generator.sample(strata[label], quotas[label]), key=lambda item: item.id))
    return chosen


def non_negative_int(text: str) -> int:
    """An argparse type: a whole number of at least 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is less than 0")
    return value


def add_command(commands, sources: argparse.ArgumentParser) -> None:
    """The `sample` subcommand, its options and its runner."""
    parser = commands.add_parser("sample", parents=[sources], help="a random subset of items to audit, stratified by label")
    parser.add_argument("--size", type=positive_int, required=True, help="how many items to draw")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random draw (default: %(default)s)")
    parser.add_argument(
        "--include-audited",
        action="store_true",
        help="draw from every item, also those already audited for every attribute (default: only items not yet audited)",
    )
    parser.add_argument(
        "--min-per-label",
        type=non_negative_int,
        default=DEFAULT_MIN_PER_LABEL,
        help="places every label gets at least, all its candidates if fewer (default: %(default)s)",
    )
    parser.add_argument("--out", type=Path, required=True, help="CSV with item,label")
    parser.set_defaults(run=run_sample)


def run_sample(args) -> int:
    """`sample`: write the stratified sample of the items still to audit."""
    dataset, _ = gather(args)
    candidates = sample_candidates(dataset, args.include_audited)
    if args.include_audited:
        print(f"{len(candidates.items)} candidates: every item (--include-audited)")
    elif not dataset.attributes:
        print(f"{len(candidates.items)} candidates: every item (no audited attribute, so none is audited yet)")
    else:
        print(
            f"{len(candidates.items)} candidates not yet audited; "
            f"{candidates.skipped} skipped as already audited (--include-audited draws from them too)"
        )
    chosen = stratified_sample(candidates.items, args.size, args.seed, args.min_per_label)
    if not candidates.items:
        print(
            "note: nothing to draw: every item is already audited (--include-audited draws from them anyway)",
            file=sys.stderr,
        )
    elif args.size > len(candidates.items):
        print(
            f"note: --size {args.size} is more than the {len(candidates.items)} candidates: all of them are listed",
            file=sys.stderr,
        )
    else:
        per_label: dict[str, int] = {}
        for item in candidates.items:
            per_label[item.label] = per_label.get(item.label, 0) + 1
        if sum(min(args.min_per_label, count) for count in per_label.values()) > args.size:
            print(
                f"note: --size {args.size} is too small to give each of the {len(per_label)} labels "
                f"--min-per-label {args.min_per_label}: shared as equally as it allows",
                file=sys.stderr,
            )
    write_csv(args.out, ["item", "label"], [[item.id, item.label] for item in chosen])
    counts: dict[str, int] = {}
    for item in chosen:
        counts[item.label] = counts.get(item.label, 0) + 1
    per_label_text = " (" + ", ".join(f"{label}: {count}" for label, count in counts.items()) + ")" if counts else ""
    print(f"{len(chosen)} items written to {args.out}{per_label_text}")
    return 0
