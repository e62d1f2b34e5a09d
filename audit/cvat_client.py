"""Downloading a project's dataset export from a CVAT workspace (CVAT v2.73.0 API).

The calls, checked against cvat-sdk 2.73.0 (the client CVAT publishes with
that server release; cvat_sdk/api_client/api/{auth,projects,requests}_api.py,
cvat_sdk/core/downloading.py `prepare_file`, cvat_sdk/core/client.py
`wait_for_completion`) and the server source (cvat/apps/engine/mixins.py
`initiate_dataset_export`, cvat/apps/redis_handler/serializers.py
`RequestSerializer`, `RequestStatus`):

1. `POST /api/auth/login` `{"username", "password"}` → `{"key"}`; then every
   call sends `Authorization: Token <key>` (the SDK's `tokenAuth`; also how
   the workspace's own bootstrap scripts talk to CVAT). A wrong password is a
   400 with `non_field_errors`.
2. `GET /api/projects?name=<name>&page_size=..&page=..` → `{count, next,
   results}`; the exact name is matched here, over every page.
3. `POST /api/projects/{id}/dataset/export?format=<format>&save_images=false`
   → 202 `{"rq_id"}` (409 `{"rq_id"}` when the same export is already running:
   that request is followed instead).
4. `GET /api/requests/{rq_id}` (the id percent-encoded as a path segment, as
   the SDK does) until `status` is `finished` (`result_url`) or `failed`
   (`message`); `queued` and `started` mean wait.
5. `GET result_url` with the same token. The URL is built by the server from
   the Host it saw, which behind an ingress or port-forward may not be the
   address used here; so its path and query are requested from `--url`'s
   origin, which also means the token is never sent to any other host.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from .errors import AuditError

PAGE_SIZE = 100


class CvatClient:
    """A minimal client of the CVAT REST API with token authentication (standard library only)."""

    def __init__(self, url: str, organization: str | None = None, timeout: float = 60):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise AuditError(f"--url {url!r} is not an http(s) URL")
        self.url = url.rstrip("/")
        self.organization = organization
        self.timeout = timeout
        self.token: str | None = None

    def open(self, method: str, path: str, body=None, query: dict | None = None):
        """The response to one request (an open file-like object); HTTP errors become AuditError."""
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
            return urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as error:
            detail = error.read(2000).decode("utf-8", errors="replace")
            raise HttpError(error.code, method, path, detail) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise AuditError(f"cannot reach CVAT at {self.url}: {reason}") from None

    def call(self, method: str, path: str, body=None, query: dict | None = None) -> tuple[int, object]:
        """Status and JSON body of one request."""
        with self.open(method, path, body, query) as response:
            payload = response.read()
            status = response.status
        try:
            return status, json.loads(payload) if payload else None
        except json.JSONDecodeError:
            raise AuditError(
                f"{method} {path}: CVAT answered something that is not JSON (is {self.url} a CVAT server?)"
            ) from None

    def login(self, username: str, password: str) -> None:
        """Log in and keep the token for the next calls."""
        try:
            _, payload = self.call("POST", "/api/auth/login", {"username": username, "password": password})
        except HttpError as error:
            if error.status in (400, 401, 403):
                raise AuditError(f"CVAT refused the login of {username!r}: wrong user name or password") from None
            raise
        if not isinstance(payload, dict) or not payload.get("key"):
            raise AuditError("CVAT's login answer has no token (key)")
        self.token = payload["key"]

    def find_project(self, name: str) -> int:
        """The id of the project named exactly `name`."""
        page = 1
        while True:
            _, payload = self.call("GET", "/api/projects", query={"name": name, "page_size": PAGE_SIZE, "page": page})
            for project in payload.get("results", []):
                if project.get("name") == name:
                    return int(project["id"])
            if not payload.get("next"):
                break
            page += 1
        where = (
            f" in the organization {self.organization!r}"
            if self.organization
            else " (pass --org if it belongs to an organization)"
        )
        raise AuditError(f"CVAT has no project named {name!r} that this user can see{where}")

    def start_export(self, project_id: int, export_format: str) -> str:
        """Start the export of a project's annotations; the request id to poll."""
        path = f"/api/projects/{project_id}/dataset/export"
        try:
            _, payload = self.call("POST", path, query={"format": export_format, "save_images": "false"})
        except HttpError as error:
            if error.status == 409:
                # The same export is already running: CVAT answers with its request id.
                try:
                    return json.loads(error.detail)["rq_id"]
                except (ValueError, KeyError, TypeError):
                    pass
            if error.status in (400, 405):
                raise AuditError(f"CVAT cannot export the project in the format {export_format!r}: {error.detail}") from None
            raise
        if not isinstance(payload, dict) or not payload.get("rq_id"):
            raise AuditError(f"POST {path}: CVAT's answer has no rq_id")
        return payload["rq_id"]

    def wait_for(self, rq_id: str, poll_interval: float, timeout: float) -> str:
        """Poll the request until it finished (its result_url) or failed (AuditError with CVAT's message)."""
        deadline = time.monotonic() + timeout
        path = "/api/requests/" + urllib.parse.quote(rq_id, safe="")
        while True:
            _, payload = self.call("GET", path)
            status = payload.get("status")
            if status == "finished":
                if not payload.get("result_url"):
                    raise AuditError("CVAT finished the export but gave no result_url")
                return payload["result_url"]
            if status == "failed":
                raise AuditError(f"CVAT's export failed: {payload.get('message') or 'no message'}")
            if status not in ("queued", "started"):
                raise AuditError(f"CVAT's export request is in an unknown state {status!r}")
            if time.monotonic() > deadline:
                raise AuditError(f"CVAT's export did not finish within {timeout:.0f} s (last status: {status})")
            time.sleep(poll_interval)

    def download(self, result_url: str, destination: Path) -> None:
        """Stream the export file at `result_url` to `destination`."""
        parts = urllib.parse.urlsplit(result_url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        destination.parent.mkdir(parents=True, exist_ok=True)
        partial = destination.with_name(destination.name + ".part")
        with self.open("GET", path) as response, partial.open("wb") as file:
            shutil.copyfileobj(response, file, 1024 * 1024)
        partial.replace(destination)


class HttpError(AuditError):
    """CVAT answered with an HTTP error status."""

    def __init__(self, status: int, method: str, path: str, detail: str):
        super().__init__(f"{method} {path}: CVAT answered HTTP {status}: {detail[:300]}")
        self.status = status
        self.detail = detail


def fetch_export(
    url: str,
    username: str,
    password: str,
    project: str,
    export_format: str,
    destination: Path,
    organization: str | None = None,
    poll_interval: float = 3.0,
    timeout: float = 1800.0,
) -> Path:
    """Log in, export the project `project` in `export_format` (annotations only) and download it to `destination`."""
    client = CvatClient(url, organization)
    client.login(username, password)
    project_id = client.find_project(project)
    rq_id = client.start_export(project_id, export_format)
    result_url = client.wait_for(rq_id, poll_interval, timeout)
    client.download(result_url, destination)
    return destination
