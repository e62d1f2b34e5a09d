"""The bootstrap script's label schemas (components/assets/cloud_storages.py, PROJECTS) against the CVAT stand-in."""

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from components.label_schema import parse_projects, projects_json
from support.fake_cvat import FakeCvat

# Runs the pod script, a process, against the CVAT stand-in (conftest: the tiers).
pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parents[2] / "components" / "assets" / "cloud_storages.py"
STREET = {
    "name": "street-scenes",
    "labels": [{"name": "car", "color": "#ff0000", "type": "rectangle"}, "pedestrian"],
    "conditions": {"lighting": ["day", "night"]},
    "protected": {"apparent_gender": ["female", "male", "unclear"]},
}
DASHCAM = {"name": "dashcam", "labels": ["truck", "bus"], "conditions": {"weather": ["dry", "rain"]}}


def schema_json(*raw_projects):
    projects, problems = parse_projects(list(raw_projects))
    assert problems == []
    return projects_json(projects)


def with_(base, **changes):
    return {**base, **changes}


def run(fake, projects, **changes):
    """The Job's environment without buckets: no S3 endpoint, keys or revision at all."""
    env = {
        "PATH": os.environ["PATH"],
        "CVAT_URL": fake.url,
        "ADMIN_USERNAME": fake.username,
        "ADMIN_PASSWORD": fake.password,
        "ORGANIZATION_SLUG": "acme",
        "ORGANIZATION_NAME": "ACME street scenes",
        "PROJECTS": projects,
        "WAIT_SECONDS": "5",
        **changes,
    }
    return subprocess.run([sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)


def ui(fake, method, path, body=None, org="acme"):
    """A request as someone working in CVAT's UI would send it (admin token, in an organization)."""
    headers = {"Authorization": "Token token-123", "Content-Type": "application/json"}
    if org:
        headers["X-Organization"] = org
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(fake.url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def project_id(fake, name, org="acme"):
    (project,) = [p for p in fake.projects if p["name"] == name and p["organization"] == org]
    return project["id"]


def labels_of(fake, name, org="acme"):
    status, page = ui(fake, "GET", f"/api/labels?project_id={project_id(fake, name, org)}&page_size=100", org=org)
    assert status == 200
    return {label["name"]: label for label in page["results"]}


def applied(fake, *raw_projects):
    result = run(fake, schema_json(*raw_projects))
    assert result.returncode == 0, result.stderr
    return result


# --- create, re-apply ------------------------------------------------------

def test_a_project_is_created_with_its_labels_in_the_organization_without_any_s3_setting():
    with FakeCvat() as fake:
        result = run(fake, schema_json(STREET))
        assert result.returncode == 0, result.stderr
        assert "organization acme: created" in result.stdout
        assert "project street-scenes: created (2 labels)" in result.stdout
        (project,) = fake.projects
        assert project["organization"] == "acme"
        gender = ["unlabeled", "female", "male", "unclear"]
        assert fake.schema("street-scenes", "acme") == {
            "car": {"type": "rectangle", "color": "#ff0000",
                    "attributes": {"lighting": ["unlabeled", "day", "night"], "apparent_gender": gender}},
            "pedestrian": {"type": "any", "color": fake.schema("street-scenes", "acme")["pedestrian"]["color"],
                           "attributes": {"lighting": ["unlabeled", "day", "night"], "apparent_gender": gender}},
        }
        for label in fake.labels:
            for attribute in label["attributes"]:
                assert (attribute["input_type"], attribute["mutable"], attribute["default_value"]) == ("radio", False, "unlabeled")
        # One request creates the project with everything in it; no cloud storage is touched.
        assert fake.writes() == [("POST", "/api/organizations"), ("POST", "/api/projects")]
        assert not any(path.startswith("/api/cloudstorages") for _, path, _, _ in fake.requests)
        assert all(headers.get("X-Organization") == "acme" for _, path, headers, _ in fake.requests
                   if path.startswith(("/api/projects", "/api/labels")))


def test_applying_the_same_schema_again_writes_nothing():
    with FakeCvat() as fake:
        applied(fake, STREET, DASHCAM)
        before = (json.dumps(fake.projects), json.dumps(fake.labels))
        writes = len(fake.writes())
        result = run(fake, schema_json(STREET, DASHCAM))
        assert result.returncode == 0, result.stderr
        assert "project street-scenes: unchanged" in result.stdout and "project dashcam: unchanged" in result.stdout
        assert len(fake.writes()) == writes  # no POST, PATCH or DELETE at all
        assert (json.dumps(fake.projects), json.dumps(fake.labels)) == before


def test_the_same_schema_written_in_another_order_writes_nothing():
    with FakeCvat() as fake:
        applied(fake, STREET)
        writes = len(fake.writes())
        reordered = {"protected": STREET["protected"], "name": "street-scenes", "conditions": STREET["conditions"],
                     "labels": [{"type": "rectangle", "name": "car", "color": "#FF0000"}, {"name": "pedestrian"}]}
        applied(fake, reordered)
        assert len(fake.writes()) == writes


def test_reading_follows_every_page():
    many = {"name": "many", "labels": [f"label-{n}" for n in range(7)], "conditions": {"weather": ["dry", "rain"]}}
    with FakeCvat(max_page_size=2) as fake:
        applied(fake, STREET, DASHCAM, many)
        for n in range(3):  # other projects in the organization, before and after ours in the listing
            assert ui(fake, "POST", "/api/projects", {"name": f"other-{n}", "labels": []})[0] == 201
        writes, seen = len(fake.writes()), len(fake.requests)
        result = applied(fake, STREET, DASHCAM, many)
        assert result.stdout.count(": unchanged") == 3
        assert len(fake.writes()) == writes
        label_reads = [path for _, path, _, _ in fake.requests[seen:] if path == "/api/labels"]
        # One page each for the 2 labels of street-scenes and of dashcam, 4 pages for the 7 of `many`.
        assert len(label_reads) == 1 + 1 + 4


# --- additions ---------------------------------------------------------------

def test_an_added_label_attribute_and_value_update_the_project_in_one_request():
    with FakeCvat() as fake:
        applied(fake, STREET)
        before = labels_of(fake, "street-scenes")
        extended = with_(STREET,
                         labels=[*STREET["labels"], {"name": "bicycle", "type": "polygon"}],
                         conditions={"lighting": ["day", "night", "dusk"], "weather": ["dry", "rain"]})
        writes = len(fake.writes())
        result = run(fake, schema_json(extended))
        assert result.returncode == 0, result.stderr
        assert fake.writes()[writes:] == [("PATCH", f"/api/projects/{project_id(fake, 'street-scenes')}")]
        line = next(line for line in result.stdout.splitlines() if line.startswith("project street-scenes"))
        assert "updated" in line and "label 'bicycle'" in line and "value 'dusk' of attribute 'lighting' of label 'car'" in line
        assert "attribute 'weather' of label 'pedestrian'" in line
        after = labels_of(fake, "street-scenes")
        lighting = ["unlabeled", "day", "night", "dusk"]
        for name in ("car", "pedestrian", "bicycle"):
            attributes = {a["name"]: a["values"] for a in after[name]["attributes"]}
            assert attributes == {"lighting": lighting, "weather": ["unlabeled", "dry", "rain"],
                                  "apparent_gender": ["unlabeled", "female", "male", "unclear"]}
        assert after["bicycle"]["type"] == "polygon"
        for name in ("car", "pedestrian"):
            # The existing labels and attributes keep their ids (annotations point at them), type and color.
            assert after[name]["id"] == before[name]["id"]
            assert (after[name]["type"], after[name]["color"]) == (before[name]["type"], before[name]["color"])
            ids = {a["name"]: a["id"] for a in before[name]["attributes"]}
            assert {a["name"]: a["id"] for a in after[name]["attributes"] if a["name"] in ids} == ids
        # And once applied, it is the new normal.
        writes = len(fake.writes())
        applied(fake, extended)
        assert len(fake.writes()) == writes


def test_only_a_value_added_patches_only_that_attribute_with_its_full_list():
    with FakeCvat() as fake:
        applied(fake, STREET)
        extended = with_(STREET, protected={"apparent_gender": ["female", "male", "unclear", "nonbinary"]})
        applied(fake, extended)
        (_, _, _, body) = [r for r in fake.requests if r[0] == "PATCH"][-1]
        assert [label["name"] for label in body["labels"]] == ["car", "pedestrian"]
        for label in body["labels"]:
            assert set(label) == {"id", "name", "color", "attributes"}  # the type is not sent: CVAT keeps it
            (attribute,) = label["attributes"]
            assert attribute["name"] == "apparent_gender" and "id" in attribute
            assert attribute["values"] == ["unlabeled", "female", "male", "unclear", "nonbinary"]


def test_a_new_color_in_the_config_recolors_the_label():
    with FakeCvat() as fake:
        applied(fake, STREET)
        recolored = with_(STREET, labels=[{"name": "car", "color": "#00ff00", "type": "rectangle"}, "pedestrian"])
        result = applied(fake, recolored)
        assert "color #00ff00 of label 'car'" in result.stdout
        assert labels_of(fake, "street-scenes")["car"]["color"] == "#00ff00"


def test_the_stand_in_regenerates_a_color_left_out_as_cvat_does():
    # Why the script always sends the color of a label it updates.
    with FakeCvat() as fake:
        applied(fake, STREET)
        car = labels_of(fake, "street-scenes")["car"]
        status, _ = ui(fake, "PATCH", f"/api/projects/{project_id(fake, 'street-scenes')}",
                       {"labels": [{"id": car["id"], "name": "car", "attributes": []}]})
        assert status == 200 and labels_of(fake, "street-scenes")["car"]["color"] != "#ff0000"


# --- removals and conflicts are refused -------------------------------------

def refused(fake, *raw_projects):
    writes = fake.project_writes()
    state = (json.dumps(fake.projects), json.dumps(fake.labels))
    result = run(fake, schema_json(*raw_projects))
    assert result.returncode == 1, result.stdout
    assert fake.project_writes() == writes, "nothing may be written to any project"
    assert (json.dumps(fake.projects), json.dumps(fake.labels)) == state
    assert "nothing was written to any project" in result.stderr
    return result.stderr


def test_a_removed_label_is_refused_and_named():
    with FakeCvat() as fake:
        applied(fake, STREET)
        message = refused(fake, with_(STREET, labels=["pedestrian"]))
        assert "project 'street-scenes': label 'car' (and every annotation of it)" in message
        assert "delete the annotations" in message and "Put them back in the config" in message


def test_a_removed_attribute_is_refused_and_named_for_each_label():
    with FakeCvat() as fake:
        applied(fake, STREET)
        message = refused(fake, with_(STREET, protected={}))
        for label in ("car", "pedestrian"):
            assert f"project 'street-scenes': label '{label}': attribute 'apparent_gender'" in message


def test_a_removed_value_is_refused_and_named():
    with FakeCvat() as fake:
        applied(fake, STREET)
        message = refused(fake, with_(STREET, conditions={"lighting": ["day"]}))
        assert "project 'street-scenes': label 'car': attribute 'lighting': value 'night'" in message
        assert "label 'pedestrian': attribute 'lighting': value 'night'" in message
        assert "value 'day'" not in message


def test_a_removed_value_is_refused_for_what_cvat_really_does():
    # CVAT 2.73 does not delete annotations when a value goes: it refuses the PATCH (values are append-only).
    with FakeCvat() as fake:
        applied(fake, STREET)
        message = refused(fake, with_(STREET, conditions={"lighting": ["day"]}))
        assert "CVAT 2.73 refuses to remove a value" in message
        assert 'Attribute field \"values\" can only be appended for radio and select attributes' in message
        assert "before any write" in message and "values can only be added" in message
        assert "annotations that carry it" not in message and "delete the annotations" not in message


def test_a_removed_value_and_a_removed_label_are_told_apart():
    with FakeCvat() as fake:
        applied(fake, STREET)
        message = refused(fake, with_(STREET, labels=["pedestrian"], conditions={"lighting": ["day"]}))
        labels_part, values_part = message.split("The config lacks values")
        assert "project 'street-scenes': label 'car' (and every annotation of it)" in labels_part
        assert "delete the annotations" in labels_part and "value 'night'" not in labels_part
        assert "label 'pedestrian': attribute 'lighting': value 'night'" in values_part
        assert "can only be appended" in values_part


def test_the_stand_in_refuses_a_removed_value_as_cvat_does():
    # What the script spares itself: CVAT 2.73 answers 400 and applies nothing of the PATCH.
    with FakeCvat() as fake:
        applied(fake, STREET)
        pid = project_id(fake, "street-scenes")
        car, pedestrian = (labels_of(fake, "street-scenes")[name] for name in ("car", "pedestrian"))
        before = json.dumps(fake.labels)

        def lighting(label, values):
            attribute = next(a for a in label["attributes"] if a["name"] == "lighting")
            return {"id": label["id"], "name": label["name"], "color": label["color"],
                    "attributes": [{**attribute, "values": values}]}

        status, body = ui(fake, "PATCH", f"/api/projects/{pid}", {"labels": [
            lighting(pedestrian, ["unlabeled", "day", "night", "dusk"]),  # fine on its own...
            lighting(car, ["unlabeled", "day"]),  # ...but this drops 'night'
        ]})
        assert status == 400 and body == ['Attribute field "values" can only be appended for radio and select attributes']
        assert json.dumps(fake.labels) == before  # one transaction: the pedestrian's 'dusk' is not kept either
        # Reordering keeps every value: allowed.
        status, _ = ui(fake, "PATCH", f"/api/projects/{pid}", {"labels": [lighting(car, ["unlabeled", "night", "day"])]})
        assert status == 200


def test_the_stand_in_keeps_a_number_attributes_values_as_cvat_does():
    with FakeCvat() as fake:
        fake.organizations["acme"] = {"id": 1, "slug": "acme", "name": "ACME"}
        speed = {"name": "speed", "mutable": True, "input_type": "number", "default_value": "0", "values": ["0", "100", "1"]}
        assert ui(fake, "POST", "/api/projects", {"name": "p", "labels": [{"name": "car", "attributes": [speed]}]})[0] == 201
        (car,) = labels_of(fake, "p").values()
        (attribute,) = car["attributes"]
        status, body = ui(fake, "PATCH", f"/api/projects/{project_id(fake, 'p')}", {"labels": [
            {"id": car["id"], "name": "car", "color": car["color"], "attributes": [{**attribute, "values": ["0", "200", "1"]}]}]})
        assert status == 400 and body == ['Attribute field "values" cannot be changed for number attributes']


def test_a_removal_blocks_the_additions_of_every_project():
    with FakeCvat() as fake:
        applied(fake, STREET, DASHCAM)
        message = refused(
            fake,
            with_(STREET, labels=[*STREET["labels"], "bicycle"]),  # an addition...
            with_(DASHCAM, labels=["truck"]),  # ...and a removal elsewhere
        )
        assert "project 'dashcam': label 'bus'" in message
        assert "bicycle" not in json.dumps(fake.labels)


def test_a_renamed_label_is_a_removal_and_an_addition_so_it_is_refused():
    with FakeCvat() as fake:
        applied(fake, STREET)
        message = refused(fake, with_(STREET, labels=[{"name": "automobile", "color": "#ff0000", "type": "rectangle"}, "pedestrian"]))
        assert "label 'car'" in message


def test_what_someone_added_in_cvat_is_not_removed():
    with FakeCvat() as fake:
        applied(fake, STREET)
        pid = project_id(fake, "street-scenes")
        assert ui(fake, "PATCH", f"/api/projects/{pid}", {"labels": [{"name": "traffic-light"}]})[0] == 200
        message = refused(fake, STREET)
        assert "project 'street-scenes': label 'traffic-light'" in message


def test_attribute_settings_changed_in_cvat_are_refused_not_overwritten():
    with FakeCvat() as fake:
        applied(fake, STREET)
        car = labels_of(fake, "street-scenes")["car"]
        lighting = next(a for a in car["attributes"] if a["name"] == "lighting")
        edited = {**lighting, "input_type": "select", "mutable": True, "default_value": "day"}
        pid = project_id(fake, "street-scenes")
        assert ui(fake, "PATCH", f"/api/projects/{pid}",
                  {"labels": [{"id": car["id"], "name": "car", "color": car["color"], "attributes": [edited]}]})[0] == 200
        message = refused(fake, with_(STREET, conditions={"lighting": ["day", "night", "dusk"]}))
        where = "project 'street-scenes': label 'car': attribute 'lighting'"
        assert f'{where}: input_type is "select" in CVAT, "radio" in the config' in message
        assert f"{where}: mutable is true in CVAT, false in the config" in message
        assert f'{where}: default_value is "day" in CVAT, "unlabeled" in the config' in message
        assert "Make them agree" in message
        assert "dusk" not in json.dumps(fake.labels)


def test_a_label_type_changed_in_cvat_is_refused():
    with FakeCvat() as fake:
        applied(fake, STREET)
        car = labels_of(fake, "street-scenes")["car"]
        pid = project_id(fake, "street-scenes")
        assert ui(fake, "PATCH", f"/api/projects/{pid}",
                  {"labels": [{"id": car["id"], "type": "polygon", "color": car["color"]}]})[0] == 200
        message = refused(fake, STREET)
        assert "project 'street-scenes': label 'car': type is 'polygon' in CVAT, 'rectangle' in the config" in message


def test_two_projects_of_one_name_in_the_organization_are_refused():
    with FakeCvat() as fake:
        applied(fake, STREET)
        assert ui(fake, "POST", "/api/projects", {"name": "street-scenes", "labels": []})[0] == 201  # CVAT allows it
        message = refused(fake, STREET)
        assert "project 'street-scenes': 2 projects of that name in organization 'acme'" in message


# --- what the schema does not name is left alone -------------------------------

def test_a_project_left_out_of_the_config_is_not_touched():
    with FakeCvat() as fake:
        applied(fake, STREET, DASHCAM)
        dashcam = json.dumps(labels_of(fake, "dashcam"))
        writes = len(fake.writes())
        applied(fake, STREET)
        assert len(fake.writes()) == writes
        assert json.dumps(labels_of(fake, "dashcam")) == dashcam


def test_a_project_of_the_same_name_in_another_organization_is_not_touched():
    with FakeCvat(organizations={"other": {"id": 7, "slug": "other", "name": "Other team"}}) as fake:
        status, _ = ui(fake, "POST", "/api/projects", {"name": "street-scenes", "labels": [{"name": "tree"}]}, org="other")
        assert status == 201
        status, _ = ui(fake, "POST", "/api/projects", {"name": "street-scenes", "labels": [{"name": "bench"}]}, org=None)
        assert status == 201
        theirs = json.dumps([l for l in fake.labels])
        seen = len(fake.requests)
        result = run(fake, schema_json(STREET))
        assert result.returncode == 0, result.stderr
        assert "project street-scenes: created" in result.stdout
        assert fake.schema("street-scenes", "other") == {"tree": {"type": "any", "color": fake.schema("street-scenes", "other")["tree"]["color"], "attributes": {}}}
        assert set(fake.schema("street-scenes", "acme")) == {"car", "pedestrian"}
        assert set(fake.schema("street-scenes", None)) == {"bench"}
        other_ids = {p["id"] for p in fake.projects if p["organization"] != "acme"}
        # Never read or written: the script asked for its organization's projects only.
        assert not any(path.startswith("/api/projects/") or path == "/api/labels" for _, path, _, _ in fake.requests[seen:])
        assert json.loads(theirs) == [l for l in fake.labels if l["project_id"] in other_ids]
        # And again: unchanged, still without a write.
        writes = len(fake.writes())
        applied(fake, STREET)
        assert len(fake.writes()) == writes


# --- together with the buckets ------------------------------------------------

BUCKET_ENV = {
    "BUCKETS": "acme-street-scenes",
    "S3_ENDPOINT_URL": "https://s3.fr-par.scw.cloud",
    "S3_REGION": "fr-par",
    "AWS_ACCESS_KEY_ID": "SCWXXXXXXXXXXXXXXXXX",
    "AWS_SECRET_ACCESS_KEY": "first-secret-key",
    "CREDENTIALS_REVISION": "0a1b2c3d",
}


def test_buckets_and_projects_in_one_run():
    with FakeCvat(existing_buckets={"acme-street-scenes"}) as fake:
        result = run(fake, schema_json(STREET), **BUCKET_ENV)
        assert result.returncode == 0, result.stderr
        assert "cloud storage acme-street-scenes: registered" in result.stdout
        assert "project street-scenes: created" in result.stdout
        assert [s["organization"] for s in fake.storages] == ["acme"]
        writes = len(fake.writes())
        result = run(fake, schema_json(STREET), **BUCKET_ENV)
        assert result.returncode == 0 and len(fake.writes()) == writes
        assert "first-secret-key" not in result.stdout + result.stderr


def test_buckets_still_need_their_settings():
    with FakeCvat(existing_buckets={"acme-street-scenes"}) as fake:
        result = run(fake, schema_json(STREET), BUCKETS="acme-street-scenes")
        assert result.returncode == 1
        assert "not set: S3_ENDPOINT_URL, S3_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, CREDENTIALS_REVISION" in result.stderr
        assert fake.requests == []


def test_neither_buckets_nor_projects_only_makes_the_organization():
    with FakeCvat() as fake:
        result = run(fake, "[]")
        assert result.returncode == 0, result.stderr
        assert fake.writes() == [("POST", "/api/organizations")]
        result = run(fake, "", PROJECTS="")
        assert result.returncode == 0, result.stderr


# --- failures -------------------------------------------------------------------

def test_a_cvat_refusal_fails_the_job_with_cvats_message():
    # A spec that skipped label_schema's checks: CVAT refuses a 65-character label name.
    projects = json.dumps([{"name": "p", "labels": [{"name": "x" * 65, "type": "any", "attributes": []}]}])
    with FakeCvat() as fake:
        result = run(fake, projects)
        assert result.returncode == 1
        assert "HTTP 400" in result.stderr and "no more than 64 characters" in result.stderr
        assert fake.projects == [] and fake.labels == []  # CVAT's create is one transaction


def test_bad_projects_json_fails_before_any_request():
    with FakeCvat() as fake:
        for text, words in (("{not json", "PROJECTS is not JSON"), ('{"name": "p"}', "PROJECTS must be a list"),
                            ('[{"labels": []}]', "PROJECTS must be a list")):
            result = run(fake, text)
            assert result.returncode == 1 and words in result.stderr
        assert fake.requests == []


class UnscopedFakeCvat(FakeCvat):
    """A CVAT whose project list ignored X-Organization: the script must still keep to its organization."""

    def _visible(self, project, org):
        return True


def test_the_script_keeps_to_its_organization_even_if_the_listing_did_not():
    with UnscopedFakeCvat(organizations={"other": {"id": 7, "slug": "other", "name": "Other team"}}) as fake:
        status, _ = ui(fake, "POST", "/api/projects", {"name": "street-scenes", "labels": [{"name": "tree"}]}, org="other")
        assert status == 201
        result = applied(fake, STREET)
        assert "project street-scenes: created" in result.stdout
        assert set(fake.schema("street-scenes", "other")) == {"tree"}
        assert set(fake.schema("street-scenes", "acme")) == {"car", "pedestrian"}
