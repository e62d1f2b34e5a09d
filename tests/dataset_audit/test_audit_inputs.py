"""Inputs the audit used to get wrong (issue 16): shapes of every kind and empty labels, attributes
without `unlabeled` (checkboxes above all), schema attributes absent from the export, and coverage
counted over the labels that carry an attribute."""

import pytest
import yaml
from support.audit_exports import Image, coco_json, coco_video_json, images_xml, track, video_xml

from audit.cli import main
from audit.dataset import build_dataset
from audit.errors import AuditError
from audit.exports import load_export
from audit.schema import load_schema

LIGHTING = {"lighting": ["day", "night"]}
DAY, NIGHT, UNLABELED = {"lighting": "day"}, {"lighting": "night"}, {"lighting": "unlabeled"}


def write(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    return str(path)


def schema_file(tmp_path, conditions, protected=None, labels=("car", "pedestrian", "bicycle")):
    path = tmp_path / "schema.yaml"
    project = {"name": "street", "labels": list(labels), "conditions": conditions, "protected": protected or {}}
    path.write_text(yaml.safe_dump({"projects": [project]}))
    return str(path)


def dataset_of(paths, per_object=False, schema=None):
    return build_dataset([load_export(path) for path in paths], per_object, load_schema(schema) if schema else None)


# --- shapes of every kind, empty labels -------------------------------------------------------------


def datumaro_like(tmp_path):
    """An image with a polyline, a polygon and a box with an empty label, and an empty-label tag, as Datumaro's
    own CVAT test assets have them."""
    images = [
        Image(
            "img0.jpg",
            tags=[("car", DAY), ("", NIGHT)],
            shapes=[("car", DAY), ("", NIGHT, "polyline"), ("pedestrian", NIGHT, "polyline")],
        ),
        Image("img1.jpg", tags=[("pedestrian", NIGHT)], shapes=[("", DAY, "polygon"), ("bicycle", DAY, "points")]),
    ]
    return write(tmp_path, "annotations.xml", images_xml(images, attributes=LIGHTING))


def test_a_polyline_is_an_object_and_an_empty_label_is_skipped_and_counted(tmp_path):
    path = datumaro_like(tmp_path)
    objects = dataset_of([path], per_object=True)
    assert {item.id: item.label for item in objects.items} == {
        "img0.jpg#0": "car",
        "img0.jpg#1": "pedestrian",
        "img1.jpg#0": "bicycle",
    }
    assert objects.excluded["empty_label"] == 2
    assert "2 objects with an empty label skipped" in objects.notes
    # In tag mode img0.jpg keeps its one real tag: the empty-label tag is skipped, not a second tag.
    tags = dataset_of([path])
    assert {item.id: item.label for item in tags.items} == {"img0.jpg": "car", "img1.jpg": "pedestrian"}
    assert tags.excluded == {"no_tag": 0, "several_tags": 0, "empty_label": 1}


def test_a_track_with_an_empty_label_is_skipped_and_counted(tmp_path):
    tracks = [track(0, "", [DAY] * 3), track(1, "car", [NIGHT] * 3), {"id": 2, "label": "car", "boxes": [(0, False, DAY)]}]
    # Tracks of polylines, read like tracks of boxes.
    xml = video_xml(tracks, attributes=LIGHTING).replace(b"<box ", b"<polyline ").replace(b"</box>", b"</polyline>")
    dataset = dataset_of([write(tmp_path, "video.xml", xml)], per_object=True)
    assert [item.id for item in dataset.items] == ["task1/clip.mp4#track1", "task1/clip.mp4#track2"]
    assert dataset.excluded["empty_label"] == 1


def test_a_coco_category_with_an_empty_name_is_skipped_and_counted(tmp_path):
    images = [Image("a.jpg", shapes=[("car", DAY), ("", DAY)])]
    path = write(tmp_path, "instances_default.json", coco_json(images, labels=["car", ""]))
    dataset = dataset_of([path], per_object=True)
    assert [item.id for item in dataset.items] == ["a.jpg#0"]
    assert dataset.excluded["empty_label"] == 1


def test_the_command_line_reads_the_file_instead_of_aborting(tmp_path):
    out = tmp_path / "out"
    assert main(["report", datumaro_like(tmp_path), "--per-object", "--out", str(out)]) == 0
    assert (out / "report.json").exists()


# --- attributes without `unlabeled` -------------------------------------------------------------------

KINDS = {
    "lighting": ("radio", ["unlabeled", "day", "night"]),
    "crowded": ("checkbox", ["false"]),
    "weather": ("select", ["clear", "rain"]),
    "note": ("text", ["none"]),
    "count": ("number", ["0", "10", "1"]),
}
ATTRIBUTES = {name: [v for v in values if v != "unlabeled"] for name, (_, values) in KINDS.items()}


def mixed_kinds(tmp_path):
    values = {"lighting": "day", "crowded": "false", "weather": "rain", "note": "none", "count": "3"}
    images = [Image("a.jpg", tags=[("car", values)]), Image("b.jpg", tags=[("car", dict(values, crowded="true"))])]
    return write(tmp_path, "annotations.xml", images_xml(images, attributes=ATTRIBUTES, declarations=KINDS))


def test_without_a_schema_attributes_without_unlabeled_are_left_out_with_a_note_naming_them(tmp_path):
    dataset = dataset_of([mixed_kinds(tmp_path)])
    assert [attribute.name for attribute in dataset.attributes] == ["lighting"]
    # The checkbox's `false` is never taken for an audited value: it is no attribute of the audit at all.
    assert all(set(item.values) == {"lighting"} for item in dataset.items)
    (note,) = [note for note in dataset.notes if note.startswith("left out")]
    for named in ("crowded (checkbox)", "weather (select)", "note (text)", "count (number)"):
        assert named in note
    assert "A checkbox has no `unlabeled` and cannot be audited that way" in note


def test_the_note_is_printed_by_the_command(tmp_path, capsys):
    assert main(["report", mixed_kinds(tmp_path), "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "note: left out of the audit" in err and "crowded (checkbox)" in err


def test_coco_attributes_seen_without_unlabeled_are_left_out_but_cvat_s_own_are_not_named(tmp_path):
    images = [Image("a.jpg", shapes=[("car", {"lighting": "unlabeled", "crowded": True, "weather": "rain"})])]
    dataset = dataset_of([write(tmp_path, "coco.json", coco_json(images))], per_object=True)
    assert [attribute.name for attribute in dataset.attributes] == ["lighting"]
    (note,) = [note for note in dataset.notes if note.startswith("left out")]
    assert "crowded (checkbox)" in note and "weather" in note
    assert "occluded" not in note and "rotation" not in note


def test_a_schema_attribute_without_unlabeled_in_the_export_is_an_error_with_the_hint(tmp_path):
    schema = schema_file(tmp_path, {"lighting": ["day", "night"], "weather": ["clear", "rain"]})
    with pytest.raises(AuditError) as raised:
        dataset_of([mixed_kinds(tmp_path)], schema=schema)
    message = str(raised.value)
    assert "the schema's attribute 'weather' has no `unlabeled` value in" in message
    assert "(its values: clear, rain)" in message and "add `unlabeled` as its first value (the default)" in message
    assert "'lighting'" not in message


def test_a_schema_checkbox_is_an_error_saying_it_cannot_be_audited(tmp_path):
    schema = schema_file(tmp_path, {"lighting": ["day", "night"]}, protected={"crowded": ["true", "false"]})
    with pytest.raises(AuditError, match=r"'crowded' is a checkbox .*has no `unlabeled` value.*cannot be audited that way"):
        dataset_of([mixed_kinds(tmp_path)], schema=schema)
    # The same from COCO, where a checkbox shows as JSON booleans.
    images = [Image("a.jpg", shapes=[("car", {"lighting": "day", "crowded": False})])]
    coco = write(tmp_path, "coco.json", coco_json(images))
    with pytest.raises(AuditError, match=r"'crowded' is a checkbox"):
        dataset_of([coco], per_object=True, schema=schema)


def test_the_schema_errors_are_one_line_naming_the_attribute(tmp_path, capsys):
    schema = schema_file(tmp_path, {"weather": ["clear", "rain"]})
    assert main(["report", mixed_kinds(tmp_path), "--schema", schema, "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: the schema's attribute 'weather' has no `unlabeled` value") and err.count("\n") == 1


# --- schema attributes absent from the export ------------------------------------------------------------


def test_a_schema_attribute_absent_from_an_export_is_an_error_naming_it_and_the_export(tmp_path):
    declared = write(tmp_path, "a.xml", images_xml([Image("a.jpg", tags=[("car", DAY)])], attributes=LIGHTING))
    other = images_xml([Image("b.jpg", tags=[("car", {"weather": "rain"})])], attributes={"weather": ["clear", "rain"]})
    lacking = write(tmp_path, "b.xml", other)
    schema = schema_file(tmp_path, {"lighting": ["day", "night"]})
    assert len(dataset_of([declared], schema=schema).items) == 1
    with pytest.raises(AuditError) as raised:
        dataset_of([declared, lacking], schema=schema)
    message = str(raised.value)
    assert message.startswith(f"the schema's attribute 'lighting' is not in {lacking} (neither declared in its meta")
    assert f"{declared}" not in message


def test_a_schema_attribute_never_seen_in_coco_is_an_error(tmp_path):
    schema = schema_file(tmp_path, {"lighting": ["day", "night"]}, protected={"apparent_gender": ["female", "male"]})
    images = [Image("a.jpg", shapes=[("car", {"lighting": "day"})])]
    path = write(tmp_path, "coco.json", coco_json(images))
    with pytest.raises(AuditError, match=r"^the schema's attribute 'apparent_gender' is not in .*coco\.json"):
        dataset_of([path], per_object=True, schema=schema)
    # Seen on a track's frames only (not on its majority): present.
    tracks = [track(0, "car", [{"lighting": "day", "apparent_gender": "female"}] * 2)]
    video = write(tmp_path, "video.json", coco_video_json(tracks, 3))
    assert [item.values for item in dataset_of([video], per_object=True, schema=schema).items] == [
        {"lighting": "day", "apparent_gender": "female"}
    ]


# --- coverage per label ------------------------------------------------------------------------------------


def partly_carried(tmp_path):
    """`lighting` is declared on car and pedestrian only; bicycle carries no attribute."""
    images = [
        Image("c1.jpg", tags=[("car", DAY)]),
        Image("c2.jpg", tags=[("car", UNLABELED)]),
        Image("p1.jpg", tags=[("pedestrian", NIGHT)]),
        Image("b1.jpg", tags=[("bicycle", {})]),
        Image("b2.jpg", tags=[("bicycle", {})]),
    ]
    carried = {"car": ["lighting"], "pedestrian": ["lighting"], "bicycle": []}
    return write(tmp_path, "annotations.xml", images_xml(images, attributes=LIGHTING, carried=carried))


def test_coverage_counts_only_the_labels_that_carry_the_attribute(tmp_path):
    dataset = dataset_of([partly_carried(tmp_path)])
    (lighting,) = dataset.attributes
    assert lighting.labels == ("car", "pedestrian")
    assert dataset.coverage(lighting) == {"car": (1, 2), "pedestrian": (1, 1)}
    # A bicycle has nothing to audit: it is not held back as "not fully audited".
    assert [item.id for item in dataset.fully_audited()] == ["b1.jpg", "b2.jpg", "c1.jpg", "p1.jpg"]


def test_with_a_schema_coverage_still_follows_the_meta(tmp_path):
    schema = schema_file(tmp_path, {"lighting": ["day", "night"]})
    dataset = dataset_of([partly_carried(tmp_path)], schema=schema)
    assert dataset.attributes[0].labels == ("car", "pedestrian")
    assert dataset.coverage(dataset.attributes[0]) == {"car": (1, 2), "pedestrian": (1, 1)}


def test_in_coco_the_labels_that_carry_an_attribute_are_those_it_is_seen_on(tmp_path):
    images = [
        Image("a.jpg", shapes=[("car", DAY), ("car", UNLABELED), ("pedestrian", {})]),
        Image("b.jpg", shapes=[("bicycle", NIGHT)]),
    ]
    dataset = dataset_of([write(tmp_path, "coco.json", coco_json(images))], per_object=True)
    (lighting,) = dataset.attributes
    assert lighting.labels == ("bicycle", "car")
    assert dataset.coverage(lighting) == {"bicycle": (1, 1), "car": (1, 2)}
