"""A local HTTP server with the CVAT endpoints the cloud-storage script calls.

It applies CVAT's rules (reference/cvat-v2.73.md, "Cloud storage"): token
login, organizations by slug, X-Organization scoping, cloud storage fields
and limits, and the bucket check on create and update (400 when the bucket
is not found). Secret keys are stored but never returned, as in CVAT.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from local_http import LocalHTTPServer, Request

PROVIDERS = {"AWS_S3_BUCKET", "AZURE_CONTAINER", "GOOGLE_DRIVE", "GOOGLE_CLOUD_STORAGE"}


@dataclass
class FakeCvat(LocalHTTPServer):
    username: str = "admin"
    password: str = "admin-Passw0rd"
    existing_buckets: set = field(default_factory=set)
    organizations: dict = field(default_factory=dict)
    storages: list = field(default_factory=list)
    requests: list = field(default_factory=list)

    def answer(self, request: Request) -> tuple[int, bytes]:
        body = json.loads(request.body) if request.body else None
        self.requests.append((request.method, request.path, request.headers, body))
        status, payload = self.api(request.method, request.path, request.query, request.headers, body)
        return status, json.dumps(payload).encode() if payload is not None else b""

    def writes(self) -> list:
        return [(method, path) for method, path, _, _ in self.requests if method in ("POST", "PATCH") and path != "/api/auth/login"]

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
        return 404, {"detail": "Not found."}

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

    @staticmethod
    def _page(results, query):
        size = int(query.get("page_size", ["10"])[0])
        page = int(query.get("page", ["1"])[0])
        chunk = results[(page - 1) * size : page * size]
        return {"count": len(results), "next": "more" if page * size < len(results) else None, "results": chunk}
