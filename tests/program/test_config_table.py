"""The key table (components/config/keys.py) is the config contract: Pulumi.yaml, docs and README follow it.

- Pulumi.yaml declares exactly the table's keys, with its types, defaults and
  descriptions, and marks no optional secret `secret: true`;
- DEFAULTS, REQUIRED_KEYS, SECRET_KEYS and DEFAULTED_BY_PROGRAM are the table's;
- the program reads exactly the table's keys, each in the section the table names;
- docs/configuration.md is what components/config/docs.py generates, and lists every key;
- the README's short table is the generated one: the keys a first stack needs.
"""

import json
import re

import pulumi
import pytest
import yaml

from components.config import DEFAULTED_BY_PROGRAM, DEFAULTS, REQUIRED_KEYS, SECRET_KEYS, load_config
from components.config import docs
from components.config.keys import KEYS, KEYS_BY_NAME, SECTIONS, TYPES
from components.config.model import WorkspaceConfig
from support.harness import ROOT, Mocks, encode_config
from support.stacks import SCALEWAY, SECRETS

PROJECT = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
DECLARED = {key: spec for key, spec in PROJECT["config"].items() if ":" not in key}


def test_pulumi_yaml_declares_exactly_the_keys_of_the_table():
    assert list(DECLARED) and set(DECLARED) == set(KEYS_BY_NAME), set(DECLARED) ^ set(KEYS_BY_NAME)
    assert len(KEYS_BY_NAME) == len(KEYS), "a key is in the table twice"


@pytest.mark.parametrize("key", KEYS, ids=lambda key: key.name)
def test_pulumi_yaml_has_the_tables_type_default_and_description(key):
    spec = DECLARED[key.name]
    assert spec["type"] == key.type
    assert spec.get("items", {}).get("type") == key.items
    assert spec["description"] == key.description
    # Optional secrets cannot be `secret: true` there (Pulumi would require them): the program checks.
    assert "secret" not in spec
    if key.required or key.defaulted_by_program:
        assert "default" not in spec
    else:
        assert spec["default"] == key.default and type(spec["default"]) is type(key.default)
    if key.defaulted_by_program:
        # The program applies it, to tell an unset key; the description says what it is.
        assert json.dumps(key.default).replace('"', '\\"') in json.dumps(spec["description"])
    if key.secret:
        assert "--secret" in spec["description"]


def test_the_derived_constants_are_the_tables():
    assert DEFAULTS == {key.name: key.default for key in KEYS if not key.required}
    assert set(REQUIRED_KEYS) == {"adminEmail", "hostname"}
    assert set(SECRET_KEYS) == {"storageSecretKey", "adminPassword"}
    assert DEFAULTED_BY_PROGRAM == ("ingressNamespaces",)
    for key in KEYS:
        assert key.section in SECTIONS and key.type in TYPES, key.name
        assert (key.items is not None) == (key.type == "array"), key.name
        assert not (key.required and key.default is not None), key.name
        # An empty default is worked out at run time: the docs say from what.
        if not key.required and key.default == "":
            assert key.shown_default, key.name


def test_every_section_holds_keys_and_every_section_is_in_the_model():
    fields = set(WorkspaceConfig.__dataclass_fields__)
    for section in SECTIONS:
        assert any(key.section == section for key in KEYS), section
        assert section in fields, section


def test_the_default_minio_image_shown_is_the_one_the_program_runs():
    from components.minio import MINIO_IMAGE

    assert KEYS_BY_NAME["minioImage"].shown_default == f"`{MINIO_IMAGE}`"


class RecordingConfig(pulumi.Config):
    """A pulumi.Config that remembers every key the program asks for."""

    asked: list[str] = []

    def get(self, key, *args, **kwargs):
        type(self).asked.append(key)
        return super().get(key, *args, **kwargs)


def keys_read(config: dict, stack: str = "acme", secrets=SECRETS) -> set[str]:
    RecordingConfig.asked = []
    pulumi.runtime.set_mocks(Mocks(), project="labeling", stack=stack, preview=False)
    pulumi.runtime.set_all_config(encode_config(config), [f"labeling:{key}" for key in secrets if key in config])
    load_config(RecordingConfig("labeling"))
    return set(RecordingConfig.asked)


def test_the_program_reads_exactly_the_keys_of_the_table():
    assert keys_read(SCALEWAY) == set(KEYS_BY_NAME)
    dev = {"storageProvider": "minio", "minioInCluster": True, "adminEmail": "a@example.com", "hostname": "cvat.localhost"}
    assert keys_read(dev, stack="dev", secrets=()) == set(KEYS_BY_NAME)


def test_docs_configuration_md_is_generated_from_the_table():
    committed = (ROOT / "docs" / "configuration.md").read_text()
    assert committed == docs.configuration_markdown(), "run: venv/bin/python -m components.config.docs"
    assert docs.main(["--check"]) == 0
    for key in KEYS:
        assert committed.count(f"| `{key.name}` |") == 1, key.name
    for section, (title, _) in SECTIONS.items():
        assert f"\n## {title}\n" in committed and f"`config.{section}`" in committed


def anchors(path) -> set[str]:
    """The anchors of a Markdown file's headings, as GitHub makes them."""
    headings = re.findall(r"^#+ (.+)$", path.read_text(), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings}


def test_the_links_of_docs_configuration_md_lead_somewhere():
    page = ROOT / "docs" / "configuration.md"
    links = re.findall(r"\]\(([^)]+)\)", page.read_text())
    assert links
    for link in links:
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        assert path.exists(), link
        assert not anchor or anchor in anchors(path), link


def readme_config_table() -> str:
    """The README's configuration table, header included."""
    text = (ROOT / "README.md").read_text()
    start = text.index("| key | type | default | meaning |")
    return text[start:].split("\n\n")[0].strip()


def test_the_readme_table_is_the_generated_short_table():
    assert readme_config_table() == docs.readme_table(), "paste: venv/bin/python -m components.config.docs --readme"


def test_the_readme_lists_what_a_first_stack_needs_and_points_to_the_rest():
    listed = {key.name for key in KEYS if key.first_stack}
    assert set(REQUIRED_KEYS) | set(SECRET_KEYS) | {"storageProvider", "kubeContext", "datasetBuckets"} <= listed
    readme = (ROOT / "README.md").read_text()
    assert "(docs/configuration.md)" in readme


@pytest.mark.parametrize("key", KEYS, ids=lambda key: key.name)
def test_each_row_shows_type_and_default_as_declared(key):
    row = docs.table_row(key, key.description)
    cells = [cell.strip() for cell in row.strip().strip("|").split(" | ")]
    assert cells[0] == f"`{key.name}`"
    expected = "secret" if key.secret else {"array": f"list of {key.items}s"}.get(key.type, key.type)
    assert cells[1] == expected
    if key.required:
        assert "required" in cells[2]
    elif not key.shown_default:
        default = key.default
        shown = json.dumps(default) if isinstance(default, list) else str(default).lower() if isinstance(default, bool) else str(default)
        assert cells[2] == f"`{shown}`"
