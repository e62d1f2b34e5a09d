"""`report`: exact tests on small samples, q-values, the flag, cell diagnostics, clusters, rounded output.

The report is checked on built exports through the command line, and on
in-memory datasets through `build_report`. Every statistic it prints is
recomputed here independently (statsmodels, or plain math written here).
"""

from __future__ import annotations

import base64
import json
import math
import random
import re

import matplotlib.pyplot as plt
import numpy as np
import pytest
from support.audit_exports import (
    CAR_NIGHT,
    FULL_PER_LABEL,
    PARTIAL_PER_LABEL,
    UNAUDITED_PER_LABEL,
    Image,
    images_xml,
    track,
    video_xml,
    write_planted,
    zipped,
)
from statsmodels.stats.contingency_tables import Table
from statsmodels.stats.multitest import multipletests

from audit.charts import association_figure
from audit.cli import main
from audit.dataset import Attribute, Dataset, Item
from audit.report import build_report, chart_arguments, write_report

LABEL_COUNT = 3
ITEMS = LABEL_COUNT * (FULL_PER_LABEL + PARTIAL_PER_LABEL + UNAUDITED_PER_LABEL)


def make_item(item_id: str, label: str, values: dict[str, str], cluster: str = "") -> Item:
    """An item; its own cluster unless `cluster` names another."""
    return Item(item_id, label, values, cluster)


def make_attribute(
    name: str, values: tuple[str, ...], kind: str = "condition", labels: tuple[str, ...] = ()
) -> Attribute:
    """An audited attribute, carried by `labels` (every label when empty)."""
    return Attribute(name, kind, values, labels)


def make_dataset(items: list[Item], attributes: list[Attribute], mode: str = "tag") -> Dataset:
    """An in-memory dataset of `items`, sorted by id as the readers give them."""
    return Dataset(sorted(items, key=lambda item: item.id), attributes, mode)


def plain_chi_square_flag(table: list[list[int]], alpha: float = 0.01, min_v: float = 0.3) -> bool:
    """The rule the report used before issue 16: chi-square p < alpha and plain Cramér's V ≥ 0.3, in plain math."""
    table = [row for row in table if sum(row)]
    table = [list(column) for column in zip(*[column for column in zip(*table) if sum(column)])]
    rows, columns = [sum(row) for row in table], [sum(column) for column in zip(*table)]
    n = sum(rows)
    chi2 = sum(
        (table[i][j] - rows[i] * columns[j] / n) ** 2 / (rows[i] * columns[j] / n)
        for i in range(len(rows))
        for j in range(len(columns))
    )
    dof = (len(rows) - 1) * (len(columns) - 1)
    # The chi-square upper tail in closed form for 1 and 2 degrees of freedom.
    p_value = {1: math.erfc(math.sqrt(chi2 / 2)), 2: math.exp(-chi2 / 2)}[dof]
    return p_value < alpha and math.sqrt(chi2 / (n * (min(len(rows), len(columns)) - 1))) >= min_v


def long_numbers(text: str) -> list[str]:
    """Decimal numbers in `text` with more than 3 significant figures (or written with an exponent)."""
    found = []
    for number in re.findall(r"(?<![\w.])\d+\.\d+(?:e[+-]?\d+)?", text):
        if "e" in number or len(number.replace(".", "").lstrip("0")) > 3:
            found.append(number)
    return found


def page_text(page: str) -> str:
    """The page without its embedded images, style and tags: what a reader sees."""
    page = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page)
    page = re.sub(r"<style>.*?</style>", "", page, flags=re.S)
    return re.sub(r"<[^>]+>", " ", page)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return write_planted(tmp_path_factory.mktemp("planted"))


@pytest.fixture(scope="module")
def report(planted, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    assert main(["report", str(planted["export"]), "--schema", str(planted["schema"]), "--out", str(out)]) == 0
    return out, json.loads((out / "report.json").read_text())


def by_name(report):
    return {entry["name"]: entry for entry in report["attributes"]}


# --- the planted export ------------------------------------------------------------------------------------


def test_only_the_planted_association_is_flagged(report):
    _, document = report
    attributes = by_name(document)
    assert [name for name, entry in attributes.items() if entry["flagged"]] == ["lighting"]
    lighting = attributes["lighting"]
    assert lighting["state"] == "flagged" and lighting["method"] == "chi-square" and lighting["permutations"] is None
    assert lighting["p_value"] < 1e-10 and 0.35 < lighting["cramers_v"] < 0.45
    assert lighting["v_low"] >= document["min_v"] and lighting["v_low"] <= lighting["v_corrected"] <= lighting["v_high"]
    assert lighting["q_value"] < document["alpha"]
    # weather and apparent_gender are exactly uniform within every label: no association at all,
    # and enough items to see one.
    for name in ("weather", "apparent_gender"):
        assert attributes[name]["state"] == "ok"
        assert attributes[name]["chi2"] == pytest.approx(0.0, abs=1e-9)
        assert attributes[name]["v_corrected"] == pytest.approx(0.0, abs=1e-9)
        assert attributes[name]["p_value"] == pytest.approx(1.0) and attributes[name]["q_value"] == pytest.approx(1.0)


def test_q_values_are_benjamini_hochberg_over_the_reports_tests(report):
    _, document = report
    entries = document["attributes"]
    assert document["tests"] == 3
    reference = multipletests([entry["p_value"] for entry in entries], method="fdr_bh")[1]
    assert [entry["q_value"] for entry in entries] == pytest.approx(list(reference), rel=1e-12)


def test_report_level_fields(report):
    _, document = report
    assert document["items"] == ITEMS
    assert document["units"] == "images"
    assert (document["alpha"], document["min_v"], document["seed"]) == (0.01, 0.1, 0)
    assert document["excluded"]["no_tag"] == 5 and document["excluded"]["several_tags"] == 3


def test_kinds_tables_and_coverage(report):
    _, document = report
    attributes = by_name(document)
    assert [(name, entry["kind"]) for name, entry in attributes.items()] == [
        ("lighting", "condition"),
        ("weather", "condition"),
        ("apparent_gender", "protected"),
    ]
    # `unlabeled` is left out of the tables and counted only as missing coverage.
    assert attributes["lighting"]["coverage"] == LABEL_COUNT * FULL_PER_LABEL
    assert attributes["weather"]["coverage"] == LABEL_COUNT * (FULL_PER_LABEL + PARTIAL_PER_LABEL)
    assert attributes["lighting"]["table"]["car"] == {"day": FULL_PER_LABEL - CAR_NIGHT, "night": CAR_NIGHT}
    assert attributes["lighting"]["table"]["pedestrian"] == {"day": 90, "night": 90}
    assert "unlabeled" not in attributes["weather"]["values"]
    assert document["fully_audited"] == LABEL_COUNT * FULL_PER_LABEL
    per_label = FULL_PER_LABEL + PARTIAL_PER_LABEL + UNAUDITED_PER_LABEL
    assert attributes["lighting"]["coverage_per_label"]["car"] == {
        "items": per_label,
        "audited": FULL_PER_LABEL,
        "share": FULL_PER_LABEL / per_label,
    }


def test_every_cell_has_its_diagnostics(report):
    _, document = report
    lighting = by_name(document)["lighting"]
    labels, values = list(lighting["table"]), lighting["values"]
    table = [[lighting["table"][label][value] for value in values] for label in labels]
    reference = Table(table, shift_zeros=False)
    for i, label in enumerate(labels):
        for j, value in enumerate(values):
            cell = lighting["cells"][label][value]
            assert cell["observed"] == table[i][j]
            assert cell["expected"] == pytest.approx(reference.fittedvalues[i, j])
            assert cell["ratio"] == pytest.approx(table[i][j] / reference.fittedvalues[i, j])
            assert cell["ratio_low"] < cell["ratio"] < cell["ratio_high"]
            assert cell["residual"] == pytest.approx(reference.standardized_resids[i, j])


def test_thresholds_and_seed_are_options(planted, tmp_path):
    # With V required above the interval's lower bound (0.30), nothing is flagged any more.
    arguments = ["report", str(planted["export"]), "--schema", str(planted["schema"]), "--out", str(tmp_path)]
    assert main([*arguments, "--min-v", "0.5", "--seed", "7"]) == 0
    document = json.loads((tmp_path / "report.json").read_text())
    assert not any(entry["flagged"] for entry in document["attributes"])
    assert (document["min_v"], document["seed"]) == (0.5, 7)
    assert by_name(document)["lighting"]["state"] == "ok"


def test_alpha_zero_is_refused(planted, tmp_path, capsys):
    arguments = ["report", str(planted["export"]), "--out", str(tmp_path), "--alpha", "0"]
    assert main(arguments) == 1
    assert capsys.readouterr().err == "error: --alpha must be above 0\n"


def test_the_page_is_self_contained_and_says_what_a_flag_means(report):
    out, _ = report
    page = (out / "report.html").read_text()
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(images) == 3
    assert all(base64.b64decode(image).startswith(b"\x89PNG") for image in images)
    assert "http://" not in page and "https://" not in page  # nothing fetched from elsewhere
    assert "shortcut" in page  # the condition's flag, in words
    assert sorted(path.name for path in (out / "charts").iterdir()) == [
        "01-lighting.png",
        "02-weather.png",
        "03-apparent_gender.png",
    ]


def test_the_page_rounds_every_number_and_writes_small_p_as_below_0_001(report):
    out, _ = report
    page = (out / "report.html").read_text()
    text = page_text(page)
    assert "&lt; 0.001" in page and "0.000" not in text
    assert long_numbers(text) == []
    # The page explains q-values, inconclusive and the unit of analysis, and names the unit.
    for words in ("q-value", "Benjamini–Hochberg", "Inconclusive", "unit of analysis", "images"):
        assert words in text


def test_a_flagged_attributes_page_names_the_cell_that_drives_it(report):
    out, document = report
    page = (out / "report.html").read_text()
    # car is day 162 times where 180 · 342 / 540 = 114 were expected: 1.42×.
    assert re.search(r"<code>car</code> is <code>lighting</code> = <code>day</code> 1\.42× as often as expected", page)
    cell = by_name(document)["lighting"]["cells"]["car"]["day"]
    assert cell["ratio"] == pytest.approx(162 / 114)
    # The coverage per label table, per attribute.
    assert page.count("<th>label</th><th>items</th><th>audited</th><th>coverage</th>") == 3


def test_the_console_prints_one_rounded_line_per_attribute(planted, tmp_path, capsys):
    assert main(["report", str(planted["export"]), "--schema", str(planted["schema"]), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    lines = {line.split(" ")[0]: line for line in out.splitlines()}
    assert lines["lighting"].startswith("lighting (condition): FLAGGED")
    assert "q < 0.001, p < 0.001" in lines["lighting"] and "chi-square" in lines["lighting"]
    assert re.search(r"V corrected 0\.387 \(95% 0\.30\d–0\.47\d\)", lines["lighting"])
    assert lines["weather"].startswith("weather (condition): ok, ") and "q = 1, p = 1" in lines["weather"]
    assert long_numbers(out) == [] and "e-" not in out


def test_a_flagged_protected_attribute_is_explained_as_unequal_groups(tmp_path):
    images = [Image(f"a{i}.jpg", tags=[("car", {"group": "x" if i % 10 else "y"})]) for i in range(100)]
    images += [Image(f"b{i}.jpg", tags=[("bicycle", {"group": "y" if i % 10 else "x"})]) for i in range(100)]
    export = tmp_path / "export.zip"
    export.write_bytes(zipped({"annotations.xml": images_xml(images, attributes={"group": ["x", "y"]})}))
    schema = tmp_path / "schema.yaml"
    schema.write_text("projects:\n- name: p\n  labels: [car, bicycle]\n  protected:\n    group: [x, y]\n")
    assert main(["report", str(export), "--schema", str(schema), "--out", str(tmp_path / "out")]) == 0
    document = json.loads((tmp_path / "out" / "report.json").read_text())
    assert document["attributes"][0]["kind"] == "protected" and document["attributes"][0]["flagged"]
    assert "distributed unequally across the groups" in (tmp_path / "out" / "report.html").read_text()


def test_statistics_that_cannot_be_computed_are_null(tmp_path):
    # One label only: there is no association to test, and it is not counted as a test.
    images = [Image(f"a{i}.jpg", tags=[("car", {"lighting": "day" if i % 2 else "night"})]) for i in range(10)]
    images.append(Image("b.jpg", tags=[("car", {"lighting": "unlabeled"})]))
    export = tmp_path / "annotations.xml"
    export.write_bytes(images_xml(images, labels=["car"], attributes={"lighting": ["day", "night"]}))
    assert main(["report", str(export), "--out", str(tmp_path / "out")]) == 0
    text = (tmp_path / "out" / "report.json").read_text()
    document = json.loads(text)
    entry = document["attributes"][0]
    assert entry["state"] == "not computable" and entry["flagged"] is False and document["tests"] == 0
    assert entry["chi2"] is None and entry["p_value"] is None and entry["q_value"] is None and entry["v_low"] is None
    assert entry["coverage"] == 10 and entry["method"] is None
    assert "NaN" not in text
    assert "not computable" in (tmp_path / "out" / "report.html").read_text()


# --- small samples -----------------------------------------------------------------------------------------

SMALL_EXPORT = {
    # car 9 images, bicycle 8, pedestrian 1: 18 images.
    "car": [{"lighting": "day", "distance": "far", "weather": "clear"}] * 7
    + [{"lighting": "night", "distance": "far", "weather": "clear"}]
    + [{"lighting": "night", "distance": "near", "weather": "clear"}],
    "bicycle": [{"lighting": "night", "distance": "near", "weather": "clear"}] * 6
    + [{"lighting": "night", "distance": "far", "weather": "clear"}]
    + [{"lighting": "day", "distance": "far", "weather": "clear"}],
    "pedestrian": [{"lighting": "unlabeled", "distance": "unlabeled", "weather": "rain"}],
}
SMALL_ATTRIBUTES = {"lighting": ["day", "night"], "distance": ["near", "far"], "weather": ["clear", "rain"]}


def small_export(tmp_path):
    images = [
        Image(f"{label}-{index}.jpg", tags=[(label, values)])
        for label, rows in SMALL_EXPORT.items()
        for index, values in enumerate(rows)
    ]
    export = tmp_path / "annotations.xml"
    export.write_bytes(images_xml(images, attributes=SMALL_ATTRIBUTES))
    return export


def test_an_18_image_export_flagged_three_times_by_chi_square_gets_no_flag_from_exact_tests(tmp_path, capsys):
    export = small_export(tmp_path)
    assert main(["report", str(export), "--out", str(tmp_path / "out")]) == 0
    document = json.loads((tmp_path / "out" / "report.json").read_text())
    attributes = by_name(document)
    assert document["items"] == 18
    tables = {name: [list(row.values()) for row in entry["table"].values()] for name, entry in attributes.items()}
    # The old rule (chi-square p < 0.01 and V ≥ 0.3) flags all three; one of them rests on the single pedestrian.
    assert all(plain_chi_square_flag(table) for table in tables.values())
    assert not any(entry["flagged"] for entry in attributes.values())
    assert attributes["lighting"]["method"] == attributes["distance"]["method"] == "fisher"
    assert attributes["weather"]["method"] == "permutation"
    # The pedestrian's one rain image: 1 of the 18 images holds it, so the exact p is 1/18.
    assert attributes["weather"]["p_value"] == pytest.approx(1 / 18, abs=4 * math.sqrt(1 / 18 * 17 / 18 / 1999))
    for entry in attributes.values():
        assert entry["p_value"] >= 0.01
        assert entry["state"] == "inconclusive"
        rows = sum(1 for row in entry["table"].values() if sum(row.values()))
        assert entry["more_per_label"] == math.ceil((entry["items_needed"] - entry["coverage"]) / rows)
    out = capsys.readouterr().out
    more = attributes["lighting"]["more_per_label"]
    # The planner counts in the unit it plans for (images here), and by the rule of the flag.
    assert f"inconclusive: about {more} more audited images per label would get a real V = 0.2 flagged 80% of" in out


# --- q-values and the flag ---------------------------------------------------------------------------------


def association_items(prefix: str, counts: dict[str, dict[str, int]], name: str) -> list[Item]:
    """Items with these label × value counts of the attribute `name`."""
    return [
        make_item(f"{prefix}-{label}-{value}-{index}", label, {name: value})
        for label, row in counts.items()
        for value, count in row.items()
        for index in range(count)
    ]


def with_null_attributes(items: list[Item], nulls: int) -> tuple[list[Item], list[Attribute]]:
    """The items, each also carrying `nulls` attributes whose values are spread evenly within every label."""
    names = [f"null-{index:02d}" for index in range(nulls)]
    position: dict[str, int] = {}
    extended = []
    for item in items:
        index = position.get(item.label, 0)
        position[item.label] = index + 1
        values = {**item.values, **{name: "ab"[(index + offset) % 2] for offset, name in enumerate(names)}}
        extended.append(make_item(item.id, item.label, values, item.cluster))
    return extended, [make_attribute(name, ("a", "b")) for name in names]


def test_a_flag_needs_q_below_alpha_not_only_p():
    # φ = 0.32 at n = 100: p = 0.0014, and the interval of V starts above 0.1.
    items = association_items("x", {"car": {"day": 33, "night": 17}, "bus": {"day": 17, "night": 33}}, "lighting")
    alone = build_report(make_dataset(items, [make_attribute("lighting", ("day", "night"))]), [], 0.01, 0.1)
    assert alone["tests"] == 1 and alone["attributes"][0]["flagged"]
    assert alone["attributes"][0]["v_low"] >= 0.1
    items, nulls = with_null_attributes(items, 9)
    crowded = build_report(make_dataset(items, [make_attribute("lighting", ("day", "night")), *nulls]), [], 0.01, 0.1)
    lighting = crowded["attributes"][0]
    assert crowded["tests"] == 10
    assert lighting["p_value"] < 0.01 and not lighting["flagged"]
    reference = multipletests([entry["p_value"] for entry in crowded["attributes"]], method="fdr_bh")[1]
    assert lighting["q_value"] == pytest.approx(reference[0]) and lighting["q_value"] >= 0.01


# --- clusters: the unit of analysis ------------------------------------------------------------------------


def track_frames(tracks: list[tuple[str, str, int]]) -> list[Item]:
    """Frame items of tracks given as (label, lighting, frames), each track one cluster."""
    return [
        make_item(f"clip:{frame:05d}#{number}", label, {"lighting": lighting}, cluster=f"track-{number}")
        for number, (label, lighting, frames) in enumerate(tracks)
        for frame in range(frames)
    ]


def test_frames_of_eight_unassociated_tracks_are_not_flagged(tmp_path):
    # Two car and two pedestrian tracks by day and by night: no association between a track's label and its
    # lighting; the lengths make the frames' table look strongly associated.
    tracks = [("car", "day", 200), ("car", "day", 150), ("car", "night", 10), ("car", "night", 20),
              ("pedestrian", "day", 15), ("pedestrian", "day", 25), ("pedestrian", "night", 120),
              ("pedestrian", "night", 120)]  # fmt: skip
    items = track_frames(tracks)
    assert len(items) == 660
    lighting = make_attribute("lighting", ("day", "night"))
    document = build_report(make_dataset(items, [lighting], "per-object"), [], 0.01, 0.1)
    entry = document["attributes"][0]
    assert entry["method"] == "cluster permutation" and entry["clusters"] == 8
    # Counted as 660 independent frames, the same data would be flagged.
    assert plain_chi_square_flag([list(row.values()) for row in entry["table"].values()])
    assert not entry["flagged"] and entry["p_value"] > 0.1
    # Eight tracks cannot show V = 0.2: the power planner counts clusters, not frames.
    assert entry["state"] == "inconclusive" and entry["power_unit"] == "clusters"


def test_a_planted_track_level_association_is_flagged():
    # 60 tracks of 5–14 frames: car tracks are 80 % by day, pedestrian tracks 20 %.
    tracks = [
        (label, "day" if (index % 5 < 4) == (label == "car") else "night", 5 + index % 10)
        for label in ("car", "pedestrian")
        for index in range(30)
    ]
    document = build_report(
        make_dataset(track_frames(tracks), [make_attribute("lighting", ("day", "night"))], "per-object"), [], 0.01, 0.1
    )
    entry = document["attributes"][0]
    assert entry["method"] == "cluster permutation" and entry["clusters"] == 60
    assert entry["permutations"] >= 1999 and 1 / (entry["permutations"] + 1) < 0.01
    assert entry["flagged"]


def test_permutation_p_values_are_reproducible_from_the_seed():
    tracks = [("car" if index % 2 else "bus", "day" if index % 3 else "night", 2 + index % 4) for index in range(20)]
    dataset = make_dataset(track_frames(tracks), [make_attribute("lighting", ("day", "night"))], "per-object")
    first, again = (build_report(dataset, [], 0.01, 0.1, seed=3)["attributes"][0] for _ in range(2))
    assert first["p_value"] == again["p_value"]
    others = {build_report(dataset, [], 0.01, 0.1, seed=seed)["attributes"][0]["p_value"] for seed in range(4, 9)}
    assert len(others | {first["p_value"]}) > 1


def test_coverage_counts_only_the_labels_that_carry_the_attribute():
    items = [make_item(f"c{index}", "car", {"lighting": "day" if index % 2 else "unlabeled"}) for index in range(10)]
    items += [make_item(f"t{index}", "tree", {}) for index in range(30)]
    attribute = make_attribute("lighting", ("day", "night"), labels=("car",))
    # An attribute whose labels have no item at all: nothing to cover or test, and no test counted.
    nobody = make_attribute("season", ("summer", "winter"), labels=("bus",))
    document = build_report(make_dataset(items, [attribute, nobody]), [], 0.01, 0.1)
    entry, empty = document["attributes"]
    assert list(entry["coverage_per_label"]) == ["car"]
    assert entry["coverage"] == 5 and entry["coverage_share"] == 0.5
    assert empty["state"] == "not computable" and empty["coverage_per_label"] == {} and empty["cells"] == {}
    assert document["tests"] == 0


def test_objects_of_an_export_are_tested_by_moving_whole_images(tmp_path):
    # 40 images, each mostly of one label, lighting per image independent of that: boxes are not independent.
    generator = random.Random(5)
    images = []
    for index in range(40):
        dominant, other = ("car", "pedestrian") if generator.random() < 0.5 else ("pedestrian", "car")
        lighting = "day" if generator.random() < 0.5 else "night"
        boxes = [
            (dominant if generator.random() < 0.85 else other, {"lighting": lighting})
            for _ in range(generator.randint(2, 9))
        ]
        images.append(Image(f"street-{index:02d}.jpg", shapes=boxes))
    export = tmp_path / "annotations.xml"
    export.write_bytes(images_xml(images, labels=["car", "pedestrian"], attributes={"lighting": ["day", "night"]}))
    assert main(["report", str(export), "--per-object", "--out", str(tmp_path / "out")]) == 0
    document = json.loads((tmp_path / "out" / "report.json").read_text())
    entry = document["attributes"][0]
    assert document["units"] == "objects in 40 images"
    assert entry["method"] == "cluster permutation" and entry["clusters"] == 40 and entry["power_unit"] == "images"
    assert entry["permutations"] == 1999 and not entry["flagged"]
    page = (tmp_path / "out" / "report.html").read_text()
    assert "objects in 40 images" in page and "cluster permutation, 1999 permutations of 40 clusters" in page


def test_the_chart_title_gives_state_q_and_v_rounded(report):
    _, document = report
    lighting = by_name(document)["lighting"]
    figure = association_figure(
        "lighting",
        "condition",
        lighting["table"],
        lighting["values"],
        lighting["flagged"],
        lighting["p_value"],
        lighting["v_corrected"],
        q_value=lighting["q_value"],
        state=lighting["state"],
        v_low=lighting["v_low"],
        v_high=lighting["v_high"],
    )
    try:
        title = figure.axes[0].get_title(loc="left")
    finally:
        plt.close(figure)
    assert "FLAGGED" in title and "q < 0.001" in title and "V = 0.387 (95% 0.304–0.473)" in title
    assert long_numbers(title) == []


def test_names_from_the_export_are_escaped_in_the_driving_cell(tmp_path):
    label = "<script>alert(1)</script>"
    items = association_items("x", {label: {"day": 90, "night": 10}, "bus": {"day": 40, "night": 60}}, "lighting")
    document = build_report(make_dataset(items, [make_attribute("lighting", ("day", "night"))]), ["<export>"], 0.01, 0.1)
    assert document["attributes"][0]["flagged"]
    write_report(document, tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert "<script>" not in page and "&lt;export&gt;" in page
    assert "<code>&lt;script&gt;alert(1)&lt;/script&gt;</code> is <code>lighting</code> = <code>day</code>" in page


def chart_title_of(entry: dict) -> str:
    """The title of the chart the report draws for `entry`."""
    figure = association_figure(**chart_arguments(entry))
    try:
        return figure.axes[0].get_title(loc="left")
    finally:
        plt.close(figure)


def test_the_reports_chart_names_the_bias_corrected_v_as_such(report):
    _, document = report
    title = chart_title_of(by_name(document)["lighting"])
    # The value is the bias-corrected V (0.387; plain V is 0.389): the title said "V =".
    assert "V corrected = 0.387 (95% 0.304–0.473)" in title and " V = " not in title


# --- the V interval, the design effect and the planner ------------------------------------------------------


def test_an_interval_below_chance_is_said_to_say_nothing_in_json_console_page_and_chart(tmp_path, capsys):
    # Exactly even within both labels: χ² = 0, below the 2.5% point of its null distribution.
    images = [Image(f"{label}-{index}.jpg", tags=[(label, {"lighting": "day" if index % 2 else "night"})])
              for label in ("car", "pedestrian") for index in range(40)]  # fmt: skip
    export = tmp_path / "annotations.xml"
    export.write_bytes(images_xml(images, labels=["car", "pedestrian"], attributes={"lighting": ["day", "night"]}))
    assert main(["report", str(export), "--out", str(tmp_path / "out")]) == 0
    entry = json.loads((tmp_path / "out" / "report.json").read_text())["attributes"][0]
    assert entry["chi2"] == 0 and entry["v_low"] == 0 and entry["v_high"] is None
    assert any("not informative" in note for note in entry["notes"])
    out = capsys.readouterr().out
    assert "interval not informative (χ² below chance)" in out and "95% 0–0" not in out
    page = page_text((tmp_path / "out" / "report.html").read_text())
    assert "interval not informative (χ² below chance)" in page and "95% 0–0" not in page
    assert "interval not informative (χ² below chance)" in chart_title_of(entry)


def test_the_design_effect_is_in_the_json_and_widens_the_interval_of_clustered_items():
    # 40 tracks of 30 frames each, car tracks mostly by day: the frames of one track are one cluster.
    tracks = [
        (label, "day" if (index % 10 < 7) == (label == "car") else "night", 30)
        for label in ("car", "pedestrian")
        for index in range(20)
    ]
    dataset = make_dataset(track_frames(tracks), [make_attribute("lighting", ("day", "night"))], "per-object")
    entry = build_report(dataset, [], 0.01, 0.1)["attributes"][0]
    # Labels and values are constant over each track's 30 frames: the chi-square is about 30 times what 40 tracks
    # give, and the design effect the permutations measure says so.
    assert entry["design_effect"] == pytest.approx(30, rel=0.15)
    table = [list(row.values()) for row in entry["table"].values()]
    counted_as_frames = Table(np.asarray(table)).test_nominal_association().statistic
    assert entry["chi2"] == pytest.approx(counted_as_frames)
    # V itself does not change; its interval is that of 40 tracks, not of 1200 frames.
    per_track = [[count // 30 for count in row] for row in table]
    assert entry["cramers_v"] == pytest.approx(math.sqrt(counted_as_frames / 1200))
    assert entry["v_high"] - entry["v_low"] > 0.4
    independent = build_report(make_dataset(association_items("x", {"car": {"day": 14, "night": 6},
        "pedestrian": {"day": 6, "night": 14}}, "lighting"), [make_attribute("lighting", ("day", "night"))]), [], 0.01,
        0.1)["attributes"][0]  # fmt: skip
    assert independent["design_effect"] == 1.0
    assert per_track == [[14, 6], [6, 14]]
    assert entry["v_low"] == pytest.approx(independent["v_low"], abs=0.05)


def test_the_planner_promises_what_the_flag_rule_delivers():
    # 400 items of a 2×2 table: the chi-square test alone has 92 % power for V = 0.2, the flag (which also needs the
    # lower end of V ≥ 0.1) about 52 %: inconclusive, with about 785 items needed in all.
    items = association_items("x", {"car": {"day": 100, "night": 100}, "bus": {"day": 100, "night": 100}}, "lighting")
    entry = build_report(make_dataset(items, [make_attribute("lighting", ("day", "night"))]), [], 0.01, 0.1)
    entry = entry["attributes"][0]
    assert entry["state"] == "inconclusive"
    assert entry["power"] == pytest.approx(0.516, abs=0.01)
    assert 770 <= entry["items_needed"] <= 800 and entry["more_per_label"] == math.ceil((entry["items_needed"] - 400) / 2)


def test_with_min_v_at_or_above_0_2_nothing_is_inconclusive_for_want_of_a_plan():
    items = association_items("x", {"car": {"day": 20, "night": 20}, "bus": {"day": 20, "night": 20}}, "lighting")
    entry = build_report(make_dataset(items, [make_attribute("lighting", ("day", "night"))]), [], 0.01, 0.2)
    entry = entry["attributes"][0]
    assert entry["items_needed"] is None and entry["more_per_label"] is None and entry["state"] == "ok"


def test_the_planner_counts_tracks_in_a_video_export(tmp_path, capsys):
    # Six tracks: far too few to see V = 0.2; the planner says how many more tracks, not items.
    tracks = [track(number, label, [{"lighting": lighting}] * 5, start=number * 6)
              for number, (label, lighting) in enumerate([("car", "day"), ("car", "night"), ("car", "day"),
                                                          ("pedestrian", "night"), ("pedestrian", "day"),
                                                          ("pedestrian", "night")])]  # fmt: skip
    export = tmp_path / "annotations.xml"
    export.write_bytes(video_xml(tracks, labels=["car", "pedestrian"], attributes={"lighting": ["day", "night"]}))
    assert main(["report", str(export), "--per-object", "--out", str(tmp_path / "out")]) == 0
    entry = json.loads((tmp_path / "out" / "report.json").read_text())["attributes"][0]
    assert entry["state"] == "inconclusive" and entry["power_unit"] == "tracks" and entry["audited_units"] == 6
    out = capsys.readouterr().out
    assert f"about {entry['more_per_label']} more audited tracks per label" in out
    assert "items per label" not in out
