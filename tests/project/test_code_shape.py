"""The shape of the code, read from its source (issue 17, item 2 and "Done when").

- No function in `components/` or the operator package `backups/` is longer than 60
  lines, from its `def` to the end of its body. Tables of data are not functions to
  count: a module-level constant never is, and a function whose body (past its
  docstring) is one `return` of a literal (a dict, list, tuple or set display) is a
  table. No other exception.
- One-shot Jobs are made in one module (components/jobs.py), so that every Job keeps
  one deadline-and-wait policy; Pulumi's annotations are spelled in kube.py and jobs.py.
- `Workspace.__init__` is its list of steps, and one step knows the pause order.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from support.harness import ROOT

MAX_LINES = 60
SOURCES = sorted([*(ROOT / "components").rglob("*.py"), *(ROOT / "backups").rglob("*.py")])
# Functions longer than MAX_LINES that are allowed anyway, as "path:function": reason. Empty:
# every long function so far could be cut into named parts.
EXCEPTIONS: dict[str, str] = {}
LITERALS = (ast.Dict, ast.List, ast.Tuple, ast.Set)


def relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


def functions(module: ast.Module) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [node for node in ast.walk(module) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]


def length(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from the `def` (not its decorators) to the end of the body."""
    return function.end_lineno - function.lineno + 1


def is_table(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """One `return` of a literal display, past an optional docstring."""
    body = function.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
        body = body[1:]
    return len(body) == 1 and isinstance(body[0], ast.Return) and isinstance(body[0].value, LITERALS)


def long_functions(path: Path) -> list[tuple[str, int]]:
    return [(f"{relative(path)}:{function.name}", length(function)) for function in functions(tree(path))
            if length(function) > MAX_LINES and not is_table(function)]


@pytest.mark.parametrize("path", SOURCES, ids=relative)
def test_no_function_is_longer_than_60_lines(path):
    long = [(name, lines) for name, lines in long_functions(path) if name not in EXCEPTIONS]
    assert long == [], f"cut these into named parts (or make them tables of data): {long}"


def test_the_exceptions_are_still_needed():
    found = {name for path in SOURCES for name, _ in long_functions(path)}
    assert set(EXCEPTIONS) <= found, f"no longer long, drop from EXCEPTIONS: {set(EXCEPTIONS) - found}"


def test_the_rule_counts_what_it_should():
    source = '''
def short():
    return 1

def table():
    """A table."""
    return {
''' + "".join(f"        'key{i}': {i},\n" for i in range(70)) + '''    }

def long():
''' + "".join(f"    x{i} = {i}\n" for i in range(60)) + '''    return x0
'''
    module = ast.parse(source)
    by_name = {function.name: function for function in functions(module)}
    assert [name for name, function in by_name.items() if length(function) > MAX_LINES and not is_table(function)] == ["long"]
    assert length(by_name["long"]) == 62 and is_table(by_name["table"])


# ----- one module for one-shot Jobs ------------------------------------------------

def constructs(module: ast.Module, dotted: str) -> bool:
    """Whether the module calls `<anything>.<dotted>(...)`, e.g. batch.v1.Job."""
    return any(isinstance(node, ast.Call) and ast.unparse(node.func).endswith(f".{dotted}") for node in ast.walk(module))


def test_one_shot_jobs_are_made_in_jobs_py_only():
    makers = [relative(path) for path in SOURCES if constructs(tree(path), "batch.v1.Job")]
    assert makers == ["components/jobs.py"]
    users = {relative(path) for path in SOURCES if "one_shot_job" in path.read_text() and path.name != "jobs.py"}
    assert users == {"components/storage.py", "components/cloud_storages.py", "components/backups.py", "components/cvat.py"}


def test_pulumi_annotations_are_spelled_in_kube_and_jobs_only():
    spelled = []
    for path in SOURCES:
        if path.name in ("kube.py", "jobs.py"):
            continue
        spelled += [f"{relative(path)}: {node.value}" for node in ast.walk(tree(path))
                    if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("pulumi.com/")]
    assert spelled == []


def test_no_copies_of_the_job_policy_are_left():
    for path in SOURCES:
        names = {target.id for node in ast.walk(tree(path)) if isinstance(node, ast.Assign)
                 for target in node.targets if isinstance(target, ast.Name)}
        assert not names & {"REPLACE_UNREADY", "BACKEND_UID"} or path.name == "jobs.py", relative(path)


# ----- the workspace as steps -------------------------------------------------------

def workspace_methods() -> dict[str, ast.FunctionDef]:
    module = tree(ROOT / "components" / "workspace.py")
    (workspace,) = [node for node in module.body if isinstance(node, ast.ClassDef) and node.name == "Workspace"]
    return {node.name: node for node in workspace.body if isinstance(node, ast.FunctionDef)}


def test_the_workspace_constructor_is_a_list_of_named_steps():
    init = workspace_methods()["__init__"]
    steps = [ast.unparse(node.value.func) for node in init.body
             if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Attribute)
             and ast.unparse(node.value.func.value) == "self"]
    assert steps == ["self._kubernetes_provider", "self._namespace", "self._object_storage", "self._admin",
                     "self._datasets", "self._database_and_cvat", "self._bootstrap", "self._outputs"]
    assert length(init) <= 20


def test_one_step_knows_the_pause_order():
    """Which of the database and CVAT comes first is decided in `_database_and_cvat` alone."""
    methods = workspace_methods()
    deciders = [name for name, method in methods.items()
                if "self._database(" in ast.unparse(method) or "self._cvat(" in ast.unparse(method)]
    assert deciders == ["_database_and_cvat"]
    assert "paused" in ast.unparse(methods["_database_and_cvat"])
