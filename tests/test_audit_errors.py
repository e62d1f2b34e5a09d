"""`errors`: the planted disparity of the protected attribute is flagged and nothing else; weights average 1."""

import csv
import json

import pytest
from audit_exports import write_planted

from audit.cli import main
from audit.dataset import PROTECTED, Attribute, Dataset, Item
from audit.model_errors import attribute_errors, group_weights
from audit.stats import wilson_interval


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return write_planted(tmp_path_factory.mktemp("planted"))


@pytest.fixture(scope="module")
def result(planted, tmp_path_factory):
    out = tmp_path_factory.mktemp("errors")
    code = main(
        [
            "errors",
            str(planted["export"]),
            "--schema",
            str(planted["schema"]),
            "--predictions",
            str(planted["predictions"]),
            "--out",
            str(out),
            "--json",
            str(out / "errors.json"),
        ]
    )
    assert code == 0
    return out, json.loads((out / "errors.json").read_text())


def test_only_the_planted_disparity_is_flagged(result):
    _, document = result
    attributes = {entry["name"]: entry for entry in document["attributes"]}
    assert [name for name, entry in attributes.items() if entry["flagged"]] == ["apparent_gender"]
    groups = attributes["apparent_gender"]["groups"]
    assert groups["female"]["rate"] == pytest.approx(0.30, abs=0.01)
    assert groups["male"]["rate"] < 0.08 and groups["unclear"]["rate"] < 0.08
    assert groups["female"]["low"] > max(groups["male"]["high"], groups["unclear"]["high"])
    highest = max(group["rate"] for group in groups.values())
    lowest = min(group["rate"] for group in groups.values())
    assert attributes["apparent_gender"]["disparity"] == pytest.approx(highest / lowest)


def test_groups_count_only_audited_items(result):
    _, document = result
    groups = {entry["name"]: entry["groups"] for entry in document["attributes"]}
    assert sum(group["n"] for group in groups["lighting"].values()) == 540  # the 27 + 30 unlabeled are left out
    assert sum(group["n"] for group in groups["apparent_gender"].values()) == 567
    for group in groups["weather"].values():
        assert (group["low"], group["high"]) == pytest.approx(wilson_interval(group["errors"], group["n"]))


def test_wilson_interval_matches_the_textbook_values():
    # 81 of 263 (Wilson 1927 / Newcombe 1998, example 1): 0.2553 to 0.3662.
    low, high = wilson_interval(81, 263)
    assert low == pytest.approx(0.2553, abs=5e-4) and high == pytest.approx(0.3662, abs=5e-4)
    assert wilson_interval(0, 0) == (None, None)
    low, high = wilson_interval(0, 20)
    assert low == 0.0 and high == pytest.approx(0.1611, abs=5e-4)


def test_disparity_is_null_when_the_lowest_rate_is_zero_or_a_group_is_alone():
    attribute = Attribute("g", PROTECTED, ("a", "b", "c"))
    items = [Item(f"a{n}", "cat", {"g": "a"}) for n in range(20)] + [Item(f"b{n}", "cat", {"g": "b"}) for n in range(20)]
    perfect_on_a = [(item, item.values["g"] == "b" and int(item.id[1:]) < 10) for item in items]
    result = attribute_errors(attribute, perfect_on_a)
    assert result.disparity is None
    assert result.groups["c"].n == 0 and result.groups["c"].rate is None and result.groups["c"].low is None
    assert result.flagged  # 0/20 against 10/20: the intervals do not overlap
    alone = attribute_errors(attribute, [(item, True) for item in items if item.values["g"] == "a"])
    assert alone.disparity is None and not alone.flagged


def test_weights_are_inverse_group_frequency_with_mean_one(result):
    out, _ = result
    with (out / "weights.csv").open() as file:
        rows = list(csv.DictReader(file))
    weights = {row["item"]: float(row["weight"]) for row in rows}
    assert len(weights) == 597
    assert sum(weights.values()) / len(weights) == pytest.approx(1.0, abs=1e-5)
    # The 30 fully unaudited images belong to no group and keep weight 1.
    assert {weights[item] for item in weights if "unaudited" in item} == {1.0}


def test_weights_give_every_group_the_same_total():
    attributes = [Attribute("g", PROTECTED, ("a", "b")), Attribute("light", "condition", ("day", "night"))]
    items = [Item(f"a{n}", "cat", {"g": "a", "light": "day"}) for n in range(30)]
    items += [Item(f"b{n}", "cat", {"g": "b", "light": "day"}) for n in range(10)]
    items += [Item("u", "cat", {"g": "unlabeled", "light": "day"})]
    weights = group_weights(Dataset(items, attributes, "tag"))
    assert weights["a0"] == pytest.approx(40 / (2 * 30)) and weights["b0"] == pytest.approx(40 / (2 * 10))
    assert weights["u"] == 1.0
    assert sum(weights[f"a{n}"] for n in range(30)) == pytest.approx(sum(weights[f"b{n}"] for n in range(10)))
    assert sum(weights.values()) / len(weights) == pytest.approx(1.0)
    # No protected attribute: nothing to re-weight.
    assert set(group_weights(Dataset(items, attributes[1:], "tag")).values()) == {1.0}


@pytest.mark.parametrize(
    "content, message",
    [
        ("id,prediction\na.jpg,car\n", "expected the columns item,predicted"),
        ("item,predicted\ncar/full-000.jpg,car\ncar/full-000.jpg,bicycle\n", "predicted twice"),
        ("item,predicted\ncar/full-000.jpg,\n", "lacks an item or a prediction"),
        ("item,predicted\n", "no prediction"),
        ("item,predicted\nnot-an-item.jpg,car\n", "no prediction names an item"),
    ],
)
def test_bad_predictions_are_clear_errors(planted, tmp_path, capsys, content, message):
    predictions = tmp_path / "preds.csv"
    predictions.write_text(content)
    code = main(["errors", str(planted["export"]), "--predictions", str(predictions), "--out", str(tmp_path / "out")])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1]
