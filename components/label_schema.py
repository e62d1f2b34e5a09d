"""Label schemas as code: the stack config key `projects`, checked and turned into CVAT labels.

Each project names its target labels and two sets of attributes, `conditions`
(how the scene was taken: lighting, weather) and `protected` (attributes a
fairness audit needs). Every attribute becomes an attribute of EVERY target
label, a radio button whose first value `unlabeled` is the default, so that an
annotator who skips it leaves a visible gap rather than a guess.

:func:`parse_projects` refuses, before anything is created, what CVAT 2.73 would
refuse or silently change. Facts checked against CVAT's source (cvat-ai/cvat):
- ``cvat/apps/engine/models.py``: ``Label.name`` max_length 64, ``Label.color``
  max_length 8; ``AttributeSpec.name`` max_length 64, ``default_value`` 128,
  ``values`` a CharField of 4096 holding the values joined with '\\n';
  ``Project.name`` max_length 256; label names unique per project
  (``project_name_unique``), attribute names unique per label.
- ``cvat/apps/engine/serializers.py``: ``AttributeSerializer.values`` is a
  ``DelimitedStringListField`` of ``CharField(max_length=200)`` joined with
  '\\n' (a value holding a newline would split in two); DRF's CharField trims
  surrounding whitespace and refuses NUL characters.
- ``cvat/apps/dataset_manager/bindings.py`` at v2.73.0 (upstream commit
  7972cb4f2 "Prepare release v2.73.0", lines 67-75): ``CVAT_INTERNAL_ATTRIBUTES``
  = occluded, outside, keyframe, track_id, rotation, source, score. The first
  five are shape properties in CVAT's exports, so an attribute of that name
  clashes with them. ``source`` and ``score`` are taken out of an imported
  annotation's attributes by ``import_dm_annotations`` (line 2472:
  ``score = ann.attributes.pop("score", None)``; lines 2509-2513: ``source``
  popped when its value is a source type such as manual or auto), so an
  attribute of that name would not come back from an export and re-import.
- cvat-sdk 2.73.0 (``LabelType``, generated from the server's schema): label
  types any, cuboid, ellipse, mask, points, polygon, polyline, rectangle,
  skeleton, interval, tag; ``ProjectWriteRequest.name`` 1..256,
  ``AttributeRequest.name`` 1..64, ``default_value`` at most 128.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Optional

PROJECT_NAME_LENGTH = 256
LABEL_NAME_LENGTH = 64
ATTRIBUTE_NAME_LENGTH = 64
VALUE_LENGTH = 200
VALUES_LENGTH = 4096  # all values of one attribute, joined with '\n'
UNLABELED = "unlabeled"
DEFAULT_TYPE = "any"
# CVAT 2.73's label types (cvat-sdk 2.73.0 LabelType). A skeleton needs sublabels and an SVG
# layout, which a list of names cannot describe.
LABEL_TYPES = ("any", "rectangle", "polygon", "polyline", "points", "ellipse", "cuboid", "mask", "tag", "interval")
REFUSED_TYPES = {"skeleton": "a skeleton needs sublabels and a layout; create it in CVAT's label editor"}
# Shape properties in CVAT's exports (dataset_manager/bindings.py CVAT_INTERNAL_ATTRIBUTES).
RESERVED_ATTRIBUTES = ("occluded", "outside", "keyframe", "track_id", "rotation")
# The rest of CVAT 2.73's CVAT_INTERNAL_ATTRIBUTES (cvat-ai/cvat v2.73.0,
# cvat/apps/dataset_manager/bindings.py line 73 "source", line 74 "score"): import_dm_annotations
# takes them out of an imported annotation's attributes (line 2472 pops "score"; lines 2509-2513
# pop "source" when it names a source type), so annotators' values under these names would be
# lost or misread on import.
IMPORT_INTERNAL_ATTRIBUTES = ("source", "score")
PROJECT_KEYS = ("name", "labels", "conditions", "protected")
LABEL_KEYS = ("name", "color", "type")
_COLOR_RE = re.compile(r"#[0-9a-fA-F]{6}")
# The JSON goes into one environment variable of the Job: Linux refuses a single
# "NAME=value" string longer than MAX_ARG_STRLEN (32 pages = 131072 bytes) at exec.
ENV_NAME = "PROJECTS"
MAX_JSON_BYTES = 131072 - len(ENV_NAME) - 2
# A project is 4 levels deep (list, project, labels or conditions, label or values). Deeper
# JSON is refused before anything walks it: Python's json and its recursion stop near 1000.
MAX_DEPTH = 8
# What a message shows of a value it quotes.
_SHOWN = 80


def load_json(text: str, max_depth: int = MAX_DEPTH) -> tuple[Any, Optional[str]]:
    """(value, None) for JSON text nested at most `max_depth` deep, else (None, why not).

    Never raises: json.loads raises RecursionError on deep nesting and ValueError on an
    integer literal over 4300 digits (sys.get_int_max_str_digits), besides JSONDecodeError.
    """
    try:
        value = json.loads(text)
    except RecursionError:
        return None, "is nested too deeply to read"
    except json.JSONDecodeError:
        return None, "is not valid JSON"
    except ValueError:
        return None, "holds a number too long to read (over 4300 digits)"
    depth = nesting_depth(value, max_depth)
    if depth > max_depth:
        return None, f"is nested more than {max_depth} levels deep"
    return value, None


def nesting_depth(value: Any, limit: int) -> int:
    """How deep lists and objects nest in `value` (a string is 0), counted without recursion;
    the count stops once past `limit`."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            deepest = max(deepest, depth)
            if deepest > limit:
                return deepest
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def _show(value: Any) -> str:
    """`value` as JSON for a message: short, and never raising (deep nesting, huge integers)."""
    try:
        text = json.dumps(value, default=str)
    except (ValueError, RecursionError, TypeError):
        text = f"<{type(value).__name__}>"
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."


@dataclass(frozen=True)
class Attribute:
    """A condition or protected attribute: its name and the values an annotator picks from."""

    name: str
    values: tuple[str, ...]
    kind: str  # "conditions" or "protected"


@dataclass(frozen=True)
class Label:
    """A target label; color None lets CVAT pick one."""

    name: str
    color: Optional[str] = None
    type: str = DEFAULT_TYPE


@dataclass(frozen=True)
class Project:
    """One CVAT project of the workspace."""

    name: str
    labels: tuple[Label, ...]
    conditions: tuple[Attribute, ...] = ()
    protected: tuple[Attribute, ...] = ()

    @property
    def attributes(self) -> tuple[Attribute, ...]:
        return self.conditions + self.protected


def _text_problem(value: Any, what: str, limit: int) -> Optional[str]:
    """Why `value` cannot be a CVAT name or value, or None."""
    if not isinstance(value, str):
        hint = f" (quote it: \"{_show(value)}\")" if isinstance(value, (bool, int, float)) else ""
        return f"{what} must be a string, got {_show(value)}{hint}"
    if value == "":
        return f"{what} is empty"
    if value != value.strip():
        # DRF's CharField trims it: CVAT would store another name, and every run would see a change.
        return f"{what} {value!r} starts or ends with whitespace"
    if len(value) > limit:
        return f"{what} {value[:40]!r}... is {len(value)} characters long; CVAT takes at most {limit}"
    if any(unicodedata.category(char) in ("Cc", "Cs") for char in value):
        # CVAT joins values with '\n'; a control character (newline, tab, NUL) would split or be refused.
        return f"{what} {value!r} contains a control character (newline, tab, ...)"
    return None


def _duplicates(names: list[str]) -> list[str]:
    seen: set[str] = set()
    repeated: list[str] = []
    for name in names:
        if name in seen and name not in repeated:
            repeated.append(name)
        seen.add(name)
    return repeated


def _parse_label(raw: Any, where: str, problems: list[str]) -> Optional[Label]:
    if isinstance(raw, str):
        problem = _text_problem(raw, "label name", LABEL_NAME_LENGTH)
        if problem:
            problems.append(f"{where}: {problem}")
            return None
        return Label(raw)
    if not isinstance(raw, dict):
        problems.append(f"{where}: a label must be a name or an object with {', '.join(LABEL_KEYS)}; got {_show(raw)}")
        return None
    unknown = [key for key in raw if key not in LABEL_KEYS]
    name = raw.get("name")
    problem = _text_problem(name, "label name", LABEL_NAME_LENGTH)
    if problem:
        problems.append(f"{where}: {problem}")
        return None
    here = f"{where}: label {name!r}"
    ok = True
    if unknown:
        problems.append(f"{here}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} (a label has {', '.join(LABEL_KEYS)})")
        ok = False
    color = raw.get("color")
    if color is not None and not (isinstance(color, str) and _COLOR_RE.fullmatch(color)):
        problems.append(f"{here}: color {_show(color)} is not a color like \"#ff0000\" (#rrggbb)")
        ok = False
    label_type = raw.get("type", DEFAULT_TYPE)
    if not isinstance(label_type, str):
        # A list or a map is no type (and no key of REFUSED_TYPES: looking it up would raise).
        problems.append(f"{here}: type must be one of {', '.join(LABEL_TYPES)}, got {_show(label_type)}")
        ok = False
    elif label_type in REFUSED_TYPES:
        problems.append(f"{here}: type {label_type!r} is not supported here: {REFUSED_TYPES[label_type]}")
        ok = False
    elif label_type not in LABEL_TYPES:
        problems.append(f"{here}: type {_show(label_type)} is not a CVAT label type ({', '.join(LABEL_TYPES)})")
        ok = False
    if not ok:
        return None
    return Label(name, color.lower() if color else None, label_type)


def _parse_attributes(raw: Any, kind: str, where: str, problems: list[str], labels: tuple[str, ...] = ()) -> list[Attribute]:
    """The attributes of `kind` (conditions or protected); `labels` names the labels they go on, for messages."""
    if raw is None:
        return []
    if not isinstance(raw, dict):
        problems.append(f"{where}: {kind} must be a mapping of attribute name to its values, e.g. lighting: [day, night]")
        return []
    attributes = []
    for name, values in raw.items():
        problem = _text_problem(name, "attribute name", ATTRIBUTE_NAME_LENGTH)
        if problem:
            problems.append(f"{where}: {kind}: {problem}")
            continue
        here = f"{where}: {kind} attribute {name!r}"
        if name in RESERVED_ATTRIBUTES:
            problems.append(f"{here}: the name is taken by a shape property in CVAT's exports ({', '.join(RESERVED_ATTRIBUTES)})")
            continue
        if name in IMPORT_INTERNAL_ATTRIBUTES:
            on = f" (it would go on label{'s' if len(labels) > 1 else ''} {', '.join(map(repr, labels))})" if labels else ""
            problems.append(
                f"{here}{on}: CVAT 2.73 treats {' and '.join(map(repr, IMPORT_INTERNAL_ATTRIBUTES))} as internal "
                f"attributes when importing annotations (it reads them as the annotation's own source and score), "
                f"so the values annotators give it would be lost on import; choose another name"
            )
            continue
        if not isinstance(values, list):
            problems.append(f"{here}: its values must be a list, e.g. [day, night]")
            continue
        if not values:
            problems.append(f"{here}: the list of values is empty")
            continue
        bad = False
        for value in values:
            problem = _text_problem(value, "value", VALUE_LENGTH)
            if problem:
                problems.append(f"{here}: {problem}")
                bad = True
            elif value == UNLABELED:
                problems.append(f"{here}: {UNLABELED!r} is not a value to list: every attribute gets it as its default")
                bad = True
        for value in _duplicates([v for v in values if isinstance(v, str)]):
            problems.append(f"{here}: value {value!r} is listed twice")
            bad = True
        if bad:
            continue
        joined = len("\n".join([UNLABELED, *values]))
        if joined > VALUES_LENGTH:
            problems.append(f"{here}: its values take {joined} characters joined with newlines (with {UNLABELED!r}); CVAT stores at most {VALUES_LENGTH}")
            continue
        attributes.append(Attribute(name, tuple(values), kind))
    return attributes


def _parse_project(raw: Any, index: int, problems: list[str]) -> Optional[Project]:
    if not isinstance(raw, dict):
        problems.append(f"project #{index + 1}: must be an object with {', '.join(PROJECT_KEYS)}")
        return None
    name = raw.get("name")
    problem = _text_problem(name, "name", PROJECT_NAME_LENGTH)
    if problem:
        problems.append(f"project #{index + 1}: {problem}")
        return None
    where = f"project {name!r}"
    count = len(problems)
    unknown = [key for key in raw if key not in PROJECT_KEYS]
    if unknown:
        problems.append(f"{where}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} (a project has {', '.join(PROJECT_KEYS)})")
    raw_labels = raw.get("labels")
    labels: list[Label] = []
    # Every name given, good labels or not, so that a clash is reported along with the label's own problem.
    label_names: list[str] = []
    if not isinstance(raw_labels, list):
        problems.append(f"{where}: labels must be a list of label names or objects")
    elif not raw_labels:
        problems.append(f"{where}: the list of labels is empty")
    else:
        for raw_label in raw_labels:
            label = _parse_label(raw_label, where, problems)
            if label:
                labels.append(label)
            named = raw_label.get("name") if isinstance(raw_label, dict) else raw_label
            if isinstance(named, str):
                label_names.append(named)
        for duplicate in _duplicates(label_names):
            problems.append(f"{where}: label {duplicate!r} is listed twice")
    named = tuple(dict.fromkeys(label_names))
    conditions = _parse_attributes(raw.get("conditions"), "conditions", where, problems, named)
    protected = _parse_attributes(raw.get("protected"), "protected", where, problems, named)
    for attribute in conditions + protected:
        if attribute.name in label_names:
            problems.append(f"{where}: attribute {attribute.name!r} has the name of a label")
    for name in sorted({a.name for a in conditions} & {a.name for a in protected}):
        problems.append(f"{where}: attribute {name!r} is in both conditions and protected")
    if len(problems) > count:
        return None
    return Project(name, tuple(labels), tuple(conditions), tuple(protected))


def parse_projects(raw: Any) -> tuple[list[Project], list[str]]:
    """The projects of the `projects` config value (a list, or its JSON text) and every problem found.

    Problems are readable sentences, each naming the project (by name, or by
    position when the name itself is bad) and what is wrong. With any problem,
    the projects returned are only the good ones: callers refuse the config.
    """
    if raw is None or raw == "":
        return [], []
    if isinstance(raw, str):
        raw, reason = load_json(raw)
        if reason == "is not valid JSON":
            return [], ["must be a list of projects (name, labels, conditions, protected), not plain text"]
        if reason:
            return [], [f"{reason}: give a list of projects (name, labels, conditions, protected)"]
    elif nesting_depth(raw, MAX_DEPTH) > MAX_DEPTH:
        return [], [f"is nested more than {MAX_DEPTH} levels deep: give a list of projects (name, labels, conditions, protected)"]
    if not isinstance(raw, list):
        return [], ["must be a list of projects (name, labels, conditions, protected)"]
    problems: list[str] = []
    projects = [project for index, item in enumerate(raw) if (project := _parse_project(item, index, problems))]
    names = [item.get("name") for item in raw if isinstance(item, dict) and isinstance(item.get("name"), str)]
    for duplicate in _duplicates(names):
        problems.append(f"project {duplicate!r} is listed twice")
    if not problems and projects:
        size = len(projects_json(projects).encode())
        if size > MAX_JSON_BYTES:
            problems.append(f"the schemas take {size} bytes as JSON; the bootstrap Job takes at most {MAX_JSON_BYTES}")
    return projects, problems


def cvat_attribute(attribute: Attribute) -> dict[str, Any]:
    """The CVAT attribute spec: a radio button, immutable, `unlabeled` first and by default."""
    return {
        "name": attribute.name,
        "mutable": False,
        "input_type": "radio",
        "default_value": UNLABELED,
        "values": [UNLABELED, *attribute.values],
    }


def cvat_labels(project: Project) -> list[dict[str, Any]]:
    """The CVAT label specs of a project: every condition and protected attribute on every label."""
    attributes = [cvat_attribute(attribute) for attribute in project.attributes]
    labels = []
    for label in project.labels:
        spec: dict[str, Any] = {"name": label.name, "type": label.type, "attributes": [dict(a) for a in attributes]}
        if label.color:
            spec["color"] = label.color
        labels.append(spec)
    return labels


def projects_json(projects: list[Project]) -> str:
    """The canonical JSON the bootstrap Job applies: [{"name", "labels": cvat_labels}], keys sorted."""
    payload = [{"name": project.name, "labels": cvat_labels(project)} for project in projects]
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
