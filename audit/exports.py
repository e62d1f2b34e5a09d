"""Reading CVAT exports into frames with their tags and objects.

Formats (as CVAT names them in its export dialog and API):
- "CVAT for images 1.1" and "CVAT for video 1.1": a zip holding
  `annotations.xml`, or that XML file itself (see `cvat_xml`);
- "COCO 1.0": a zip holding `annotations/instances_<subset>.json`, or that JSON
  file itself (see `coco`). COCO has no tags: per-object mode only.

A frame is what an item is made of: an image, or one frame of a video. Its id
is the image's name, or `<video>:<frame>` for a video frame (the video being
the task's source file as the export's meta names it). When one export holds
the same image name twice (two subsets of a project), those frames are told
apart as `<subset>/<name>`.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from . import coco, cvat_xml
from .archive import DEFAULT_MAX_UNPACKED_BYTES, check_member_names, find_member, open_member
from .errors import AuditError
from .model import Export


def load_export(path: str, max_unpacked_bytes: int = DEFAULT_MAX_UNPACKED_BYTES) -> Export:
    """The export at `path`: a zip, an annotations.xml or a COCO instances JSON."""
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
        export = read_zip(file, path, max_unpacked_bytes)
    else:
        # A bare annotations.xml or COCO JSON, told apart by their first character.
        text_start = head.lstrip(b"\xef\xbb\xbf \t\r\n")
        if not text_start.startswith((b"<", b"{")):
            raise AuditError(f"{path}: unknown format: expected a CVAT export (zip, annotations.xml or COCO instances JSON)")
        if file.stat().st_size > max_unpacked_bytes:
            raise AuditError(f"{path}: larger than the --max-unpacked-mb limit")
        with file.open("rb") as stream:
            if text_start.startswith(b"<"):
                export = cvat_xml.read(stream, path)
            else:
                export = coco.read([(coco.subset_of(file.name), coco.load_json(stream, path))], path)
    assign_item_ids(export)
    return export


def read_zip(file: Path, path: str, max_unpacked_bytes: int) -> Export:
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
                return cvat_xml.read(stream, path)
        coco_members = coco.instance_members(members)
        if not coco_members:
            raise AuditError(
                f"{path}: unknown format: the zip holds neither annotations.xml (CVAT for images/video 1.1) "
                "nor annotations/instances_<subset>.json (COCO 1.0)"
            )
        documents = []
        for member in coco_members:
            with open_member(archive, member, path, budget) as stream:
                documents.append((coco.subset_of(member.filename), coco.load_json(stream, f"{path}: {member.filename}")))
        return coco.read(documents, path)


def assign_item_ids(export: Export) -> None:
    """Give every frame its item id: its name, or `<subset>/<name>` when the name repeats in the export."""
    seen: dict[str, int] = {}
    for frame in export.frames:
        seen[frame.name] = seen.get(frame.name, 0) + 1
    ids = set()
    for frame in export.frames:
        item_id = frame.name
        if seen[frame.name] > 1 and frame.subset:
            item_id = f"{frame.subset}/{frame.name}"
        if item_id in ids:
            raise AuditError(f"{export.path}: the item {item_id!r} appears twice in the export")
        ids.add(item_id)
        frame.item_id = item_id
