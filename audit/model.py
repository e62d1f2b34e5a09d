"""The data the readers produce: exports made of frames, with their tags and objects.

A frame is what an item is made of: an image, or one frame of a video. Its
`name` is the image's name, or `<video>:<frame>` for a video frame; its
`item_id` is set once the whole export is read (see `exports`).

Exports are large (a 200 MB export holds 600,000 images, or millions of
shapes), so what is kept of them is small: slotted classes, and the values
that repeat (labels, attribute names and values, whole attribute sets, the
annotations themselves) kept once and shared (`Shared`). Nothing changes an
annotation or its attribute dict once read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

FORMAT_IMAGES = "CVAT for images 1.1"
FORMAT_VIDEO = "CVAT for video 1.1"
FORMAT_COCO = "COCO 1.0"
FORMATS = (FORMAT_IMAGES, FORMAT_VIDEO, FORMAT_COCO)

# What a reader keeps of each frame: the tags (tag mode), the objects
# (per-object mode), or both (when the caller does not say).
KEEP_TAGS = "tags"
KEEP_OBJECTS = "objects"
KEEP_BOTH = "both"


@dataclass(frozen=True, slots=True)
class Annotation:
    """A tag or an object (shape, or a track's shape on one frame): its label and attribute values."""

    label: str
    attributes: dict[str, str]
    # What tells the object apart inside its frame: the track's id in a video;
    # None for an image's shape, told apart by its position among the frame's
    # objects (in document order). Unused for tags.
    key: str | None = None


@dataclass(slots=True)
class Frame:
    """An image or a video frame, with its tags and its objects (tuples once read; lists while a video is read)."""

    name: str
    subset: str | None = None
    tags: Sequence[Annotation] = ()
    objects: Sequence[Annotation] = ()
    item_id: str = ""


@dataclass
class AttributeSpec:
    """An attribute as the export's meta declares it (CVAT XML only)."""

    name: str
    input_type: str
    values: list[str]


@dataclass
class Export:
    """One export file, read."""

    path: str
    format: str
    frames: list[Frame]
    specs: dict[str, AttributeSpec] = field(default_factory=dict)
    # Top-level <tag> elements seen: CVAT for video 1.1 (v2.73) writes none.
    has_tags: bool = True
    # What was kept of the frames (KEEP_TAGS, KEEP_OBJECTS or KEEP_BOTH).
    kept: str = KEEP_BOTH


class Shared:
    """One copy of the values that repeat across an export, handed out again for every equal value.

    Each table stops growing at LIMIT entries (an export whose values are all
    different gains nothing from sharing, and the tables must stay small);
    past it, values are kept as they come. Keys that name a shared object by
    `id()` are safe: the table holds the object, so its id is not reused.
    """

    LIMIT = 1 << 15

    def __init__(self):
        self._texts: dict[str, str] = {}
        self._attribute_sets: dict[tuple, dict[str, str]] = {}
        self._annotations: dict[tuple, Annotation] = {}
        self._sequences: dict[tuple, tuple] = {}

    def _keep(self, table: dict, key, value):
        if len(table) < self.LIMIT:
            table[key] = value
        return value

    def text(self, value: str) -> str:
        """`value`, or the equal string seen before."""
        found = self._texts.get(value)
        return found if found is not None else self._keep(self._texts, value, value)

    def attributes(self, values: dict[str, str]) -> dict[str, str]:
        """`values`, or the equal attribute dict seen before (compared with its order)."""
        key = tuple(values.items())
        found = self._attribute_sets.get(key)
        return found if found is not None else self._keep(self._attribute_sets, key, values)

    def annotation(self, label: str, values: dict[str, str], key: str | None = None) -> Annotation:
        """An Annotation of these, shared with the equal one seen before."""
        label, values = self.text(label), self.attributes(values)
        table_key = (label, id(values), key)
        found = self._annotations.get(table_key)
        return found if found is not None else self._keep(self._annotations, table_key, Annotation(label, values, key))

    def sequence(self, annotations: list[Annotation]) -> tuple[Annotation, ...]:
        """The annotations as a tuple, shared with a tuple of the same annotations seen before (short ones only)."""
        if not annotations:
            return ()
        if len(annotations) > 4:
            return tuple(annotations)
        key = tuple(id(annotation) for annotation in annotations)
        found = self._sequences.get(key)
        return found if found is not None else self._keep(self._sequences, key, tuple(annotations))
