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

Tracks. For a shape of a track CVAT adds `track_id` (and `keyframe`) to the
attributes (bindings.py `convert_cvat_anno_to_dm`), and writes the track on its
visible frames only. The annotations of one instances file that share a
`track_id` are one item, `<subset>#track<id>`, its values decided by
majority (`model.Tally`; ties go to the value the file lists first), tallied
as the annotations stream by. CVAT numbers each task's tracks from 0 and COCO
does not say which task an image belongs to, so a COCO export of several video
tasks in one subset repeats track ids: a track id seen with two categories is
refused with an error, and tracks of the same id and category in two tasks
cannot be told apart (export such tasks one by one, or as CVAT for video 1.1,
which names the task). Annotations without `track_id` stay objects of their
image. An annotation whose category has an empty name is skipped and counted.
"""

from __future__ import annotations

import posixpath
import re
import zipfile
from dataclasses import dataclass, field
from typing import BinaryIO

from . import json_stream
from .errors import AuditError, reason
from .model import CVAT_BUILTIN_ATTRIBUTES, FORMAT_COCO, KEEP_TAGS, Annotation, Export, Frame, Shared, Tally, Track

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


class TrackTally:
    """The annotations of one track seen so far: its category (and another, if one was seen), and the tally of their values."""

    __slots__ = ("category_id", "other_category_id", "tally")

    def __init__(self, category_id):
        self.category_id = category_id
        self.other_category_id = None
        self.tally = Tally()


@dataclass
class Instances:
    """What the audit keeps of one instances file: category names, images as frames, compact annotations, tracks."""

    where: str
    subset: str | None
    categories: dict[object, str] = field(default_factory=dict)
    images: list[tuple[object, Frame]] = field(default_factory=list)
    # (image id, category id, attribute values) of every annotation outside a track, resolved once the file is read.
    annotations: list[tuple[object, object, dict[str, str]]] = field(default_factory=list)
    # track id (as text) -> its tally, in the order the tracks first appear.
    tracks: dict[str, TrackTally] = field(default_factory=dict)
    # Every value seen on a track's annotation, by attribute (see `model.Export.track_values`).
    track_values: dict[str, set[str]] = field(default_factory=dict)
    # Attributes given as JSON booleans: checkboxes.
    boolean_attributes: set[str] = field(default_factory=set)
    # Annotations read so far: orders a track's annotations for the majority's ties.
    count: int = 0


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
        values = {}
        for name, value in attributes.items():
            if isinstance(value, bool) and name not in CVAT_BUILTIN_ATTRIBUTES:
                instances.boolean_attributes.add(name)
            values[shared.text(name)] = shared.text(value_text(value, f"value of the attribute {name!r}"))
        instances.count += 1
        track_id = values.get("track_id")
        if track_id is None:
            instances.annotations.append((annotation["image_id"], annotation["category_id"], shared.attributes(values)))
            return
        category_id = annotation["category_id"]
        # Every annotation has an image and a category that are ids, a track's too: KeyError or TypeError now.
        hash((annotation["image_id"], category_id))
        track = instances.tracks.get(track_id)
        if track is None:
            track = instances.tracks[track_id] = TrackTally(category_id)
        elif track.category_id != category_id:
            # Refused once the categories' names are known (add_tracks).
            track.other_category_id = category_id
        track.tally.add(values, instances.count)
        for name, value in values.items():
            if name not in CVAT_BUILTIN_ATTRIBUTES:
                instances.track_values.setdefault(name, set()).add(value)


def read(files: list[Instances], path: str, keep: str, shared: Shared) -> Export:
    """The frames of the COCO instances files of one export with their objects (COCO has no tags), and the tracks."""
    export = Export(path, FORMAT_COCO, [], {}, has_tags=False, kept=keep)
    for instances in files:
        try:
            by_image: dict[object, tuple[Frame, list[Annotation]]] = {}
            for image_id, frame in instances.images:
                by_image[image_id] = (frame, [])
                export.frames.append(frame)
            for image_id, category_id, values in instances.annotations:
                label = instances.categories[category_id]
                found = by_image[image_id][1]
                if label:
                    found.append(shared.annotation(label, values))
                else:
                    export.empty_label_objects += 1
            instances.annotations.clear()
            for frame, found in by_image.values():
                frame.objects = shared.sequence(found)
            add_tracks(export, instances, shared)
            export.boolean_attributes |= instances.boolean_attributes
        except (KeyError, TypeError) as error:
            raise AuditError(f"{instances.where}: malformed COCO file: missing or wrong {error}") from None
    return export


def add_tracks(export: Export, instances: Instances, shared: Shared) -> None:
    """The tracks of one instances file join the export, one item each, named `<subset>#track<id>`."""
    subset = instances.subset or "default"
    for track_id, track in instances.tracks.items():
        label = instances.categories[track.category_id]
        if track.other_category_id is not None:
            other = instances.categories[track.other_category_id]
            raise AuditError(
                f"{instances.where}: track {track_id} has annotations of two categories ({label!r} and {other!r}): "
                "CVAT numbers each task's tracks from 0, so this COCO export holds several tasks whose tracks "
                "cannot be told apart; export the video tasks one by one, or as CVAT for video 1.1"
            )
        if not label:
            export.empty_label_objects += 1
            continue
        values, changed = track.tally.result()
        annotation = shared.annotation(label, values)
        export.tracks.append(Track(f"{subset}#track{track_id}", annotation, changed))
    for name, values in instances.track_values.items():
        export.track_values.setdefault(name, set()).update(values)
    instances.tracks.clear()
