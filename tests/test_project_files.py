"""Pulumi.yaml, the stack files, the README's commands and the pins agree with the code."""

import json
import re

import yaml

from components.config import DEFAULTED_BY_PROGRAM, DEFAULTS, REQUIRED_KEYS, SECRET_KEYS
from harness import ROOT

PROJECT = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
KEYS = {key: spec for key, spec in PROJECT["config"].items() if ":" not in key}


def test_project_runs_python_with_its_own_virtualenv():
    assert PROJECT["name"] == "labeling"
    assert PROJECT["runtime"] == {"name": "python", "options": {"toolchain": "pip", "virtualenv": "venv"}}


def test_every_key_is_declared_typed_and_documented():
    assert set(KEYS) == set(DEFAULTS) | set(REQUIRED_KEYS)
    for key, spec in KEYS.items():
        assert spec.get("type") in ("string", "integer", "boolean", "array"), key
        assert len(spec.get("description", "")) > 10, key


def test_defaults_in_pulumi_yaml_are_the_program_defaults():
    for key, default in DEFAULTS.items():
        if key in DEFAULTED_BY_PROGRAM:
            # The program applies it, to tell an unset key; the description says what it is.
            assert "default" not in KEYS[key] and json.dumps(default).replace('"', '\\"') in json.dumps(KEYS[key]["description"]), key
            continue
        assert KEYS[key]["default"] == default, key
    for key in REQUIRED_KEYS:
        assert "default" not in KEYS[key], f"{key} is required: no default"


def test_optional_secrets_say_how_to_set_them():
    for key in SECRET_KEYS:
        assert "--secret" in KEYS[key]["description"], key


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


def readme_config_table() -> dict[str, tuple[str, str]]:
    """key -> (type, default) as the README's configuration table gives them."""
    rows = {}
    text = (ROOT / "README.md").read_text()
    table = text[text.index("| key | type | default | meaning |"):].split("\n\n")[0]
    for line in table.splitlines()[2:]:
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        rows[cells[0].strip("`")] = (cells[1], cells[2])
    return rows


README_TYPES = {"string": "string", "integer": "integer", "boolean": "boolean", "array": "list of strings"}


def test_readme_config_table_is_pulumi_yaml():
    """Same keys, same types, same defaults (an empty default may be described in words)."""
    table = readme_config_table()
    assert set(table) == set(KEYS), (set(table) ^ set(KEYS))
    for key, spec in KEYS.items():
        readme_type, readme_default = table[key]
        expected_type = "secret" if key in SECRET_KEYS else README_TYPES[spec["type"]]
        if spec["type"] == "array" and spec.get("items", {}).get("type") == "object":
            expected_type = "list of objects"
        assert readme_type == expected_type, key
        if key in REQUIRED_KEYS:
            assert "required" in readme_default, key
            continue
        default = DEFAULTS[key] if key in DEFAULTED_BY_PROGRAM else spec["default"]
        if default in ("", []) and spec["type"] == "string":
            continue  # derived at run time: the README says from what
        shown = json.dumps(default) if isinstance(default, list) else str(default).lower() if isinstance(default, bool) else str(default)
        assert f"`{shown}`" in readme_default, f"{key}: README says {readme_default}, Pulumi.yaml {shown}"


def test_readme_documents_every_output():
    readme = (ROOT / "README.md").read_text()
    from test_workspace import STACK_OUTPUTS

    for output in STACK_OUTPUTS:
        assert f"`{output}`" in readme, output
