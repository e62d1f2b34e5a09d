"""The audit reads CVAT exports as CVAT writes them, and refuses hostile files with a clear error."""

import json
import zipfile

import pytest

from audit.dataset import build_dataset, require_items
from audit.errors import AuditError
from audit.exports import load_export
from audit.model import FORMAT_COCO, FORMAT_IMAGES, FORMAT_VIDEO
from audit.schema import load_schema
from support.audit_exports import (
    BILLION_LAUGHS,
    LABELS,
    Image,
    coco_json,
    images_xml,
    meta_xml,
    video_xml,
    zipped,
)

LIGHTING = {"lighting": ["day", "night"]}
DAY = {"lighting": "day"}
NIGHT = {"lighting": "night"}


def write(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    return str(path)


def items_of(path, per_object=False, schema=None):
    dataset = build_dataset([load_export(path)], per_object, schema)
    return {item.id: (item.label, item.values) for item in dataset.items}, dataset


# --- CVAT for images 1.1 ------------------------------------------------------


def test_tag_mode_takes_the_one_tag_and_counts_frames_without_or_with_several(tmp_path):
    images = [
        Image("a.jpg", tags=[("car", DAY)], shapes=[("pedestrian", NIGHT)]),
        Image("b.jpg"),
        Image("c.jpg", tags=[("car", DAY), ("bicycle", NIGHT)]),
        Image("d.jpg", tags=[("bicycle", {"lighting": "unlabeled"})]),
    ]
    path = write(tmp_path, "export.zip", zipped({"annotations.xml": images_xml(images, attributes=LIGHTING)}))
    export = load_export(path)
    assert export.format == FORMAT_IMAGES
    items, dataset = items_of(path)
    assert items == {"a.jpg": ("car", {"lighting": "day"}), "d.jpg": ("bicycle", {"lighting": "unlabeled"})}
    assert dataset.excluded == {"no_tag": 1, "several_tags": 1, "empty_label": 0}
    # Without a schema, an attribute whose declared values include `unlabeled` is a condition.
    assert [(a.name, a.kind, a.values) for a in dataset.attributes] == [("lighting", "condition", ("day", "night"))]


def test_per_object_mode_makes_every_shape_an_item_numbered_within_its_image(tmp_path):
    images = [
        Image("a.jpg", tags=[("car", DAY)], shapes=[("pedestrian", NIGHT), ("car", DAY)]),
        Image("b.jpg", shapes=[("bicycle", {"lighting": "unlabeled"})]),
    ]
    path = write(tmp_path, "annotations.xml", images_xml(images, attributes=LIGHTING))
    items, dataset = items_of(path, per_object=True)
    assert items == {
        "a.jpg#0": ("pedestrian", {"lighting": "night"}),
        "a.jpg#1": ("car", {"lighting": "day"}),
        "b.jpg#0": ("bicycle", {"lighting": "unlabeled"}),
    }
    assert dataset.mode == "per-object"


def test_an_attribute_an_item_lacks_counts_as_unlabeled(tmp_path):
    images = [Image("a.jpg", tags=[("car", {})]), Image("b.jpg", tags=[("car", DAY)])]
    path = write(tmp_path, "annotations.xml", images_xml(images, attributes=LIGHTING))
    items, _ = items_of(path)
    assert items["a.jpg"] == ("car", {"lighting": "unlabeled"})


def test_attributes_without_an_unlabeled_value_are_not_audited_without_a_schema(tmp_path):
    xml = images_xml([Image("a.jpg", tags=[("car", {"lighting": "day"})])], attributes=LIGHTING)
    xml = xml.replace(b"<values>unlabeled\nday\nnight</values>", b"<values>day\nnight</values>")
    _, dataset = items_of(write(tmp_path, "annotations.xml", xml))
    assert dataset.attributes == []
    assert any("no attribute to audit" in note for note in dataset.notes)


def test_project_export_tells_apart_images_of_the_same_name_in_two_subsets(tmp_path):
    images = [
        Image("a.jpg", tags=[("car", DAY)], subset="Train", task_id=1),
        Image("a.jpg", tags=[("car", NIGHT)], subset="Validation", task_id=2),
        Image("b.jpg", tags=[("bicycle", DAY)], subset="Train", task_id=1),
    ]
    tasks = [(1, "train", "annotation", None), (2, "val", "annotation", None)]
    path = write(tmp_path, "annotations.xml", images_xml(images, attributes=LIGHTING, tasks=tasks))
    items, _ = items_of(path)
    assert set(items) == {"Train/a.jpg", "Validation/a.jpg", "b.jpg"}
    assert items["Validation/a.jpg"][1] == {"lighting": "night"}


def test_a_video_task_exported_for_images_names_frames_after_the_task_and_video(tmp_path):
    images = [Image("frame_000003", tags=[("car", DAY)], frame_id=3), Image("frame_000004", frame_id=4)]
    xml = images_xml(images, attributes=LIGHTING, mode="interpolation", source="clip.mp4")
    items, dataset = items_of(write(tmp_path, "annotations.xml", xml))
    assert items == {"task1/clip.mp4:3": ("car", {"lighting": "day"})}
    assert dataset.excluded["no_tag"] == 1


def test_a_version_other_than_1_1_is_refused(tmp_path):
    xml = images_xml([Image("a.jpg")]).replace(b"<version>1.1</version>", b"<version>2.0</version>")
    with pytest.raises(AuditError, match="version '2.0' is not supported"):
        load_export(write(tmp_path, "annotations.xml", xml))


def test_an_xml_file_that_is_not_a_cvat_export_is_refused(tmp_path):
    with pytest.raises(AuditError, match="not a CVAT XML export"):
        load_export(write(tmp_path, "other.xml", b"<?xml version='1.0'?><svg></svg>"))
    with pytest.raises(AuditError, match="not well-formed XML"):
        load_export(write(tmp_path, "broken.xml", b"<annotations><image></annotations>"))


# --- CVAT for video 1.1 ---------------------------------------------------------

TRACKS = [
    {"id": 0, "label": "car", "boxes": [(0, False, DAY), (1, False, DAY), (2, False, NIGHT), (3, True, NIGHT)]},
    {"id": 1, "label": "pedestrian", "boxes": [(1, False, {"lighting": "unlabeled"}), (2, True, DAY)]},
]


def test_a_video_track_is_one_item_valued_by_its_visible_frames(tmp_path):
    # Issue 16: a track is one item, not one per frame; the outside frame (3, night) does not vote.
    path = write(tmp_path, "video.zip", zipped({"annotations.xml": video_xml(TRACKS, attributes=LIGHTING)}))
    assert load_export(path).format == FORMAT_VIDEO
    items, dataset = items_of(path, per_object=True)
    assert items == {
        "task1/clip.mp4#track0": ("car", {"lighting": "day"}),
        "task1/clip.mp4#track1": ("pedestrian", {"lighting": "unlabeled"}),
    }
    assert dataset.units == "tracks"


def test_video_frames_need_tags_and_cvat_for_video_writes_none(tmp_path):
    path = write(tmp_path, "video.zip", zipped({"annotations.xml": video_xml(TRACKS, attributes=LIGHTING)}))
    _, dataset = items_of(path)
    assert dataset.items == []
    assert dataset.excluded["no_tag"] == 3  # frames 0, 1, 2 carry a visible object but no tag
    with pytest.raises(AuditError, match="--per-object"):
        require_items(dataset)


def test_video_tags_when_present_are_per_frame(tmp_path):
    xml = video_xml(TRACKS, tags=[(1, "car", NIGHT), (2, "car", DAY), (2, "pedestrian", DAY)], attributes=LIGHTING)
    items, dataset = items_of(write(tmp_path, "annotations.xml", xml))
    assert items == {"task1/clip.mp4:1": ("car", {"lighting": "night"})}
    assert dataset.excluded == {"no_tag": 1, "several_tags": 1, "empty_label": 0}
    # Frames of one video are resampled together.
    assert {item.cluster for item in dataset.items} == {"task1/clip.mp4"}
    assert dataset.units == "frames in 1 video"


# --- COCO 1.0 ---------------------------------------------------------------------


def test_coco_objects_with_their_attributes_in_per_object_mode(tmp_path):
    images = [
        Image("a.jpg", shapes=[("car", {"lighting": "day"}), ("pedestrian", {"lighting": "unlabeled"})]),
        Image("b.jpg", shapes=[("bicycle", {"lighting": "night"})]),
        Image("c.jpg"),
    ]
    path = write(tmp_path, "coco.zip", zipped({"annotations/instances_default.json": coco_json(images)}))
    assert load_export(path).format == FORMAT_COCO
    items, dataset = items_of(path, per_object=True)
    assert items == {
        "a.jpg#0": ("car", {"lighting": "day"}),
        "a.jpg#1": ("pedestrian", {"lighting": "unlabeled"}),
        "b.jpg#0": ("bicycle", {"lighting": "night"}),
    }
    # COCO declares no attributes: `lighting` is audited because an item says `unlabeled`;
    # CVAT's own `occluded` and `rotation` are not.
    assert [attribute.name for attribute in dataset.attributes] == ["lighting"]
    # The bare JSON file reads the same.
    json_path = write(tmp_path, "instances_default.json", coco_json(images))
    assert items_of(json_path, per_object=True)[0] == items


def test_coco_has_no_tags_so_tag_mode_is_refused(tmp_path):
    path = write(tmp_path, "coco.json", coco_json([Image("a.jpg", shapes=[("car", DAY)])]))
    with pytest.raises(AuditError, match="COCO 1.0 exports hold no tags.*--per-object"):
        items_of(path)


def test_a_json_file_that_is_not_coco_is_refused(tmp_path):
    with pytest.raises(AuditError, match="not a COCO instances file"):
        load_export(write(tmp_path, "x.json", json.dumps({"images": []}).encode()))


# --- files that are not exports ---------------------------------------------------


def test_missing_bad_and_unknown_files_are_clear_errors(tmp_path):
    with pytest.raises(AuditError, match="no such file"):
        load_export(str(tmp_path / "nope.zip"))
    with pytest.raises(AuditError, match="not a readable zip"):
        load_export(write(tmp_path, "bad.zip", b"PK\x03\x04 this is not really a zip"))
    with pytest.raises(AuditError, match="unknown format"):
        load_export(write(tmp_path, "images.zip", zipped({"images/a.jpg": b"\xff\xd8"})))
    with pytest.raises(AuditError, match="unknown format"):
        load_export(write(tmp_path, "notes.txt", b"hello"))


# --- hostile input ---------------------------------------------------------------


EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE annotations [ <!ENTITY secret SYSTEM "file:///etc/passwd"> ]>
<annotations><version>1.1</version>
  <image id="0" name="a.jpg" width="1" height="1"><tag label="car"><attribute name="lighting">&secret;</attribute></tag></image>
</annotations>
"""


@pytest.mark.parametrize("document", [BILLION_LAUGHS, EXTERNAL_ENTITY], ids=["billion-laughs", "external-entity"])
@pytest.mark.parametrize("packed", [False, True], ids=["xml", "zip"])
def test_entity_expansion_and_external_entities_are_refused(tmp_path, document, packed):
    content = zipped({"annotations.xml": document}) if packed else document
    path = write(tmp_path, "evil.zip" if packed else "evil.xml", content)
    with pytest.raises(AuditError, match="refused") as raised:
        load_export(path)
    assert "DTD" in str(raised.value)
    assert "root:" not in str(raised.value)


def test_zip_members_outside_the_archive_are_refused(tmp_path):
    buffer = tmp_path / "traversal.zip"
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("annotations.xml", images_xml([Image("a.jpg")]))
        archive.writestr("../../etc/cron.d/evil", b"* * * * * root true")
    with pytest.raises(AuditError, match="outside its root"):
        load_export(str(buffer))


def test_a_zip_bomb_is_refused_before_it_fills_memory(tmp_path):
    padding = b"<!-- " + b"x" * (3 * 1024 * 1024) + b" -->"
    xml = images_xml([Image("a.jpg", tags=[("car", DAY)])]).replace(b"</annotations>", padding + b"</annotations>")
    path = write(tmp_path, "bomb.zip", zipped({"annotations.xml": xml}))
    assert (tmp_path / "bomb.zip").stat().st_size < 64 * 1024  # it compresses a thousandfold
    with pytest.raises(AuditError, match="zip bomb"):
        load_export(path, max_unpacked_bytes=1024 * 1024)
    assert load_export(path, max_unpacked_bytes=8 * 1024 * 1024).frames[0].name == "a.jpg"


def test_a_member_that_inflates_past_its_declared_size_is_stopped_by_the_reader():
    import io

    from audit.archive import CappedReader

    reader = io.BufferedReader(CappedReader(io.BytesIO(b"x" * 5000), 4096, "bomb.zip: annotations.xml"))
    with pytest.raises(AuditError, match="zip bomb"):
        reader.read()


# --- the schema ----------------------------------------------------------------------

PROJECT = {
    "name": "street-scenes",
    "labels": [{"name": "car", "color": "#ff0000", "type": "rectangle"}, "pedestrian"],
    "conditions": {"lighting": ["day", "night"], "weather": ["clear", "rain", "snow"]},
    "protected": {"apparent_gender": ["female", "male", "unclear"]},
}


def test_schema_from_a_projects_file_and_from_a_stack_file(tmp_path):
    import yaml

    plain = tmp_path / "schema.yaml"
    plain.write_text(yaml.safe_dump({"projects": [PROJECT]}))
    stack = tmp_path / "Pulumi.acme.yaml"
    stack.write_text(yaml.safe_dump({"config": {"labeling:hostname": "label.acme.example", "labeling:projects": [PROJECT]}}))
    bare = tmp_path / "bare.yaml"
    bare.write_text(yaml.safe_dump([PROJECT]))
    for path in (plain, stack, bare):
        schema = load_schema(str(path))
        assert schema.name == "street-scenes"
        assert schema.labels == ("car", "pedestrian")
        assert schema.conditions == {"lighting": ("day", "night"), "weather": ("clear", "rain", "snow")}
        assert schema.protected == {"apparent_gender": ("female", "male", "unclear")}


def test_schema_with_several_projects_needs_project(tmp_path):
    import yaml

    other = dict(PROJECT, name="dashcam", conditions={"weather": ["clear", "fog"]}, protected={})
    path = tmp_path / "schema.yaml"
    path.write_text(yaml.safe_dump({"projects": [PROJECT, other]}))
    with pytest.raises(AuditError, match="2 projects .*--project"):
        load_schema(str(path))
    assert load_schema(str(path), "dashcam").conditions == {"weather": ("clear", "fog")}
    with pytest.raises(AuditError, match="no project named 'nope'"):
        load_schema(str(path), "nope")


def test_schema_mistakes_are_named(tmp_path):
    import yaml

    path = tmp_path / "schema.yaml"
    path.write_text(yaml.safe_dump({"projects": [dict(PROJECT, conditions={"lighting": "day"})]}))
    with pytest.raises(AuditError, match=r"conditions\.lighting: must be a non-empty list"):
        load_schema(str(path))
    path.write_text(yaml.safe_dump({"projects": [dict(PROJECT, protected={"lighting": ["a"]})]}))
    with pytest.raises(AuditError, match="both as a condition and as a protected attribute"):
        load_schema(str(path))


def test_the_schema_decides_conditions_and_protected_attributes(tmp_path):
    import yaml

    path = tmp_path / "schema.yaml"
    path.write_text(yaml.safe_dump({"projects": [PROJECT]}))
    tags = {"lighting": "day", "weather": "rain", "apparent_gender": "male", "occluded": "false"}
    xml = images_xml([Image("a.jpg", tags=[("car", tags)])], attributes=LIGHTING)
    _, dataset = items_of(write(tmp_path, "annotations.xml", xml), schema=load_schema(str(path)))
    assert [(a.name, a.kind) for a in dataset.attributes] == [
        ("lighting", "condition"),
        ("weather", "condition"),
        ("apparent_gender", "protected"),
    ]
    assert dataset.items[0].values == {"lighting": "day", "weather": "rain", "apparent_gender": "male"}


def test_every_label_of_the_fixture_is_declared_in_its_meta():
    # The fixture's meta must look like CVAT's for the no-schema rule to be tested at all.
    meta = meta_xml()
    for label in LABELS:
        assert f"<name>{label}</name>" in meta
    assert "<input_type>radio</input_type>" in meta and "<default_value>unlabeled</default_value>" in meta
