"""Registers the workspace's dataset buckets as cloud storages in CVAT, and applies its label schemas.

Runs in a Job (backend image) once CVAT is up. It logs in as the admin through
the backend Service, makes sure the workspace's organization exists, and, in
that organization (X-Organization):
- registers each bucket as an AWS_S3_BUCKET cloud storage (endpoint and region
  in `specific_attributes`, display name = bucket name). A storage that is
  already right is left alone; one whose endpoint, region or credentials
  revision changed is updated; nothing is duplicated.
- makes each project of PROJECTS exist with its labels and attributes. A
  missing project is created; labels, attributes and values the config adds
  are added; a project already right gets no write at all. Nothing is ever
  removed, and the whole plan is made before any write: the Job fails naming
  each problem and writes nothing to any project (so nothing is half-applied)
  when the config lacks a label or attribute the project holds in CVAT
  (deleting one in CVAT deletes the annotations or values that use it), when
  it lacks a value of an attribute (CVAT 2.73 refuses that request: radio and
  select values can only be appended), or when an attribute's settings or a
  label's type differ from CVAT's. A project that left the config is not
  touched.

Environment:
  CVAT_URL                     the backend, e.g. http://cvat-backend:8080
  ADMIN_USERNAME ADMIN_PASSWORD   the superuser (from a Secret)
  ORGANIZATION_SLUG ORGANIZATION_NAME   (the name is cut to CVAT's 64 characters)
  BUCKETS                      space-separated bucket names (may be empty or unset)
  S3_ENDPOINT_URL S3_REGION    how CVAT reaches them            } needed only
  AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY   the keys CVAT uses  } when there
  CREDENTIALS_REVISION         changes whenever the keys change } are buckets
  PROJECTS                     JSON: [{"name", "labels": [CVAT label specs]}]
                               (components/label_schema.py projects_json; may be unset)
  WAIT_SECONDS                 how long to wait for CVAT to answer (default 600)
Standard library only; exits 1 with CVAT's message on any refusal.

CVAT's API as used here, checked against cvat-ai/cvat (serializers.py
ProjectWriteSerializer, LabelSerializer.update_label; views.py ProjectViewSet,
LabelViewSet; filters.py SimpleFilter) and cvat-sdk 2.73.0:
- GET /api/projects?name=N: paginated; `name` is an equality filter; with
  X-Organization an admin sees that organization's projects only. CVAT does
  not make project names unique.
- POST /api/projects {"name", "labels": [{"name", "type", "color"?,
  "attributes": [{"name", "mutable", "input_type", "default_value",
  "values"}]}]} creates the project and its labels in one transaction.
- GET /api/labels?project_id=I: paginated top-level labels, each with its id,
  color, type and attributes (with ids; values as a list).
- PATCH /api/projects/I {"labels": [...]}: one transaction. A label without
  id is created; a label with id is updated: its type and name are kept when
  not sent, but its COLOR IS REGENERATED WHEN NOT SENT (so it is always sent).
  An attribute with id gets the fields sent (values replaced by the list
  sent); one without id is created (or, if the label has one of that name,
  updated). Labels and attributes not sent are left alone; only
  `"deleted": true` deletes, and this script never sends it.
- Attribute values are append-only (serializers.py at v2.73.0, upstream commit
  7972cb4f2, LabelSerializer._update_attribute, lines 600-631): a values list
  that lacks one of a radio or select attribute's values is refused with HTTP
  400 'Attribute field "values" can only be appended for radio and select
  attributes' (a number attribute's values cannot change at all), and the
  project's PATCH is one transaction, so nothing of it is applied.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

PROVIDER = "AWS_S3_BUCKET"
# CVAT's Organization.name is at most 64 characters: a longer one is refused.
NAME_LENGTH = 64


class CvatError(Exception):
    """CVAT refused a request; the message is CVAT's."""


class Cvat:
    """A minimal client of CVAT's REST API (token authentication)."""

    def __init__(self, url, organization=None):
        self.url = url.rstrip("/")
        self.token = None
        self.organization = organization

    def request(self, method, path, body=None, query=None):
        url = self.url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Token {self.token}")
        if self.organization:
            request.add_header("X-Organization", self.organization)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                payload = response.read()
        except urllib.error.HTTPError as error:
            raise CvatError(f"{method} {path}: HTTP {error.code}: {error.read().decode(errors='replace')[:2000]}") from None
        return json.loads(payload) if payload else None

    def wait(self, seconds):
        deadline = time.monotonic() + seconds
        while True:
            try:
                return self.request("GET", "/api/server/about")
            except (urllib.error.URLError, CvatError, OSError) as error:
                if time.monotonic() > deadline:
                    raise CvatError(f"CVAT at {self.url} did not answer within {seconds}s: {error}") from None
                time.sleep(5)

    def login(self, username, password):
        self.token = self.request("POST", "/api/auth/login", {"username": username, "password": password})["key"]

    def pages(self, path, query):
        query = dict(query, page_size=100, page=1)
        while True:
            page = self.request("GET", path, query=query)
            yield from page["results"]
            if not page.get("next"):
                return
            query["page"] += 1


def organization_name(name, slug):
    """The organization's name as CVAT takes it: whitespace collapsed, at most 64 characters."""
    name = " ".join((name or "").split()) or slug
    return name[:NAME_LENGTH].rstrip()


def ensure_organization(cvat, slug, name):
    """("exists" or "created", the organization's id), creating it when missing."""
    for organization in cvat.pages("/api/organizations", {"slug": slug}):
        if organization["slug"] == slug:
            return "exists", organization["id"]
    created = cvat.request("POST", "/api/organizations", {"slug": slug, "name": name})
    return "created", created["id"]


def desired_storage(bucket, endpoint_url, region, key, secret_key, revision, workspace):
    return {
        "provider_type": PROVIDER,
        "resource": bucket,
        "display_name": bucket,
        "credentials_type": "KEY_SECRET_KEY_PAIR",
        "key": key,
        "secret_key": secret_key,
        "specific_attributes": urllib.parse.urlencode({"endpoint_url": endpoint_url, "region": region}),
        "description": f"Dataset bucket of workspace {workspace} (managed by Pulumi, credentials revision {revision})",
    }


def is_current(storage, desired):
    """Whether a registered storage already matches (keys are not readable: the revision tells)."""
    attributes = dict(urllib.parse.parse_qsl(storage.get("specific_attributes") or ""))
    wanted = dict(urllib.parse.parse_qsl(desired["specific_attributes"]))
    return (
        attributes.get("endpoint_url") == wanted["endpoint_url"]
        and attributes.get("region") == wanted["region"]
        and storage.get("description") == desired["description"]
        and storage.get("display_name") == desired["display_name"]
    )


def register(cvat, buckets, endpoint_url, region, key, secret_key, revision, workspace):
    """Registers or updates each bucket; returns what happened to each."""
    existing = {}
    for storage in cvat.pages("/api/cloudstorages", {}):
        if storage.get("provider_type") == PROVIDER and storage.get("resource") not in existing:
            existing[storage["resource"]] = storage
    results = {}
    for bucket in buckets:
        desired = desired_storage(bucket, endpoint_url, region, key, secret_key, revision, workspace)
        storage = existing.get(bucket)
        if storage is None:
            cvat.request("POST", "/api/cloudstorages", desired)
            results[bucket] = "registered"
        elif is_current(storage, desired):
            results[bucket] = "unchanged"
        else:
            update = {field: desired[field] for field in ("credentials_type", "key", "secret_key", "specific_attributes", "description", "display_name")}
            cvat.request("PATCH", f"/api/cloudstorages/{storage['id']}", update)
            results[bucket] = "updated"
    return results


# --- label schemas -----------------------------------------------------------


class SchemaRefused(Exception):
    """The config would remove what CVAT holds, or disagrees with CVAT's settings."""

    def __init__(self, lost, conflicts, values=()):
        self.lost = lost
        self.values = list(values)
        self.conflicts = conflicts
        lines = ["label schemas not applied: nothing was written to any project."]
        if lost:
            lines.append("The config lacks labels or attributes these projects hold in CVAT; deleting one in CVAT "
                         "would delete the annotations and values that use it, so the program never does:")
            lines += [f"  - {item}" for item in lost]
            lines.append("Put them back in the config. To really remove one: export the project's annotations (or back it up), "
                         "delete it in CVAT's label editor (the project's page), remove it from the config, then run pulumi up again.")
        if self.values:
            lines.append("The config lacks values these attributes hold in CVAT. CVAT 2.73 refuses to remove a value "
                         "(HTTP 400: Attribute field \"values\" can only be appended for radio and select attributes), "
                         "so the program stops here, before any write, rather than leave some projects updated and others not:")
            lines += [f"  - {item}" for item in self.values]
            lines.append("Put them back in the config: values can only be added. To drop one anyway, delete the whole attribute "
                         "in CVAT's label editor (that deletes the values annotators gave it), then run pulumi up again: "
                         "the attribute is created afresh with the config's values.")
        if conflicts:
            lines.append("CVAT and the config disagree (changed in CVAT's UI?); the program does not overwrite them:")
            lines += [f"  - {item}" for item in conflicts]
            lines.append("Make them agree, in CVAT or in the config, then run pulumi up again.")
        super().__init__("\n".join(lines))


def read_projects(text):
    """The PROJECTS list, checked for the shape label_schema.projects_json writes."""
    try:
        projects = json.loads(text or "[]")
    except json.JSONDecodeError as error:
        raise ValueError(f"PROJECTS is not JSON: {error}") from None
    if not isinstance(projects, list) or not all(
        isinstance(p, dict) and isinstance(p.get("name"), str) and isinstance(p.get("labels"), list) for p in projects
    ):
        raise ValueError("PROJECTS must be a list of {\"name\": ..., \"labels\": [...]}")
    return projects


def project_organization(project):
    return project.get("organization_id", project.get("organization"))


def find_projects(cvat, name, organization_id):
    """The projects of that exact name in the organization (CVAT allows several)."""
    return [
        project for project in cvat.pages("/api/projects", {"name": name})
        if project.get("name") == name and project_organization(project) == organization_id
    ]


def describe(values):
    return ", ".join(repr(value) for value in values)


def plan_labels(project, desired, current):
    """(labels to PATCH, what they add, labels and attributes missing, values missing, conflicts) for an existing project."""
    patch, added, lost, dropped, conflicts = [], [], [], [], []
    wanted = {label["name"]: label for label in desired}
    for label in current:
        if label["name"] not in wanted:
            lost.append(f"project {project!r}: label {label['name']!r} (and every annotation of it)")
    have = {label["name"]: label for label in current}
    for spec in desired:
        label = have.get(spec["name"])
        if label is None:
            patch.append(spec)
            added.append(f"label {spec['name']!r}")
            continue
        where = f"project {project!r}: label {label['name']!r}"
        current_type, wanted_type = label.get("type") or "any", spec.get("type") or "any"
        if current_type != wanted_type:
            conflicts.append(f"{where}: type is {current_type!r} in CVAT, {wanted_type!r} in the config")
        # CVAT regenerates the color of a label sent without one: always send it.
        color = spec.get("color") or label.get("color") or ""
        recolored = bool(spec.get("color")) and spec["color"].lower() != (label.get("color") or "").lower()
        change = {"id": label["id"], "name": label["name"], "color": color, "attributes": []}
        attributes = {attribute["name"]: attribute for attribute in label.get("attributes") or []}
        wanted_attributes = {attribute["name"] for attribute in spec.get("attributes") or []}
        for name in attributes:
            if name not in wanted_attributes:
                lost.append(f"{where}: attribute {name!r} (and the values annotators gave it)")
        for want in spec.get("attributes") or []:
            attribute = attributes.get(want["name"])
            if attribute is None:
                change["attributes"].append(want)
                added.append(f"attribute {want['name']!r} of label {label['name']!r}")
                continue
            here = f"{where}: attribute {want['name']!r}"
            for field in ("input_type", "mutable", "default_value"):
                if attribute.get(field) != want[field]:
                    conflicts.append(f"{here}: {field} is {json.dumps(attribute.get(field))} in CVAT, {json.dumps(want[field])} in the config")
            # An empty list is stored as '' and read back as [''].
            values = [value for value in attribute.get("values") or [] if value != ""]
            for value in values:
                if value not in want["values"]:
                    # CVAT 2.73 would refuse the PATCH (values are append-only): refused here before any write.
                    dropped.append(f"{here}: value {value!r}")
            new_values = [value for value in want["values"] if value not in values]
            if new_values:
                # The full list, CVAT replaces the attribute's values with it.
                change["attributes"].append({**want, "id": attribute["id"]})
                added.append(f"value{'s' if len(new_values) > 1 else ''} {describe(new_values)} of attribute {want['name']!r} of label {label['name']!r}")
        if recolored:
            added.append(f"color {color} of label {label['name']!r}")
        if change["attributes"] or recolored:
            patch.append(change)
    return patch, added, lost, dropped, conflicts


def plan_projects(cvat, projects, organization_id, slug):
    """What to write for each project, all read first; raises SchemaRefused before any write."""
    plans, lost, dropped, conflicts = [], [], [], []
    for project in projects:
        name = project["name"]
        found = find_projects(cvat, name, organization_id)
        if len(found) > 1:
            conflicts.append(f"project {name!r}: {len(found)} projects of that name in organization {slug!r} "
                             f"(ids {', '.join(str(p['id']) for p in found)}); rename or delete the extra ones in CVAT")
            continue
        if not found:
            count = len(project["labels"])
            plans.append(("create", name, None, project["labels"], [f"{count} label{'s' if count != 1 else ''}"]))
            continue
        current = list(cvat.pages("/api/labels", {"project_id": found[0]["id"]}))
        patch, added, project_lost, project_dropped, project_conflicts = plan_labels(name, project["labels"], current)
        lost += project_lost
        dropped += project_dropped
        conflicts += project_conflicts
        plans.append(("update" if patch else "unchanged", name, found[0]["id"], patch, added))
    if lost or dropped or conflicts:
        raise SchemaRefused(lost, conflicts, dropped)
    return plans


def apply_projects(cvat, plans):
    """Writes the plans, one request per project (CVAT applies each in one transaction); yields (name, outcome)."""
    for action, name, project_id, labels, notes in plans:
        if action == "create":
            cvat.request("POST", "/api/projects", {"name": name, "labels": labels})
            yield name, f"created ({', '.join(notes)})"
        elif action == "update":
            cvat.request("PATCH", f"/api/projects/{project_id}", {"labels": labels})
            yield name, f"updated (added {'; '.join(notes)})"
        else:
            yield name, "unchanged"


def main():
    env = os.environ
    required = ["CVAT_URL", "ADMIN_USERNAME", "ADMIN_PASSWORD", "ORGANIZATION_SLUG"]
    buckets = (env.get("BUCKETS") or "").split()
    if buckets:
        required += ["S3_ENDPOINT_URL", "S3_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "CREDENTIALS_REVISION"]
    missing = [name for name in required if not env.get(name)]
    if missing:
        sys.exit(f"error: not set: {', '.join(missing)}")
    try:
        projects = read_projects(env.get("PROJECTS"))
    except ValueError as error:
        sys.exit(f"error: {error}")
    slug = env["ORGANIZATION_SLUG"]
    cvat = Cvat(env["CVAT_URL"])
    try:
        cvat.wait(int(env.get("WAIT_SECONDS", "600")))
        cvat.login(env["ADMIN_USERNAME"], env["ADMIN_PASSWORD"])
        result, organization_id = ensure_organization(cvat, slug, organization_name(env.get("ORGANIZATION_NAME"), slug))
        print(f"organization {slug}: {result}")
        cvat.organization = slug
        if buckets:
            results = register(cvat, buckets, env["S3_ENDPOINT_URL"], env["S3_REGION"],
                               env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], env["CREDENTIALS_REVISION"], slug)
            for bucket, outcome in results.items():
                print(f"cloud storage {bucket}: {outcome}", flush=True)
        if projects:
            for name, outcome in apply_projects(cvat, plan_projects(cvat, projects, organization_id, slug)):
                print(f"project {name}: {outcome}", flush=True)
    except (CvatError, SchemaRefused) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
