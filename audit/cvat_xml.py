"""CVAT's XML export, version 1.1: "CVAT for images 1.1" and "CVAT for video 1.1".

Structure, as CVAT writes it (cvat/apps/dataset_manager/formats/cvat.py:
`dump_as_cvat_annotation`, `dump_as_cvat_interpolation`; meta from
cvat/apps/dataset_manager/bindings.py `meta_for_task` and `ProjectData._init_meta`;
spec at site/content/en/docs/other/xml_format.md):

    <annotations>
      <version>1.1</version>
      <meta>
        <task> (task export) or <project><tasks><task>... (project export)
          <id> <name> <mode>annotation|interpolation</mode> <source>video.mp4</source> (video tasks)
          <labels><label><name>car</name><type>any</type>
            <attributes><attribute><name>lighting</name><mutable>False</mutable>
              <input_type>radio</input_type><default_value>unlabeled</default_value>
              <values>unlabeled\nday\nnight</values></attribute></attributes></label></labels>
      </meta>
      images:  <image id="0" name="a.jpg" [subset=".." task_id=".."] width height>
                 <box label="car" source="manual" occluded="0" ...><attribute name="lighting">day</attribute></box>
                 <polygon|polyline|points|ellipse|cuboid|mask|skeleton ...> (same)
                 <tag label="car" source="manual"><attribute name="lighting">day</attribute></tag>
               </image>
      video:   <track id="0" label="car" source="manual" [task_id subset]>
                 <box frame="12" outside="0" occluded="0" keyframe="1" ...><attribute name=..>..</attribute></box>
               </track>
    </annotations>

CVAT writes a track's box on every frame from its start to the frame where it
leaves (`outside="1"`, not an object). "CVAT for video 1.1" carries no tags at
v2.73 (the interpolation dumper writes tracks only, and the format page lists
no tags); top-level `<tag frame=..>` elements are read all the same if present.
A video task exported as "CVAT for images 1.1" has one <image> per frame,
named `frame_000012`: its items are named `<video>:<frame>` like the video
export's, from the task's `<source>`.

The file is read as a stream, and every element is dropped from the tree as
soon as it has ended and been read, at every depth: memory holds the open
elements and the one shape, tag or meta entry being read, never a whole
`<image>` (one image may hold millions of shapes) nor the document. The
elements read whole are the units: `<version>`; a shape or tag of an
`<image>`, a shape of a `<track>`, a top-level `<tag>`; in the meta, a task's
`<id>`, `<name>`, `<mode>` and `<source>`, and a label's `<parent>` and each
of its `<attribute>` declarations. What lies inside a unit is kept until the
unit ends (a shape's `<attribute>` children, a skeleton's points).
"""

from __future__ import annotations

from typing import BinaryIO

from .archive import iter_xml
from .errors import AuditError, reason
from .model import (
    FORMAT_IMAGES,
    FORMAT_VIDEO,
    KEEP_BOTH,
    KEEP_OBJECTS,
    KEEP_TAGS,
    Annotation,
    AttributeSpec,
    Export,
    Frame,
    Shared,
)

SHAPES = frozenset(("box", "polygon", "polyline", "points", "ellipse", "cuboid", "mask", "skeleton"))
SUPPORTED_VERSION = "1.1"
TASK_FIELDS = frozenset(("id", "name", "mode", "source"))


class Task:
    """What the meta says of one task."""

    def __init__(self, fields: dict[str, str]):
        self.id = fields.get("id", "")
        self.name = fields.get("name", "")
        self.mode = fields.get("mode", "")
        self.source = fields.get("source", "")

    @property
    def video(self) -> str:
        """How the task's video is named in item ids."""
        return self.source or self.name or "video"


def text(element, tag: str) -> str:
    """The stripped text of the child `tag`, or ''."""
    child = element.find(tag)
    return (child.text or "").strip() if child is not None else ""


def label_of(element) -> str:
    """The `label` attribute of a shape, track or tag, which CVAT always writes."""
    label = element.get("label")
    if not label:
        raise KeyError(f"a <{element.tag}> without a label")
    return label


def attribute_values(element, shared: Shared) -> dict[str, str]:
    """The `<attribute name=..>value</attribute>` children of a shape or tag."""
    values = {}
    for child in element.findall("attribute"):
        name = child.get("name")
        if name is not None:
            values[shared.text(name)] = shared.text(child.text or "")
    return values


def is_unit(path: list[str]) -> bool:
    """Whether the element at the end of `path` (tags from the root) is read whole when it ends."""
    depth, tag = len(path), path[-1]
    if depth < 2:
        return False
    if depth == 2:
        return tag in ("version", "tag")
    parent = path[-2]
    if depth == 3 and parent == "image":
        return tag in SHAPES or tag == "tag"
    if depth == 3 and parent == "track":
        return tag in SHAPES
    if path[1] != "meta":
        return False
    if parent == "task":
        return tag in TASK_FIELDS
    if parent == "label":
        return tag == "parent" and path[-3] == "labels"
    return tag == "attribute" and parent == "attributes" and path[-3] == "label" and path[-4] == "labels"


def read(stream: BinaryIO, path: str, keep: str = KEEP_BOTH) -> Export:
    """Read a CVAT XML 1.1 export (images or video) from `stream`, keeping the frames' tags, objects or both."""
    reader = _Reader(path, keep)
    elements = []  # the open elements, the root first
    tags: list[str] = []  # their tags
    unit = 0  # the depth of the open unit (see the module docstring), 0 if none
    for event, element in iter_xml(stream, path):
        if event == "start":
            elements.append(element)
            tags.append(element.tag)
            if len(elements) == 1 and element.tag != "annotations":
                raise AuditError(f"{path}: not a CVAT XML export (the root element is <{element.tag}>, not <annotations>)")
            if not unit:
                if is_unit(tags):
                    unit = len(tags)
                else:
                    reader.handle(reader.start, tags, element)
            continue
        depth = len(elements)
        if not unit or unit == depth:
            reader.handle(reader.end, tags, element)
            unit = 0
            if depth > 1:
                # Drop the finished element (and with it all it held) from its parent.
                del elements[-2][:]
        elements.pop()
        tags.pop()
    if not reader.started:
        raise AuditError(f"{path}: empty XML document")
    return reader.export()


class _Reader:
    """Collects meta, images, tracks and tags as their elements start and end."""

    def __init__(self, path: str, keep: str):
        self.path = path
        self.keep_tags = keep in (KEEP_TAGS, KEEP_BOTH)
        self.keep_objects = keep in (KEEP_OBJECTS, KEEP_BOTH)
        self.keep = keep
        self.shared = Shared()
        self.started = False
        self.tasks: dict[str, Task] = {}
        self.specs: dict[str, AttributeSpec] = {}
        self.images: list[Frame] = []
        self.video_frames: dict[tuple[str, int], Frame] = {}
        self.saw_tracks = False
        self.saw_video_tags = False
        self.mode = ""
        # Open containers: the <image> or <track> being read, the meta's tasks and labels.
        self.in_image = False
        self.frame_tags: list[Annotation] = []
        self.frame_objects: list[Annotation] = []
        self.track: tuple[Task | None, str, str, str | None] | None = None
        self.task_fields: list[dict[str, str]] = []
        self.label_specs: list[list[AttributeSpec] | None] = []

    def handle(self, method, tags: list[str], element) -> None:
        """Call `method`, turning what a malformed element raises into one clear error."""
        self.started = True
        try:
            method(tags, element)
        except (ValueError, KeyError, TypeError) as error:
            raise AuditError(f"{self.path}: malformed <{element.tag}> element: {reason(error)}") from None

    def start(self, tags: list[str], element) -> None:
        """An element that is not a unit opens: containers note what their children need."""
        depth, tag = len(tags), element.tag
        if depth == 2 and tag == "image":
            self.open_image(element)
        elif depth == 2 and tag == "track":
            self.saw_tracks = True
            subset = element.get("subset")
            self.track = (self.task_of(element), label_of(element), element.get("id"), subset and self.shared.text(subset))
        elif depth > 2 and tags[1] == "meta":
            if tag == "task":
                self.task_fields.append({})
            elif tag == "label" and tags[-2] == "labels":
                self.label_specs.append([])

    def end(self, tags: list[str], element) -> None:
        """A unit, or an element outside every unit, ends."""
        depth, tag = len(tags), element.tag
        if depth == 2:
            if tag == "version":
                version = (element.text or "").strip()
                if version != SUPPORTED_VERSION:
                    raise AuditError(f"{self.path}: CVAT XML version {version!r} is not supported (expected {SUPPORTED_VERSION})")
            elif tag == "image":
                self.close_image(element)
            elif tag == "track":
                self.track = None
            elif tag == "tag":
                self.video_tag(element)
        elif depth == 3 and tags[1] == "image":
            self.image_child(element)
        elif depth == 3 and tags[1] == "track":
            self.track_shape(element)
        elif depth > 2 and tags[1] == "meta":
            self.meta_end(tags, element)

    def meta_end(self, tags: list[str], element) -> None:
        """The end of an element of the meta: a task's field, a task, a label's attribute or parent, a label."""
        tag, parent = element.tag, tags[-2]
        if is_unit(tags):
            if parent == "task" and self.task_fields:
                self.task_fields[-1][tag] = (element.text or "").strip()
            elif tag == "parent" and self.label_specs:
                if (element.text or "").strip():
                    # A skeleton's point labels: their attributes belong to the points, not to the item.
                    self.label_specs[-1] = None
            elif tag == "attribute" and self.label_specs and self.label_specs[-1] is not None:
                listed = element.find("values")
                values = [] if listed is None else [v.strip() for v in (listed.text or "").split("\n") if v.strip()]
                self.label_specs[-1].append(AttributeSpec(text(element, "name"), text(element, "input_type"), values))
        elif tag == "task" and self.task_fields:
            task = Task(self.task_fields.pop())
            self.tasks[task.id] = task
            self.mode = self.mode or task.mode
        elif tag == "label" and parent == "labels" and self.label_specs:
            for declared in self.label_specs.pop() or ():
                spec = self.specs.setdefault(declared.name, AttributeSpec(declared.name, declared.input_type, []))
                spec.values.extend(value for value in declared.values if value not in spec.values)

    def task_of(self, element) -> Task | None:
        """The task an <image>, <track> or <tag> belongs to: its task_id, or the export's only task."""
        task_id = element.get("task_id")
        if task_id is not None:
            return self.tasks.get(task_id)
        if len(self.tasks) == 1:
            return next(iter(self.tasks.values()))
        return None

    def open_image(self, element) -> None:
        """An <image> starts: its shapes and tags are collected as they end."""
        self.in_image = True
        self.frame_tags, self.frame_objects = [], []

    def image_child(self, element) -> None:
        """A tag or shape of the open <image>; shapes are numbered by their position, in document order."""
        if not self.in_image:
            return
        if element.tag == "tag":
            if self.keep_tags:
                self.frame_tags.append(self.shared.annotation(label_of(element), attribute_values(element, self.shared)))
        elif element.tag in SHAPES and self.keep_objects:
            self.frame_objects.append(self.shared.annotation(label_of(element), attribute_values(element, self.shared)))

    def close_image(self, element) -> None:
        """The open <image> ends: it joins the frames, named from its own attributes."""
        self.in_image = False
        task = self.task_of(element)
        if task is not None and task.mode == "interpolation":
            name = f"{task.video}:{int(element.get('id'))}"
        else:
            name = element.get("name")
            if not name:
                raise KeyError("an <image> without a name")
        subset = element.get("subset")
        frame = Frame(name=name, subset=self.shared.text(subset) if subset is not None else None)
        frame.tags = self.shared.sequence(self.frame_tags)
        frame.objects = self.shared.sequence(self.frame_objects)
        self.frame_tags, self.frame_objects = [], []
        self.images.append(frame)

    def video_frame(self, task: Task | None, number: int, subset: str | None) -> Frame:
        """The frame `number` of the task's video, created on first use."""
        video = task.video if task is not None else "video"
        key = (video, number)
        frame = self.video_frames.get(key)
        if frame is None:
            frame = self.video_frames[key] = Frame(name=f"{video}:{number}", subset=subset, tags=[], objects=[])
        return frame

    def track_shape(self, element) -> None:
        """A shape of the open <track>: an object on its frame unless it is outside."""
        if self.track is None or element.tag not in SHAPES or element.get("outside") == "1":
            return
        task, label, track_id, subset = self.track
        frame = self.video_frame(task, int(element.get("frame")), subset)
        if self.keep_objects:
            frame.objects.append(self.shared.annotation(label, attribute_values(element, self.shared), str(track_id)))

    def video_tag(self, element) -> None:
        """A top-level <tag frame=..> of a video export."""
        self.saw_video_tags = True
        subset = element.get("subset")
        frame = self.video_frame(self.task_of(element), int(element.get("frame")), subset and self.shared.text(subset))
        if self.keep_tags:
            frame.tags.append(self.shared.annotation(label_of(element), attribute_values(element, self.shared)))

    def export(self) -> Export:
        """The Export read so far: images if any, else video frames."""
        if self.images:
            return Export(self.path, FORMAT_IMAGES, self.images, self.specs, has_tags=True, kept=self.keep)
        if self.saw_tracks or self.saw_video_tags or self.mode == "interpolation":
            frames = [self.video_frames[key] for key in sorted(self.video_frames)]
            for frame in frames:
                frame.tags, frame.objects = tuple(frame.tags), tuple(frame.objects)
            return Export(self.path, FORMAT_VIDEO, frames, self.specs, has_tags=self.saw_video_tags, kept=self.keep)
        return Export(self.path, FORMAT_IMAGES, [], self.specs, has_tags=True, kept=self.keep)
