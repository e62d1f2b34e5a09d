"""`sample` draws items not yet audited, stratified by label with a minimum per label, reproducibly."""

import csv
from collections import Counter
from dataclasses import dataclass

import pytest
from support.audit_exports import LABELS, Image, images_xml, planted, write_planted

from audit.cli import main
from audit.dataset import Attribute, Dataset, Item
from audit.sampling import allocate, proportional_quotas, sample_candidates, stratified_sample


@pytest.fixture(scope="module")
def planted_files(tmp_path_factory):
    return write_planted(tmp_path_factory.mktemp("planted"))


def run_sample(export, out, *options):
    assert main(["sample", str(export), "--out", str(out), *options]) == 0
    with out.open() as file:
        return list(csv.DictReader(file))


def unaudited_images() -> set[str]:
    """The planted images with one tag and some attribute still `unlabeled`, read off the builder's own data."""
    return {image.name for image in planted() if len(image.tags) == 1 and "unlabeled" in image.tags[0][1].values()}


def labelled_export(path, counts: dict[str, int], audited: dict[str, int] | None = None):
    """A CVAT for images export: `counts[label]` images with `lighting` unlabeled, `audited[label]` with it set."""
    images = []
    for label, count in counts.items():
        images += [Image(f"{label}/todo-{n:04d}.jpg", tags=[(label, {"lighting": "unlabeled"})]) for n in range(count)]
        for n in range((audited or {}).get(label, 0)):
            images.append(Image(f"{label}/done-{n:04d}.jpg", tags=[(label, {"lighting": "day"})]))
    path.write_bytes(images_xml(images, labels=list(counts), attributes={"lighting": ["day", "night"]}))
    return path


# --- what is drawn from -----------------------------------------------------------------


def test_sample_draws_only_items_not_yet_audited(planted_files, tmp_path, capsys):
    todo = unaudited_images()
    assert len(todo) == 3 * (9 + 10)
    rows = run_sample(planted_files["export"], tmp_path / "list.csv", "--size", "20", "--seed", "4")
    assert list(rows[0]) == ["item", "label"]
    assert len(rows) == 20 and {row["item"] for row in rows} <= todo
    # The same with the schema, which names the same attributes.
    rows = run_sample(
        planted_files["export"], tmp_path / "list.csv", "--size", "57", "--schema", str(planted_files["schema"])
    )
    assert {row["item"] for row in rows} == todo
    out = capsys.readouterr().out
    assert "57 candidates not yet audited; 540 skipped as already audited" in out


def test_include_audited_draws_from_every_item(planted_files, tmp_path, capsys):
    every = {image.name for image in planted() if len(image.tags) == 1}
    rows = run_sample(planted_files["export"], tmp_path / "list.csv", "--size", "1000", "--include-audited")
    assert {row["item"] for row in rows} == every
    captured = capsys.readouterr()
    assert f"{len(every)} candidates: every item (--include-audited)" in captured.out
    assert f"--size 1000 is more than the {len(every)} candidates: all of them are listed" in captured.err
    # Without it, a large sample still holds no audited item.
    rows = run_sample(planted_files["export"], tmp_path / "list.csv", "--size", "1000")
    assert {row["item"] for row in rows} == unaudited_images()


def test_without_audited_attributes_every_item_is_a_candidate(tmp_path, capsys):
    images = [Image(f"i{n}.jpg", tags=[("car", {})]) for n in range(6)]
    export = tmp_path / "plain.xml"
    export.write_bytes(images_xml(images, attributes={}))
    rows = run_sample(export, tmp_path / "list.csv", "--size", "4")
    assert len(rows) == 4
    assert "6 candidates: every item (no audited attribute" in capsys.readouterr().out


@dataclass(frozen=True)
class CarriedAttribute:
    """An attribute as the dataset may give it: with the target labels that carry it."""

    name: str
    kind: str
    values: tuple
    labels: tuple


def test_an_attribute_a_label_does_not_carry_does_not_make_its_items_unaudited():
    weather = CarriedAttribute("weather", "condition", ("clear", "rain"), ("car",))
    lighting = Attribute("lighting", "condition", ("day", "night"))
    items = [
        Item("car-done", "car", {"weather": "clear", "lighting": "day"}),
        Item("car-todo", "car", {"weather": "unlabeled", "lighting": "day"}),
        Item("dog-done", "dog", {"weather": "unlabeled", "lighting": "night"}),  # dog has no weather to audit
        Item("dog-todo", "dog", {"weather": "unlabeled", "lighting": "unlabeled"}),
    ]
    candidates = sample_candidates(Dataset(items, [weather, lighting], "tag"))
    assert [item.id for item in candidates.items] == ["car-todo", "dog-todo"] and candidates.skipped == 2
    everything = sample_candidates(Dataset(items, [weather, lighting], "tag"), include_audited=True)
    assert len(everything.items) == 4 and everything.skipped == 0


# --- allocation ---------------------------------------------------------------------------


def test_proportional_quotas_add_up_by_largest_remainder():
    assert proportional_quotas({"a": 50, "b": 30, "c": 20}, 10) == {"a": 5, "b": 3, "c": 2}
    assert proportional_quotas({"a": 1, "b": 1, "c": 1}, 2) == {"a": 1, "b": 1, "c": 0}
    assert proportional_quotas({"a": 7, "b": 2, "c": 1}, 5) == {"a": 4, "b": 1, "c": 0}
    assert sum(proportional_quotas({"a": 333, "b": 333, "c": 334}, 100).values()) == 100
    assert proportional_quotas({"a": 3, "b": 1}, 50) == {"a": 3, "b": 1}


def test_rare_labels_get_their_minimum_and_the_rest_stays_proportional():
    # 310 candidates, 30 places. Proportional: 19.35 / 9.68 / 0.97 -> floors 19, 9, 0 and the two places
    # left to the largest remainders (bird .97, dog .68): 19, 10, 1.
    assert allocate({"cat": 200, "dog": 100, "bird": 10}, 30, 0) == {"cat": 19, "dog": 10, "bird": 1}
    # With a minimum of 5, bird is fixed at 5; cat and dog share 25 as 200:100, 16.67 / 8.33 -> 17, 8.
    assert allocate({"cat": 200, "dog": 100, "bird": 10}, 30, 5) == {"cat": 17, "dog": 8, "bird": 5}
    # A label with fewer candidates than the minimum gets all of them: bird 3, then 27 as 200:100 -> 18, 9.
    assert allocate({"cat": 200, "dog": 100, "bird": 3}, 30, 5) == {"cat": 18, "dog": 9, "bird": 3}


def test_the_minimum_is_enforced_again_after_the_rest_is_reshared():
    # 1115 candidates, 57 places, minimum 6. Round 1: 51.12 / 5.73 / 0.15 -> 51, 6, 0: c is below its
    # minimum (3, all it has) and is fixed. Round 2: 54 places as 1000:112 -> 48.56 / 5.44 -> 49, 5:
    # now b is below 6 and is fixed too. Round 3: a gets the 48 left.
    assert allocate({"a": 1000, "b": 112, "c": 3}, 57, 6) == {"a": 48, "b": 6, "c": 3}


def test_a_size_too_small_for_every_minimum_is_shared_equally():
    # Minimums 5, 5 and 2 need 12 places; 7 are shared equally, capped at each minimum:
    # 2 each, and the last place to the rarer of the tied labels by name (a).
    assert allocate({"a": 50, "b": 50, "c": 2}, 7, 5) == {"a": 3, "b": 2, "c": 2}
    assert allocate({"a": 50, "b": 50, "c": 50}, 2, 5) == {"a": 1, "b": 1, "c": 0}


def test_min_per_label_on_the_command_line(tmp_path, capsys):
    export = labelled_export(tmp_path / "rare.xml", {"cat": 200, "dog": 100, "bird": 10}, audited={"bird": 40})
    rows = run_sample(export, tmp_path / "list.csv", "--size", "30")
    assert Counter(row["label"] for row in rows) == {"cat": 17, "dog": 8, "bird": 5}  # the default minimum is 5
    assert all("/todo-" in row["item"] for row in rows)
    assert "310 candidates not yet audited; 40 skipped as already audited" in capsys.readouterr().out
    rows = run_sample(export, tmp_path / "list.csv", "--size", "30", "--min-per-label", "0")
    assert Counter(row["label"] for row in rows) == {"cat": 19, "dog": 10, "bird": 1}
    rows = run_sample(export, tmp_path / "list.csv", "--size", "4", "--min-per-label", "5")
    assert len(rows) == 4
    assert "--size 4 is too small to give each of the 3 labels --min-per-label 5" in capsys.readouterr().err
    with pytest.raises(SystemExit) as refused:
        main(["sample", str(export), "--out", str(tmp_path / "x.csv"), "--size", "4", "--min-per-label", "-1"])
    assert refused.value.code == 2
    assert "argument --min-per-label: -1 is less than 0" in capsys.readouterr().err


def test_sample_is_stratified_and_reproducible(planted_files, tmp_path):
    items = [Item(f"x{n:04d}", "cat" if n < 600 else "dog" if n < 900 else "bird", {}) for n in range(1000)]
    sample = stratified_sample(items, 100, seed=3)
    assert Counter(item.label for item in sample) == {"cat": 60, "dog": 30, "bird": 10}
    assert [item.id for item in stratified_sample(list(reversed(items)), 100, seed=3)] == [item.id for item in sample]
    assert {item.id for item in stratified_sample(items, 100, seed=4)} != {item.id for item in sample}

    out = tmp_path / "list.csv"
    rows = run_sample(planted_files["export"], out, "--size", "30", "--seed", "9")
    assert Counter(row["label"] for row in rows) == {label: 10 for label in LABELS}
    first = out.read_text()
    run_sample(planted_files["export"], out, "--size", "30", "--seed", "9")
    assert out.read_text() == first


def test_when_everything_is_audited_the_sample_is_empty_and_says_why(tmp_path, capsys):
    export = labelled_export(tmp_path / "done.xml", {"cat": 0, "dog": 0}, audited={"cat": 4, "dog": 4})
    rows = run_sample(export, tmp_path / "list.csv", "--size", "5")
    assert rows == []
    captured = capsys.readouterr()
    assert "0 candidates not yet audited; 8 skipped as already audited" in captured.out
    assert "nothing to draw: every item is already audited" in captured.err
    assert len(run_sample(export, tmp_path / "list.csv", "--size", "5", "--include-audited")) == 5
