"""Items and audited attributes, from exports and the optional schema.

An item is what a model sees and is scored on:
- by default a frame (image or video frame) whose target label is its one tag;
  a frame with no tag or with several tags is left out and counted;
- with `per_object`, every object instead (shape of an image:
  `<image>#<shape index>`; a track's box on one frame, when not outside:
  `<video>:<frame>#<track id>`), with the object's label and attributes.

The audited attributes are the schema's conditions and protected attributes;
without a schema, every attribute whose values include `unlabeled` (declared
in the export's meta, or, for COCO which declares none, seen on an item) is
taken as a condition. An attribute an item does not carry counts as
`unlabeled` for it: not audited.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise
from operator import attrgetter
from typing import Iterator

from .errors import AuditError
from .model import FORMAT_COCO, KEEP_BOTH, KEEP_OBJECTS, KEEP_TAGS, Annotation, Export, Shared
from .schema import UNLABELED, ProjectSchema

CONDITION = "condition"
PROTECTED = "protected"


@dataclass(frozen=True, slots=True)
class Attribute:
    """An audited attribute: its name, kind (condition or protected) and values (without `unlabeled`)."""

    name: str
    kind: str
    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Item:
    """One item: its id, target label, and its value of each audited attribute (`unlabeled` when not audited)."""

    id: str
    label: str
    values: dict[str, str]

    def audited(self, attribute: Attribute) -> bool:
        """True when the item has a real value for `attribute`."""
        return self.values.get(attribute.name, UNLABELED) != UNLABELED


@dataclass
class Dataset:
    """The items of all exports, the audited attributes, and what was left out."""

    items: list[Item]
    attributes: list[Attribute]
    mode: str
    excluded: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def fully_audited(self) -> list[Item]:
        """Items with a real value for every audited attribute."""
        return [item for item in self.items if all(item.audited(attribute) for attribute in self.attributes)]

    def labels(self) -> list[str]:
        """The target labels of the items, sorted."""
        return sorted({item.label for item in self.items})


def check_exports(exports: list[Export], per_object: bool) -> list[str]:
    """Refuse exports the mode cannot use; notes on those that will give no item."""
    notes = []
    for export in exports:
        if export.kept not in (KEEP_BOTH, KEEP_OBJECTS if per_object else KEEP_TAGS):
            raise ValueError(f"{export.path} was read without the {'objects' if per_object else 'tags'} this mode needs")
        if not per_object and export.format == FORMAT_COCO:
            raise AuditError(f"{export.path}: COCO 1.0 exports hold no tags, only objects: run with --per-object")
        if not per_object and not export.has_tags:
            notes.append(
                f"{export.path}: CVAT for video 1.1 exports carry no tags, so its frames have no target label; "
                "use --per-object, or export the video task as CVAT for images 1.1"
            )
    return notes


def excluded_frames(exports: list[Export], per_object: bool) -> dict[str, int]:
    """Frames left out in tag mode: those without a tag and those with several."""
    excluded = {"no_tag": 0, "several_tags": 0}
    if not per_object:
        for export in exports:
            for frame in export.frames:
                if not frame.tags:
                    excluded["no_tag"] += 1
                elif len(frame.tags) > 1:
                    excluded["several_tags"] += 1
    return excluded


def export_items(export: Export, per_object: bool) -> Iterator[tuple[str, Annotation]]:
    """(item id, annotation) of every item of `export`: each object, or each frame's one tag."""
    for frame in export.frames:
        if per_object:
            for position, obj in enumerate(frame.objects):
                yield f"{frame.item_id}#{position if obj.key is None else obj.key}", obj
        elif len(frame.tags) == 1:
            yield frame.item_id, frame.tags[0]


def seen_values(exports: list[Export], per_object: bool) -> dict[str, set[str]]:
    """Every attribute name the items carry, with the values seen (each shared attribute dict looked at once)."""
    seen: dict[str, set[str]] = {}
    done: set[int] = set()
    for export in exports:
        for frame in export.frames:
            annotations = frame.objects if per_object else frame.tags if len(frame.tags) == 1 else ()
            for annotation in annotations:
                values = annotation.attributes
                if id(values) in done:
                    continue
                if len(done) < Shared.LIMIT:
                    done.add(id(values))  # the exports hold the dict, so its id is not reused meanwhile
                for name, value in values.items():
                    seen.setdefault(name, set()).add(value)
    return seen


def audited_attributes(exports: list[Export], seen: dict[str, set[str]], schema: ProjectSchema | None) -> list[Attribute]:
    """The attributes to audit, with their values: declared first, then any others seen, sorted."""
    if schema is not None:
        declared = [(name, CONDITION, values) for name, values in schema.conditions.items()]
        declared += [(name, PROTECTED, values) for name, values in schema.protected.items()]
    else:
        declared = []
        names = []
        for export in exports:
            for spec in export.specs.values():
                if UNLABELED in spec.values and spec.name not in names:
                    names.append(spec.name)
        for name in sorted(seen):
            if UNLABELED in seen[name] and name not in names:
                names.append(name)
        for name in names:
            values = []
            for export in exports:
                spec = export.specs.get(name)
                if spec is not None:
                    values.extend(value for value in spec.values if value != UNLABELED and value not in values)
            declared.append((name, CONDITION, tuple(values)))
    attributes = []
    for name, kind, values in declared:
        extra = sorted(seen.get(name, set()) - set(values) - {UNLABELED})
        attributes.append(Attribute(name, kind, tuple(values) + tuple(extra)))
    return attributes


def build_dataset(exports: list[Export], per_object: bool, schema: ProjectSchema | None) -> Dataset:
    """Items and audited attributes of `exports`, sorted by id.

    Items whose audited values are equal share one values dict (as the
    exports share their attribute dicts): the dataset of a 600,000-image
    export holds little more than its items and their ids.
    """
    notes = check_exports(exports, per_object)
    attributes = audited_attributes(exports, seen_values(exports, per_object), schema)
    names = [attribute.name for attribute in attributes]
    shared: dict[tuple[str, ...], dict[str, str]] = {}
    items = []
    for export in exports:
        for item_id, annotation in export_items(export, per_object):
            key = tuple(annotation.attributes.get(name, UNLABELED) for name in names)
            values = shared.get(key)
            if values is None:
                values = dict(zip(names, key))
                if len(shared) < Shared.LIMIT:
                    shared[key] = values
            items.append(Item(item_id, annotation.label, values))
    items.sort(key=attrgetter("id"))
    for first, second in pairwise(items):
        if first.id == second.id:
            raise AuditError(duplicate_message(exports, per_object, first.id))
    if not attributes:
        notes.append(
            "no attribute to audit: declare conditions and protected attributes in the schema (--schema), "
            f"or give the attributes an `{UNLABELED}` value"
        )
    return Dataset(items, attributes, "per-object" if per_object else "tag", excluded_frames(exports, per_object), notes)


def duplicate_message(exports: list[Export], per_object: bool, item_id: str) -> str:
    """Why the item `item_id` is there twice: which exports hold it."""
    paths = [export.path for export in exports for found, _ in export_items(export, per_object) if found == item_id]
    if len(set(paths)) > 1:
        return f"the item {item_id!r} is in both {paths[0]} and {next(p for p in paths if p != paths[0])}: pass each export once"
    return f"the item {item_id!r} appears twice in {paths[0]}"


def require_items(dataset: Dataset) -> None:
    """Stop with a clear error when the exports gave no item at all."""
    if not dataset.items:
        reasons = (
            "; ".join(dataset.notes)
            if dataset.notes
            else (
                f"{dataset.excluded.get('no_tag', 0)} frames without a tag, "
                f"{dataset.excluded.get('several_tags', 0)} with several"
            )
        )
        raise AuditError(f"the exports hold no item ({reasons})")
