"""CVAT's XML export, version 1.1: "CVAT for images 1.1" and "CVAT for video 1.1".

Structure, as CVAT writes it (cvat/apps/dataset_manager/formats/cvat.py:
`dump_as_cvat_annotation`, `dump_as_cvat_interpolation`; meta from
cvat/apps/dataset_manager/bindings.py `meta_for_task`, `JobData._init_meta`
and `ProjectData._init_meta`; spec at site/content/en/docs/other/xml_format.md):

    <annotations>
      <version>1.1</version>
      <meta>
        <task> (task export), <job> (job export) or <project><tasks><task>... (project export)
          <id> <name> (not for a job) <mode>annotation|interpolation</mode> <source>video.mp4</source> (video tasks)
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

CVAT writes a track's shape on every frame from its start to the frame where
it leaves (`outside="1"`: not visible there), keyframes and interpolated
frames alike. A track is one item (see `model.Tally` for how its values are
decided): it is tallied as its shapes stream by, so a track of thousands of
frames costs one small table, not one object per frame. "CVAT for video 1.1"
carries no tags at v2.73 (the interpolation dumper writes tracks only, and the
format page lists no tags); top-level `<tag frame=..>` elements are read all
the same if present, as tags of the frame.

Names. A video's frames and tracks are named after the video, qualified by
the task (or, in a job export, the job) they come from: `task12/clip.mp4:40`
for frame 40, `task12/clip.mp4#track3` for a track, `job57/video:40` in a
job export, whose meta names neither the task nor the file. So the exports of
two tasks, or of two jobs, of one project do not collide, and a frame has the
same name in a task export and in a project export. Without an id in the meta
the name is `<video>:<frame>` alone. A video task exported as "CVAT for
images 1.1" has one <image> per frame (named `frame_000012`): its frames are
named the same way. Images keep their own names, and remember the task or
job they come from (`Frame.origin`, `task12` or `job57`), so that images of
two tasks or jobs that share a name can be told apart (see `exports`).

Shapes of every kind in SHAPES are read. A shape, track or tag whose label is
empty (Datumaro's own CVAT test assets have them) is skipped and counted.

The file is read as a stream, and every element is dropped from the tree as
soon as it has ended and been read, at every depth: memory holds the open
elements and the one shape, tag or meta entry being read, never a whole
`<image>` (one image may hold millions of shapes) nor the document. The
elements read whole are the units: `<version>`; a shape or tag of an
`<image>`, a shape of a `<track>`, a top-level `<tag>`; in the meta, a task's
or job's `<id>`, `<name>`, `<mode>` and `<source>`, and a label's `<name>`,
`<parent>` and each of its `<attribute>` declarations. What lies inside a unit
is kept until the unit ends (a shape's `<attribute>` children, a skeleton's points).
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
    Tally,
    Track,
)

SHAPES = frozenset(("box", "polygon", "polyline", "points", "ellipse", "cuboid", "mask", "skeleton"))
SUPPORTED_VERSION = "1.1"
# The meta's entries for where frames come from: a task, or the one job of a job export.
SOURCE_KINDS = frozenset(("task", "job"))
SOURCE_FIELDS = frozenset(("id", "name", "mode", "source"))


class Source:
    """What the meta says of one task, or of the job a job export holds."""

    def __init__(self, kind: str, fields: dict[str, str]):
        self.kind = kind
        self.id = fields.get("id", "")
        self.name = fields.get("name", "")
        self.mode = fields.get("mode", "")
        self.source = fields.get("source", "")

    @property
    def video(self) -> str:
        """How the video is named in item ids: its file (or the task's name), after the task or job id."""
        video = self.source or self.name or "video"
        return f"{self.kind}{self.id}/{video}" if self.id else video


class _Label:
    """A label of the meta while it is read: its name, and its attribute declarations (None for a skeleton's point)."""

    __slots__ = ("name", "specs")

    def __init__(self):
        self.name = ""
        self.specs: list[AttributeSpec] | None = []


class _OpenTrack:
    """The <track> being read: where it comes from, its label, and the tally of its visible frames."""

    __slots__ = ("source", "label", "id", "subset", "tally", "visible")

    def __init__(self, source: Source | None, label: str, track_id: str, subset: str | None):
        self.source = source
        self.label = label
        self.id = track_id
        self.subset = subset
        self.tally = Tally()
        self.visible = 0


def text(element, tag: str) -> str:
    """The stripped text of the child `tag`, or ''."""
    child = element.find(tag)
    return (child.text or "").strip() if child is not None else ""


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
    if parent in SOURCE_KINDS:
        return tag in SOURCE_FIELDS
    if parent == "label":
        return tag in ("name", "parent") and path[-3] == "labels"
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
        self.sources: dict[str, Source] = {}
        self.specs: dict[str, AttributeSpec] = {}
        self.images: list[Frame] = []
        self.video_frames: dict[tuple[str, int], Frame] = {}
        self.tracks: list[Track] = []
        self.track_values: dict[str, set[str]] = {}
        self.empty_label_tags = 0
        self.empty_label_objects = 0
        self.saw_tracks = False
        self.track_count = 0
        self.saw_video_tags = False
        self.mode = ""
        # Open containers: the <image> or <track> being read, the meta's tasks (or job) and labels.
        self.in_image = False
        self.frame_tags: list[Annotation] = []
        self.frame_objects: list[Annotation] = []
        self.track: _OpenTrack | None = None
        self.source_fields: list[tuple[str, dict[str, str]]] = []
        self.labels: list[_Label] = []

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
            self.open_track(element)
        elif depth > 2 and tags[1] == "meta":
            if tag in SOURCE_KINDS:
                self.source_fields.append((tag, {}))
            elif tag == "label" and tags[-2] == "labels":
                self.labels.append(_Label())

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
                self.close_track()
            elif tag == "tag":
                self.video_tag(element)
        elif depth == 3 and tags[1] == "image":
            self.image_child(element)
        elif depth == 3 and tags[1] == "track":
            self.track_shape(element)
        elif depth > 2 and tags[1] == "meta":
            self.meta_end(tags, element)

    def meta_end(self, tags: list[str], element) -> None:
        """The end of an element of the meta: a task's or job's field, a task or job, a label's parts, a label."""
        tag, parent = element.tag, tags[-2]
        if is_unit(tags):
            if parent in SOURCE_KINDS and self.source_fields:
                self.source_fields[-1][1][tag] = (element.text or "").strip()
            elif tag == "name" and self.labels:
                self.labels[-1].name = (element.text or "").strip()
            elif tag == "parent" and self.labels:
                if (element.text or "").strip():
                    # A skeleton's point labels: their attributes belong to the points, not to the item.
                    self.labels[-1].specs = None
            elif tag == "attribute" and self.labels and self.labels[-1].specs is not None:
                listed = element.find("values")
                values = [] if listed is None else [v.strip() for v in (listed.text or "").split("\n") if v.strip()]
                self.labels[-1].specs.append(AttributeSpec(text(element, "name"), text(element, "input_type"), values))
        elif tag in SOURCE_KINDS and self.source_fields:
            kind, fields = self.source_fields.pop()
            source = Source(kind, fields)
            self.sources[source.id] = source
            self.mode = self.mode or source.mode
        elif tag == "label" and parent == "labels" and self.labels:
            label = self.labels.pop()
            for declared in label.specs or ():
                spec = self.specs.setdefault(declared.name, AttributeSpec(declared.name, declared.input_type, []))
                spec.values.extend(value for value in declared.values if value not in spec.values)
                if label.name and label.name not in spec.labels:
                    spec.labels.append(label.name)

    def source_of(self, element) -> Source | None:
        """The task an <image>, <track> or <tag> belongs to: its task_id, or the export's only task or job."""
        task_id = element.get("task_id")
        if task_id is not None:
            return self.sources.get(task_id)
        if len(self.sources) == 1:
            return next(iter(self.sources.values()))
        return None

    def open_image(self, element) -> None:
        """An <image> starts: its shapes and tags are collected as they end."""
        self.in_image = True
        self.frame_tags, self.frame_objects = [], []

    def image_child(self, element) -> None:
        """A tag or shape of the open <image>; shapes are numbered by their position, in document order."""
        if not self.in_image:
            return
        label = element.get("label")
        if element.tag == "tag":
            if not label:
                self.empty_label_tags += 1
            elif self.keep_tags:
                self.frame_tags.append(self.shared.annotation(label, attribute_values(element, self.shared)))
        elif element.tag in SHAPES:
            if not label:
                self.empty_label_objects += 1
            elif self.keep_objects:
                self.frame_objects.append(self.shared.annotation(label, attribute_values(element, self.shared)))

    def close_image(self, element) -> None:
        """The open <image> ends: it joins the frames, named from its own attributes (a video's frames after the video)."""
        self.in_image = False
        source = self.source_of(element)
        video = None
        if source is not None and source.mode == "interpolation":
            video = self.shared.text(source.video)
            name = f"{video}:{int(element.get('id'))}"
        else:
            name = element.get("name")
            if not name:
                raise KeyError("an <image> without a name")
        subset = element.get("subset")
        origin = self.shared.text(f"{source.kind}{source.id}") if source is not None and source.id else None
        frame = Frame(name=name, subset=self.shared.text(subset) if subset is not None else None, video=video, origin=origin)
        frame.tags = self.shared.sequence(self.frame_tags)
        frame.objects = self.shared.sequence(self.frame_objects)
        self.frame_tags, self.frame_objects = [], []
        self.images.append(frame)

    def video_frame(self, source: Source | None, number: int, subset: str | None) -> Frame:
        """The frame `number` of the source's video, created on first use."""
        video = self.shared.text(source.video if source is not None else "video")
        key = (video, number)
        frame = self.video_frames.get(key)
        if frame is None:
            frame = self.video_frames[key] = Frame(name=f"{video}:{number}", subset=subset, tags=[], objects=[], video=video)
        return frame

    def open_track(self, element) -> None:
        """A top-level <track> starts: its visible shapes will be tallied (one with an empty label is counted, then skipped)."""
        self.saw_tracks = True
        self.track_count += 1
        # CVAT numbers every track; one without an id is named by its position among the tracks.
        track_id = element.get("id", str(self.track_count - 1))
        label = element.get("label") or ""
        if not label:
            self.empty_label_objects += 1
        subset = element.get("subset")
        self.track = _OpenTrack(self.source_of(element), label, track_id, subset and self.shared.text(subset))

    def track_shape(self, element) -> None:
        """A shape of the open <track>: one more visible frame of it, unless it is outside."""
        track = self.track
        if track is None or element.tag not in SHAPES or element.get("outside") == "1":
            return
        number = int(element.get("frame"))
        if self.keep_tags:
            # The frame exists even without a tag: tag mode counts it among the frames without one.
            self.video_frame(track.source, number, track.subset)
        if self.keep_objects and track.label:
            track.tally.add(attribute_values(element, self.shared), number)
            track.visible += 1

    def close_track(self) -> None:
        """The open <track> ends: with a label and a visible frame, it is one item, its values by majority."""
        track, self.track = self.track, None
        if track is None or not track.label or not track.visible:
            return
        for name, counts in track.tally.votes.items():
            self.track_values.setdefault(name, set()).update(counts)
        values, changed = track.tally.result()
        video = track.source.video if track.source is not None else "video"
        annotation = self.shared.annotation(track.label, values)
        self.tracks.append(Track(f"{video}#track{track.id}", annotation, changed))

    def video_tag(self, element) -> None:
        """A top-level <tag frame=..> of a video export: a tag of that frame."""
        self.saw_video_tags = True
        subset = element.get("subset")
        frame = self.video_frame(self.source_of(element), int(element.get("frame")), subset and self.shared.text(subset))
        label = element.get("label")
        if not label:
            self.empty_label_tags += 1
        elif self.keep_tags:
            frame.tags.append(self.shared.annotation(label, attribute_values(element, self.shared)))

    def export(self) -> Export:
        """The Export read so far: images if any, else video frames; and the tracks."""
        common = {
            "specs": self.specs,
            "kept": self.keep,
            "tracks": self.tracks,
            "track_values": self.track_values,
            "empty_label_tags": self.empty_label_tags,
            "empty_label_objects": self.empty_label_objects,
        }
        if self.images:
            return Export(self.path, FORMAT_IMAGES, self.images, has_tags=True, **common)
        if self.saw_tracks or self.saw_video_tags or self.mode == "interpolation":
            frames = [self.video_frames[key] for key in sorted(self.video_frames)]
            for frame in frames:
                frame.tags, frame.objects = tuple(frame.tags), tuple(frame.objects)
            return Export(self.path, FORMAT_VIDEO, frames, has_tags=self.saw_video_tags, **common)
        return Export(self.path, FORMAT_IMAGES, [], has_tags=True, **common)
