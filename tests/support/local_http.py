"""A tiny HTTP server on loopback for stand-ins of remote APIs (S3 corner cases, CVAT)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    """One request as the stand-in saw it."""

    method: str
    path: str
    query: dict
    headers: dict
    body: bytes


class LocalHTTPServer:
    """Serves `answer(request) -> (status, body)` on 127.0.0.1 in a thread, as a context manager."""

    content_type = "application/json"

    def answer(self, request: Request) -> tuple[int, bytes]:
        raise NotImplementedError

    def __enter__(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                query = parse_qs(parts.query, keep_blank_values=True)
                status, data = server.answer(Request(self.command, parts.path, query, dict(self.headers), body))
                self.send_response(status)
                self.send_header("Content-Type", server.content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = do_HEAD = _handle

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # A short poll: shutdown() waits for the next one (0.5 s by default, at every test's end).
        threading.Thread(target=self.http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.http.shutdown()
        self.http.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http.server_address[1]}"
