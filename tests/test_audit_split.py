"""`split` is balanced, reproducible and exact about shortfalls; `sample` is stratified and reproducible."""

import csv
import json
from collections import Counter

import pytest
from audit_exports import CAR_NIGHT, LABELS, write_planted

from audit.balance import balanced_split
from audit.cli import main
from audit.dataset import Attribute, Dataset, Item
from audit.sampling import proportional_quotas, stratified_sample

ATTRIBUTES = ["lighting", "weather", "apparent_gender"]


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return write_planted(tmp_path_factory.mktemp("planted"))


def run_split(planted, out, *options):
    manifest, document = out / "manifest.csv", out / "split.json"
    code = main(
        [
            "split",
            str(planted["export"]),
            "--schema",
            str(planted["schema"]),
            "--out",
            str(manifest),
            "--json",
            str(document),
            *options,
        ]
    )
    assert code == 0
    with manifest.open() as file:
        rows = list(csv.DictReader(file))
    return rows, json.loads(document.read_text())


def cell_counts(rows):
    counts = Counter()
    for row in rows:
        for attribute in ATTRIBUTES:
            counts[f"{row['label']}|{attribute}={row['attr:' + attribute]}"] += 1
    return counts


def test_per_cell_reaches_every_cell_and_names_the_exact_shortfall(planted, tmp_path, capsys):
    rows, document = run_split(planted, tmp_path, "--per-cell", "20", "--seed", "7")
    assert list(rows[0]) == ["item", "label", *(f"attr:{attribute}" for attribute in ATTRIBUTES)]
    # Only fully audited items, each once.
    assert all(row[f"attr:{attribute}"] != "unlabeled" for row in rows for attribute in ATTRIBUTES)
    assert len({row["item"] for row in rows}) == len(rows) == document["size"]
    counts = cell_counts(rows)
    assert dict(counts) == {cell: count for cell, count in document["cells"].items() if count}
    # car has only 18 night images: the one shortfall, exact.
    assert document["shortfalls"] == [{"cell": "car|lighting=night", "missing": 20 - CAR_NIGHT}]
    assert f"{20 - CAR_NIGHT} more `lighting=night` items of `car` needed" in capsys.readouterr().out
    for cell, count in counts.items():
        if cell != "car|lighting=night":
            assert count >= 20, cell
    # Three weather values need 60 images per label; nothing more is taken.
    assert Counter(row["label"] for row in rows) == {label: 60 for label in LABELS}
    for label in ("pedestrian", "bicycle"):
        for attribute in ("weather", "apparent_gender"):
            assert {
                counts[f"{label}|{attribute}={value}"]
                for value in ("clear", "rain", "snow", "female", "male", "unclear")
                if counts[f"{label}|{attribute}={value}"]
            } == {20}
        assert counts[f"{label}|lighting=day"] == counts[f"{label}|lighting=night"] == 30


def test_size_shares_items_equally_and_balances_every_attribute(planted, tmp_path):
    rows, document = run_split(planted, tmp_path, "--size", "90")
    assert document["size"] == 90 and document["shortfalls"] == []
    counts = cell_counts(rows)
    for label in LABELS:
        assert counts[f"{label}|lighting=day"] == counts[f"{label}|lighting=night"] == 15
        for value in ("clear", "rain", "snow"):
            assert counts[f"{label}|weather={value}"] == 10
        for value in ("female", "male", "unclear"):
            assert counts[f"{label}|apparent_gender={value}"] == 10


def test_size_beyond_what_a_cell_has_reports_what_is_missing(planted, tmp_path):
    _, document = run_split(planted, tmp_path, "--size", "300")
    # 100 cars: 50 night wanted, 18 exist.
    assert document["shortfalls"] == [{"cell": "car|lighting=night", "missing": 50 - CAR_NIGHT}]
    assert document["cells"]["car|lighting=night"] == CAR_NIGHT


def test_same_seed_same_set_other_seed_other_set(planted, tmp_path):
    first, _ = run_split(planted, tmp_path, "--size", "90", "--seed", "1")
    again, _ = run_split(planted, tmp_path, "--size", "90", "--seed", "1")
    other, _ = run_split(planted, tmp_path, "--size", "90", "--seed", "2")
    assert first == again
    assert {row["item"] for row in first} != {row["item"] for row in other}
    assert cell_counts(first) == cell_counts(other)  # as balanced either way


def test_the_split_does_not_depend_on_the_order_of_the_input():
    attributes = [Attribute("a", "condition", ("x", "y")), Attribute("b", "protected", ("u", "v", "w"))]
    items = [Item(f"i{n:03d}", "cat" if n % 3 else "dog", {"a": "xy"[n % 2], "b": "uvw"[n % 3]}) for n in range(200)]
    forward = balanced_split(Dataset(items, attributes, "tag"), seed=5, size=40)
    backward = balanced_split(Dataset(list(reversed(items)), attributes, "tag"), seed=5, size=40)
    assert [item.id for item in forward.items] == [item.id for item in backward.items]


def test_a_label_without_audited_items_is_short_in_every_cell():
    attributes = [Attribute("a", "condition", ("x", "y"))]
    items = [Item(f"c{n}", "cat", {"a": "xy"[n % 2]}) for n in range(10)] + [Item("d0", "dog", {"a": "unlabeled"})]
    split = balanced_split(Dataset(items, attributes, "tag"), seed=0, per_cell=3)
    assert [(s.cell, s.missing) for s in split.shortfalls] == [("dog|a=x", 3), ("dog|a=y", 3)]
    assert len(split.items) == 6


# --- sample -------------------------------------------------------------------------


def test_proportional_quotas_add_up_by_largest_remainder():
    assert proportional_quotas({"a": 50, "b": 30, "c": 20}, 10) == {"a": 5, "b": 3, "c": 2}
    assert proportional_quotas({"a": 1, "b": 1, "c": 1}, 2) == {"a": 1, "b": 1, "c": 0}
    assert proportional_quotas({"a": 7, "b": 2, "c": 1}, 5) == {"a": 4, "b": 1, "c": 0}
    assert sum(proportional_quotas({"a": 333, "b": 333, "c": 334}, 100).values()) == 100
    assert proportional_quotas({"a": 3, "b": 1}, 50) == {"a": 3, "b": 1}


def test_sample_is_stratified_and_reproducible(planted, tmp_path):
    items = [Item(f"x{n:04d}", "cat" if n < 600 else "dog" if n < 900 else "bird", {}) for n in range(1000)]
    sample = stratified_sample(items, 100, seed=3)
    assert Counter(item.label for item in sample) == {"cat": 60, "dog": 30, "bird": 10}
    assert [item.id for item in stratified_sample(list(reversed(items)), 100, seed=3)] == [item.id for item in sample]
    assert {item.id for item in stratified_sample(items, 100, seed=4)} != {item.id for item in sample}

    out = tmp_path / "list.csv"
    assert main(["sample", str(planted["export"]), "--size", "30", "--seed", "9", "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["item", "label"]
    assert Counter(row["label"] for row in rows) == {label: 10 for label in LABELS}
    first = out.read_text()
    assert main(["sample", str(planted["export"]), "--size", "30", "--seed", "9", "--out", str(out)]) == 0
    assert out.read_text() == first


def test_per_cell_drops_items_that_later_picks_made_redundant():
    # Only three kinds of item exist. Whichever day item is drawn first, the
    # smallest cover is (day, v) + (night, u): a first pick of (day, u) is made
    # redundant by the night item the `night` cell forces in, and is dropped.
    attributes = [Attribute("light", "condition", ("day", "night")), Attribute("b", "condition", ("u", "v"))]
    items = [Item(f"du{n}", "cat", {"light": "day", "b": "u"}) for n in range(5)]
    items += [Item(f"dv{n}", "cat", {"light": "day", "b": "v"}) for n in range(5)]
    items += [Item("nu0", "cat", {"light": "night", "b": "u"})]
    sizes = set()
    for seed in range(30):
        split = balanced_split(Dataset(items, attributes, "tag"), seed=seed, per_cell=1)
        assert split.shortfalls == []
        sizes.add(len(split.items))
        assert "nu0" in {item.id for item in split.items}
    assert sizes == {2}
