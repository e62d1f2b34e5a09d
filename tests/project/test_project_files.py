"""Pulumi.yaml, the stack files, the README's commands and the pins agree with the code.

The config keys themselves (Pulumi.yaml's schema, docs/configuration.md, the README's table) are held
to the key table by tests/program/test_config_table.py.
"""

import re

import yaml

from components.config import SECRET_KEYS
from support.harness import ROOT

PROJECT = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
KEYS = {key: spec for key, spec in PROJECT["config"].items() if ":" not in key}


def test_project_runs_python_with_its_own_virtualenv():
    assert PROJECT["name"] == "labeling"
    assert PROJECT["runtime"] == {"name": "python", "options": {"toolchain": "pip", "virtualenv": "venv"}}


def test_stack_files_only_use_declared_keys():
    for path in [ROOT / "Pulumi.dev.yaml", *sorted((ROOT / "examples").glob("Pulumi.*.yaml"))]:
        config = yaml.safe_load(path.read_text())["config"]
        for key in config:
            namespace, name = key.split(":", 1)
            assert namespace == "labeling" and name in KEYS, f"{path.name}: {key} is not declared"
            assert name not in SECRET_KEYS, f"{path.name}: secrets are set with --secret, not written in the file"


def test_dev_stack_runs_minio_in_the_cluster():
    config = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]
    assert config["labeling:minioInCluster"] is True
    assert config["labeling:storageProvider"] == "minio"
    assert config["labeling:hostname"] == "cvat.localhost"


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text().splitlines()
    head = "\n".join(readme[:15])
    commands = [line.strip() for line in readme[:15] if line.startswith("    ")]
    assert "./test.sh" in commands, head
    assert any(re.search(r"\bpulumi up$", command) for command in commands), head
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^exec \./test\.sh\s*$", ci, re.MULTILINE), ci


def test_requirements_are_pinned():
    for name in ("requirements.txt", "requirements-test.txt"):
        for line in (ROOT / name).read_text().splitlines():
            line = line.split("#")[0].strip()
            if line and not line.startswith("-r"):
                assert re.match(r"^[A-Za-z0-9_.\-\[\]]+==[\w.]+$", line), f"{name}: {line} is not pinned"
    names = {line.split("==")[0].lower() for line in (ROOT / "requirements.txt").read_text().split()}
    assert {"pulumi", "pulumi-aws", "pulumi-kubernetes", "pulumi-random", "boto3", "pyyaml"} <= names


def test_readme_documents_every_output():
    readme = (ROOT / "README.md").read_text()
    from support.stacks import STACK_OUTPUTS

    for output in STACK_OUTPUTS:
        assert f"`{output}`" in readme, output
