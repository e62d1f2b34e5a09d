"""Items, the units they are resampled in, and audited attributes, from exports and the optional schema.

An item is what a model sees and is scored on:
- by default (tag mode) a frame, image or video frame, whose target label is
  its one tag; a frame with no tag or with several tags is left out and counted;
- with `per_object`, every object instead: a shape of an image
  (`<image>#<shape index>`), or a whole track of a video
  (`task12/clip.mp4#track3`; in COCO, annotations sharing a `track_id`:
  `<subset>#track<id>`), with its label and attributes. A track's value of an
  attribute is the value on most of its visible frames (`model.Tally`:
  `unlabeled` frames do not vote, ties go to the value seen first);
- with `multi_label` (tags only), every tag of a frame instead
  (`<image>#<label>`), each label counted once per frame: two `car` tags on
  one image are one `car` item, its values decided by the same majority rule.

A shape, track or tag with an empty label is skipped and counted
(`excluded["empty_label"]`).

Items are not all independent: the boxes of one image, the frames of one
video, the tags of one image share what the image or video shows. Each item
names its `cluster`, the unit the statistics resample as a whole: the item
itself for an image (tag mode) and for a track; the image for its objects and
for its tags (multi-label); the video for its frames, and for the objects and
tags of its frames. `Dataset.units` says it in words ("objects in 40 images").

The audited attributes are the schema's conditions and protected attributes;
without a schema, every attribute whose values include `unlabeled` (declared
in the export's meta, or, for COCO which declares none, seen on an item).
Only `unlabeled` tells an item nobody audited from an audited one, so an
attribute without it is left out with a note (without a schema), or refused
(with one); so is a checkbox, which has no `unlabeled` and whose default
`false` looks audited. A schema attribute an export neither declares nor
carries is refused too. Each attribute knows the target labels that carry it
(`Attribute.labels`: the labels whose meta declares it, or on which it is
seen): coverage counts items of those labels only, and an item is fully
audited when it has a value for every attribute its label carries. An
attribute an item does not carry counts as `unlabeled` for it: not audited.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise
from operator import attrgetter
from typing import Iterator

from .errors import AuditError
from .model import (
    CVAT_BUILTIN_ATTRIBUTES,
    FORMAT_COCO,
    KEEP_BOTH,
    KEEP_OBJECTS,
    KEEP_TAGS,
    UNLABELED,
    Annotation,
    Export,
    Shared,
    Tally,
)
from .exports import qualify_by_origin
from .schema import ProjectSchema

CONDITION = "condition"
PROTECTED = "protected"

MODE_TAG = "tag"
MODE_PER_OBJECT = "per-object"
MODE_MULTI_LABEL = "multi-label"

CHECKBOX = "checkbox"

# What an item is, and what its cluster is when it is not the item itself:
# (what the items are called, what they are grouped in, or None). In the order
# `Dataset.units` lists them.
IMAGES = ("images", None)
FRAMES = ("frames", "video")
OBJECTS_IN_IMAGES = ("objects", "image")
OBJECTS_IN_VIDEOS = ("objects", "video")
TRACKS = ("tracks", None)
TAGS_IN_IMAGES = ("tags", "image")
TAGS_IN_VIDEOS = ("tags", "video")
UNIT_ORDER = (IMAGES, FRAMES, TRACKS, OBJECTS_IN_IMAGES, OBJECTS_IN_VIDEOS, TAGS_IN_IMAGES, TAGS_IN_VIDEOS)


@dataclass(frozen=True, slots=True)
class Attribute:
    """An audited attribute: its name, kind (condition or protected), values (without `unlabeled`) and labels.

    `labels` are the target labels that carry the attribute; empty means every
    label (an attribute built by hand, without an export to say).
    """

    name: str
    kind: str
    values: tuple[str, ...]
    labels: tuple[str, ...] = ()

    def carried_by(self, label: str) -> bool:
        """Whether items of `label` carry this attribute (and so can be audited for it)."""
        return not self.labels or label in self.labels


@dataclass(frozen=True, slots=True)
class Item:
    """One item: its id, target label, value of each audited attribute (`unlabeled` when not audited), and cluster.

    `cluster` names the unit resampled as a whole with the item (its image,
    its video, or the item itself: see the module docstring); it defaults to
    the item's own id.
    """

    id: str
    label: str
    values: dict[str, str]
    cluster: str = ""

    def __post_init__(self):
        if not self.cluster:
            object.__setattr__(self, "cluster", self.id)

    def audited(self, attribute: Attribute) -> bool:
        """True when the item has a real value for `attribute`."""
        return self.values.get(attribute.name, UNLABELED) != UNLABELED


@dataclass
class Dataset:
    """The items of all exports, the audited attributes, what was left out, and the unit of analysis.

    `units` says what the items are and what they are resampled in, e.g.
    "images", "tracks", "objects in 40 images", "frames in 3 videos", "tags in
    50 images", or several of these joined by " and " when the exports mix
    them ("tracks and objects in 40 images"). `item_unit` and `cluster_unit`
    name the items and their clusters in one plural word each ("objects",
    "images"; "tracks or objects", "tracks or images" when mixed), for the
    sentences that count them.
    """

    items: list[Item]
    attributes: list[Attribute]
    mode: str
    excluded: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    units: str = ""
    item_unit: str = ""
    cluster_unit: str = ""

    def __post_init__(self):
        if not self.units:
            # A dataset built by hand: say what can be said from the clusters alone.
            clusters = self.clusters()
            self.units = "items" if clusters == len(self.items) else f"items in {clusters} clusters"
        self.item_unit = self.item_unit or "items"
        self.cluster_unit = self.cluster_unit or "clusters"

    def fully_audited(self) -> list[Item]:
        """Items with a real value for every audited attribute their label carries."""
        return [
            item
            for item in self.items
            if all(item.audited(attribute) for attribute in self.attributes if attribute.carried_by(item.label))
        ]

    def labels(self) -> list[str]:
        """The target labels of the items, sorted."""
        return sorted({item.label for item in self.items})

    def clusters(self) -> int:
        """How many clusters (units resampled as a whole) the items fall in."""
        return len({item.cluster for item in self.items})

    def coverage(self, attribute: Attribute) -> dict[str, tuple[int, int]]:
        """Per target label that carries `attribute` and has items, sorted: (items audited for it, items of the label)."""
        counts: dict[str, list[int]] = {}
        for item in self.items:
            if attribute.carried_by(item.label):
                count = counts.setdefault(item.label, [0, 0])
                count[0] += item.audited(attribute)
                count[1] += 1
        return {label: (audited, total) for label, (audited, total) in sorted(counts.items())}


def mode_of(per_object: bool, multi_label: bool) -> str:
    """The reading mode: tag (default), per-object or multi-label; AuditError for both options at once."""
    if per_object and multi_label:
        raise AuditError(
            "--multi-label and --per-object do not go together: --multi-label makes every tag an item, "
            "--per-object every object"
        )
    return MODE_PER_OBJECT if per_object else MODE_MULTI_LABEL if multi_label else MODE_TAG


def check_exports(exports: list[Export], mode: str) -> list[str]:
    """Refuse exports the mode cannot use; notes on those that will give no item."""
    notes = []
    per_object = mode == MODE_PER_OBJECT
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


def excluded_counts(exports: list[Export], mode: str) -> dict[str, int]:
    """What was left out: frames without a tag and with several (tag mode), annotations with an empty label."""
    excluded = {"no_tag": 0, "several_tags": 0, "empty_label": 0}
    for export in exports:
        if mode == MODE_PER_OBJECT:
            excluded["empty_label"] += export.empty_label_objects
            continue
        excluded["empty_label"] += export.empty_label_tags
        for frame in export.frames:
            if not frame.tags:
                excluded["no_tag"] += 1
            elif len(frame.tags) > 1 and mode == MODE_TAG:
                excluded["several_tags"] += 1
    return excluded


def tags_by_label(tags) -> Iterator[Annotation]:
    """Each label of a frame's tags once, in order: its one tag, or its repeated tags' values by majority."""
    grouped: dict[str, list[Annotation]] = {}
    for tag in tags:
        grouped.setdefault(tag.label, []).append(tag)
    for label, annotations in grouped.items():
        if len(annotations) == 1:
            yield annotations[0]
            continue
        tally = Tally()
        for position, annotation in enumerate(annotations):
            tally.add(annotation.attributes, position)
        yield Annotation(label, tally.result()[0])


def export_items(export: Export, mode: str) -> Iterator[tuple[str, Annotation, str, tuple]]:
    """(item id, annotation, cluster, kind) of every item of `export` (kinds: see UNIT_ORDER)."""
    if mode == MODE_PER_OBJECT:
        for frame in export.frames:
            cluster, kind = (frame.video, OBJECTS_IN_VIDEOS) if frame.video else (frame.item_id, OBJECTS_IN_IMAGES)
            for position, obj in enumerate(frame.objects):
                yield f"{frame.item_id}#{position}", obj, cluster, kind
        for track in export.tracks:
            yield track.item_id, track.annotation, track.item_id, TRACKS
    elif mode == MODE_MULTI_LABEL:
        for frame in export.frames:
            cluster, kind = (frame.video, TAGS_IN_VIDEOS) if frame.video else (frame.item_id, TAGS_IN_IMAGES)
            for annotation in tags_by_label(frame.tags):
                yield f"{frame.item_id}#{annotation.label}", annotation, cluster, kind
    else:
        for frame in export.frames:
            if len(frame.tags) == 1:
                if frame.video:
                    yield frame.item_id, frame.tags[0], frame.video, FRAMES
                else:
                    yield frame.item_id, frame.tags[0], frame.item_id, IMAGES


def item_annotations(export: Export, mode: str) -> Iterator[Annotation]:
    """The annotations the items of `export` are made of, as read (a track's whole, a frame's every tag)."""
    for frame in export.frames:
        if mode == MODE_PER_OBJECT:
            yield from frame.objects
        elif mode == MODE_MULTI_LABEL or len(frame.tags) == 1:
            yield from frame.tags
    if mode == MODE_PER_OBJECT:
        for track in export.tracks:
            yield track.annotation


@dataclass
class Seen:
    """What the items of one export carry: each attribute's values, and the labels that carry it."""

    values: dict[str, set[str]] = field(default_factory=dict)
    labels: dict[str, set[str]] = field(default_factory=dict)


def seen_in(export: Export, mode: str) -> Seen:
    """The attributes the items of `export` carry, with their values and labels (each shared annotation looked at once)."""
    seen = Seen()
    done: set[int] = set()
    for annotation in item_annotations(export, mode):
        if id(annotation) in done:
            continue
        if len(done) < Shared.LIMIT:
            done.add(id(annotation))  # the export holds the annotation, so its id is not reused meanwhile
        for name, value in annotation.attributes.items():
            seen.values.setdefault(name, set()).add(value)
            seen.labels.setdefault(name, set()).add(annotation.label)
    if mode == MODE_PER_OBJECT:
        # A track's one annotation hides the values of its frames that lost the majority.
        for name, values in export.track_values.items():
            seen.values.setdefault(name, set()).update(values)
    return seen


def carrying_labels(name: str, exports: list[Export], seen: list[Seen]) -> tuple[str, ...]:
    """The target labels that carry the attribute `name`: declared with it in a meta, or seen with it, sorted."""
    labels: set[str] = set()
    for export, found in zip(exports, seen):
        spec = export.specs.get(name)
        if spec is not None:
            labels.update(spec.labels)
        labels.update(found.labels.get(name, ()))
    return tuple(sorted(labels))


def declared_values(name: str, exports: list[Export]) -> list[str]:
    """The values the exports' metas declare for `name`, in order, each once (`unlabeled` included)."""
    values: list[str] = []
    for export in exports:
        spec = export.specs.get(name)
        if spec is not None:
            values.extend(value for value in spec.values if value not in values)
    return values


def checkbox_in(name: str, exports: list[Export]) -> list[str]:
    """The exports that declare `name` a checkbox, or give it JSON booleans (COCO): their paths."""
    paths = []
    for export in exports:
        spec = export.specs.get(name)
        if (spec is not None and spec.input_type == CHECKBOX) or name in export.boolean_attributes:
            paths.append(export.path)
    return paths


def merged_values(seen: list[Seen]) -> dict[str, set[str]]:
    """Every value seen for each attribute, over all exports."""
    merged: dict[str, set[str]] = {}
    for found in seen:
        for name, values in found.values.items():
            merged.setdefault(name, set()).update(values)
    return merged


def unaudited_note(left_out: list[tuple[str, str]]) -> str:
    """The note naming the attributes left out for want of `unlabeled`: [(name, input type)]."""
    named = ", ".join(f"{name} ({input_type})" if input_type else name for name, input_type in left_out)
    checkbox = (
        " A checkbox has no `unlabeled` and cannot be audited that way: use a radio attribute."
        if any(input_type == CHECKBOX for _, input_type in left_out)
        else ""
    )
    return (
        f"left out of the audit, for want of an `{UNLABELED}` value that tells items nobody audited from audited "
        f"ones: {named}. To audit one, give it `{UNLABELED}` as its first value (the default).{checkbox}"
    )


def attributes_without_schema(exports: list[Export], seen: list[Seen]) -> tuple[list[tuple[str, str]], list[str]]:
    """(name, kind) of the attributes to audit without a schema, and the note on those left out (if any)."""
    declared: dict[str, str] = {}  # name -> input type, in the order the metas declare them
    for export in exports:
        for spec in export.specs.values():
            declared.setdefault(spec.name, spec.input_type)
    seen_values = merged_values(seen)
    chosen, left_out = [], []
    for name, input_type in declared.items():
        if UNLABELED in declared_values(name, exports) and not checkbox_in(name, exports):
            chosen.append((name, CONDITION))
        else:
            left_out.append((name, input_type))
    for name in sorted(set(seen_values) - set(declared) - CVAT_BUILTIN_ATTRIBUTES):
        if UNLABELED in seen_values[name] and not checkbox_in(name, exports):
            chosen.append((name, CONDITION))
        else:
            left_out.append((name, CHECKBOX if checkbox_in(name, exports) else ""))
    return chosen, [unaudited_note(left_out)] if left_out else []


def schema_problems(schema: ProjectSchema, exports: list[Export], seen: list[Seen]) -> list[str]:
    """What makes the schema's attributes unauditable in these exports: absent, a checkbox, or without `unlabeled`."""
    problems = []
    for name in (*schema.conditions, *schema.protected):
        absent = [
            export.path
            for export, found in zip(exports, seen)
            if name not in export.specs and name not in found.values and name not in export.track_values
        ]
        if absent:
            problems.append(
                f"the schema's attribute {name!r} is not in {', '.join(absent)} (neither declared in its meta nor set "
                "on any annotation): add it to the project's labels in CVAT, or remove it from the schema"
            )
            continue
        checkboxes = checkbox_in(name, exports)
        if checkboxes:
            problems.append(
                f"the schema's attribute {name!r} is a checkbox in {', '.join(checkboxes)}: a checkbox has no "
                f"`{UNLABELED}` value, so its default `false` cannot be told from an audited `false`, and it cannot "
                f"be audited that way; make it a radio attribute with `{UNLABELED}` as its first value (the default)"
            )
            continue
        lacking = [export for export in exports if name in export.specs and UNLABELED not in export.specs[name].values]
        if lacking:
            where = ", ".join(export.path for export in lacking)
            declared = ", ".join(declared_values(name, lacking)) or "none"
            problems.append(
                f"the schema's attribute {name!r} has no `{UNLABELED}` value in {where} (its values: {declared}): "
                f"add `{UNLABELED}` as its first value (the default) in CVAT, so that items nobody audited can be "
                "told from audited ones"
            )
    return problems


def audited_attributes(
    exports: list[Export], seen: list[Seen], schema: ProjectSchema | None
) -> tuple[list[Attribute], list[str]]:
    """The attributes to audit, with their values and labels (declared first, then any others seen), and notes.

    AuditError when a schema attribute cannot be audited in the exports.
    """
    notes = []
    if schema is not None:
        problems = schema_problems(schema, exports, seen)
        if problems:
            raise AuditError("; ".join(problems))
        chosen = [(name, CONDITION) for name in schema.conditions] + [(name, PROTECTED) for name in schema.protected]
    else:
        chosen, notes = attributes_without_schema(exports, seen)
    seen_values = merged_values(seen)
    attributes = []
    for name, kind in chosen:
        if schema is not None:
            values = (schema.conditions if kind == CONDITION else schema.protected)[name]
        else:
            values = tuple(value for value in declared_values(name, exports) if value != UNLABELED)
        extra = sorted(seen_values.get(name, set()) - set(values) - {UNLABELED})
        attributes.append(Attribute(name, kind, tuple(values) + tuple(extra), carrying_labels(name, exports, seen)))
    return attributes, notes


def units_text(kinds: dict[tuple, set[str]]) -> str:
    """What the items are, in words: each kind of item (its clusters, for kinds grouped in images or videos)."""
    parts = []
    for kind in UNIT_ORDER:
        if kind not in kinds:
            continue
        what, container = kind
        if container is None:
            parts.append(what)
        else:
            count = len(kinds[kind])
            parts.append(f"{what} in {count} {container}{'' if count == 1 else 's'}")
    return " and ".join(parts)


def unit_words(kinds: dict[tuple, set[str]]) -> tuple[str, str]:
    """The items and their clusters in one word each: ("objects", "images"); joined by " or " when mixed."""
    present = [kind for kind in UNIT_ORDER if kind in kinds]
    items = dict.fromkeys(what for what, _ in present)
    # An item that is not grouped in anything (an image, a track) is its own cluster.
    clusters = dict.fromkeys(f"{container}s" if container else what for what, container in present)
    return " or ".join(items) or "items", " or ".join(clusters) or "clusters"


def reading_notes(exports: list[Export], mode: str, excluded: dict[str, int]) -> list[str]:
    """What the reading decided that the user should know: skipped labels, tracks that changed, repeated tags."""
    notes = []
    if excluded["empty_label"]:
        what = "objects" if mode == MODE_PER_OBJECT else "tags"
        notes.append(f"{excluded['empty_label']} {what} with an empty label skipped")
    if mode == MODE_PER_OBJECT:
        tracks = sum(len(export.tracks) for export in exports)
        changed: dict[str, int] = {}
        for export in exports:
            for track in export.tracks:
                for name in track.changed:
                    changed[name] = changed.get(name, 0) + 1
        if changed:
            counts = ", ".join(f"{name} in {count} of {tracks}" for name, count in sorted(changed.items()))
            notes.append(
                f"tracks whose value changes over their frames ({counts}) take the value of most of their visible "
                f"frames (`{UNLABELED}` frames do not count; a tie goes to the value seen first)"
            )
    if mode == MODE_MULTI_LABEL:
        repeated = sum(
            1 for export in exports for frame in export.frames if len({tag.label for tag in frame.tags}) < len(frame.tags)
        )
        if repeated:
            notes.append(
                f"{repeated} frames carry a label in several tags: each label counts once per frame, "
                "its values by majority"
            )
    return notes


def build_dataset(
    exports: list[Export], per_object: bool, schema: ProjectSchema | None, multi_label: bool = False
) -> Dataset:
    """Items and audited attributes of `exports`, sorted by id.

    Items whose audited values are equal share one values dict (as the
    exports share their attribute dicts): the dataset of a 600,000-image
    export holds little more than its items and their ids.
    """
    mode = mode_of(per_object, multi_label)
    notes = check_exports(exports, mode) + qualify_by_origin(exports)
    seen = [seen_in(export, mode) for export in exports]
    attributes, attribute_notes = audited_attributes(exports, seen, schema)
    names = [attribute.name for attribute in attributes]
    shared: dict[tuple[str, ...], dict[str, str]] = {}
    items = []
    kinds: dict[tuple, set[str]] = {}
    for export in exports:
        for item_id, annotation, cluster, kind in export_items(export, mode):
            key = tuple(annotation.attributes.get(name, UNLABELED) for name in names)
            values = shared.get(key)
            if values is None:
                values = dict(zip(names, key))
                if len(shared) < Shared.LIMIT:
                    shared[key] = values
            items.append(Item(item_id, annotation.label, values, cluster))
            clusters = kinds.setdefault(kind, set())
            if kind[1] is not None:
                clusters.add(cluster)
    items.sort(key=attrgetter("id"))
    for first, second in pairwise(items):
        if first.id == second.id:
            raise AuditError(duplicate_message(exports, mode, first.id))
    excluded = excluded_counts(exports, mode)
    notes += attribute_notes + reading_notes(exports, mode, excluded)
    if not attributes:
        notes.append(
            "no attribute to audit: declare conditions and protected attributes in the schema (--schema), "
            f"or give the attributes an `{UNLABELED}` value"
        )
    item_unit, cluster_unit = unit_words(kinds)
    return Dataset(items, attributes, mode, excluded, notes, units_text(kinds), item_unit, cluster_unit)


def duplicate_message(exports: list[Export], mode: str, item_id: str) -> str:
    """Why the item `item_id` is there twice: which exports hold it."""
    found_in = [export for export in exports for found, *_ in export_items(export, mode) if found == item_id]
    paths = [export.path for export in found_in]
    if len(set(paths)) > 1:
        other = next(p for p in paths if p != paths[0])
        if all(export.format == FORMAT_COCO for export in found_in) and "#track" in item_id:
            return (
                f"the track {item_id!r} is in both {paths[0]} and {other}: COCO exports do not say which task they "
                "hold and CVAT numbers each task's tracks from 0, so tracks of two COCO exports cannot be told apart; "
                "audit them one at a time, or export the tasks as CVAT for video 1.1"
            )
        return f"the item {item_id!r} is in both {paths[0]} and {other}: pass each export once"
    return f"the item {item_id!r} appears twice in {paths[0]}"


def require_items(dataset: Dataset) -> None:
    """Stop with a clear error when the exports gave no item at all."""
    if not dataset.items and dataset.mode == MODE_PER_OBJECT:
        notes = "".join(f"; {note}" for note in dataset.notes)
        raise AuditError(
            "the exports hold no object (no shape or track with a label), and --per-object makes every object an "
            f"item: if they hold tags, try without --per-object{notes}"
        )
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
