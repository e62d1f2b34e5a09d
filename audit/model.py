"""The data the readers produce: exports made of frames and tracks, with their tags and objects.

A frame is an image, or one frame of a video. Its `name` is the image's
name, or `<video>:<frame>` for a video frame, where `<video>` says where the
video comes from (`task12/clip.mp4`: see `cvat_xml`); its `item_id` is set
once the whole export is read (see `exports`). A track is an object followed
over the frames of a video: it is read into one annotation whose values are
decided by the majority rule of `Tally`, as its frames stream by.

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

# The value of an attribute nobody has audited yet (see `schema`).
UNLABELED = "unlabeled"

# What CVAT writes next to a shape's own attributes when it exports COCO
# (bindings.py `convert_cvat_anno_to_dm`: occluded, rotation, and for a track's
# shape track_id and keyframe), and what an XML shape carries as XML
# attributes: never an attribute a user declared, so never audited, warned
# about or tallied.
CVAT_BUILTIN_ATTRIBUTES = frozenset(("occluded", "rotation", "track_id", "keyframe", "outside", "z_order"))


@dataclass(frozen=True, slots=True)
class Annotation:
    """A tag or an object (a shape, or a whole track): its label and attribute values."""

    label: str
    attributes: dict[str, str]


@dataclass(slots=True)
class Frame:
    """An image or a video frame, with its tags and its objects (tuples once read; lists while a video is read).

    `video` names the video a frame belongs to (`task12/clip.mp4`), None for
    an image: frames of one video are not independent of each other, and the
    statistics resample them together.
    """

    name: str
    subset: str | None = None
    tags: Sequence[Annotation] = ()
    objects: Sequence[Annotation] = ()
    item_id: str = ""
    video: str | None = None
    # The task or job an image comes from (`task12`, `job57`), when the export says: it tells apart images
    # of different tasks that share a name.
    origin: str | None = None


@dataclass(slots=True)
class Track:
    """A track read whole: its item id (`task12/clip.mp4#track3`), its label and its majority values.

    `changed` names the attributes whose real value was not the same on all
    of its visible frames (the majority rule decided them).
    """

    item_id: str
    annotation: Annotation
    changed: tuple[str, ...] = ()


@dataclass
class AttributeSpec:
    """An attribute as the export's meta declares it (CVAT XML only), with the labels that declare it."""

    name: str
    input_type: str
    values: list[str]
    labels: list[str] = field(default_factory=list)


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
    # The tracks, each read into one annotation (kept with the objects).
    tracks: list[Track] = field(default_factory=list)
    # Every value of every attribute seen on a visible frame of a track, the
    # majority's losers and `unlabeled` included: a track's one annotation no
    # longer shows them, and they tell which attributes can be audited.
    track_values: dict[str, set[str]] = field(default_factory=dict)
    # Tags and objects (shapes, tracks) skipped because their label is empty.
    empty_label_tags: int = 0
    empty_label_objects: int = 0
    # Attributes seen with JSON booleans (COCO): checkboxes, which have no `unlabeled`.
    boolean_attributes: set[str] = field(default_factory=set)


class Tally:
    """The values of one object over many annotations (a track's visible frames), decided by majority.

    The rule, for each attribute:
    - `unlabeled` is not a value but the absence of one (nobody audited that
      frame), so it never votes against a real value: a track audited on 10
      of its 80 frames takes the value of those 10;
    - the real value on most frames wins;
    - a tie goes to the tied value seen first (on the earliest frame), so
      the result does not depend on how values are spelled;
    - `unlabeled` only when no frame has a real value.
    Attribute names CVAT adds by itself (`CVAT_BUILTIN_ATTRIBUTES`) are not tallied.
    """

    __slots__ = ("votes",)

    def __init__(self):
        # attribute -> value -> [frames with that value, position of the first one]
        self.votes: dict[str, dict[str, list[int]]] = {}

    def add(self, values: dict[str, str], position: int) -> None:
        """Count one annotation's values; `position` orders annotations (a frame number) for ties."""
        for name, value in values.items():
            if name in CVAT_BUILTIN_ATTRIBUTES:
                continue
            counts = self.votes.setdefault(name, {})
            vote = counts.get(value)
            if vote is None:
                counts[value] = [1, position]
            else:
                vote[0] += 1
                vote[1] = min(vote[1], position)

    def result(self) -> tuple[dict[str, str], tuple[str, ...]]:
        """The values decided, and the attributes that had more than one real value."""
        decided, changed = {}, []
        for name, counts in self.votes.items():
            real = [(-count, first, value) for value, (count, first) in counts.items() if value != UNLABELED]
            decided[name] = min(real)[2] if real else UNLABELED
            if len(real) > 1:
                changed.append(name)
        return decided, tuple(changed)


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

    def annotation(self, label: str, values: dict[str, str]) -> Annotation:
        """An Annotation of these, shared with the equal one seen before."""
        label, values = self.text(label), self.attributes(values)
        table_key = (label, id(values))
        found = self._annotations.get(table_key)
        return found if found is not None else self._keep(self._annotations, table_key, Annotation(label, values))

    def sequence(self, annotations: list[Annotation]) -> tuple[Annotation, ...]:
        """The annotations as a tuple, shared with a tuple of the same annotations seen before (short ones only)."""
        if not annotations:
            return ()
        if len(annotations) > 4:
            return tuple(annotations)
        key = tuple(id(annotation) for annotation in annotations)
        found = self._sequences.get(key)
        return found if found is not None else self._keep(self._sequences, key, tuple(annotations))
