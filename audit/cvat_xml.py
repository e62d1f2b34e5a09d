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
"""

from __future__ import annotations

from typing import BinaryIO

from .archive import iter_xml
from .errors import AuditError
from .model import FORMAT_IMAGES, FORMAT_VIDEO, Annotation, AttributeSpec, Export, Frame

SHAPES = ("box", "polygon", "polyline", "points", "ellipse", "cuboid", "mask", "skeleton")
SUPPORTED_VERSION = "1.1"


class Task:
    """What the meta says of one task."""

    def __init__(self, element):
        self.id = text(element, "id")
        self.name = text(element, "name")
        self.mode = text(element, "mode")
        self.source = text(element, "source")

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


def attribute_values(element) -> dict[str, str]:
    """The `<attribute name=..>value</attribute>` children of a shape or tag."""
    values = {}
    for child in element.findall("attribute"):
        name = child.get("name")
        if name is not None:
            values[name] = child.text or ""
    return values


def read(stream: BinaryIO, path: str) -> Export:
    """Read a CVAT XML 1.1 export (images or video) from `stream`."""
    reader = _Reader(path)
    depth = 0
    root = None
    for event, element in iter_xml(stream, path):
        if event == "start":
            if root is None:
                root = element
                if element.tag != "annotations":
                    raise AuditError(f"{path}: not a CVAT XML export (the root element is <{element.tag}>, not <annotations>)")
            depth += 1
            continue
        depth -= 1
        if depth == 1:
            try:
                reader.top_level(element)
            except (ValueError, KeyError, TypeError) as error:
                raise AuditError(f"{path}: malformed <{element.tag}> element: {error}") from None
            # Top-level elements are done with: drop them so memory stays flat on big exports.
            root.clear()
    if root is None:
        raise AuditError(f"{path}: empty XML document")
    return reader.export()


class _Reader:
    """Collects meta, images, tracks and tags as their elements end."""

    def __init__(self, path: str):
        self.path = path
        self.tasks: dict[str, Task] = {}
        self.specs: dict[str, AttributeSpec] = {}
        self.images: list[Frame] = []
        self.video_frames: dict[tuple[str, int], Frame] = {}
        self.saw_tracks = False
        self.saw_video_tags = False
        self.mode = ""

    def top_level(self, element) -> None:
        """Dispatch one finished top-level element."""
        if element.tag == "version":
            version = (element.text or "").strip()
            if version != SUPPORTED_VERSION:
                raise AuditError(f"{self.path}: CVAT XML version {version!r} is not supported (expected {SUPPORTED_VERSION})")
        elif element.tag == "meta":
            self.meta(element)
        elif element.tag == "image":
            self.image(element)
        elif element.tag == "track":
            self.track(element)
        elif element.tag == "tag":
            self.video_tag(element)

    def meta(self, element) -> None:
        """Tasks (id, name, mode, video source) and the labels' attribute declarations."""
        for task_element in element.iter("task"):
            task = Task(task_element)
            self.tasks[task.id] = task
            self.mode = self.mode or task.mode
        for labels in element.iter("labels"):
            for label in labels.findall("label"):
                if text(label, "parent"):
                    # A skeleton's point labels: their attributes belong to the points, not to the item.
                    continue
                for attribute in label.findall("attributes/attribute"):
                    name = text(attribute, "name")
                    values_element = attribute.find("values")
                    values = (
                        []
                        if values_element is None
                        else [v.strip() for v in (values_element.text or "").split("\n") if v.strip()]
                    )
                    spec = self.specs.setdefault(name, AttributeSpec(name, text(attribute, "input_type"), []))
                    spec.values.extend(value for value in values if value not in spec.values)

    def task_of(self, element) -> Task | None:
        """The task an <image>, <track> or <tag> belongs to: its task_id, or the export's only task."""
        task_id = element.get("task_id")
        if task_id is not None:
            return self.tasks.get(task_id)
        if len(self.tasks) == 1:
            return next(iter(self.tasks.values()))
        return None

    def image(self, element) -> None:
        """One <image>: its tags, and its shapes numbered in document order."""
        task = self.task_of(element)
        if task is not None and task.mode == "interpolation":
            name = f"{task.video}:{int(element.get('id'))}"
        else:
            name = element.get("name")
            if not name:
                raise KeyError("an <image> without a name")
        frame = Frame(name=name, subset=element.get("subset"))
        shape_index = 0
        for child in element:
            if child.tag == "tag":
                frame.tags.append(Annotation(label_of(child), attribute_values(child)))
            elif child.tag in SHAPES:
                frame.objects.append(Annotation(label_of(child), attribute_values(child), str(shape_index)))
                shape_index += 1
        self.images.append(frame)

    def video_frame(self, task: Task | None, number: int, subset: str | None) -> Frame:
        """The frame `number` of the task's video, created on first use."""
        video = task.video if task is not None else "video"
        key = (video, number)
        if key not in self.video_frames:
            self.video_frames[key] = Frame(name=f"{video}:{number}", subset=subset)
        return self.video_frames[key]

    def track(self, element) -> None:
        """One <track>: an object on every frame where its shape is not outside."""
        self.saw_tracks = True
        task = self.task_of(element)
        label = label_of(element)
        track_id = element.get("id")
        for shape in element:
            if shape.tag not in SHAPES or shape.get("outside") == "1":
                continue
            frame = self.video_frame(task, int(shape.get("frame")), element.get("subset"))
            frame.objects.append(Annotation(label, attribute_values(shape), str(track_id)))

    def video_tag(self, element) -> None:
        """A top-level <tag frame=..> of a video export."""
        self.saw_video_tags = True
        frame = self.video_frame(self.task_of(element), int(element.get("frame")), element.get("subset"))
        frame.tags.append(Annotation(label_of(element), attribute_values(element)))

    def export(self) -> Export:
        """The Export read so far: images if any, else video frames."""
        if self.images:
            return Export(self.path, FORMAT_IMAGES, self.images, self.specs, has_tags=True)
        if self.saw_tracks or self.saw_video_tags or self.mode == "interpolation":
            frames = [self.video_frames[key] for key in sorted(self.video_frames)]
            return Export(self.path, FORMAT_VIDEO, frames, self.specs, has_tags=self.saw_video_tags)
        return Export(self.path, FORMAT_IMAGES, [], self.specs, has_tags=True)
