"""The label schema: which attributes are conditions and which are protected attributes.

It has the shape of the stack config key `labeling:projects` (a list of
projects, each with `name`, `labels`, `conditions` and `protected`), read from
either a YAML file holding that list (bare, or under a `projects` key) or a
stack file `Pulumi.<stack>.yaml` (its `config: labeling:projects`).

In CVAT every condition and protected attribute is a `radio` attribute of
every target label whose values are `unlabeled` (first, the default) and the
declared values; `unlabeled` is implied here and never declared.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from .errors import AuditError
from .model import UNLABELED

STACK_KEY = "labeling:projects"


@dataclass(frozen=True)
class ProjectSchema:
    """One project of the schema: its target labels and its declared attributes with their values."""

    name: str
    labels: tuple[str, ...]
    conditions: dict[str, tuple[str, ...]]
    protected: dict[str, tuple[str, ...]]


def load_schema(path: str, project: str | None = None) -> ProjectSchema:
    """The project `project` (or the only one) of the schema file at `path`."""
    try:
        document = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise AuditError(f"cannot read the schema {path}: {error.strerror}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise AuditError(f"the schema {path} is not valid YAML: {error}") from None
    projects = [parse_project(entry, f"{path}: projects[{index}]") for index, entry in enumerate(projects_list(document, path))]
    names = [entry.name for entry in projects]
    if len(set(names)) != len(names):
        raise AuditError(f"{path}: two projects have the same name")
    if project is not None:
        for entry in projects:
            if entry.name == project:
                return entry
        raise AuditError(f"{path}: no project named {project!r} (the schema has: {', '.join(names)})")
    if len(projects) != 1:
        raise AuditError(f"{path}: the schema declares {len(projects)} projects ({', '.join(names)}): pick one with --project")
    return projects[0]


def projects_list(document, path: str) -> list:
    """The `projects` list of a schema file or a stack file."""
    if isinstance(document, dict) and "config" in document:
        config = document["config"] or {}
        if STACK_KEY not in config:
            raise AuditError(f"{path}: the stack file has no `{STACK_KEY}` key")
        projects = config[STACK_KEY]
        if isinstance(projects, str):
            # `pulumi config set` without --path stores a structured value as a JSON/YAML string.
            try:
                projects = yaml.safe_load(projects)
            except yaml.YAMLError as error:
                raise AuditError(f"{path}: `{STACK_KEY}` is not a list: {error}") from None
    elif isinstance(document, dict) and "projects" in document:
        projects = document["projects"]
    else:
        projects = document
    if not isinstance(projects, list) or not projects:
        raise AuditError(f"{path}: expected a non-empty list of projects (the shape of `{STACK_KEY}`)")
    return projects


def parse_project(entry, where: str) -> ProjectSchema:
    """One project mapping, checked."""
    if not isinstance(entry, dict):
        raise AuditError(f"{where}: must be a mapping with `name`, `labels`, `conditions`, `protected`")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        raise AuditError(f"{where}.name: must be a non-empty string")
    labels = tuple(label_name(label, f"{where}.labels[{index}]") for index, label in enumerate(entry.get("labels") or []))
    conditions = attributes(entry.get("conditions"), f"{where}.conditions")
    protected = attributes(entry.get("protected"), f"{where}.protected")
    both = sorted(set(conditions) & set(protected))
    if both:
        raise AuditError(f"{where}: {', '.join(both)} is declared both as a condition and as a protected attribute")
    return ProjectSchema(name, labels, conditions, protected)


def label_name(label, where: str) -> str:
    """A label given as a plain string or as a mapping with `name` (and optional `color`, `type`)."""
    if isinstance(label, dict):
        label = label.get("name")
    if not isinstance(label, str) or not label.strip():
        raise AuditError(f"{where}: a label is a string or a mapping with a non-empty `name`")
    return label


def attributes(declared, where: str) -> dict[str, tuple[str, ...]]:
    """`{attribute: [values]}` checked; `unlabeled` is implied, so a declared one is dropped."""
    if declared is None:
        return {}
    if not isinstance(declared, dict):
        raise AuditError(f"{where}: must be a mapping of attribute name to a list of values")
    result = {}
    for name, values in declared.items():
        if not isinstance(name, str) or not name.strip():
            raise AuditError(f"{where}: attribute names must be non-empty strings")
        if not isinstance(values, list) or not values or not all(isinstance(value, str) and value.strip() for value in values):
            raise AuditError(f"{where}.{name}: must be a non-empty list of non-empty strings")
        kept = tuple(dict.fromkeys(value for value in values if value != UNLABELED))
        if not kept:
            raise AuditError(f"{where}.{name}: declares no value besides `{UNLABELED}`")
        result[name] = kept
    return result
