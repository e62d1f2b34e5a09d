"""`report`: exactly the planted association is flagged, coverage counts unaudited items, the page is self-contained."""

import base64
import json
import re

import pytest
from audit_exports import (
    CAR_NIGHT,
    FULL_PER_LABEL,
    PARTIAL_PER_LABEL,
    UNAUDITED_PER_LABEL,
    Image,
    images_xml,
    write_planted,
    zipped,
)

from audit.cli import main

LABEL_COUNT = 3
ITEMS = LABEL_COUNT * (FULL_PER_LABEL + PARTIAL_PER_LABEL + UNAUDITED_PER_LABEL)


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


def test_only_the_planted_association_is_flagged(report):
    _, document = report
    attributes = by_name(document)
    assert [name for name, entry in attributes.items() if entry["flagged"]] == ["lighting"]
    lighting = attributes["lighting"]
    assert lighting["p_value"] < 1e-10 and 0.35 < lighting["cramers_v"] < 0.45
    # weather and apparent_gender are exactly uniform within every label: no association at all.
    for name in ("weather", "apparent_gender"):
        assert attributes[name]["chi2"] == pytest.approx(0.0, abs=1e-9)
        assert attributes[name]["cramers_v"] == pytest.approx(0.0, abs=1e-9)
        assert attributes[name]["p_value"] == pytest.approx(1.0)


def test_kinds_tables_and_coverage(report):
    _, document = report
    assert document["items"] == ITEMS
    assert document["excluded"] == {"no_tag": 5, "several_tags": 3}
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


def test_thresholds_are_options(planted, tmp_path):
    # With V required above the planted 0.39, nothing is flagged any more.
    assert (
        main(["report", str(planted["export"]), "--schema", str(planted["schema"]), "--out", str(tmp_path), "--min-v", "0.5"])
        == 0
    )
    document = json.loads((tmp_path / "report.json").read_text())
    assert not any(entry["flagged"] for entry in document["attributes"])
    assert document["min_v"] == 0.5


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
    # One label only: there is no association to test.
    images = [Image(f"a{i}.jpg", tags=[("car", {"lighting": "day" if i % 2 else "night"})]) for i in range(10)]
    images.append(Image("b.jpg", tags=[("car", {"lighting": "unlabeled"})]))
    export = tmp_path / "annotations.xml"
    export.write_bytes(images_xml(images, attributes={"lighting": ["day", "night"]}))
    assert main(["report", str(export), "--out", str(tmp_path / "out")]) == 0
    text = (tmp_path / "out" / "report.json").read_text()
    entry = json.loads(text)["attributes"][0]
    assert entry["chi2"] is None and entry["p_value"] is None and entry["cramers_v"] is None
    assert entry["flagged"] is False and entry["coverage"] == 10
    assert "NaN" not in text


def test_association_statistics_are_the_textbook_ones():
    from audit.stats import association

    # 2 × 2: chi² without Yates' correction, V = phi.
    result = association([[180, 20], [100, 100]])
    assert result.chi2 == pytest.approx(76.190, abs=1e-3)
    assert result.cramers_v == pytest.approx(0.4364, abs=1e-4)
    assert result.dof == 1 and result.min_expected == pytest.approx(60.0)
    # Empty rows and columns say nothing and are dropped before the test.
    assert association([[180, 20, 0], [100, 100, 0], [0, 0, 0]]) == result
    # Perfect dependence: V = 1.
    assert association([[50, 0, 0], [0, 50, 0], [0, 0, 50]]).cramers_v == pytest.approx(1.0)
