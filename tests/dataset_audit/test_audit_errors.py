"""`errors` from the command line: the planted difference is flagged and nothing else, the options, the outputs.

The statistics themselves are recomputed in test_audit_errors_stats.py; here
the command is run on built exports and its JSON, console, errors.html and
weights.csv are checked against what the exports hold.
"""

import contextlib
import csv
import html
import io
import json
import math
import re

import pytest
from support.audit_exports import Image, images_xml, planted, planted_predictions, write_planted
from statsmodels.stats.contingency_tables import Table
from statsmodels.stats.multitest import multipletests

from audit.cli import main
from audit.dataset import PROTECTED, Attribute, Dataset, Item
from audit.errors import AuditError
from audit.model_errors import Scored, analyse
from audit.stats import wilson_interval


def run_cli(argv: list[str]) -> tuple[int, str]:
    """The exit status and standard output of the command line."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    return code, out.getvalue()


@pytest.fixture(scope="module")
def planted_files(tmp_path_factory):
    return write_planted(tmp_path_factory.mktemp("planted"))


def errors_argv(files, out, *extra) -> list[str]:
    return ["errors", str(files["export"]), "--schema", str(files["schema"]), "--out", str(out), *extra]


@pytest.fixture(scope="module")
def result(planted_files, tmp_path_factory):
    out = tmp_path_factory.mktemp("errors")
    argv = errors_argv(planted_files, out, "--predictions", str(planted_files["predictions"]))
    code, stdout = run_cli([*argv, "--json", str(out / "errors.json")])
    assert code == 0
    return out, json.loads((out / "errors.json").read_text()), stdout


def by_name(document: dict) -> dict:
    return {entry["name"]: entry for entry in document["attributes"]}


def test_only_the_planted_difference_is_flagged(result):
    _, document, _ = result
    attributes = by_name(document)
    assert [name for name, entry in attributes.items() if entry["flagged"]] == ["apparent_gender"]
    assert document["tests"] == 3 and document["alpha"] == 0.01
    gender = attributes["apparent_gender"]
    groups = gender["groups"]
    assert groups["female"]["rate"] == pytest.approx(0.30, abs=0.01)
    assert groups["male"]["rate"] < 0.08 and groups["unclear"]["rate"] < 0.08
    rates = {value: group["rate"] for value, group in groups.items()}
    assert gender["highest"] == "female" and gender["lowest"] == min(rates, key=rates.get)
    assert gender["difference"] == pytest.approx(max(rates.values()) - min(rates.values()))
    assert gender["ratio"] == pytest.approx(max(rates.values()) / min(rates.values()))
    assert gender["method"] == "chi-square" and gender["q_value"] < 0.01
    for entry in attributes.values():
        assert "disparity" not in entry
        assert entry["q_value"] >= entry["p_value"] * (1 - 1e-12)
        assert entry["flagged"] == (entry["q_value"] < 0.01)


def test_groups_count_only_audited_items(result):
    _, document, _ = result
    groups = {entry["name"]: entry["groups"] for entry in document["attributes"]}
    assert sum(group["n"] for group in groups["lighting"].values()) == 540  # the 27 + 30 unlabeled are left out
    assert sum(group["n"] for group in groups["apparent_gender"].values()) == 567
    for group in groups["weather"].values():
        assert (group["low"], group["high"]) == pytest.approx(wilson_interval(group["errors"], group["n"]))


def test_json_keeps_full_precision(result):
    _, document, _ = result
    for entry in document["attributes"]:
        table = [[group["errors"], group["n"] - group["errors"]] for group in entry["groups"].values()]
        expected = Table(table).test_nominal_association()
        assert entry["p_value"] == pytest.approx(expected.pvalue, rel=1e-9)
        assert entry["chi2"] == pytest.approx(expected.statistic, rel=1e-9)
    assert by_name(document)["apparent_gender"]["p_value"] < 1e-6  # written as a number, not `< 0.001`


def test_wilson_interval_matches_the_textbook_values():
    # 81 of 263 (Wilson 1927 / Newcombe 1998, example 1): 0.2553 to 0.3662.
    low, high = wilson_interval(81, 263)
    assert low == pytest.approx(0.2553, abs=5e-4) and high == pytest.approx(0.3662, abs=5e-4)
    assert wilson_interval(0, 0) == (None, None)
    low, high = wilson_interval(0, 20)
    assert low == 0.0 and high == pytest.approx(0.1611, abs=5e-4)


# A number in scientific notation, as Python writes very small or very large floats.
SCIENTIFIC = r"\d[eE][-+]?\d"


def significant_digits(number: str) -> int:
    """The significant digits of a decimal number as written."""
    return len(number.replace(".", "").lstrip("0"))


def test_console_numbers_are_rounded(result):
    _, _, stdout = result
    assert "apparent_gender (protected): female 30.2% vs unclear 3.7%" in stdout
    assert "p < 0.001, q < 0.001: FLAGGED" in stdout
    decimals = re.findall(r"\d+\.\d+", stdout)
    assert decimals and all(significant_digits(number) <= 3 for number in decimals), decimals
    assert not re.search(SCIENTIFIC, stdout)


def write_export(directory, images, labels, attributes, protected=None) -> list[str]:
    """An annotations.xml of `images`, and the schema arguments that make `protected` protected."""
    export = directory / "annotations.xml"
    export.write_bytes(images_xml(images, labels=labels, attributes=attributes))
    arguments = [str(export)]
    if protected:
        schema = directory / "schema.yaml"
        schema.write_text(json.dumps({"projects": [{"name": "p", "protected": protected}]}))
        arguments += ["--schema", str(schema)]
    return arguments


def write_predictions(path, rows, header=("item", "predicted")) -> str:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def test_difference_is_always_there_and_the_ratio_is_null_when_the_lowest_rate_is_zero(tmp_path):
    # Group a: 0 errors of 20; group b: 10 of 20. Attribute h: every item `x`, a single group, nothing to test.
    images = [Image(f"{g}{n}.jpg", tags=[("cat", {"g": g, "h": "x"})]) for g in "ab" for n in range(20)]
    export = write_export(tmp_path, images, ["cat", "dog"], {"g": ["a", "b"], "h": ["x", "y"]})
    rows = [(f"{g}{n}.jpg", "dog" if g == "b" and n < 10 else "cat") for g in "ab" for n in range(20)]
    out = tmp_path / "out"
    argv = ["errors", *export, "--predictions", write_predictions(tmp_path / "p.csv", rows), "--out", str(out)]
    code, stdout = run_cli([*argv, "--json", str(out / "errors.json")])
    assert code == 0
    attributes = by_name(json.loads((out / "errors.json").read_text()))
    assert attributes["g"]["difference"] == 0.5 and attributes["g"]["ratio"] is None and attributes["g"]["flagged"]
    assert "g (condition): b 50% vs a 0%: difference 50 percentage points, ratio n/a;" in stdout
    assert "FLAGGED" in stdout and "disparity" not in stdout
    alone = attributes["h"]
    assert alone["difference"] is None and alone["p_value"] is None and not alone["flagged"]
    assert alone["untested"] == "fewer than two groups have items" and "h (condition): not tested" in stdout
    assert json.loads((out / "errors.json").read_text())["tests"] == 1


@pytest.mark.parametrize("wrong_images, flagged", [({0, 1, 2, 5, 6}, False), ({0, 1, 2, 3, 4}, True)])
def test_objects_of_one_image_are_not_counted_as_independent(tmp_path, wrong_images, flagged):
    # --per-object: 10 images of 30 boxes, the first 5 at night, and 5 images wrong as a whole. As 300 objects,
    # 3 wrong night images and 2 wrong day images (90/150 against 60/150) would be p < 0.001; as 10 images they are
    # nothing. With all 5 night images wrong, the exact p is 2/252 = 0.008.
    images = [Image(f"img{i}.jpg", shapes=[("car", {"light": "night" if i < 5 else "day"})] * 30) for i in range(10)]
    export = write_export(tmp_path, images, ["car", "bus"], {"light": ["day", "night"]})
    rows = [(f"img{i}.jpg#{n}", "bus" if i in wrong_images else "car") for i in range(10) for n in range(30)]
    out = tmp_path / "out"
    predictions = write_predictions(tmp_path / "p.csv", rows)
    argv = ["errors", *export, "--per-object", "--predictions", predictions, "--out", str(out)]
    code, stdout = run_cli([*argv, "--alpha", "0.05", "--json", str(out / "e.json")])
    assert code == 0
    document = json.loads((out / "e.json").read_text())
    assert document["units"] == "objects in 10 images"
    light = by_name(document)["light"]
    assert light["method"] == "cluster permutation" and light["clusters"] == 10
    assert light["permutations"] == document["permutations"] >= 1999
    assert light["flagged"] == flagged
    if not flagged:
        assert light["p_value"] > 0.3
    assert "(objects in 10 images)" in stdout


def test_intersectional_groups_are_tested_like_one_more_attribute(planted_files, tmp_path):
    out = tmp_path / "out"
    argv = errors_argv(planted_files, out, "--predictions", str(planted_files["predictions"]), "--json", str(out / "e.json"))
    code, stdout = run_cli([*argv, "--intersect", "apparent_gender, lighting"])
    assert code == 0
    document = json.loads((out / "e.json").read_text())
    assert document["tests"] == 4
    entry = by_name(document)["apparent_gender × lighting"]
    assert entry["kind"] == "intersection" and entry["attributes"] == ["apparent_gender", "lighting"]
    # Counted from the built images: items missing either value are in no group.
    wrong = {item: predicted for item, predicted in planted_predictions(planted())}
    expected: dict[str, list[int]] = {}
    for image in planted():
        if len(image.tags) != 1:
            continue
        label, values = image.tags[0]
        if "unlabeled" in (values["apparent_gender"], values["lighting"]):
            continue
        counts = expected.setdefault(f"{values['apparent_gender']} × {values['lighting']}", [0, 0])
        counts[0] += 1
        counts[1] += wrong[image.name] != label
    assert {name: [group["n"], group["errors"]] for name, group in entry["groups"].items()} == expected
    assert entry["groups"]["female × night"]["values"] == {"apparent_gender": "female", "lighting": "night"}
    assert entry["flagged"] and "apparent_gender × lighting (intersection):" in stdout
    p_values = [attribute["p_value"] for attribute in document["attributes"]]
    assert [attribute["q_value"] for attribute in document["attributes"]] == pytest.approx(
        list(multipletests(p_values, method="fdr_bh")[1]), rel=1e-12
    )


@pytest.mark.parametrize(
    "intersect, message",
    [
        (["apparent_gender"], "give two or more attribute names"),
        (["apparent_gender,"], "give two or more attribute names"),
        (["apparent_gender,skin_tone"], "'skin_tone' is not an audited attribute (audited: apparent_gender, lighting, "),
        (["lighting,lighting"], "an attribute is named twice"),
        (["lighting,weather", "weather,lighting"], "is given twice"),
    ],
)
def test_bad_intersections_are_clear_errors(planted_files, tmp_path, capsys, intersect, message):
    argv = errors_argv(planted_files, tmp_path / "out", "--predictions", str(planted_files["predictions"]))
    for spec in intersect:
        argv += ["--intersect", spec]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: --intersect ") and message in err[-1]


def test_intersection_groups_keep_their_values_even_when_a_value_holds_the_separator():
    attributes = [Attribute("a", PROTECTED, ("x × y", "x")), Attribute("b", PROTECTED, ("z", "y × z"))]
    items = [Item("i1", "cat", {"a": "x × y", "b": "z"}), Item("i2", "cat", {"a": "x", "b": "z"})]
    scored = [Scored(item, "cat", False) for item in items]
    # `x × y` with `z` and `x` with `y × z` would both be called `x × y × z`.
    with pytest.raises(AuditError, match="two groups the same name"):
        analyse(Dataset(items, attributes, "tag"), scored, 0.01, ["a,b"])
    attributes[1] = Attribute("b", PROTECTED, ("z",))
    result = analyse(Dataset(items, attributes, "tag"), scored, 0.01, ["a,b"]).results[-1]
    assert result.groups["x × y × z"].values == {"a": "x × y", "b": "z"} and result.groups["x × y × z"].n == 1


def scored_rows() -> list[tuple[str, str, str]]:
    """The planted predictions, each with a score from 0.55 to 0.95."""
    rows = []
    for index, (item, predicted) in enumerate(planted_predictions(planted())):
        rows.append((item, predicted, f"{0.55 + (index % 9) * 0.05:.2f}"))
    return rows


def test_scores_give_the_calibration_per_group_and_overall(planted_files, tmp_path):
    rows = scored_rows()
    predictions = write_predictions(tmp_path / "scored.csv", rows, ("item", "predicted", "score"))
    out = tmp_path / "out"
    code, stdout = run_cli(errors_argv(planted_files, out, "--predictions", predictions, "--json", str(out / "e.json")))
    assert code == 0
    document = json.loads((out / "e.json").read_text())
    labels = {image.name: image.tags[0][0] for image in planted() if len(image.tags) == 1}
    gender = {image.name: image.tags[0][1]["apparent_gender"] for image in planted() if len(image.tags) == 1}

    def ece(selected):
        """Σ (n_b / n) |accuracy_b − mean score_b| over 10 bins; the scores have two decimals, so 0.6 is in [0.6, 0.7)."""
        bins: dict[int, list] = {}
        for item, predicted, score in selected:
            index = min(9, math.floor(float(score) * 10 + 1e-9))
            bins.setdefault(index, []).append((float(score), predicted == labels[item]))
        total = 0.0
        for members in bins.values():
            accuracy = sum(right for _, right in members) / len(members)
            confidence = sum(score for score, _ in members) / len(members)
            total += len(members) / len(selected) * abs(accuracy - confidence)
        return total

    assert document["calibration"]["ece"] == pytest.approx(ece(rows), rel=1e-9)
    groups = by_name(document)["apparent_gender"]["groups"]
    for value in ("female", "male", "unclear"):
        expected = ece([row for row in rows if gender[row[0]] == value])
        assert groups[value]["calibration"]["ece"] == pytest.approx(expected, rel=1e-9)
    assert "expected calibration error (10 bins): " in stdout and ", ECE " in stdout
    assert "ECE" in (out / "errors.html").read_text()


@pytest.mark.parametrize(
    "score, message",
    [
        ("high", "line 3: the score 'high' is not a number"),
        ("1.5", "line 3: the score '1.5' is not a probability between 0 and 1"),
        ("-0.1", "line 3: the score '-0.1' is not a probability between 0 and 1"),
        ("nan", "line 3: the score 'nan' is not a probability between 0 and 1"),
        ("", "line 3 has no score"),
    ],
)
def test_bad_scores_are_errors_naming_the_line(planted_files, tmp_path, capsys, score, message):
    rows = scored_rows()[:3]
    rows[1] = (rows[1][0], rows[1][1], score)
    predictions = write_predictions(tmp_path / "scored.csv", rows, ("item", "predicted", "score"))
    assert main(errors_argv(planted_files, tmp_path / "out", "--predictions", predictions)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1]


def page_text(page: str) -> str:
    """The visible text of a page: styles and tags removed, entities decoded, spaces collapsed."""
    text = html.unescape(re.sub(r"<[^>]+>", " ", re.sub(r"<style>.*?</style>", "", page, flags=re.S)))
    return " ".join(text.split())


def test_the_html_page_is_self_contained_and_rounded(result):
    out, document, _ = result
    page = (out / "errors.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert not re.search(r"(src|href)=['\"]?(https?:|//)", page)
    text = page_text(page)
    decimals = re.findall(r"\d+\.\d+", text)
    assert decimals and all(significant_digits(number) <= 3 for number in decimals), decimals
    assert "< 0.001" in text and not re.search(SCIENTIFIC, text)
    # Every attribute has its section, with the per-class rates and their counts.
    for entry in document["attributes"]:
        assert f"{entry['name']} ({entry['kind']})" in text
    female_car = by_name(document)["apparent_gender"]["groups"]["female"]["classes"]["car"]
    assert f"car female {female_car['false_negatives']} of {female_car['positives']}" in text
    assert "false-positive rate" in text and "Loss weights" in text


def test_the_html_page_escapes_what_the_exports_say(tmp_path):
    label, value = "<script>alert(1)</script>", "<img src=x onerror=alert(2)>"
    images = [
        Image(f"a&b-{n}.jpg", tags=[(label if n % 2 else "cat", {"tone": value if n % 3 else "plain"})]) for n in range(30)
    ]
    export = write_export(tmp_path, images, [label, "cat"], {"tone": [value, "plain"]})
    rows = [(image.name, "cat") for image in images]
    out = tmp_path / "out"
    predictions = write_predictions(tmp_path / "p.csv", rows)
    code, _ = run_cli(["errors", *export, "--predictions", predictions, "--out", str(out)])
    assert code == 0
    page = (out / "errors.html").read_text()
    assert "<script" not in page and "<img" not in page
    assert html.escape(label) in page and html.escape(value) in page


def test_weights_are_written_reported_and_clipped(tmp_path):
    # car is mostly group a, pedestrian mostly group b: label and protected group are associated (V = 0.6).
    cells = {("car", "a"): 40, ("car", "b"): 10, ("pedestrian", "a"): 10, ("pedestrian", "b"): 40}
    images = [
        Image(f"{label}-{group}-{n}.jpg", tags=[(label, {"group": group})])
        for (label, group), count in cells.items()
        for n in range(count)
    ]
    export = write_export(tmp_path, images, ["car", "pedestrian"], {"group": ["a", "b"]}, protected={"group": ["a", "b"]})
    predictions = write_predictions(tmp_path / "p.csv", [(image.name, image.tags[0][0]) for image in images])
    out = tmp_path / "out"
    argv = ["errors", *export, "--predictions", predictions, "--out", str(out)]
    code, stdout = run_cli([*argv, "--json", str(out / "e.json")])
    assert code == 0
    with (out / "weights.csv").open() as file:
        weights = {row["item"]: float(row["weight"]) for row in csv.DictReader(file)}
    assert len(weights) == 100
    # Kamiran–Calders: w = P(label) P(group) / P(label, group) = 0.5 · 0.5 / 0.4 or 0.5 · 0.5 / 0.1.
    assert weights["car-a-0.jpg"] == pytest.approx(0.625) and weights["car-b-0.jpg"] == pytest.approx(2.5)
    summary = json.loads((out / "e.json").read_text())["weights"]
    kish = sum(weights.values()) ** 2 / sum(weight * weight for weight in weights.values())
    assert summary["effective_sample_size"] == pytest.approx(kish, rel=1e-5)
    assert summary["association_before"] == pytest.approx(0.6) and summary["association_after"] == pytest.approx(0, abs=1e-9)
    assert summary["ratio"] == pytest.approx(4.0) and summary["clipped"] == 0 and summary["max_weight"] == 10
    assert f"effective sample size {kish:.3g} of 100 items" in stdout and "largest/smallest weight 4" in stdout
    assert "0.6 before, 0 after weighting" in stdout and "no weight clipped" in stdout
    # --max-weight 2 clips the 20 items of the thin cells.
    clipped_out = tmp_path / "clipped"
    argv = ["errors", *export, "--predictions", predictions, "--out", str(clipped_out), "--max-weight", "2"]
    code, stdout = run_cli([*argv, "--json", str(clipped_out / "e.json")])
    assert code == 0
    with (clipped_out / "weights.csv").open() as file:
        clipped = [float(row["weight"]) for row in csv.DictReader(file)]
    assert max(clipped) == pytest.approx(2.0)
    summary = json.loads((clipped_out / "e.json").read_text())["weights"]
    assert summary["clipped"] == 20 and summary["association_after"] > 0
    assert "20 items clipped at --max-weight 2" in stdout


@pytest.mark.parametrize(
    "option, value",
    [
        ("--alpha", "0"),
        ("--alpha", "1"),
        ("--alpha", "x"),
        ("--max-weight", "0.5"),
        ("--max-weight", "inf"),
        ("--max-weight", "x"),
    ],
)
def test_bad_option_values_are_usage_errors(planted_files, tmp_path, capsys, option, value):
    argv = errors_argv(planted_files, tmp_path / "out", "--predictions", str(planted_files["predictions"]), option, value)
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert f"argument {option}" in capsys.readouterr().err


def test_alpha_sets_the_flag(planted_files, tmp_path):
    out = tmp_path / "out"
    argv = errors_argv(planted_files, out, "--predictions", str(planted_files["predictions"]), "--json", str(out / "e.json"))
    assert run_cli([*argv, "--alpha", "0.999"])[0] == 0
    document = json.loads((out / "e.json").read_text())
    assert document["alpha"] == 0.999
    for entry in document["attributes"]:
        assert entry["flagged"] == (entry["q_value"] < 0.999)
    assert by_name(document)["lighting"]["flagged"]  # q = 0.9 passes a threshold of 0.999, and not the default 0.01


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
def test_bad_predictions_are_clear_errors(planted_files, tmp_path, capsys, content, message):
    predictions = tmp_path / "preds.csv"
    predictions.write_text(content)
    code = main(["errors", str(planted_files["export"]), "--predictions", str(predictions), "--out", str(tmp_path / "out")])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1]


def test_the_tests_notes_reach_the_json_the_page_and_the_console(tmp_path):
    # --per-object: 12 night images of 4 boxes and 2 day images of 60: the group goes with the image size, so the
    # permutation test has nothing to exchange, and says so; the errors command used to drop that note.
    images = [Image(f"n{i}.jpg", shapes=[("car", {"light": "night"})] * 4) for i in range(12)]
    images += [Image(f"d{i}.jpg", shapes=[("car", {"light": "day"})] * 60) for i in range(2)]
    export = write_export(tmp_path, images, ["car", "bus"], {"light": ["day", "night"]})
    rows = [(f"n{i}.jpg#{n}", "bus" if n == 0 else "car") for i in range(12) for n in range(4)]
    rows += [(f"d{i}.jpg#{n}", "bus" if n < 5 else "car") for i in range(2) for n in range(60)]
    out = tmp_path / "out"
    argv = ["errors", *export, "--per-object", "--predictions", write_predictions(tmp_path / "p.csv", rows)]
    code, stdout = run_cli([*argv, "--out", str(out), "--json", str(out / "e.json")])
    assert code == 0
    light = by_name(json.loads((out / "e.json").read_text()))["light"]
    assert light["method"] == "cluster permutation" and light["p_value"] == 1.0
    assert any("goes with cluster size" in note for note in light["notes"])
    assert light["design_effect"] >= 1.0
    assert "  note: the value goes with cluster size" in stdout
    page = html.unescape((out / "errors.html").read_text())
    assert "Note: the value goes with cluster size" in page
    # Without a schema there is no protected attribute: the weights say so, not that nobody was audited.
    assert "weights: every item 1 (there is no protected attribute" in stdout
    assert "There is no protected attribute to weigh by" in page
