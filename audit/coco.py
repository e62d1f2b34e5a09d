"""CVAT's "COCO 1.0" export: `annotations/instances_<subset>.json` in a zip, or the JSON itself.

CVAT exports COCO through Datumaro's `coco_instances` converter
(cvat/apps/dataset_manager/formats/coco.py), which writes each annotation's
attributes under its `"attributes"` object (occluded, rotation and the label's
own attributes, e.g. `{"occluded": false, "lighting": "day"}`). COCO has no
tags, so a COCO export only gives items in per-object mode. Objects of an
image are numbered in the order the file lists them, as `<file_name>#<index>`.
"""

from __future__ import annotations

import json
import posixpath
import re
import zipfile
from typing import BinaryIO

from .errors import AuditError
from .model import FORMAT_COCO, Annotation, Export, Frame

INSTANCES = re.compile(r"^instances_(?P<subset>.+)\.json$")


def instance_members(members: list[zipfile.ZipInfo]) -> list[zipfile.ZipInfo]:
    """The `annotations/instances_*.json` members of a COCO zip, by name."""
    found = []
    for member in members:
        name = posixpath.normpath(member.filename.replace("\\", "/"))
        parts = name.split("/")
        if len(parts) >= 2 and parts[-2] == "annotations" and INSTANCES.match(parts[-1]):
            found.append(member)
    return sorted(found, key=lambda member: member.filename)


def subset_of(filename: str) -> str | None:
    """`Train` for `instances_Train.json`; None for a file named otherwise."""
    match = INSTANCES.match(posixpath.basename(filename.replace("\\", "/")))
    return match.group("subset") if match else None


def load_json(stream: BinaryIO, where: str):
    """A JSON document, with a clear error when it is not one."""
    try:
        return json.load(stream)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise AuditError(f"{where}: not valid JSON: {error}") from None


def value_text(value) -> str:
    """An attribute value as CVAT's XML would write it (booleans as true/false)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def read(documents: list[tuple[str | None, object]], path: str) -> Export:
    """Frames of the COCO instances documents `[(subset, document)]` of one export."""
    frames = []
    for subset, document in documents:
        where = f"{path}" + (f" (subset {subset})" if subset else "")
        if not isinstance(document, dict) or not all(
            isinstance(document.get(key), list) for key in ("images", "annotations", "categories")
        ):
            raise AuditError(f"{where}: not a COCO instances file (needs the lists images, annotations and categories)")
        try:
            categories = {category["id"]: str(category["name"]) for category in document["categories"]}
            by_image: dict[object, Frame] = {}
            for image in document["images"]:
                frame = Frame(name=str(image["file_name"]), subset=subset)
                by_image[image["id"]] = frame
                frames.append(frame)
            for annotation in document["annotations"]:
                frame = by_image[annotation["image_id"]]
                attributes = annotation.get("attributes") or {}
                if not isinstance(attributes, dict):
                    raise TypeError("an annotation's attributes are not an object")
                frame.objects.append(
                    Annotation(
                        categories[annotation["category_id"]],
                        {str(name): value_text(value) for name, value in attributes.items()},
                        str(len(frame.objects)),
                    )
                )
        except (KeyError, TypeError) as error:
            raise AuditError(f"{where}: malformed COCO file: missing or wrong {error}") from None
    return Export(path, FORMAT_COCO, frames, {}, has_tags=False)
