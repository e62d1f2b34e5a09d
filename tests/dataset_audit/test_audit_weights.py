"""Kamiran–Calders loss weights: AIF360's formula, label and group independent once weighted, clipping, ESS.

The reference formula is AIF360's `Reweighing.fit`
(Trusted-AI/AIF360, aif360/algorithms/preprocessing/reweighing.py at
34877916b789e569edf5c0aac033403ca90f34b3, lines 51-54 and 66-69):

    n = np.sum(dataset.instance_weights, dtype=np.float64)
    n_p = np.sum(dataset.instance_weights[priv_cond], dtype=np.float64)
    n_fav = np.sum(dataset.instance_weights[fav_cond], dtype=np.float64)
    self.w_p_fav = n_fav*n_p / (n*n_p_fav)
    self.w_p_unfav = n_unfav*n_p / (n*n_p_unfav)
    self.w_up_fav = n_fav*n_up / (n*n_up_fav)
    self.w_up_unfav = n_unfav*n_up / (n*n_up_unfav)

that is w(label, group) = n_label · n_group / (n · n_label,group) for a binary
label and two groups; the tests apply it to every (label, group) pair of a
multi-class label and intersectional groups, recomputed here with pandas
(the package uses numpy), and the chi-square of the weighted table in plain
Python. aif360 itself is not installed.
"""

import csv
import json
import math
import random

import pandas as pd
import pytest
import yaml
from support.audit_exports import Image, images_xml, write_planted

from audit.dataset import Attribute, Dataset, Item, build_dataset
from audit.errors import AuditError
from audit.exports import load_export
from audit.schema import load_schema
from audit.weights import Weights, describe, max_weight_option, reweighing, weights_json, write_weights

LABELS = ["car", "pedestrian", "bicycle"]
PROTECTED = {"apparent_gender": ["female", "male"], "skin_tone": ["lighter", "darker"]}
# Items per (label, gender, skin tone): pedestrians are mostly female, bicycles mostly male and lighter.
PLANTED = {
    ("car", "female", "lighter"): 30,
    ("car", "female", "darker"): 10,
    ("car", "male", "lighter"): 60,
    ("car", "male", "darker"): 20,
    ("pedestrian", "female", "lighter"): 40,
    ("pedestrian", "female", "darker"): 30,
    ("pedestrian", "male", "lighter"): 30,
    ("pedestrian", "male", "darker"): 20,
    ("bicycle", "female", "lighter"): 10,
    ("bicycle", "female", "darker"): 6,
    ("bicycle", "male", "lighter"): 50,
    ("bicycle", "male", "darker"): 25,
}
UNGROUPED_PER_LABEL = 7  # items whose skin tone is not audited: outside every group


def write_association_export(directory):
    """An export with a planted label × protected-group association, its schema, and its items' (label, group)."""
    images = []
    for (label, gender, skin), count in PLANTED.items():
        for index in range(count):
            values = {"lighting": "day" if index % 2 else "night", "apparent_gender": gender, "skin_tone": skin}
            images.append(Image(f"{label}/{gender}-{skin}-{index:03d}.jpg", tags=[(label, values)]))
    for label in LABELS:
        for index in range(UNGROUPED_PER_LABEL):
            values = {"lighting": "day", "apparent_gender": "female", "skin_tone": "unlabeled"}
            images.append(Image(f"{label}/partial-{index}.jpg", tags=[(label, values)]))
    export = directory / "export.xml"
    export.write_bytes(images_xml(images, attributes={"lighting": ["day", "night"], **PROTECTED}))
    schema = directory / "schema.yaml"
    schema.write_text(
        yaml.safe_dump(
            {
                "projects": [
                    {"name": "p", "labels": LABELS, "conditions": {"lighting": ["day", "night"]}, "protected": PROTECTED}
                ]
            }
        )
    )
    return export, schema


def read_dataset(export, schema):
    return build_dataset([load_export(str(export))], False, load_schema(str(schema)))


def frame(dataset: Dataset) -> pd.DataFrame:
    """One row per grouped item: id, label, group (the protected values joined), independently of the package."""
    protected = [attribute.name for attribute in dataset.attributes if attribute.kind == "protected"]
    rows = [
        {"item": item.id, "label": item.label, "group": "/".join(item.values[name] for name in protected)}
        for item in dataset.items
        if all(item.values[name] != "unlabeled" for name in protected)
    ]
    return pd.DataFrame(rows)


def aif360_weights(data: pd.DataFrame) -> pd.Series:
    """AIF360's w = n_label · n_group / (n · n_label,group), for every (label, group) pair, per item."""
    n = len(data)
    n_label = data.groupby("label")["item"].transform("count")
    n_group = data.groupby("group")["item"].transform("count")
    n_cell = data.groupby(["label", "group"])["item"].transform("count")
    return pd.Series((n_label * n_group / (n * n_cell)).to_numpy(), index=data["item"])


def cramers_v(table: pd.DataFrame) -> float:
    """Cramér's V of a (weighted) count table, the chi-square written out by hand."""
    cells = table.to_numpy().tolist()
    total = sum(map(sum, cells))
    rows = [sum(row) for row in cells]
    columns = [sum(column) for column in zip(*cells)]
    chi2 = sum(
        (cells[i][j] - rows[i] * columns[j] / total) ** 2 / (rows[i] * columns[j] / total)
        for i in range(len(rows))
        for j in range(len(columns))
    )
    return math.sqrt(chi2 / (total * (min(len(rows), len(columns)) - 1)))


@pytest.fixture(scope="module")
def planted_dataset(tmp_path_factory):
    return read_dataset(*write_association_export(tmp_path_factory.mktemp("weights")))


def test_weights_are_aif360_reweighing_over_intersectional_groups(planted_dataset):
    weights = reweighing(planted_dataset)
    data = frame(planted_dataset)
    expected = aif360_weights(data)
    # Every cell holds items, nothing is clipped: the weights are the formula itself (they already average 1).
    assert weights.clipped == 0
    assert weights.grouped == len(data) == sum(PLANTED.values())
    for item_id, weight in expected.items():
        assert weights.by_item[item_id] == pytest.approx(weight, rel=1e-12)
    assert expected.mean() == pytest.approx(1.0)
    # The cells say the same: 3 labels × 4 groups, each with its count.
    assert len(weights.cells) == 12
    for cell in weights.cells:
        key = (cell["label"], cell["group"]["apparent_gender"], cell["group"]["skin_tone"])
        assert cell["n"] == PLANTED[key]
        assert cell["weight"] == pytest.approx(cell["kc_weight"]) and cell["clipped"] is False


def test_items_outside_every_group_weigh_one(planted_dataset):
    weights = reweighing(planted_dataset)
    partial = [item for item in planted_dataset.items if "/partial-" in item.id]
    assert len(partial) == 3 * UNGROUPED_PER_LABEL
    assert {weights.by_item[item.id] for item in partial} == {1.0}
    assert set(weights.by_item) == {item.id for item in planted_dataset.items}


def test_weighting_removes_the_planted_label_group_association(planted_dataset):
    weights = reweighing(planted_dataset)
    data = frame(planted_dataset)
    data["weight"] = data["item"].map(weights.by_item)
    before = pd.crosstab(data["label"], data["group"])
    after = pd.crosstab(data["label"], data["group"], values=data["weight"], aggfunc="sum")
    assert weights.association_before == pytest.approx(cramers_v(before), rel=1e-9)
    assert cramers_v(before) > 0.15  # the planted association is there
    assert cramers_v(after) < 1e-9 and weights.association_after < 1e-9
    # Each protected attribute on its own is independent of the label too, once weighted.
    for attribute in PROTECTED:
        data[attribute] = data["group"].str.split("/").str[list(PROTECTED).index(attribute)]
        assert cramers_v(pd.crosstab(data["label"], data[attribute], values=data["weight"], aggfunc="sum")) < 1e-9


def test_effective_sample_size_and_ratio_are_over_every_item(planted_dataset):
    weights = reweighing(planted_dataset)
    values = list(weights.by_item.values())
    assert weights.effective_sample_size == pytest.approx(sum(values) ** 2 / sum(value * value for value in values))
    assert weights.effective_sample_size < len(values)
    assert weights.ratio == pytest.approx(max(values) / min(values))


def test_the_planted_export_without_association_gets_weight_one(tmp_path):
    # tests/support/audit_exports.py's apparent_gender is exactly uniform within every label: nothing to undo.
    paths = write_planted(tmp_path)
    dataset = build_dataset([load_export(str(paths["export"]))], False, load_schema(str(paths["schema"])))
    weights = reweighing(dataset)
    assert weights.grouped > 0
    assert max(abs(weight - 1) for weight in weights.by_item.values()) < 1e-12
    assert weights.association_before == pytest.approx(0.0, abs=1e-12)
    assert weights.effective_sample_size == pytest.approx(len(dataset.items))


def rare_cell_dataset(rare: int = 2) -> Dataset:
    """Labels a/b, groups g/h; the cell (b, h) holds only `rare` items, so its weight is large."""
    attributes = [Attribute("group", "protected", ("g", "h"))]
    counts = {("a", "g"): 100, ("a", "h"): 100, ("b", "g"): 100, ("b", "h"): rare}
    items = [
        Item(f"{label}-{group}-{index:03d}", label, {"group": group})
        for (label, group), count in counts.items()
        for index in range(count)
    ]
    return Dataset(items, attributes, "tag")


def test_clipping_caps_the_weight_and_keeps_the_mean_at_one():
    dataset = rare_cell_dataset()
    data = frame(dataset)
    raw = aif360_weights(data)
    assert raw["b-h-000"] == pytest.approx(102 * 102 / (302 * 2))  # 17.2: over the default cap
    weights = reweighing(dataset, max_weight=10)
    values = pd.Series(weights.by_item)
    assert weights.clipped == 2
    assert values["b-h-000"] == values["b-h-001"] == 10
    assert values.max() <= 10 and values.mean() == pytest.approx(1.0)
    # The others keep their proportions: one common scale.
    scale = values["a-g-000"] / raw["a-g-000"]
    for item_id in ("a-h-000", "b-g-000"):
        assert values[item_id] / raw[item_id] == pytest.approx(scale)
    assert 282 / (100 * (raw["a-g-000"] + raw["a-h-000"] + raw["b-g-000"])) == pytest.approx(scale)
    # Clipped, the rare cell stays under-weighted: some association is left, less than before.
    assert 0 < weights.association_after < weights.association_before
    assert weights.ratio == pytest.approx(values.max() / values.min())
    assert weights.effective_sample_size == pytest.approx(values.sum() ** 2 / (values**2).sum())
    # A cap above the largest weight clips nothing and removes the association.
    loose = reweighing(dataset, max_weight=20)
    assert loose.clipped == 0 and loose.association_after < 1e-9


def test_the_cap_holds_after_renormalisation_on_random_tables():
    # Re-clipping: clipping a cell lowers the mean, the rescale raises the others, possibly over the cap.
    # The solution is characterised by: mean 1, every weight ≤ cap, the unclipped cells on one scale of the
    # formula, and every clipped cell's scaled formula at or over the cap.
    generator = random.Random(16)
    reclipped = 0
    for _ in range(40):
        attributes = [Attribute("g", "protected", ("p", "q", "r"))]
        items = []
        for label in ("a", "b", "c"):
            for group in ("p", "q", "r"):
                for index in range(generator.choice([1, 2, 3, 5, 20, 60])):
                    items.append(Item(f"{label}{group}{index}", label, {"g": group}))
        dataset = Dataset(items, attributes, "tag")
        cap = generator.choice([1.5, 2.0, 3.0, 5.0])
        weights = reweighing(dataset, max_weight=cap)
        raw = aif360_weights(frame(dataset))
        values = pd.Series(weights.by_item)
        assert values.mean() == pytest.approx(1.0)
        assert values.max() <= cap * (1 + 1e-9)
        clipped = values[values >= cap * (1 - 1e-9)].index
        free = values.index.difference(clipped)
        scales = values[free] / raw[free]
        assert scales.max() == pytest.approx(scales.min())
        assert (raw[clipped] * scales.max() >= cap * (1 - 1e-9)).all()
        # What the package calls clipped sits exactly at the cap (a weight at the cap by itself is not clipped).
        clipped_cells = [cell for cell in weights.cells if cell["clipped"]]
        assert all(cell["weight"] == cap for cell in clipped_cells)
        assert weights.clipped == sum(cell["n"] for cell in clipped_cells) <= len(clipped)
        # A cell under the cap at the first normalisation but over it once the others were clipped:
        # only a re-clip catches it.
        first_scale = len(raw) / raw.sum()
        reclipped += any(cell["kc_weight"] * first_scale <= cap for cell in clipped_cells)
    assert reclipped  # the seeded tables include that case


def test_without_protected_attribute_every_weight_is_one():
    attributes = [Attribute("lighting", "condition", ("day", "night"))]
    items = [Item(f"i{n}", "ab"[n % 2], {"lighting": "day"}) for n in range(9)]
    weights = reweighing(Dataset(items, attributes, "tag"))
    assert set(weights.by_item.values()) == {1.0} and len(weights.by_item) == 9
    assert weights.cells == [] and weights.clipped == 0 and weights.grouped == 0
    assert weights.effective_sample_size == 9 and weights.ratio == 1.0
    assert weights.association_before is None and weights.association_after is None


def test_a_cap_below_one_is_refused():
    with pytest.raises(AuditError, match="--max-weight must be at least 1"):
        reweighing(rare_cell_dataset(), max_weight=0.5)
    assert max_weight_option("10") == 10.0
    for text in ("0.5", "x", "nan", "inf"):
        with pytest.raises(Exception):
            max_weight_option(text)


def test_weights_csv_has_item_and_weight_with_six_decimals_escaped(tmp_path):
    weights = Weights({"=cmd|' /C calc'!A0": 1.0, "b.jpg": 2.5 / 3}, [], 0, 10.0, 2.0, 1.2, None, None)
    path = tmp_path / "out" / "weights.csv"
    write_weights(weights, path)
    rows = list(csv.reader(path.open()))
    assert rows == [["item", "weight"], ["'=cmd|' /C calc'!A0", "1.000000"], ["b.jpg", "0.833333"]]


def test_the_summary_rounds_for_people_and_the_json_keeps_full_precision(planted_dataset):
    weights = reweighing(planted_dataset)
    text = "\n".join(describe(weights))
    assert f"{weights.association_before:.3g} before" in text
    assert f"effective sample size {weights.effective_sample_size:.3g} of {len(planted_dataset.items)} items" in text
    assert repr(weights.association_before) not in text  # no unrounded float
    document = json.loads(json.dumps(weights_json(weights), allow_nan=False))
    assert document["association_before"] == weights.association_before
    assert document["effective_sample_size"] == weights.effective_sample_size
    assert document["clipped"] == 0 and len(document["cells"]) == 12


def test_the_summary_says_when_there_is_no_protected_attribute_at_all():
    # Before, it said that no item had a value for every protected attribute, as if there were some.
    items = [Item(f"i{n}", "ab"[n % 2], {"lighting": "day", "group": "unlabeled"}) for n in range(9)]
    conditions_only = reweighing(Dataset(items, [Attribute("lighting", "condition", ("day", "night"))], "tag"))
    (line,) = describe(conditions_only)
    assert "there is no protected attribute" in line and "no item has a value" not in line
    assert weights_json(conditions_only)["protected"] == []
    # With a protected attribute nobody audited, the old sentence is the right one.
    unaudited = reweighing(Dataset(items, [Attribute("group", "protected", ("x", "y"))], "tag"))
    assert describe(unaudited) == ["weights: every item 1 (no item has a value for every protected attribute)"]
    assert weights_json(unaudited)["protected"] == ["group"]
