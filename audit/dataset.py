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

from .errors import AuditError
from .model import FORMAT_COCO, Export
from .schema import UNLABELED, ProjectSchema

CONDITION = "condition"
PROTECTED = "protected"


@dataclass(frozen=True)
class Attribute:
    """An audited attribute: its name, kind (condition or protected) and values (without `unlabeled`)."""

    name: str
    kind: str
    values: tuple[str, ...]


@dataclass(frozen=True)
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


def raw_items(exports: list[Export], per_object: bool) -> tuple[list[tuple[str, str, dict[str, str]]], dict[str, int], list[str]]:
    """(id, label, all attribute values) of every item, the counts of frames left out, and notes."""
    items = []
    excluded = {"no_tag": 0, "several_tags": 0}
    notes = []
    owner: dict[str, str] = {}
    for export in exports:
        if not per_object and export.format == FORMAT_COCO:
            raise AuditError(f"{export.path}: COCO 1.0 exports hold no tags, only objects: run with --per-object")
        if not per_object and not export.has_tags:
            notes.append(
                f"{export.path}: CVAT for video 1.1 exports carry no tags, so its frames have no target label; "
                "use --per-object, or export the video task as CVAT for images 1.1"
            )
        for frame in export.frames:
            if per_object:
                for obj in frame.objects:
                    items.append((f"{frame.item_id}#{obj.key}", obj.label, obj.attributes, export.path))
            elif len(frame.tags) == 1:
                tag = frame.tags[0]
                items.append((frame.item_id, tag.label, tag.attributes, export.path))
            elif frame.tags:
                excluded["several_tags"] += 1
            else:
                excluded["no_tag"] += 1
    result = []
    for item_id, label, values, path in items:
        if item_id in owner:
            raise AuditError(f"the item {item_id!r} is in both {owner[item_id]} and {path}: pass each export once")
        owner[item_id] = path
        result.append((item_id, label, values))
    return result, excluded, notes


def audited_attributes(
    exports: list[Export], raw: list[tuple[str, str, dict[str, str]]], schema: ProjectSchema | None
) -> list[Attribute]:
    """The attributes to audit, with their values: declared first, then any others seen, sorted."""
    seen: dict[str, set[str]] = {}
    for _, _, values in raw:
        for name, value in values.items():
            seen.setdefault(name, set()).add(value)
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
    """Items and audited attributes of `exports`."""
    raw, excluded, notes = raw_items(exports, per_object)
    attributes = audited_attributes(exports, raw, schema)
    items = [
        Item(item_id, label, {attribute.name: values.get(attribute.name, UNLABELED) for attribute in attributes})
        for item_id, label, values in raw
    ]
    items.sort(key=lambda item: item.id)
    if not attributes:
        notes.append(
            "no attribute to audit: declare conditions and protected attributes in the schema (--schema), "
            f"or give the attributes an `{UNLABELED}` value"
        )
    return Dataset(items, attributes, "per-object" if per_object else "tag", excluded, notes)


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
