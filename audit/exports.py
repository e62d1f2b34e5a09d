"""Reading CVAT exports into frames with their tags and objects.

Formats (as CVAT names them in its export dialog and API):
- "CVAT for images 1.1" and "CVAT for video 1.1": a zip holding
  `annotations.xml`, or that XML file itself (see `cvat_xml`);
- "COCO 1.0": a zip holding `annotations/instances_<subset>.json`, or that JSON
  file itself (see `coco`). COCO has no tags: per-object mode only.

A frame is an image, or one frame of a video. Its id is the image's name, or
`<video>:<frame>` for a video frame, the video being the task's source file
as the export's meta names it, after the task's or job's id
(`task12/clip.mp4:40`, see `cvat_xml`). When one export holds the same image
name twice (two subsets of a project), those frames are told apart as
`<subset>/<name>`. A track (CVAT for video, or COCO annotations sharing a
`track_id`) is read whole and named by its reader (`task12/clip.mp4#track3`,
`default#track3`).

Images of different tasks or jobs may share names (every task of a project
may start at `0000.jpg`). When one image id occurs in more than one task or
job, within one export or across the exports audited together, every image
of those tasks or jobs is named `task<id>/<name>` (or `job<id>/<name>`)
instead, with a note (`qualify_by_origin`). Other images keep their plain
names, which prediction files use. The same task or job given twice (an
export passed twice) is not told apart: it is refused as a duplicate.
"""

from __future__ import annotations

import zipfile
from itertools import groupby, pairwise
from operator import attrgetter
from pathlib import Path

from . import coco, cvat_xml
from .archive import DEFAULT_MAX_UNPACKED_BYTES, check_member_names, find_member, open_member
from .errors import AuditError
from .model import KEEP_BOTH, Export, Shared


def load_export(path: str, max_unpacked_bytes: int = DEFAULT_MAX_UNPACKED_BYTES, keep: str = KEEP_BOTH) -> Export:
    """The export at `path`: a zip, an annotations.xml or a COCO instances JSON.

    `keep` says what of each frame the audit needs: its tags (tag mode,
    KEEP_TAGS), its objects (per-object mode, KEEP_OBJECTS) or both; what is
    not needed is not kept, which matters for exports with millions of shapes.
    """
    file = Path(path)
    if not file.exists():
        raise AuditError(f"{path}: no such file")
    if file.is_dir():
        raise AuditError(f"{path}: is a directory, not an export file")
    try:
        with file.open("rb") as stream:
            head = stream.read(64)
    except OSError as error:
        raise AuditError(f"cannot read {path}: {error.strerror}") from None
    if head.startswith(b"PK"):
        export = read_zip(file, path, max_unpacked_bytes, keep)
    else:
        # A bare annotations.xml or COCO JSON, told apart by their first character.
        text_start = head.lstrip(b"\xef\xbb\xbf \t\r\n")
        if not text_start.startswith((b"<", b"{")):
            raise AuditError(f"{path}: unknown format: expected a CVAT export (zip, annotations.xml or COCO instances JSON)")
        if file.stat().st_size > max_unpacked_bytes:
            raise AuditError(f"{path}: larger than the --max-unpacked-mb limit")
        with file.open("rb") as stream:
            if text_start.startswith(b"<"):
                export = cvat_xml.read(stream, path, keep)
            else:
                shared = Shared()
                instances = coco.load_instances(stream, path, coco.subset_of(file.name), keep, shared)
                export = coco.read([instances], path, keep, shared)
    assign_item_ids(export)
    return export


def read_zip(file: Path, path: str, max_unpacked_bytes: int, keep: str = KEEP_BOTH) -> Export:
    """An export zip: its annotations.xml (CVAT XML) or its annotations/instances_*.json (COCO)."""
    budget = [max_unpacked_bytes]
    try:
        archive = zipfile.ZipFile(file)
    except zipfile.BadZipFile as error:
        raise AuditError(f"{path}: not a readable zip ({error})") from None
    with archive:
        members = check_member_names(archive, path)
        xml_member = find_member(members, "annotations.xml")
        if xml_member is not None:
            with open_member(archive, xml_member, path, budget) as stream:
                return cvat_xml.read(stream, path, keep)
        coco_members = coco.instance_members(members)
        if not coco_members:
            raise AuditError(
                f"{path}: unknown format: the zip holds neither annotations.xml (CVAT for images/video 1.1) "
                "nor annotations/instances_<subset>.json (COCO 1.0)"
            )
        files = []
        shared = Shared()
        for member in coco_members:
            with open_member(archive, member, path, budget) as stream:
                where = f"{path}: {member.filename}"
                files.append(coco.load_instances(stream, where, coco.subset_of(member.filename), keep, shared))
        return coco.read(files, path, keep, shared)


def assign_item_ids(export: Export) -> None:
    """Give every frame its item id: its name, or `<subset>/<name>` when the name repeats in the export.

    Repeats are found by sorting (a copy of the frame list, not a table of
    every name), so that a large export costs little more memory here.
    """
    by_name = sorted(export.frames, key=attrgetter("name"))
    last = len(by_name) - 1
    for index, frame in enumerate(by_name):
        repeated = (index > 0 and by_name[index - 1].name == frame.name) or (
            index < last and by_name[index + 1].name == frame.name
        )
        frame.item_id = f"{frame.subset}/{frame.name}" if repeated and frame.subset else frame.name
    by_name.sort(key=attrgetter("item_id"))
    for first, second in pairwise(by_name):
        # Images of two tasks or jobs are told apart later, by `qualify_by_origin`.
        if first.item_id == second.item_id and (first.origin is None or first.origin == second.origin):
            raise AuditError(f"{export.path}: the item {first.item_id!r} appears twice in the export")


def word_list(words: list[str]) -> str:
    """`a`, `a and b`, `a, b and c`."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def qualify_by_origin(exports: list[Export]) -> list[str]:
    """Name `<origin>/<name>` every image of the tasks or jobs that share an image id with another; the notes.

    An image id held by images of more than one origin (task or job; images
    without one cannot be qualified) marks those origins; every image of a
    marked origin takes its qualified name. The same origin twice (one task
    in two exports) is not a reason: that is a duplicate, refused later.
    Found by sorting references to the images, not by a table of every name.
    """
    images = sorted(
        (frame for export in exports for frame in export.frames if frame.video is None), key=attrgetter("item_id")
    )
    marked: set[str] = set()
    example = None
    for item_id, group in groupby(images, key=attrgetter("item_id")):
        frames = list(group)
        origins = {frame.origin for frame in frames}
        if len(origins) > 1:
            named = sorted(origins - {None})
            marked.update(named)
            example = example or (item_id, named, next(frame.name for frame in frames if frame.origin == named[0]))
    if not example:
        return []
    for frame in images:
        if frame.origin in marked:
            frame.item_id = f"{frame.origin}/{frame.name}"
    item_id, origins, name = example
    return [
        f"images of {word_list(sorted(marked))} share names (e.g. {item_id!r} in {' and '.join(origins)}): every image "
        f"of those is named after its task or job, e.g. {origins[0] + '/' + name!r}; name them so in prediction files"
    ]
