"""CVAT's "COCO 1.0" export: `annotations/instances_<subset>.json` in a zip, or the JSON itself.

CVAT exports COCO through Datumaro's `coco_instances` converter
(cvat/apps/dataset_manager/formats/coco.py), which writes each annotation's
attributes under its `"attributes"` object (occluded, rotation and the label's
own attributes, e.g. `{"occluded": false, "lighting": "day"}`). COCO has no
tags, so a COCO export only gives items in per-object mode. Objects of an
image are numbered in the order the file lists them, as `<file_name>#<index>`.
Names and attribute values are strings, numbers or booleans; a list or an
object there is refused as malformed. The file is read as a stream, one
element of its arrays at a time (`json_stream`), and only what the audit
needs of each is kept.
"""

from __future__ import annotations

import posixpath
import re
import zipfile
from dataclasses import dataclass, field
from typing import BinaryIO

from . import json_stream
from .errors import AuditError, reason
from .model import FORMAT_COCO, KEEP_TAGS, Annotation, Export, Frame, Shared

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


def value_text(value, what: str) -> str:
    """A name or attribute value as CVAT's XML would write it (booleans as true/false); TypeError for a list or object."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None or isinstance(value, (str, int, float)):
        return str(value)
    raise TypeError(f"{what} (a JSON {'array' if isinstance(value, list) else 'object'}, not a string or number)")


def object_of(value, key: str) -> dict:
    """An element of the array `key`, which must be a JSON object."""
    if not isinstance(value, dict):
        raise TypeError(f"element of {key} (not an object)")
    return value


@dataclass
class Instances:
    """What the audit keeps of one instances file: category names, images as frames, and compact annotations."""

    where: str
    subset: str | None
    categories: dict[object, str] = field(default_factory=dict)
    images: list[tuple[object, Frame]] = field(default_factory=list)
    # (image id, category id, attribute values) of every annotation, resolved once the file is read.
    annotations: list[tuple[object, object, dict[str, str]]] = field(default_factory=list)


def load_instances(stream: BinaryIO, where: str, subset: str | None, keep: str, shared: Shared) -> Instances:
    """One COCO instances file, read as a stream (see `json_stream`), with one clear error when it is not one.

    Hostile documents end in the same one-line error as malformed ones: arrays
    or objects nested deeper than the interpreter's recursion limit (the
    decoder recurses, a RecursionError), and integers longer than Python's
    limit on int/str conversion (4,300 digits by default, a ValueError that is
    not a JSONDecodeError). A real COCO file is nested 4 deep and its numbers
    are short.
    """
    instances = Instances(where, subset)
    arrays = set()
    try:
        for event, key, value in json_stream.members(stream):
            if event == json_stream.ARRAY:
                arrays.add(key)
            elif event == json_stream.ELEMENT:
                add_element(instances, key, value, keep, shared)
    except json_stream.NotAnObject:
        arrays = set()
    except RecursionError:
        raise AuditError(f"{where}: not valid JSON: nested too deeply (a COCO file is nested a few levels deep)") from None
    except (KeyError, TypeError) as error:
        raise AuditError(f"{where}: malformed COCO file: missing or wrong {error}") from None
    except ValueError as error:
        # Malformed text, bytes that are not text, and an integer past Python's digit limit.
        raise AuditError(f"{where}: not valid JSON: {reason(error)}") from None
    if not {"images", "annotations", "categories"} <= arrays:
        raise AuditError(f"{where}: not a COCO instances file (needs the lists images, annotations and categories)")
    return instances


def add_element(instances: Instances, key: str, element, keep: str, shared: Shared) -> None:
    """Keep what the audit needs of one element of the arrays categories, images and annotations."""
    if key == "categories":
        category = object_of(element, key)
        instances.categories[category["id"]] = shared.text(value_text(category["name"], "category name"))
    elif key == "images":
        image = object_of(element, key)
        image_id = image["id"]
        hash(image_id)  # a list or an object is no id: TypeError now, not when annotations are matched
        instances.images.append((image_id, Frame(name=value_text(image["file_name"], "file_name"), subset=instances.subset)))
    elif key == "annotations" and keep != KEEP_TAGS:
        annotation = object_of(element, key)
        attributes = annotation.get("attributes") or {}
        if not isinstance(attributes, dict):
            raise TypeError("an annotation's attributes (not an object)")
        values = {
            shared.text(name): shared.text(value_text(value, f"value of the attribute {name!r}"))
            for name, value in attributes.items()
        }
        instances.annotations.append((annotation["image_id"], annotation["category_id"], shared.attributes(values)))


def read(files: list[Instances], path: str, keep: str, shared: Shared) -> Export:
    """The frames of the COCO instances files of one export, with their objects (COCO has no tags)."""
    frames = []
    for instances in files:
        try:
            by_image: dict[object, tuple[Frame, list[Annotation]]] = {}
            for image_id, frame in instances.images:
                by_image[image_id] = (frame, [])
                frames.append(frame)
            for image_id, category_id, values in instances.annotations:
                by_image[image_id][1].append(shared.annotation(instances.categories[category_id], values))
            instances.annotations.clear()
            for frame, found in by_image.values():
                frame.objects = shared.sequence(found)
        except (KeyError, TypeError) as error:
            raise AuditError(f"{instances.where}: malformed COCO file: missing or wrong {error}") from None
    return Export(path, FORMAT_COCO, frames, {}, has_tags=False, kept=keep)
