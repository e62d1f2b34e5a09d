"""CVAT exports built in code for the audit tests, shaped like CVAT v2.73 writes them.

The XML follows cvat/apps/dataset_manager/formats/cvat.py (`dump_as_cvat_annotation`,
`dump_as_cvat_interpolation`) and the meta of bindings.py; the COCO file
follows Datumaro's `coco_instances` writer as CVAT calls it ("attributes"
under each annotation).

`planted()` is the street-scenes data set with known answers:
- three labels (car, pedestrian, bicycle), 180 fully audited images each;
- `lighting` (condition): car is 90 % `day` (162 of 180), the others 50/50:
  the planted association;
- `weather` (condition): exactly uniform within every label: independent;
- `apparent_gender` (protected): exactly uniform within every label, and the
  planted predictions err 30 % of the time on `female` and 5 % on the others;
- per label 9 more images with `lighting` unlabeled and 10 with everything
  unlabeled; 5 images without a tag and 3 with two tags.

Run `python tests/support/audit_exports.py DIR` to write these files (and the schema
and predictions) to DIR, e.g. to draw the README's example chart.
"""

from __future__ import annotations

import io
import json
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

LABELS = ["car", "pedestrian", "bicycle"]
CONDITIONS = {"lighting": ["day", "night"], "weather": ["clear", "rain", "snow"]}
PROTECTED = {"apparent_gender": ["female", "male", "unclear"]}
ALL_ATTRIBUTES = {**CONDITIONS, **PROTECTED}
FULL_PER_LABEL = 180
PARTIAL_PER_LABEL = 9
UNAUDITED_PER_LABEL = 10
CAR_NIGHT = 18  # 10 % of car's 180 fully audited images

SCHEMA = {
    "projects": [
        {
            "name": "street-scenes",
            "labels": [{"name": "car", "color": "#ff0000", "type": "rectangle"}, "pedestrian", "bicycle"],
            "conditions": CONDITIONS,
            "protected": PROTECTED,
        }
    ]
}


@dataclass
class Image:
    """An image of the export: its name, tags and shapes, each `(label, {attribute: value})`.

    A shape may name its kind as a third element, `(label, values, "polyline")`
    (a box otherwise); an empty label is written as CVAT's `label=""`.
    """

    name: str
    tags: list = field(default_factory=list)
    shapes: list = field(default_factory=list)
    subset: str | None = None
    task_id: int | None = None
    frame_id: int | None = None


def attributes_xml(values: dict, indent: str) -> str:
    """The <attribute name=..>value</attribute> children of a shape or tag."""
    return "".join(f"{indent}<attribute name={quoteattr(name)}>{escape(value)}</attribute>\n" for name, value in values.items())


def meta_xml(
    labels=LABELS,
    attributes=ALL_ATTRIBUTES,
    mode="annotation",
    source=None,
    tasks=None,
    job=None,
    declarations=None,
    carried=None,
    task_id=1,
) -> str:
    """<meta> of a task export (or of a project export when `tasks` is given as [(id, name, mode, source)]).

    `job` (an id) makes it a job export's meta instead, as JobData writes it:
    a <job> with id, mode and labels but no name, source or task id.
    Every attribute is a radio attribute valued `unlabeled` and its values,
    unless `declarations` gives it `(input_type, [values as declared])`.
    `carried` ({label: [attribute names]}) declares only those attributes
    on those labels (the others carry all). `task_id` is the task export's id.
    """
    declarations = declarations or {}
    label_xml = ""
    for label in labels:
        names = (carried or {}).get(label, list(attributes))
        attrs = ""
        for name in names:
            input_type, declared = declarations.get(name, ("radio", ["unlabeled", *attributes[name]]))
            attrs += (
                "            <attribute>\n"
                f"              <name>{escape(name)}</name>\n              <mutable>True</mutable>\n"
                f"              <input_type>{input_type}</input_type>\n"
                f"              <default_value>{escape(declared[0] if declared else '')}</default_value>\n"
                f"              <values>{escape(chr(10).join(declared))}</values>\n"
                "            </attribute>\n"
            )
        label_xml += (
            f"        <label>\n          <name>{escape(label)}</name>\n"
            "          <color>#33ddff</color>\n          <type>any</type>\n"
            f"          <attributes>\n{attrs}          </attributes>\n        </label>\n"
        )

    def task_xml(task_id, name, task_mode, task_source, with_labels):
        """One <task> of the meta; a project export lists its labels once, under <project>."""
        return (
            f"    <task>\n      <id>{task_id}</id>\n      <name>{escape(name)}</name>\n      <size>10</size>\n"
            f"      <mode>{task_mode}</mode>\n      <overlap>0</overlap>\n      <bugtracker></bugtracker>\n"
            "      <created>2026-11-30 10:00:00+00:00</created>\n      <updated>2026-11-30 10:00:00+00:00</updated>\n"
            "      <subset>default</subset>\n      <start_frame>0</start_frame>\n      <stop_frame>9</stop_frame>\n"
            "      <frame_filter></frame_filter>\n"
            + (f"      <labels>\n{label_xml}      </labels>\n" if with_labels else "")
            + "      <owner>\n        <username>admin</username>\n        <email>admin@example.com</email>\n      </owner>\n"
            + (
                "      <original_size>\n        <width>1280</width>\n        <height>720</height>\n      </original_size>\n"
                f"      <source>{escape(task_source)}</source>\n"
                if task_source
                else ""
            )
            + "    </task>\n"
        )

    if job is not None:
        body = (
            f"    <job>\n      <id>{job}</id>\n      <size>10</size>\n      <mode>{mode}</mode>\n      <overlap>0</overlap>\n"
            "      <bugtracker></bugtracker>\n      <created>2026-11-30 10:00:00+00:00</created>\n"
            "      <updated>2026-11-30 10:00:00+00:00</updated>\n      <subset>default</subset>\n"
            "      <start_frame>0</start_frame>\n      <stop_frame>9</stop_frame>\n      <frame_filter></frame_filter>\n"
            f"      <segments>\n        <segment>\n          <id>{job}</id>\n          <start>0</start>\n"
            f"          <stop>9</stop>\n          <url>http://localhost/api/jobs/{job}</url>\n        </segment>\n"
            "      </segments>\n      <owner>\n        <username>admin</username>\n"
            "        <email>admin@example.com</email>\n      </owner>\n      <assignee></assignee>\n"
            f"      <labels>\n{label_xml}      </labels>\n    </job>\n"
        )
    elif tasks is None:
        body = task_xml(task_id, "street", mode, source, True)
    else:
        body = (
            "    <project>\n      <id>1</id>\n      <name>street-scenes</name>\n      <tasks>\n"
            + "".join(task_xml(*task, False) for task in tasks)
            + f"      </tasks>\n      <labels>\n{label_xml}      </labels>\n    </project>\n"
        )
    return f"  <meta>\n{body}    <dumped>2026-11-30 12:00:00+00:00</dumped>\n  </meta>\n"


def images_xml(images: list[Image], **meta) -> bytes:
    """A "CVAT for images 1.1" annotations.xml."""
    out = ['<?xml version="1.0" encoding="utf-8"?>\n<annotations>\n  <version>1.1</version>\n', meta_xml(**meta)]
    for index, image in enumerate(images):
        frame_id = image.frame_id if image.frame_id is not None else index
        extra = ""
        if image.subset is not None:
            extra += f" subset={quoteattr(image.subset)}"
        if image.task_id is not None:
            extra += f' task_id="{image.task_id}"'
        out.append(f'  <image id="{frame_id}" name={quoteattr(image.name)}{extra} width="640" height="480">\n')
        for number, (label, values, *kind) in enumerate(image.shapes):
            if not kind or kind[0] == "box":
                out.append(
                    f'    <box label={quoteattr(label)} source="manual" occluded="0" xtl="{10 + number}.00" ytl="10.00" '
                    f'xbr="50.00" ybr="60.00" z_order="0">\n{attributes_xml(values, "      ")}    </box>\n'
                )
            else:
                out.append(
                    f'    <{kind[0]} label={quoteattr(label)} source="manual" occluded="0" '
                    f'points="1.00,2.00;3.00,4.00;{5 + number}.00,6.00" z_order="0">\n'
                    f'{attributes_xml(values, "      ")}    </{kind[0]}>\n'
                )
        for label, values in image.tags:
            out.append(f'    <tag label={quoteattr(label)} source="manual">\n{attributes_xml(values, "      ")}    </tag>\n')
        out.append("  </image>\n")
    out.append("</annotations>\n")
    return "".join(out).encode("utf-8")


def video_xml(tracks: list[dict], source="clip.mp4", tags=(), attributes=ALL_ATTRIBUTES, **meta) -> bytes:
    """A "CVAT for video 1.1" annotations.xml; a track is {"id", "label", "boxes": [(frame, outside, {attrs})]}.

    A track may also have "task_id" and "subset" (a project export's, with
    `tasks=` in `meta`); other `meta` options as for `meta_xml` (`job=`, ...).
    """
    out = [
        '<?xml version="1.0" encoding="utf-8"?>\n<annotations>\n  <version>1.1</version>\n',
        meta_xml(attributes=attributes, mode="interpolation", source=source, **meta),
    ]
    for track in tracks:
        extra = "".join(f" {key}={quoteattr(str(track[key]))}" for key in ("task_id", "subset") if key in track)
        out.append(f'  <track id="{track["id"]}" label={quoteattr(track["label"])} source="manual"{extra}>\n')
        for frame, outside, values in track["boxes"]:
            out.append(
                f'    <box frame="{frame}" keyframe="1" outside="{int(outside)}" occluded="0" xtl="1.00" ytl="2.00" '
                f'xbr="30.00" ybr="40.00" z_order="0">\n{attributes_xml(values, "      ")}    </box>\n'
            )
        out.append("  </track>\n")
    for frame, label, values in tags:
        out.append(
            f'  <tag frame="{frame}" label={quoteattr(label)} source="manual">\n{attributes_xml(values, "    ")}  </tag>\n'
        )
    out.append("</annotations>\n")
    return "".join(out).encode("utf-8")


def zipped(files: dict[str, bytes]) -> bytes:
    """A zip archive of `{name: content}`, deflated, as CVAT's exports are."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def track(track_id: int, label: str, values: list[dict], start: int = 0) -> dict:
    """A track for `video_xml`: visible on frames start, start+1, ... with `values[i]` on each, then outside."""
    boxes = [(start + offset, False, frame_values) for offset, frame_values in enumerate(values)]
    boxes.append((start + len(values), True, values[-1] if values else {}))
    return {"id": track_id, "label": label, "boxes": boxes}


def coco_video_json(tracks: list[dict], frames: int, shapes: dict | None = None) -> bytes:
    """A COCO instances file of a video task: one image per frame (`frame_000012.jpg`), each track's visible
    boxes as annotations carrying CVAT's `track_id` and `keyframe`, and `shapes` ({frame: [(label, values)]})
    as annotations outside any track. Tracks are in `video_xml`'s shape."""
    images = [Image(f"frame_{frame:06d}.jpg", shapes=list((shapes or {}).get(frame, []))) for frame in range(frames)]
    for item in tracks:
        for frame, outside, values in item["boxes"]:
            if not outside:
                images[frame].shapes.append((item["label"], {"track_id": item["id"], "keyframe": True, **values}))
    return coco_json(images)


def coco_json(images: list[Image], labels=LABELS) -> bytes:
    """A COCO instances file of `images`' shapes, as Datumaro writes it for CVAT (categories from `labels`)."""
    categories = [{"id": index + 1, "name": label, "supercategory": ""} for index, label in enumerate(labels)]
    category_id = {label: index + 1 for index, label in enumerate(labels)}
    document = {
        "licenses": [{"name": "", "id": 0, "url": ""}],
        "info": {},
        "categories": categories,
        "images": [],
        "annotations": [],
    }
    for index, image in enumerate(images):
        document["images"].append(
            {
                "id": index + 1,
                "width": 640,
                "height": 480,
                "file_name": image.name,
                "license": 0,
                "flickr_url": "",
                "coco_url": "",
                "date_captured": 0,
            }
        )
        for label, values, *_ in image.shapes:
            document["annotations"].append(
                {
                    "id": len(document["annotations"]) + 1,
                    "image_id": index + 1,
                    "category_id": category_id[label],
                    "segmentation": [],
                    "area": 2000.0,
                    "bbox": [10.0, 10.0, 40.0, 50.0],
                    "iscrowd": 0,
                    "attributes": {"occluded": False, "rotation": 0.0, **values},
                }
            )
    return json.dumps(document).encode("utf-8")


def planted_values(label: str, index: int) -> dict:
    """The attribute values of the `index`-th fully audited image of `label` (see the module docstring)."""
    if label == "car":
        lighting = "night" if index % 10 == 9 else "day"
    else:
        lighting = "night" if index % 2 else "day"
    return {
        "lighting": lighting,
        "weather": CONDITIONS["weather"][index % 3],
        "apparent_gender": PROTECTED["apparent_gender"][(index // 3) % 3],
    }


def planted() -> list[Image]:
    """The images of the planted data set (see the module docstring)."""
    images = []
    for label in LABELS:
        for index in range(FULL_PER_LABEL):
            images.append(Image(f"{label}/full-{index:03d}.jpg", tags=[(label, planted_values(label, index))]))
        for index in range(PARTIAL_PER_LABEL):
            values = {**planted_values(label, index), "lighting": "unlabeled"}
            images.append(Image(f"{label}/partial-{index:03d}.jpg", tags=[(label, values)]))
        for index in range(UNAUDITED_PER_LABEL):
            values = {name: "unlabeled" for name in ALL_ATTRIBUTES}
            images.append(Image(f"{label}/unaudited-{index:03d}.jpg", tags=[(label, values)]))
    for index in range(5):
        images.append(Image(f"untagged-{index}.jpg"))
    for index in range(3):
        both = {name: "unlabeled" for name in ALL_ATTRIBUTES}
        images.append(Image(f"two-tags-{index}.jpg", tags=[("car", both), ("pedestrian", both)]))
    return images


def planted_predictions(images: list[Image]) -> list[tuple[str, str]]:
    """(item, predicted) for every tagged image: wrong 30 % of the time on `female`, 5 % otherwise."""
    rows = []
    seen = {"female": 0, "other": 0}
    for image in images:
        if len(image.tags) != 1:
            continue
        label, values = image.tags[0]
        group = "female" if values["apparent_gender"] == "female" else "other"
        count = seen[group]
        seen[group] += 1
        wrong = count % 10 < 3 if group == "female" else count % 20 == 0
        other = LABELS[(LABELS.index(label) + 1) % len(LABELS)]
        rows.append((image.name, other if wrong else label))
    return rows


def write_large_xml(path: Path, target_bytes: int, shape: str = "images") -> int:
    """Write a CVAT for images 1.1 export of about `target_bytes` to `path`, in chunks; the number of items.

    `shape="images"`: images of one tag each (three attributes), shaped and
    named like a real export, about 330 bytes an image (a 200 MB export holds
    about 610,000). `shape="shapes"`: a single image holding one box after
    another (about 125 bytes a box: 200 MB hold about 1.6 million). Written piece by
    piece, so that writing a large file takes little memory.
    """
    if shape not in ("images", "shapes"):
        raise ValueError(f"unknown shape {shape!r}")
    head = images_xml([]).decode("utf-8").replace("</annotations>\n", "")
    tail = "</annotations>\n"
    count = 0
    with path.open("w", encoding="utf-8", newline="\n") as file:
        written = file.write(head)
        if shape == "shapes":
            written += file.write('  <image id="0" name="crowd.jpg" width="6000" height="4000">\n')
            tail = "  </image>\n" + tail
        while written + len(tail) < target_bytes:
            chunk = []
            for index in range(count, count + 1000):
                label = LABELS[index % 3]
                if shape == "images":
                    values = planted_values(label, index // 3)
                    chunk.append(
                        f'  <image id="{index}" name="street/cam-{index % 16:02d}/{index:09d}.jpg" width="1920" '
                        f'height="1080">\n    <tag label="{label}" source="manual">\n{attributes_xml(values, "      ")}'
                        "    </tag>\n  </image>\n"
                    )
                else:
                    chunk.append(
                        f'    <box label="{label}" source="manual" occluded="0" xtl="{index % 5000}.00" ytl="10.00" '
                        f'xbr="{index % 5000 + 20}.00" ybr="40.00" z_order="0"></box>\n'
                    )
            count += len(chunk)
            written += file.write("".join(chunk))
        file.write(tail)
    return count


def write_large_video(path: Path, target_bytes: int, tracks: int = 8) -> int:
    """Write a CVAT for video 1.1 export of about `target_bytes` to `path`: `tracks` tracks that share the
    frames, each with a box on every frame whose `lighting` changes every 7 frames (about 200 bytes a box).
    Written track by track, in chunks; the number of frames each track has."""
    head = video_xml([], attributes=CONDITIONS).decode("utf-8").replace("</annotations>\n", "")
    frames = max(1, (target_bytes - len(head)) // (200 * tracks))
    with path.open("w", encoding="utf-8", newline="\n") as file:
        file.write(head)
        for number in range(tracks):
            file.write(f'  <track id="{number}" label="{LABELS[number % 3]}" source="manual">\n')
            for start in range(0, frames, 1000):
                chunk = []
                for frame in range(start, min(frames, start + 1000)):
                    lighting = CONDITIONS["lighting"][(frame // 7 + number) % 2]
                    chunk.append(
                        f'    <box frame="{frame}" keyframe="0" outside="0" occluded="0" xtl="{frame % 900}.00" '
                        f'ytl="2.00" xbr="{frame % 900 + 30}.00" ybr="40.00" z_order="0">\n'
                        f'      <attribute name="lighting">{lighting}</attribute>\n    </box>\n'
                    )
                file.write("".join(chunk))
            file.write("  </track>\n")
        file.write("</annotations>\n")
    return frames


def write_large_coco(path: Path, target_bytes: int) -> int:
    """Write a COCO instances file of about `target_bytes` to `path`, in chunks; the number of annotations.

    Shaped like Datumaro writes them for CVAT: a list of images, then one of
    annotations, four per image (three boxes, then a polygon of 12 points),
    each with CVAT's `occluded` and `rotation` and one attribute; about 255
    bytes an annotation (a 200 MB file holds about 680,000).
    """
    per_image = 4
    images = max(1, target_bytes // (256 * per_image + 160))
    categories = [{"id": index + 1, "name": label, "supercategory": ""} for index, label in enumerate(LABELS)]
    with path.open("w", encoding="utf-8") as file:
        written = file.write('{"licenses": [{"name": "", "id": 0, "url": ""}], "info": {}, "categories": ')
        written += file.write(json.dumps(categories) + ', "images": [')
        for start in range(0, images, 1000):
            chunk = []
            for index in range(start, min(images, start + 1000)):
                name = f"street/cam-{index % 16:02d}/{index:09d}.jpg"
                image = {"id": index + 1, "width": 1920, "height": 1080, "file_name": name, "license": 0}
                chunk.append(json.dumps({**image, "flickr_url": "", "coco_url": "", "date_captured": 0}))
            written += file.write((", " if start else "") + ", ".join(chunk))
        written += file.write('], "annotations": [')
        count = 0
        while written < target_bytes - 2 or count == 0:
            chunk = []
            for index in range(count, count + 1000):
                x = float(index % 1800)
                polygon = index % per_image == per_image - 1
                segmentation = [[x + dx for dx in (0.5, 10.25, 20.75, 30.5, 40.25, 50.75)] * 2] if polygon else []
                annotation = {
                    "id": index + 1,
                    "image_id": index // per_image % images + 1,
                    "category_id": index % 3 + 1,
                    "segmentation": segmentation,
                    "area": 2000.0,
                    "bbox": [x, 10.0, 40.0, 50.0],
                    "iscrowd": 0,
                    "attributes": {"occluded": False, "rotation": 0.0, "lighting": CONDITIONS["lighting"][index % 2]},
                }
                chunk.append(json.dumps(annotation))
            written += file.write((", " if count else "") + ", ".join(chunk))
            count += len(chunk)
        file.write("]}")
    return count


def write_planted(directory: Path) -> dict[str, Path]:
    """The planted export (zip), schema and predictions written to `directory`."""
    import yaml

    directory.mkdir(parents=True, exist_ok=True)
    images = planted()
    paths = {
        "export": directory / "street-scenes.zip",
        "schema": directory / "schema.yaml",
        "predictions": directory / "predictions.csv",
    }
    paths["export"].write_bytes(zipped({"annotations.xml": images_xml(images)}))
    paths["schema"].write_text(yaml.safe_dump(SCHEMA, sort_keys=False))
    paths["predictions"].write_text(
        "item,predicted\n" + "".join(f"{item},{predicted}\n" for item, predicted in planted_predictions(images))
    )
    return paths


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE annotations [
  <!ENTITY lol "lol">
  <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<annotations><version>1.1</version>
  <image id="0" name="a.jpg" width="1" height="1"><tag label="car"><attribute name="lighting">&lol9;</attribute></tag></image>
</annotations>
"""


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/support/audit_exports.py DIR")
    for name, path in write_planted(Path(sys.argv[1])).items():
        print(f"{name}: {path}")
