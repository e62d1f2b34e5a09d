"""A local HTTP server with the CVAT endpoints the bootstrap script calls.

It applies CVAT's rules (reference/cvat-v2.73.md, "Cloud storage"): token
login, organizations by slug, X-Organization scoping, cloud storage fields
and limits, and the bucket check on create and update (400 when the bucket
is not found). Secret keys are stored but never returned, as in CVAT.

Projects and labels follow CVAT 2.73 (cvat-ai/cvat serializers.py
ProjectWriteSerializer and LabelSerializer.create_labels / update_label,
views.py ProjectViewSet and LabelViewSet, models.py Label / AttributeSpec,
cvat-sdk 2.73.0): a project is created with nested labels and attributes in
one transaction; project names need not be unique; label names are unique in a
project, attribute names in a label; GET /api/projects filters `name` by
equality and, with X-Organization, shows that organization's projects only;
GET /api/labels?project_id= lists the top-level labels with their attributes,
values as a list; PATCH /api/projects/<id> {"labels"} applies everything or
nothing: a label without id is created, one with id updated (its type kept when
not sent or when skeleton is involved, its name kept when not sent, its color
REGENERATED when not sent), `"deleted": true` deletes a label or an attribute,
an attribute with id is updated with the fields sent (values replaced), one
without id is created or, when the label has one of that name, updated. Values
are append-only (LabelSerializer._update_attribute, serializers.py lines
600-631 at v2.73.0): a radio or select attribute's new list must hold every
old value, else HTTP 400 'Attribute field "values" can only be appended for
radio and select attributes'; a number attribute's values cannot change
(400), and the whole PATCH is rolled back. Limits:
label and attribute names 64 characters, each value 200 (a joined list over
4096 is a database error, HTTP 500), default_value 128, color 8 (longer: HTTP
500), project name 256; DRF trims surrounding whitespace.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from support.local_http import LocalHTTPServer, Request

PROVIDERS = {"AWS_S3_BUCKET", "AZURE_CONTAINER", "GOOGLE_DRIVE", "GOOGLE_CLOUD_STORAGE"}
# cvat-sdk 2.73.0 LabelType and InputTypeEnum.
LABEL_TYPES = {"any", "cuboid", "ellipse", "mask", "points", "polygon", "polyline", "rectangle", "skeleton", "interval", "tag"}
INPUT_TYPES = {"checkbox", "radio", "number", "text", "select"}


class Refusal(Exception):
    """A CVAT error response: (status, body)."""

    def __init__(self, status, body):
        super().__init__(status, body)
        self.status = status
        self.body = body


@dataclass
class FakeCvat(LocalHTTPServer):
    username: str = "admin"
    password: str = "admin-Passw0rd"
    existing_buckets: set = field(default_factory=set)
    organizations: dict = field(default_factory=dict)
    storages: list = field(default_factory=list)
    requests: list = field(default_factory=list)
    # {id, name, organization (slug or None)}; labels: {id, project_id, name, color, type, attributes}
    projects: list = field(default_factory=list)
    labels: list = field(default_factory=list)
    max_page_size: int = 100
    next_id: int = 1

    def answer(self, request: Request) -> tuple[int, bytes]:
        body = json.loads(request.body) if request.body else None
        self.requests.append((request.method, request.path, request.headers, body))
        status, payload = self.api(request.method, request.path, request.query, request.headers, body)
        return status, json.dumps(payload).encode() if payload is not None else b""

    def writes(self) -> list:
        return [(method, path) for method, path, _, _ in self.requests if method in ("POST", "PATCH", "PUT", "DELETE") and path != "/api/auth/login"]

    def project_writes(self) -> list:
        return [(method, path) for method, path in self.writes() if path.startswith(("/api/projects", "/api/labels"))]

    def schema(self, name, organization) -> dict:
        """{label: {"type", "color", "attributes": {attribute: [values]}}} of the one project of that name."""
        (project,) = [p for p in self.projects if p["name"] == name and p["organization"] == organization]
        return {
            label["name"]: {
                "type": label["type"],
                "color": label["color"],
                "attributes": {a["name"]: a["values"].split("\n") for a in label["attributes"]},
            }
            for label in self.labels if label["project_id"] == project["id"]
        }

    # --- the API -------------------------------------------------------

    def api(self, method, path, query, headers, body):
        if path == "/api/server/about" and method == "GET":
            return 200, {"name": "Computer Vision Annotation Tool", "version": "2.73.0"}
        if path == "/api/auth/login" and method == "POST":
            if body == {"username": self.username, "password": self.password}:
                return 200, {"key": "token-123"}
            return 400, {"non_field_errors": ["Unable to log in with provided credentials."]}
        if headers.get("Authorization") != "Token token-123":
            return 401, {"detail": "Authentication credentials were not provided."}
        org = headers.get("X-Organization")
        if org is not None and org not in self.organizations:
            return 404, {"detail": "Not found."}
        if path == "/api/organizations":
            if method == "GET":
                results = [o for o in self.organizations.values() if "slug" not in query or o["slug"] == query["slug"][0]]
                return 200, self._page(results, query)
            if method == "POST":
                slug = body.get("slug", "")
                if not re.match(r"^[-a-zA-Z0-9_]{1,16}$", slug):
                    return 400, {"slug": ["Ensure this field has no more than 16 characters and only letters, digits, - and _."]}
                if slug in self.organizations:
                    return 400, {"slug": ["organization with this slug already exists."]}
                self.organizations[slug] = {"id": len(self.organizations) + 1, "slug": slug, "name": body.get("name", "")}
                return 201, self.organizations[slug]
        if path == "/api/cloudstorages":
            if method == "GET":
                visible = [self._public(s) for s in self.storages if s["organization"] == org]
                return 200, self._page(visible, query)
            if method == "POST":
                problem = self._validate(body, creating=True)
                if problem:
                    return 400, problem
                storage = {**body, "id": len(self.storages) + 1, "organization": org}
                self.storages.append(storage)
                return 201, self._public(storage)
        match = re.match(r"^/api/cloudstorages/(\d+)$", path)
        if match and method == "PATCH":
            storage = next((s for s in self.storages if s["id"] == int(match.group(1)) and s["organization"] == org), None)
            if storage is None:
                return 404, {"detail": "Not found."}
            problem = self._validate({**storage, **body}, creating=False)
            if problem:
                return 400, problem
            storage.update(body)
            return 200, self._public(storage)
        if path.startswith(("/api/projects", "/api/labels")):
            try:
                return self._projects_api(method, path, query, org, body)
            except Refusal as refusal:
                return refusal.status, refusal.body
        return 404, {"detail": "Not found."}

    # --- projects and labels --------------------------------------------

    def _new_id(self):
        self.next_id += 1
        return self.next_id

    def _org_id(self, slug):
        return self.organizations[slug]["id"] if slug else None

    def _visible(self, project, org):
        # With X-Organization: that organization's projects; without: the admin sees all.
        return org is None or project["organization"] == org

    def _project(self, project_id, org):
        project = next((p for p in self.projects if p["id"] == project_id), None)
        if project is None:
            raise Refusal(404, {"detail": "Not found."})
        if not self._visible(project, org):
            raise Refusal(403, {"detail": "You do not have permission to perform this action."})
        return project

    def _project_read(self, project):
        org_id = self._org_id(project["organization"])
        return {"id": project["id"], "name": project["name"], "organization": org_id, "organization_id": org_id,
                "labels": {"url": f"/api/labels?project_id={project['id']}"}}

    def _label_read(self, label):
        return {
            "id": label["id"], "name": label["name"], "color": label["color"], "type": label["type"],
            "attributes": [{**a, "values": a["values"].split("\n")} for a in label["attributes"]],
            "sublabels": [], "project_id": label["project_id"], "parent_id": None, "has_parent": False,
        }

    def _projects_api(self, method, path, query, org, body):
        if path == "/api/projects" and method == "GET":
            visible = [p for p in self.projects if self._visible(p, org)]
            if "name" in query:  # SimpleFilter: equality only
                visible = [p for p in visible if p["name"] == query["name"][0]]
            return 200, self._page([self._project_read(p) for p in sorted(visible, key=lambda p: -p["id"])], query)
        if path == "/api/projects" and method == "POST":
            name = self._text(body.get("name"), "name", 256)
            labels = body.get("labels", [])
            saved = (copy.deepcopy(self.projects), copy.deepcopy(self.labels), self.next_id)
            try:
                project = {"id": self._new_id(), "name": name, "organization": org}
                self.projects.append(project)
                self._create_labels(project, labels)
            except Refusal:
                self.projects, self.labels, self.next_id = saved
                raise
            return 201, self._project_read(project)
        match = re.fullmatch(r"/api/projects/(\d+)", path)
        if match and method == "GET":
            return 200, self._project_read(self._project(int(match.group(1)), org))
        if match and method == "PATCH":
            project = self._project(int(match.group(1)), org)
            saved = (copy.deepcopy(self.projects), copy.deepcopy(self.labels), self.next_id)
            try:
                if "name" in body:
                    project["name"] = self._text(body["name"], "name", 256)
                for label in body.get("labels", []):
                    self._update_label(project, label)
            except Refusal:
                self.projects, self.labels, self.next_id = saved
                raise
            return 200, self._project_read(project)
        if path == "/api/labels" and method == "GET":
            if "project_id" not in query:
                return 400, {"detail": "this stand-in lists labels by project_id only"}
            project = self._project(int(query["project_id"][0]), org)
            labels = [self._label_read(l) for l in self.labels if l["project_id"] == project["id"]]
            return 200, self._page(sorted(labels, key=lambda l: l["id"]), query)
        return 404, {"detail": "Not found."}

    @staticmethod
    def _text(value, field_name, limit, blank=False):
        if not isinstance(value, str) or (not blank and not value.strip()):
            raise Refusal(400, {field_name: ["This field may not be blank." if isinstance(value, str) else "This field is required."]})
        if "\x00" in value:
            raise Refusal(400, {field_name: ["Null characters are not allowed."]})
        value = value.strip()  # DRF CharField trims whitespace
        if len(value) > limit:
            raise Refusal(400, {field_name: [f"Ensure this field has no more than {limit} characters."]})
        return value

    def _color(self, project, exclude_id=None):
        used = {l["color"] for l in self.labels if l["project_id"] == project["id"] and l["id"] != exclude_id}
        number = len(used) + 1
        while f"#{number * 40503 % 0xFFFFFF:06x}" in used:
            number += 1
        return f"#{number * 40503 % 0xFFFFFF:06x}"

    def _check_unique_names(self, project):
        names = [l["name"] for l in self.labels if l["project_id"] == project["id"]]
        if len(names) != len(set(names)):
            raise Refusal(400, ["All label names must be unique"])

    @staticmethod
    def _check_attribute_names(attributes):
        names = [a.get("name") for a in attributes]
        for name in names:
            if names.count(name) > 1:
                raise Refusal(400, [f"Duplicate attribute with name '{name}' exists"])

    def _attribute_fields(self, attribute, partial):
        fields = {}
        if "name" in attribute or not partial:
            fields["name"] = self._text(attribute.get("name"), "name", 64)
        if "mutable" in attribute or not partial:
            if not isinstance(attribute.get("mutable"), bool):
                raise Refusal(400, {"mutable": ["Must be a valid boolean."]})
            fields["mutable"] = attribute["mutable"]
        if "input_type" in attribute or not partial:
            if attribute.get("input_type") not in INPUT_TYPES:
                raise Refusal(400, {"input_type": [f"\"{attribute.get('input_type')}\" is not a valid choice."]})
            fields["input_type"] = attribute["input_type"]
        if "default_value" in attribute:
            fields["default_value"] = self._text(attribute["default_value"], "default_value", 128, blank=True)
        elif not partial:
            fields["default_value"] = ""
        if "values" in attribute or not partial:
            values = attribute.get("values")
            if not isinstance(values, list):
                raise Refusal(400, {"values": ["Expected a list of items."]})
            joined = "\n".join(self._text(v, "values", 200, blank=True) for v in values)
            if len(joined) > 4096:  # AttributeSpec.values CharField(max_length=4096): a database error
                raise Refusal(500, {"detail": "value too long for type character varying(4096)"})
            fields["values"] = joined
        return fields

    def _label_type(self, label):
        if "type" in label and label["type"] not in LABEL_TYPES:
            raise Refusal(400, {"type": [f"\"{label['type']}\" is not a valid choice."]})
        return label.get("type")

    def _label_color(self, label):
        color = label.get("color") or ""
        if len(color) > 8:  # Label.color CharField(max_length=8): a database error
            raise Refusal(500, {"detail": "value too long for type character varying(8)"})
        return color

    def _create_labels(self, project, labels):
        for spec in labels:
            attributes = spec.get("attributes", [])
            self._check_attribute_names(attributes)
            label = {
                "id": self._new_id(), "project_id": project["id"], "name": self._text(spec.get("name"), "name", 64),
                "type": self._label_type(spec) or "any", "color": self._label_color(spec) or self._color(project),
                "attributes": [],
            }
            self.labels.append(label)
            self._check_unique_names(project)
            for attribute in attributes:
                label["attributes"].append({"id": self._new_id(), **self._attribute_fields(attribute, partial=False)})

    def _update_label(self, project, spec):
        attributes = spec.get("attributes", [])
        self._check_attribute_names(attributes)
        if spec.get("deleted") and spec.get("id") is None:
            raise Refusal(400, {"non_field_errors": ["Deleted label must have an ID"]})
        if spec.get("id") is None:
            label = {"id": self._new_id(), "project_id": project["id"], "name": self._text(spec.get("name"), "name", 64),
                     "type": self._label_type(spec) or "any", "color": "", "attributes": []}
            self.labels.append(label)
        else:
            label = next((l for l in self.labels if l["id"] == spec["id"] and l["project_id"] == project["id"]), None)
            if label is None:
                raise Refusal(404, {"detail": f"Not found label with id #{spec['id']} to change"})
            wanted_type = self._label_type(spec) or label["type"]
            if "skeleton" not in (label["type"], wanted_type):
                label["type"] = wanted_type
            if spec.get("name"):
                label["name"] = self._text(spec["name"], "name", 64)
        if spec.get("deleted"):
            self.labels.remove(label)
            return
        # update_label: `if not validated_data.get('color')` -> get_label_color(...): regenerated.
        label["color"] = self._label_color(spec) or self._color(project, exclude_id=label["id"])
        self._check_unique_names(project)
        for attribute in attributes:
            if attribute.get("id") is not None:
                existing = next((a for a in label["attributes"] if a["id"] == attribute["id"]), None)
                if existing is None:
                    raise Refusal(404, {"detail": f"Attribute with id #{attribute['id']} does not exist"})
            else:
                existing = next((a for a in label["attributes"] if a["name"] == attribute.get("name")), None)
            if attribute.get("deleted"):
                if existing is not None:
                    label["attributes"].remove(existing)
                continue
            if existing is None:
                label["attributes"].append({"id": self._new_id(), **self._attribute_fields(attribute, partial=False)})
            else:
                fields = self._attribute_fields(attribute, partial=True)
                self._check_values_appended(existing, fields.get("values", existing["values"]))
                existing.update(fields)
            names = [a["name"] for a in label["attributes"]]
            if len(names) != len(set(names)):  # unique_together = ('label', 'name')
                raise Refusal(500, {"detail": "duplicate key value violates unique constraint"})

    @staticmethod
    def _check_values_appended(existing, new_values):
        """CVAT 2.73 LabelSerializer._update_attribute: values may only be appended (radio, select), never changed (number)."""
        if new_values == existing["values"]:
            return
        if existing["input_type"] in ("radio", "select"):
            old = existing["values"].split("\n") if existing["values"] else []
            new = new_values.split("\n") if new_values else []
            if not set(old) <= set(new):
                raise Refusal(400, ['Attribute field "values" can only be appended for radio and select attributes'])
        elif existing["input_type"] == "number":
            raise Refusal(400, ['Attribute field "values" cannot be changed for number attributes'])

    def _validate(self, storage, creating):
        if storage.get("provider_type") not in PROVIDERS:
            return {"provider_type": [f"\"{storage.get('provider_type')}\" is not a valid choice."]}
        if not re.match(r"^[a-z0-9.-]+$", storage.get("resource", "")):
            return {"resource": ["Enter a valid bucket name."]}
        if len(storage.get("display_name", "")) > 63:
            return {"display_name": ["Ensure this field has no more than 63 characters."]}
        if storage.get("credentials_type") == "KEY_SECRET_KEY_PAIR":
            if not storage.get("key") or not storage.get("secret_key"):
                return {"non_field_errors": ["key and secret_key are required for KEY_SECRET_KEY_PAIR"]}
            if len(storage["key"]) > 40 or len(storage["secret_key"]) > 64:
                return {"key": ["Ensure this field has no more than 40 characters."]}
        attributes = dict(parse_qsl(storage.get("specific_attributes", "")))
        if not attributes.get("endpoint_url", "").startswith(("http://", "https://")):
            return {"specific_attributes": ["endpoint_url is not a URL"]}
        # CVAT checks the bucket with head_bucket through the given endpoint.
        if storage["resource"] not in self.existing_buckets:
            return [f"The resource {storage['resource']} not found. It may have been deleted."]
        return None

    @staticmethod
    def _public(storage):
        return {k: v for k, v in storage.items() if k not in ("secret_key", "key", "organization")}

    def _page(self, results, query):
        size = min(int(query.get("page_size", ["10"])[0]), self.max_page_size)
        page = int(query.get("page", ["1"])[0])
        chunk = results[(page - 1) * size : page * size]
        return {"count": len(results), "next": "more" if page * size < len(results) else None, "results": chunk}
