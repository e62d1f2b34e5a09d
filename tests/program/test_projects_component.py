"""CloudStorages under mocks with label schemas: the Job carries the projects, re-runs when they change."""

import json

from components.cloud_storages import CloudStorages
from components.endpoint import S3Endpoint
from components.label_schema import parse_projects, projects_json
from support.components import run_component

STREET = {
    "name": "street-scenes",
    "labels": [{"name": "car", "color": "#ff0000", "type": "rectangle"}, "pedestrian"],
    "conditions": {"lighting": ["day", "night"]},
    "protected": {"apparent_gender": ["female", "male", "unclear"]},
}


def schema(*raw):
    projects, problems = parse_projects(list(raw))
    assert problems == []
    return projects_json(projects)


def build(buckets=("acme-images",), projects=None, secret_key="secret-key"):
    args = {
        "namespace": "cvat-acme",
        "workspace": "acme",
        "description": "",
        "backend_image": "cvat/server:v2.73.0",
        "backend_url": "http://cvat-backend:8080",
        "endpoint": S3Endpoint.from_settings("scaleway", "fr-par", "", "SCWXXXXXXXXXXXXXXXXX", secret_key),
        "s3_credentials_secret": "s3-credentials",
        "admin_credentials_secret": "admin-credentials",
        "buckets": list(buckets),
        "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
        "cvat_ready": [],
    }
    if projects is not None:
        args["projects_json"] = projects
    run = run_component(lambda: CloudStorages("cloud-storages", args))
    job = run.one("kubernetes:batch/v1:Job")
    revision = run.one("random:index/randomId:RandomId", "cloud-storages-revision")
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in job.inputs["spec"]["template"]["spec"]["containers"][0]["env"]}
    return run, job, revision, env


def test_projects_without_buckets_need_no_s3_settings():
    text = schema(STREET)
    run, job, revision, env = build(buckets=(), projects=text)
    assert env["PROJECTS"] == text and json.loads(env["PROJECTS"])[0]["name"] == "street-scenes"
    assert set(env) == {"CVAT_URL", "ORGANIZATION_SLUG", "ORGANIZATION_NAME", "PROJECTS", "ADMIN_USERNAME", "ADMIN_PASSWORD"}
    assert not any("s3-credentials" in json.dumps(value) for value in env.values())
    # The projects are plain config: neither the Job's env nor the revision's keepers hold them as secrets.
    assert not any("env" in path for path in job.secret_paths)
    assert revision.inputs["keepers"] == {"script": revision.inputs["keepers"]["script"], "projects": text}
    assert not any("projects" in path for path in revision.secret_paths)
    # The component's type and children keep their names (URNs).
    assert [r.type for r in run.registrations if not r.custom] == ["labeling:index:CloudStorages"]
    assert {r.name for r in run.registrations if r.custom} == {"cloud-storages-scripts", "cloud-storages-revision", "cloud-storages-job"}


def test_buckets_and_projects_together():
    text = schema(STREET)
    _, _, revision, env = build(projects=text)
    assert env["PROJECTS"] == text and env["BUCKETS"] == "acme-images"
    assert env["AWS_SECRET_ACCESS_KEY"] == {"secretKeyRef": {"name": "s3-credentials", "key": "secretAccessKey"}}
    assert {"buckets", "endpoint", "region", "access_key", "secret_key", "script", "projects"} == set(revision.inputs["keepers"])
    assert {"keepers.access_key", "keepers.secret_key"} <= revision.secret_paths


def test_the_storages_revision_ignores_the_schemas():
    # The script re-sends a storage's keys when CREDENTIALS_REVISION differs from the one it
    # recorded: that value comes from a revision of the storages alone.
    runs = [run for run, *_ in (build(projects=schema(STREET)), build(projects=schema({**STREET, "labels": ["car"]})))]
    storages = [run.one("random:index/randomId:RandomId", "storages-storages-revision") for run in runs]
    assert storages[0].inputs["keepers"] == storages[1].inputs["keepers"]
    assert set(storages[0].inputs["keepers"]) == {"buckets", "endpoint", "region", "access_key", "secret_key"}
    assert {"keepers.access_key", "keepers.secret_key"} <= storages[0].secret_paths
    rotated = build(projects=schema(STREET), secret_key="rotated")[0].one("random:index/randomId:RandomId", "storages-storages-revision")
    assert rotated.inputs["keepers"]["secret_key"] != storages[0].inputs["keepers"]["secret_key"]
    # Projects alone: no storages revision, no keys.
    alone = build(buckets=(), projects=schema(STREET))[0]
    assert [r.name for r in alone.registrations if r.type == "random:index/randomId:RandomId"] == ["cloud-storages-revision"]


def test_buckets_alone_keep_the_keepers_they_had():
    # A stack without projects sees no new keeper: nothing re-runs because the feature exists.
    _, _, revision, env = build(projects=None)
    assert set(revision.inputs["keepers"]) == {"buckets", "endpoint", "region", "access_key", "secret_key", "script"}
    assert env["PROJECTS"] == "[]"
    _, _, same, _ = build(projects="[]")
    assert same.inputs["keepers"] == revision.inputs["keepers"]


def test_a_schema_change_changes_the_keepers_and_nothing_else_does():
    base = build(buckets=(), projects=schema(STREET))[2].inputs["keepers"]
    again = build(buckets=(), projects=schema(STREET))[2].inputs["keepers"]
    assert again == base
    changes = [
        {**STREET, "labels": [*STREET["labels"], "bicycle"]},
        {**STREET, "conditions": {"lighting": ["day", "night", "dusk"]}},
        {**STREET, "protected": {**STREET["protected"], "apparent_age": ["child", "adult"]}},
        {**STREET, "labels": [{"name": "car", "color": "#00ff00", "type": "rectangle"}, "pedestrian"]},
    ]
    seen = [json.dumps(base, sort_keys=True)]
    for changed in changes:
        keepers = build(buckets=(), projects=schema(changed))[2].inputs["keepers"]
        assert keepers["projects"] != base["projects"] and keepers["script"] == base["script"]
        seen.append(json.dumps(keepers, sort_keys=True))
    assert len(set(seen)) == len(seen)
    # Without buckets, the S3 keys play no part: rotating them does not re-run a projects-only Job.
    assert build(buckets=(), projects=schema(STREET), secret_key="rotated")[2].inputs["keepers"] == base
