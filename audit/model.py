"""The data the readers produce: exports made of frames, with their tags and objects.

A frame is what an item is made of: an image, or one frame of a video. Its
`name` is the image's name, or `<video>:<frame>` for a video frame; its
`item_id` is set once the whole export is read (see `exports`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

FORMAT_IMAGES = "CVAT for images 1.1"
FORMAT_VIDEO = "CVAT for video 1.1"
FORMAT_COCO = "COCO 1.0"
FORMATS = (FORMAT_IMAGES, FORMAT_VIDEO, FORMAT_COCO)


@dataclass
class Annotation:
    """A tag or an object (shape, or a track's shape on one frame): its label and attribute values."""

    label: str
    attributes: dict[str, str]
    # What tells the object apart inside its frame: the shape's index in the
    # image, or the track's id in a video. Unused for tags.
    key: str = ""


@dataclass
class Frame:
    """An image or a video frame, with its tags and its objects."""

    name: str
    subset: str | None = None
    tags: list[Annotation] = field(default_factory=list)
    objects: list[Annotation] = field(default_factory=list)
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
