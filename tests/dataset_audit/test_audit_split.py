"""`split` balances every attribute within every label: a short cell cuts the others to match (unless --fill),
what is short, cut and left unequal is reported, and the set is reproducible."""

import csv
import json
from collections import Counter
from dataclasses import dataclass

import pytest
from support.audit_exports import CAR_NIGHT, LABELS, Image, images_xml, write_planted

from audit.balance import balanced_split
from audit.cli import main
from audit.dataset import Attribute, Dataset, Item

ATTRIBUTES = ["lighting", "weather", "apparent_gender"]
SCENE = {"setting": ["indoor", "outdoor"], "time": ["morning", "noon", "evening"]}


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return write_planted(tmp_path_factory.mktemp("planted"))


def run_split(export, out, *options, schema=None, attributes=ATTRIBUTES):
    """Run `split` on `export`; the manifest rows, the JSON document, and the cell counts recounted from the manifest."""
    manifest, document = out / "manifest.csv", out / "split.json"
    code = main(
        ["split", str(export), *(["--schema", str(schema)] if schema else []), "--out", str(manifest)]
        + ["--json", str(document), *options]
    )
    assert code == 0
    with manifest.open() as file:
        rows = list(csv.DictReader(file))
    return rows, json.loads(document.read_text()), cell_counts(rows, attributes)


def cell_counts(rows, attributes):
    counts = Counter()
    for row in rows:
        for attribute in attributes:
            counts[f"{row['label']}|{attribute}={row['attr:' + attribute]}"] += 1
    return counts


def ratios_from_manifest(counts, labels, values: dict[str, list[str]]):
    """max/min of every (label, attribute), recomputed from the manifest: None when a cell is empty."""
    ratios = {}
    for label in labels:
        for attribute, names in values.items():
            cells = [counts[f"{label}|{attribute}={value}"] for value in names]
            ratios[(label, attribute)] = max(cells) / min(cells) if min(cells) else None
    return ratios


def scene_export(path, per_label: dict[str, list[tuple[str, str, int]]]):
    """A CVAT for images export of two conditions, `setting` (2 values) and `time` (3): (setting, time, how many) per label."""
    images = []
    for label, groups in per_label.items():
        for setting, time, count in groups:
            for index in range(count):
                name = f"{label}/{setting}-{time}-{index:03d}.jpg"
                images.append(Image(name, tags=[(label, {"setting": setting, "time": time})]))
    path.write_bytes(images_xml(images, labels=list(per_label), attributes=SCENE))
    return path


def even(setting: str, count: int) -> list[tuple[str, str, int]]:
    """`count` items of `setting`, spread evenly over the three times."""
    return [(setting, time, count // 3) for time in SCENE["time"]]


# --- the planted export -----------------------------------------------------------------


def test_per_cell_cuts_every_cell_of_a_label_to_match_its_short_cell(planted, tmp_path, capsys):
    rows, document, counts = run_split(
        planted["export"], tmp_path, "--per-cell", "20", "--seed", "7", schema=planted["schema"]
    )
    assert list(rows[0]) == ["item", "label", *(f"attr:{attribute}" for attribute in ATTRIBUTES)]
    # Only fully audited items, each once.
    assert all(row[f"attr:{attribute}"] != "unlabeled" for row in rows for attribute in ATTRIBUTES)
    assert len({row["item"] for row in rows}) == len(rows) == document["size"]
    assert {name: cell["count"] for name, cell in document["cells"].items() if cell["count"]} == dict(counts)
    # Three weather values need 60 images per label, the 2-valued lighting 30 per cell. car has only 18
    # night images: its total falls to 2 × 18, so day is cut to 18 and every 3-valued cell to 12.
    assert Counter(row["label"] for row in rows) == {"car": 2 * CAR_NIGHT, "pedestrian": 60, "bicycle": 60}
    assert counts["car|lighting=day"] == counts["car|lighting=night"] == CAR_NIGHT
    for attribute, values in (("weather", ("clear", "rain", "snow")), ("apparent_gender", ("female", "male", "unclear"))):
        for value in values:
            assert counts[f"car|{attribute}={value}"] == 2 * CAR_NIGHT // 3
            for label in ("pedestrian", "bicycle"):
                assert counts[f"{label}|{attribute}={value}"] == 20
    for label in ("pedestrian", "bicycle"):
        assert counts[f"{label}|lighting=day"] == counts[f"{label}|lighting=night"] == 30
    # The shortfall is what the balanced 60 cars need: 30 night images, 18 exist.
    assert document["shortfalls"] == [
        {"cell": "car|lighting=night", "missing": 30 - CAR_NIGHT, "target": 30, "available": 18}
    ]
    assert sorted(document["cut"]) == sorted(
        ["car|lighting=day"]
        + [f"car|weather={value}" for value in ("clear", "rain", "snow")]
        + [f"car|apparent_gender={value}" for value in ("female", "male", "unclear")]
    )
    assert document["cells"]["car|lighting=night"]["status"] == "short"
    assert document["cells"]["pedestrian|lighting=day"]["status"] == "ok"
    # Every attribute is exactly balanced within every label, as the manifest shows.
    values = {
        "lighting": ["day", "night"],
        "weather": ["clear", "rain", "snow"],
        "apparent_gender": ["female", "male", "unclear"],
    }
    assert ratios_from_manifest(counts, LABELS, values) == {
        (entry["label"], entry["attribute"]): entry["ratio"] for entry in document["balance"]
    }
    assert {entry["ratio"] for entry in document["balance"]} == {1.0}
    out = capsys.readouterr().out
    assert f"short: {30 - CAR_NIGHT} more `lighting=night` items of `car` needed (30 wanted, 18 exist)" in out
    assert "cut: car|lighting=day 18 of 30" in out
    assert "car: 36 items of 60 requested (180 audited)" in out
    assert "note: the request exceeds the data in 1 cell (see `short`): the other cells of those labels were cut" in out


def test_fill_fills_the_label_as_far_as_the_data_allows(planted, tmp_path, capsys):
    rows, document, counts = run_split(
        planted["export"], tmp_path, "--per-cell", "20", "--seed", "7", "--fill", schema=planted["schema"]
    )
    # Today's behaviour: every cell reaches 20 where it can; car's day cell makes up for the missing nights.
    assert document["fill"] is True
    assert document["shortfalls"] == [
        {"cell": "car|lighting=night", "missing": 20 - CAR_NIGHT, "target": 20, "available": 18}
    ]
    assert document["cut"] == []
    for cell, count in counts.items():
        if cell != "car|lighting=night":
            assert count >= 20, cell
    assert Counter(row["label"] for row in rows) == {label: 60 for label in LABELS}
    assert counts["car|lighting=day"] == 60 - CAR_NIGHT
    car_lighting = next(
        entry for entry in document["balance"] if entry["label"] == "car" and entry["attribute"] == "lighting"
    )
    assert car_lighting["ratio"] == pytest.approx((60 - CAR_NIGHT) / CAR_NIGHT)
    assert "filled as far as the data allows" in capsys.readouterr().out


def test_size_shares_items_equally_and_balances_every_attribute(planted, tmp_path):
    rows, document, counts = run_split(planted["export"], tmp_path, "--size", "90", schema=planted["schema"])
    assert document["size"] == 90 and document["shortfalls"] == [] and document["cut"] == []
    for label in LABELS:
        assert counts[f"{label}|lighting=day"] == counts[f"{label}|lighting=night"] == 15
        for value in ("clear", "rain", "snow"):
            assert counts[f"{label}|weather={value}"] == 10
        for value in ("female", "male", "unclear"):
            assert counts[f"{label}|apparent_gender={value}"] == 10


def test_size_beyond_what_a_cell_has_reports_what_is_missing(planted, tmp_path):
    _, document, counts = run_split(planted["export"], tmp_path, "--size", "300", schema=planted["schema"])
    # 100 cars: 50 night wanted, 18 exist; the cars are cut to 18 + 18.
    assert document["shortfalls"] == [
        {"cell": "car|lighting=night", "missing": 50 - CAR_NIGHT, "target": 50, "available": 18}
    ]
    assert document["cells"]["car|lighting=night"]["count"] == counts["car|lighting=night"] == CAR_NIGHT
    assert counts["car|lighting=day"] == CAR_NIGHT
    assert document["labels"]["car"] == {"count": 36, "requested": 100, "candidates": 180}


def test_same_seed_same_set_other_seed_other_set(planted, tmp_path):
    first, _, counts = run_split(planted["export"], tmp_path, "--size", "90", "--seed", "1", schema=planted["schema"])
    again, _, _ = run_split(planted["export"], tmp_path, "--size", "90", "--seed", "1", schema=planted["schema"])
    other, _, other_counts = run_split(planted["export"], tmp_path, "--size", "90", "--seed", "2", schema=planted["schema"])
    assert first == again
    assert {row["item"] for row in first} != {row["item"] for row in other}
    assert counts == other_counts  # as balanced either way


def test_a_request_beyond_the_data_is_said_never_silently_taken_whole(planted, tmp_path, capsys):
    _, document, _ = run_split(planted["export"], tmp_path, "--per-cell", "1000", "--fill", schema=planted["schema"])
    out = capsys.readouterr().out
    # --fill takes every audited item: said on the console and in the JSON.
    assert document["size"] == document["candidates"] == 3 * 180
    assert document["all_candidates_taken"] is True
    assert "note: every one of the 540 audited items is in the set" in out
    assert "note: the request exceeds the data in" in out
    # Without --fill the labels are cut to balance, and the shortfalls say by how much.
    _, document, _ = run_split(planted["export"], tmp_path, "--per-cell", "1000", schema=planted["schema"])
    out = capsys.readouterr().out
    assert document["size"] < 540 and document["all_candidates_taken"] is False
    assert "note: the request exceeds the data in" in out and "were cut to match" in out
    assert {shortfall["target"] for shortfall in document["shortfalls"]} == {1500, 1000}
    # --size beyond the audited items is said too.
    run_split(planted["export"], tmp_path, "--size", "5000", schema=planted["schema"])
    assert "note: --size 5000 is more than the 540 audited items" in capsys.readouterr().out


# --- the issue's example and two attributes at once ------------------------------------


def test_the_issue_example_a_mostly_indoor_label_is_cut_to_equal_indoor_and_outdoor(tmp_path):
    # cat: 90 indoor, 15 outdoor (times even); dog: 60 and 60. Before this change --per-cell 20 returned
    # cat 45 indoor / 15 outdoor; now it must be 15/15 (and 10 of each time), or 45/15 with --fill.
    export = scene_export(
        tmp_path / "scene.xml",
        {"cat": even("indoor", 90) + even("outdoor", 15), "dog": even("indoor", 60) + even("outdoor", 60)},
    )
    _, document, counts = run_split(export, tmp_path, "--per-cell", "20", attributes=list(SCENE))
    assert counts["cat|setting=indoor"] == counts["cat|setting=outdoor"] == 15
    assert [counts[f"cat|time={time}"] for time in SCENE["time"]] == [10, 10, 10]
    assert counts["dog|setting=indoor"] == counts["dog|setting=outdoor"] == 30
    assert document["shortfalls"] == [{"cell": "cat|setting=outdoor", "missing": 15, "target": 30, "available": 15}]
    assert sorted(document["cut"]) == ["cat|setting=indoor", "cat|time=evening", "cat|time=morning", "cat|time=noon"]
    _, document, counts = run_split(export, tmp_path, "--per-cell", "20", "--fill", attributes=list(SCENE))
    assert (counts["cat|setting=indoor"], counts["cat|setting=outdoor"]) == (45, 15)


def test_two_attributes_short_at_once_are_equalized_together(tmp_path):
    # cat has 15 outdoor (of 30 wanted) and 6 evening (of 20 wanted): evening binds, 3 × 6 = 18 cats,
    # so setting 9/9 and time 6/6/6; the signatures allow it exactly.
    cat = [("indoor", "morning", 40), ("indoor", "noon", 40), ("indoor", "evening", 3)]
    cat += [("outdoor", "morning", 6), ("outdoor", "noon", 6), ("outdoor", "evening", 3)]
    export = scene_export(tmp_path / "scene.xml", {"cat": cat, "dog": even("indoor", 60) + even("outdoor", 60)})
    rows, document, counts = run_split(export, tmp_path, "--per-cell", "20", "--seed", "3", attributes=list(SCENE))
    assert Counter(row["label"] for row in rows)["cat"] == 18
    assert (counts["cat|setting=indoor"], counts["cat|setting=outdoor"]) == (9, 9)
    assert [counts[f"cat|time={time}"] for time in SCENE["time"]] == [6, 6, 6]
    assert {shortfall["cell"]: shortfall["missing"] for shortfall in document["shortfalls"]} == {
        "cat|setting=outdoor": 15,
        "cat|time=evening": 14,
    }
    assert sorted(document["cut"]) == ["cat|setting=indoor", "cat|time=morning", "cat|time=noon"]
    assert ratios_from_manifest(counts, ["cat", "dog"], SCENE) == {
        (entry["label"], entry["attribute"]): entry["ratio"] for entry in document["balance"]
    }
    assert {entry["ratio"] for entry in document["balance"]} == {1.0}


def test_when_the_signatures_forbid_equality_what_is_left_is_reported(tmp_path, capsys):
    # Every outdoor cat is a morning cat and no indoor one is: setting and time cannot both be equal
    # (outdoor = indoor and morning = noon = evening force 0 items). The report says what is left.
    cat = [("outdoor", "morning", 15), ("indoor", "noon", 30), ("indoor", "evening", 30)]
    export = scene_export(tmp_path / "scene.xml", {"cat": cat, "dog": even("indoor", 30) + even("outdoor", 30)})
    rows, document, counts = run_split(export, tmp_path, "--per-cell", "5", attributes=list(SCENE))
    # 5 per cell with 3 times is 15 items, rounded up to 18 so that 2 settings can be equal too.
    assert Counter(row["label"] for row in rows) == {"cat": 18, "dog": 18}
    left = {(entry["label"], entry["attribute"]): entry for entry in document["balance"]}
    recomputed = ratios_from_manifest(counts, ["cat", "dog"], SCENE)
    assert {key: entry["ratio"] for key, entry in left.items()} == recomputed
    assert max(recomputed[("cat", "setting")], recomputed[("cat", "time")]) > 1
    assert recomputed[("dog", "setting")] == recomputed[("dog", "time")] == 1
    for (label, attribute), entry in left.items():
        cells = [counts[f"{label}|{attribute}={value}"] for value in SCENE[attribute]]
        assert (entry["smallest"], entry["largest"]) == (min(cells), max(cells))
    out = capsys.readouterr().out
    ratio = recomputed[("cat", "time")]
    assert "time (target 6 each): " in out and f"max/min {ratio:.3g}" in out  # rounded to 3 figures


def test_html_summary_lists_cells_and_shortfalls_and_escapes_the_exports(tmp_path):
    hostile = "<b>dog</b> & co"
    export = scene_export(
        tmp_path / "scene.xml",
        {"cat": even("indoor", 90) + even("outdoor", 15), hostile: even("indoor", 60) + even("outdoor", 60)},
    )
    page = tmp_path / "out" / "split.html"
    assert main(["split", str(export), "--per-cell", "20", "--out", str(tmp_path / "m.csv"), "--html", str(page)]) == 0
    text = page.read_text()
    assert "<b>dog</b>" not in text and "&lt;b&gt;dog&lt;/b&gt; &amp; co" in text
    assert "15 more <code>setting=outdoor</code> items of <code>cat</code> needed (30 wanted, 15 exist)" in text
    # cat's indoor cell and its three time cells are cut to match its 15 outdoor images.
    assert text.count("<td class='flag'>cut</td>") == 4
    assert "<td class='flag'>short</td>" in text
    assert "<title>Validation split</title>" in text


def test_a_cut_total_is_rounded_down_so_that_every_attribute_can_be_equal(tmp_path):
    # 17 outdoor cats would allow 34 cats, 17/17, but 34 cats cannot be spread equally over three times:
    # the total is cut to 30, 15/15 and 10/10/10, exactly equal.
    export = scene_export(
        tmp_path / "scene.xml",
        {
            "cat": even("indoor", 90) + [("outdoor", "morning", 6), ("outdoor", "noon", 6), ("outdoor", "evening", 5)],
            "dog": even("indoor", 60) + even("outdoor", 60),
        },
    )
    rows, document, counts = run_split(export, tmp_path, "--per-cell", "20", attributes=list(SCENE))
    assert Counter(row["label"] for row in rows)["cat"] == 30
    assert (counts["cat|setting=indoor"], counts["cat|setting=outdoor"]) == (15, 15)
    assert [counts[f"cat|time={time}"] for time in SCENE["time"]] == [10, 10, 10]
    assert document["shortfalls"] == [{"cell": "cat|setting=outdoor", "missing": 13, "target": 30, "available": 17}]


def test_per_cell_is_rounded_up_for_equal_cells_only_when_that_costs_little():
    # Values 2 and 3: per cell 5 asks for 15 items a label, 18 makes both attributes exactly equal.
    two_three = [Attribute("a", "condition", ("x", "y")), Attribute("b", "condition", ("u", "v", "w"))]
    items = [Item(f"i{n:03d}", "cat", {"a": "xy"[n % 2], "b": "uvw"[n // 2 % 3]}) for n in range(120)]
    split = balanced_split(Dataset(items, two_three, "tag"), seed=0, per_cell=5)
    assert len(split.items) == 18 and {spread.ratio for spread in split.spreads} == {1.0}
    # Values 2, 3, 5 and 7 divide only multiples of 210: per cell 1 (7 items) is not raised to 210.
    many = [
        Attribute(name, "condition", tuple(f"{name}{k}" for k in range(count))) for name, count in zip("abcd", (2, 3, 5, 7))
    ]
    items = [Item(f"i{n:04d}", "cat", {a.name: a.values[n % len(a.values)] for a in many}) for n in range(420)]
    split = balanced_split(Dataset(items, many, "tag"), seed=0, per_cell=1)
    assert len(split.items) == 7
    counts = {a.name: Counter(item.values[a.name] for item in split.items) for a in many}
    assert set(counts["d"].values()) == {1} and len(counts["d"]) == 7
    assert sorted(counts["a"].values()) == [3, 4]  # 7 cannot be split equally in two: they differ by one


# --- the algorithm on small datasets ----------------------------------------------------


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


def test_a_label_missing_a_value_is_cut_to_nothing_unless_fill():
    attributes = [Attribute("light", "condition", ("day", "night"))]
    items = [Item(f"c{n}", "cat", {"light": ("day", "night")[n % 2]}) for n in range(10)]
    items += [Item(f"d{n}", "dog", {"light": "day"}) for n in range(10)]
    split = balanced_split(Dataset(items, attributes, "tag"), seed=0, per_cell=3)
    assert Counter(item.label for item in split.items) == {"cat": 6}
    assert any("`dog` has no audited item in `dog|light=night`" in note for note in split.notes)
    filled = balanced_split(Dataset(items, attributes, "tag"), seed=0, per_cell=3, fill=True)
    assert Counter(item.label for item in filled.items) == {"cat": 6, "dog": 3}


def test_a_value_nobody_has_is_left_out_of_the_balance():
    # `fog` is declared, but no audited item has it: balancing on it would cut every label to nothing.
    attributes = [Attribute("weather", "condition", ("clear", "rain", "fog"))]
    items = [Item(f"c{n}", "cat", {"weather": ("clear", "rain")[n % 2]}) for n in range(10)]
    split = balanced_split(Dataset(items, attributes, "tag"), seed=0, per_cell=2)
    assert Counter(item.values["weather"] for item in split.items) == {"clear": 2, "rain": 2}
    assert split.shortfalls == []
    assert split.notes == ["no audited item has `weather=fog`: left out of the balance"]


def test_per_cell_fill_drops_items_that_later_picks_made_redundant():
    # Only three kinds of item exist. Whichever day item is drawn first, the
    # smallest cover is (day, v) + (night, u): a first pick of (day, u) is made
    # redundant by the night item the `night` cell forces in, and is dropped.
    attributes = [Attribute("light", "condition", ("day", "night")), Attribute("b", "condition", ("u", "v"))]
    items = [Item(f"du{n}", "cat", {"light": "day", "b": "u"}) for n in range(5)]
    items += [Item(f"dv{n}", "cat", {"light": "day", "b": "v"}) for n in range(5)]
    items += [Item("nu0", "cat", {"light": "night", "b": "u"})]
    for fill in (True, False):
        sizes = set()
        for seed in range(30):
            split = balanced_split(Dataset(items, attributes, "tag"), seed=seed, per_cell=1, fill=fill)
            assert split.shortfalls == []
            sizes.add(len(split.items))
            assert "nu0" in {item.id for item in split.items}
        assert sizes == {2}


@dataclass(frozen=True)
class CarriedAttribute:
    """An attribute as the dataset may give it: with the target labels that carry it."""

    name: str
    kind: str
    values: tuple
    labels: tuple


def test_an_attribute_carried_by_some_labels_binds_only_those():
    light = CarriedAttribute("light", "condition", ("day", "night"), ("cat",))
    items = [Item(f"c{n}", "cat", {"light": ("day", "night")[n % 2]}) for n in range(10)]
    # dog does not carry `light`: its items are audited without it, and have no cell of it.
    items += [Item(f"d{n}", "dog", {"light": "unlabeled"}) for n in range(10)]
    split = balanced_split(Dataset(items, [light], "tag"), seed=0, size=8)
    assert Counter(item.label for item in split.items) == {"cat": 4, "dog": 4}
    assert Counter(item.values["light"] for item in split.items if item.label == "cat") == {"day": 2, "night": 2}
    assert [cell.name for cell in split.cells] == ["cat|light=day", "cat|light=night"]


def test_counts_and_targets_in_the_thousands_are_shown_exactly(tmp_path, capsys):
    # One label, 7000 audited images: day 3000, night 3000, dusk 1000. --size 5000 aims at 5000 / 3 = 1666.67 per
    # value; dusk is short by 666 (1666 wanted), so day and night are cut to dusk's 1000. Rounded to 3 significant
    # figures these read "1670 wanted" and "of 1670".
    counts = {"day": 3000, "night": 3000, "dusk": 1000}
    images = [Image(f"{value}-{index:04d}.jpg", tags=[("car", {"lighting": value})])
              for value, count in counts.items() for index in range(count)]  # fmt: skip
    export = tmp_path / "annotations.xml"
    export.write_bytes(images_xml(images, labels=["car"], attributes={"lighting": list(counts)}))
    html_page = tmp_path / "split.html"
    _, document, _ = run_split(export, tmp_path, "--size", "5000", "--html", str(html_page), attributes=["lighting"])
    out = capsys.readouterr().out
    assert "short: 666 more `lighting=dusk` items of `car` needed (1666 wanted, 1000 exist)" in out
    assert "lighting (target 1666.67 each): day 1000 cut, night 1000 cut, dusk 1000 short" in out
    assert "car|lighting=day 1000 of 1666.67" in out
    assert "1670" not in out and "1670" not in html_page.read_text()
    assert "<td>1666.67</td>" in html_page.read_text()
    # The JSON keeps the target itself.
    assert {cell["target"] for cell in document["cells"].values()} == {5000 / 3}
