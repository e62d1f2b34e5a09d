"""Fetching an export from a workspace, against a local server that keeps CVAT v2.73's export protocol.

The stand-in enforces what audit/cvat_client.py documents from cvat-sdk 2.73.0
and the server source: token login (400 on a wrong password), every other
call refused without `Authorization: Token <key>`, projects listed in pages,
the export started with POST .../dataset/export (202 + rq_id), the request
polled at /api/requests/<rq_id, percent-encoded> through queued and started
to finished (result_url, built with the server's own host name) or failed
(message), and the file downloaded with the token.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field
from urllib.parse import quote, unquote

import pytest
from support.audit_exports import Image, coco_json, write_planted, zipped
from support.local_http import LocalHTTPServer, Request

from audit.cli import main

TOKEN = "f3a9c2-token"
FORMATS = {"CVAT for images 1.1", "CVAT for video 1.1", "COCO 1.0"}


@dataclass
class FakeCvatExports(LocalHTTPServer):
    username: str = "auditor"
    password: str = "Annotat0rs-Pass"
    projects: list = field(
        default_factory=lambda: [
            {"id": 3, "name": "street-scenes-archive", "org": None},
            {"id": 7, "name": "street-scenes", "org": None},
        ]
    )
    files: dict = field(default_factory=dict)  # format -> bytes
    fail_with: str | None = None
    polls_until_done: int = 2
    page_size_cap: int = 1  # small pages, so the client must follow `next`
    seen: list = field(default_factory=list)
    exports: dict = field(default_factory=dict)

    def answer(self, request: Request) -> tuple[int, bytes]:
        self.seen.append(request)
        status, payload = self.route(request)
        if isinstance(payload, bytes):
            return status, payload
        return status, json.dumps(payload).encode()

    def route(self, request: Request):
        if request.path == "/api/auth/login" and request.method == "POST":
            body = json.loads(request.body or b"{}")
            if body.get("username") == self.username and body.get("password") == self.password:
                return 200, {"key": TOKEN}
            return 400, {"non_field_errors": ["Unable to log in with provided credentials."]}
        if request.headers.get("Authorization") != f"Token {TOKEN}":
            return 401, {"detail": "Authentication credentials were not provided."}
        org = request.headers.get("X-Organization")
        if request.path == "/api/projects" and request.method == "GET":
            visible = [p for p in self.projects if p["org"] == org]
            name = request.query.get("name", [None])[0]
            if name is not None:
                visible = [p for p in visible if name.lower() in p["name"].lower()]  # CVAT's filter is lenient
            size = min(int(request.query.get("page_size", ["10"])[0]), self.page_size_cap)
            page = int(request.query.get("page", ["1"])[0])
            chunk = visible[(page - 1) * size : page * size]
            more = page * size < len(visible)
            return 200, {
                "count": len(visible),
                "next": f"{self.url}/api/projects?page={page + 1}" if more else None,
                "previous": None,
                "results": [{"id": p["id"], "name": p["name"]} for p in chunk],
            }
        parts = request.path.strip("/").split("/")
        if parts[:2] == ["api", "projects"] and parts[3:] == ["dataset", "export"] and request.method == "POST":
            fmt = request.query.get("format", [""])[0]
            if fmt not in FORMATS:
                return 405, {"detail": "Format is not available"}
            if request.query.get("save_images") != ["false"]:
                return 400, {"detail": "this stand-in only serves annotation-only exports"}
            rq_id = f"action=export&target=project&target_id={parts[2]}&format={fmt}&user_id=1"
            self.exports[rq_id] = {"project": int(parts[2]), "format": fmt, "polls": 0}
            return 202, {"rq_id": rq_id}
        if parts[:2] == ["api", "requests"] and len(parts) == 3 and request.method == "GET":
            rq_id = unquote(parts[2])
            if rq_id not in self.exports:
                return 404, {"detail": "Not found."}
            state = self.exports[rq_id]
            state["polls"] += 1
            base = {"id": rq_id, "message": "", "operation": {"type": f"export:{state['format']}", "target": "project"}}
            if state["polls"] <= self.polls_until_done:
                return 200, dict(base, status="queued" if state["polls"] == 1 else "started")
            if self.fail_with:
                return 200, dict(base, status="failed", message=self.fail_with)
            # CVAT builds result_url from the Host it saw: inside the cluster, not the address the client used.
            url = f"http://cvat-backend:8080/api/projects/{state['project']}/dataset/download?rq_id={quote(rq_id, safe='')}"
            return 200, dict(base, status="finished", result_url=url)
        if parts[:2] == ["api", "projects"] and parts[3:] == ["dataset", "download"] and request.method == "GET":
            rq_id = request.query.get("rq_id", [""])[0]
            state = self.exports.get(rq_id)
            if state is None or state["project"] != int(parts[2]):
                return 404, {"detail": "Not found."}
            return 200, self.files[state["format"]]
        return 404, {"detail": "Not found."}


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return write_planted(tmp_path_factory.mktemp("planted"))


@pytest.fixture
def fake(planted):
    with FakeCvatExports(files={"CVAT for images 1.1": planted["export"].read_bytes()}) as server:
        yield server


def fetch_args(fake, tmp_path, *extra):
    return [
        "report",
        "--url",
        fake.url,
        "--user",
        "auditor",
        "--project",
        "street-scenes",
        "--out",
        str(tmp_path / "out"),
        "--poll-interval",
        "0.01",
        *extra,
    ]


def test_the_export_is_started_polled_and_downloaded_with_the_token(fake, planted, tmp_path, monkeypatch):
    monkeypatch.setenv("CVAT_PASSWORD", fake.password)
    saved = tmp_path / "kept.zip"
    code = main(fetch_args(fake, tmp_path, "--schema", str(planted["schema"]), "--save-export", str(saved)))
    assert code == 0
    assert saved.read_bytes() == planted["export"].read_bytes()
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["items"] == 597 and [a["name"] for a in report["attributes"] if a["flagged"]] == ["lighting"]

    calls = [(r.method, r.path) for r in fake.seen]
    assert calls[0] == ("POST", "/api/auth/login")
    assert all(r.headers.get("Authorization") == f"Token {TOKEN}" for r in fake.seen[1:])
    assert [path for method, path in calls if path == "/api/projects"] == ["/api/projects"] * 2  # street-scenes is on page 2
    export = next(r for r in fake.seen if r.path.endswith("/dataset/export"))
    assert (export.method, export.path) == ("POST", "/api/projects/7/dataset/export")
    assert export.query == {"format": ["CVAT for images 1.1"], "save_images": ["false"]}
    polls = [r for r in fake.seen if r.path.startswith("/api/requests/")]
    assert len(polls) == 3  # queued, started, finished
    assert polls[0].path == "/api/requests/" + quote(next(iter(fake.exports)), safe="")
    download = fake.seen[-1]
    assert download.path == "/api/projects/7/dataset/download"  # asked of --url, not of the server's own host name


def test_the_format_option_reaches_cvat(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("CVAT_PASSWORD", fake.password)
    coco = coco_json([Image("a.jpg", shapes=[("car", {"lighting": "day"}), ("bicycle", {"lighting": "unlabeled"})])])
    fake.files["COCO 1.0"] = zipped({"annotations/instances_default.json": coco})
    assert main(fetch_args(fake, tmp_path, "--format", "COCO 1.0", "--per-object")) == 0
    assert json.loads((tmp_path / "out" / "report.json").read_text())["items"] == 2
    assert next(iter(fake.exports.values()))["format"] == "COCO 1.0"


def test_organization_projects_need_org(fake, planted, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CVAT_PASSWORD", fake.password)
    fake.projects = [{"id": 9, "name": "street-scenes", "org": "acme"}]
    assert main(fetch_args(fake, tmp_path)) == 1
    assert "no project named 'street-scenes'" in capsys.readouterr().err
    assert main(fetch_args(fake, tmp_path, "--org", "acme")) == 0
    assert fake.seen[-1].headers.get("X-Organization") == "acme"


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "Traceback" not in "\n".join(err)
    return err[-1]


def test_wrong_password(fake, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CVAT_PASSWORD", "not-the-password")
    assert main(fetch_args(fake, tmp_path)) == 1
    assert error_line(capsys) == "error: CVAT refused the login of 'auditor': wrong user name or password"
    assert [r.path for r in fake.seen] == ["/api/auth/login"]


def test_missing_password(fake, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("CVAT_PASSWORD", raising=False)
    assert main(fetch_args(fake, tmp_path)) == 1
    assert "CVAT_PASSWORD" in error_line(capsys)
    assert fake.seen == []


def test_project_not_found(fake, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CVAT_PASSWORD", fake.password)
    fake.projects = [{"id": 3, "name": "street-scenes-old", "org": None}]  # matched by CVAT's filter, not by name
    assert main(fetch_args(fake, tmp_path)) == 1
    assert error_line(capsys).startswith("error: CVAT has no project named 'street-scenes'")


def test_a_failed_export_reports_cvats_message(fake, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CVAT_PASSWORD", fake.password)
    fake.fail_with = "OSError: [Errno 28] No space left on device"
    assert main(fetch_args(fake, tmp_path)) == 1
    assert error_line(capsys) == "error: CVAT's export failed: OSError: [Errno 28] No space left on device"


def test_an_export_that_never_finishes_times_out(fake, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CVAT_PASSWORD", fake.password)
    fake.polls_until_done = 10**6
    assert main(fetch_args(fake, tmp_path, "--export-timeout", "0.05")) == 1
    assert "did not finish within" in error_line(capsys)


def test_an_unreachable_workspace(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CVAT_PASSWORD", "x")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code = main(["report", "--url", f"http://127.0.0.1:{port}", "--user", "u", "--project", "p", "--out", str(tmp_path)])
    assert code == 1
    assert error_line(capsys).startswith(f"error: cannot reach CVAT at http://127.0.0.1:{port}")
