"""The operators' command as a package (issue 17, item 3): its shape, read from its source.

- Every function is at most 60 lines.
- It uses the program's shared rules (components.cron, components.config, components.endpoint)
  by their public names only.
- The key layout of docs/backups.md is spelled in `backups/layout.py` only.
- `components/backups.py` holds the database's backup resources, and the deprecated entry point
  (nothing else of the command).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from support.harness import ROOT

PACKAGE = ROOT / "backups"
MODULES = sorted(PACKAGE.glob("*.py"))
# The fragments of a key that only backups/layout.py may spell (docs/backups.md).
LAYOUT_FRAGMENTS = {"database/", "backups/", ".incoming/", "data-password", "/snapshots/", ".dump", ".json"}


def tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


def test_the_package_has_the_modules_of_the_design():
    names = {path.stem for path in MODULES}
    assert {"__main__", "cli", "location", "layout", "catalog", "download", "restic", "kubectl", "display"} <= names


@pytest.mark.parametrize("path", MODULES, ids=lambda path: path.name)
def test_no_function_is_longer_than_60_lines(path):
    long = [(node.name, node.end_lineno - node.lineno + 1) for node in ast.walk(tree(path))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 60]
    assert long == [], f"{path.name}: {long}"


@pytest.mark.parametrize("path", MODULES, ids=lambda path: path.name)
def test_only_public_names_of_other_packages_are_used(path):
    private = []
    for node in ast.walk(tree(path)):
        if isinstance(node, ast.ImportFrom) and not (node.module or "").startswith("backups"):
            private += [f"{node.module}.{alias.name}" for alias in node.names if alias.name.startswith("_")]
        if isinstance(node, ast.Import):
            private += [alias.name for alias in node.names if any(part.startswith("_") for part in alias.name.split("."))]
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "cron":
            private += [f"cron.{node.attr}"] if node.attr.startswith("_") else []
    assert private == []


@pytest.mark.parametrize("path", [path for path in MODULES if path.name != "layout.py"], ids=lambda path: path.name)
def test_the_key_layout_is_spelled_in_layout_only(path):
    spelled = [node.value for node in ast.walk(tree(path))
               if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in LAYOUT_FRAGMENTS]
    assert spelled == [], f"{path.name} spells {spelled}: use backups.layout"


def test_components_backups_holds_the_backup_resources_and_the_deprecated_entry_point():
    module = tree(ROOT / "components" / "backups.py")
    guard = module.body[-1]
    assert isinstance(guard, ast.If) and ast.unparse(guard.test) == "__name__ == '__main__'"
    source = ast.unparse(guard)
    assert "from backups.cli import main" in source and "components.backups is now `python -m backups`" in source
    assert {"DatabaseBackups", "BackupStore", "BackupPods"} <= {node.name for node in module.body if isinstance(node, ast.ClassDef)}
    # Of the operators' command, only its entry point: everything else lives in backups/.
    imported = [node.module for node in ast.walk(module) if isinstance(node, ast.ImportFrom)]
    assert [name for name in imported if name and name.split(".")[0] == "backups"] == ["backups.cli"]


def test_the_deprecated_entry_point_still_runs_the_command():
    run = subprocess.run([sys.executable, "-m", "components.backups", "--help"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stderr.splitlines() == ["components.backups is now `python -m backups`"]
    assert run.stdout.startswith("usage: python -m backups")
