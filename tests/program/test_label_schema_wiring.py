"""`projects` through the whole program: refused before anything, carried to the bootstrap Job, read by the audit."""

import json

from components.config import ConfigError
from support.harness import ROOT, load_stack_file, render, render_failure
from support.stacks import SCALEWAY, SECRETS, with_

ACME = {**load_stack_file(ROOT / "examples" / "Pulumi.acme.yaml"), "storageSecretKey": "acme-secret-key-0123"}


def bootstrap_env(rendering):
    job = rendering.one("kubernetes:batch/v1:Job", "cloud-storages")
    (container,) = job.inputs["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_a_bad_schema_stops_the_program_before_any_resource():
    projects = [{"name": "p", "labels": ["car", "car"], "conditions": {"lighting": []},
                 "protected": {"car": ["x"], "skin": ["unlabeled", "dark"]}}]
    error, registrations = render_failure(with_(projects=projects), stack="acme", secrets=SECRETS)
    assert isinstance(error, ConfigError) and registrations == []
    reasons = [reason for key, reason in error.problems if key == "projects"]
    text = " ".join(reasons)
    for words in ("car", "lighting", "unlabeled"):
        assert words in text, text
    assert len(reasons) >= 4


def test_projects_alone_run_the_bootstrap_job_without_s3_keys():
    config = with_(datasetBuckets=[], projects=[{"name": "scenes", "labels": ["car"], "conditions": {"lighting": ["day", "night"]}}])
    env = bootstrap_env(render(config, stack="acme", secrets=SECRETS))
    (project,) = json.loads(env["PROJECTS"])
    assert project["name"] == "scenes"
    assert "BUCKETS" not in env and "AWS_SECRET_ACCESS_KEY" not in env
    assert not [r for r in render(with_(datasetBuckets=[]), stack="acme", secrets=SECRETS).of_type("kubernetes:batch/v1:Job")
                if "cloud-storages" in r.name]


def test_the_example_stack_file_renders_its_schemas():
    env = bootstrap_env(render(ACME, stack="acme", secrets=["storageSecretKey"]))
    names = [project["name"] for project in json.loads(env["PROJECTS"])]
    assert names == ["street-scenes", "dashcam"]
    assert env["BUCKETS"] == "acme-street-scenes acme-dashcam-videos"


def test_the_audit_reads_the_example_stack_file():
    from audit.schema import load_schema

    schema = load_schema(str(ROOT / "examples" / "Pulumi.acme.yaml"), project="street-scenes")
    assert schema.labels == ("car", "bicycle", "pedestrian")
    assert set(schema.conditions) == {"lighting", "weather"} and set(schema.protected) == {"apparent_gender"}
