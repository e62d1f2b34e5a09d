"""An HTTP proxy in front of an S3-compatible server (moto) that injects the faults a test asks for.

    with FaultProxy(moto.url) as proxy:
        proxy.inject("truncate", path_contains="/.incoming/")   # every upload there arrives cut in half
        run the script with AWS_ENDPOINT_URL=proxy.url ...
        proxy.requests                                          # what went through, and what was done to it
        proxy.count("DeleteObjects")                            # requests by S3 operation (see operation())

Faults (on the requests a Fault matches: method, a part of the path or query, copy or not):
- "truncate":    the server receives only the first half of the request body;
- "corrupt":     the server receives the body with one byte changed (same size);
- "error-after": the request reaches the server (the object is stored), the client gets 500;
- "error":       the client gets 500, the server never sees the request;
- "drop":        the proxy reads half of the body, then closes the connection without answer;
- "stall":       like "drop", but only once `release()` is called (or after `stall_seconds`):
                 the client hangs mid-upload meanwhile (`stalled` is set);
- "short":       the request reaches the server, the client gets its status and headers, but
                 only the first half of the body, with a Content-Length that says so (a read
                 cut short that HTTP cannot tell from a whole one). A HEAD answer has no body:
                 its head is cut in the middle and the connection closed.
`times` limits a fault to its first N matching requests (None: all of them), after the first
`after` matching ones, which pass untouched. `operation`
matches the S3 operation (operation(): "GetObject", "DeleteObjects", ...) instead of the method.
"""

from __future__ import annotations

import collections
import http.client
import re
import socket
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional

ERROR_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b"<Error><Code>InternalError</Code><Message>fault injected by the test proxy</Message></Error>"
)
ACTIONS = {"truncate", "corrupt", "error-after", "error", "drop", "stall", "short"}
# Not relayed as they are: the proxy sets its own lengths and connection handling.
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "expect", "proxy-connection", "upgrade"}


@dataclass
class Fault:
    action: str
    method: str = "PUT"
    path_contains: str = ""
    query_contains: str = ""
    copy: Optional[bool] = False
    """PUT requests: True only server-side copies (x-amz-copy-source), False only uploads, None both."""
    times: Optional[int] = None
    after: int = 0
    operation: Optional[str] = None
    """The S3 operation (operation()); when set, neither the method nor `copy` is looked at."""
    stall_seconds: float = 60.0
    hits: int = 0
    passed: int = 0
    stalled: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self):
        assert self.action in ACTIONS, self.action

    def matches(self, method: str, path: str, query: str, headers, operation_: str = "") -> bool:
        if self.operation is not None:
            if operation_ != self.operation:
                return False
        elif method != self.method:
            return False
        if self.path_contains not in path or self.query_contains not in query:
            return False
        if self.operation is None and method == "PUT" and self.copy is not None and self.copy != ("x-amz-copy-source" in headers):
            return False
        return self.times is None or self.hits < self.times

    def release(self) -> None:
        self.released.set()


@dataclass
class Seen:
    method: str
    path: str
    query: str
    fault: Optional[str]
    status: Optional[int] = None
    operation: str = ""
    keys: int = 0
    """DeleteObjects: how many keys the request names."""


def operation(method: str, path: str, query: str, headers) -> str:
    """The S3 operation of a path-style request: "PutObject", "CopyObject", "GetObject", "HeadObject",
    "DeleteObject", "DeleteObjects", "ListObjectsV2", the multipart ones, ...; "Other" for the rest."""
    params = urllib.parse.parse_qs(query, keep_blank_values=True)
    on_object = "/" in path.strip("/")
    if not on_object:
        if method == "GET":
            return "ListObjectsV2" if params.get("list-type") == ["2"] else "ListMultipartUploads" if "uploads" in params else "ListObjects"
        if method == "POST" and "delete" in params:
            return "DeleteObjects"
        return {"HEAD": "HeadBucket", "PUT": "CreateBucket", "DELETE": "DeleteBucket"}.get(method, "Other")
    if method == "PUT":
        if "partNumber" in params:
            return "UploadPartCopy" if "x-amz-copy-source" in headers else "UploadPart"
        return "CopyObject" if "x-amz-copy-source" in headers else "PutObject"
    if method == "POST":
        return "CreateMultipartUpload" if "uploads" in params else "CompleteMultipartUpload" if "uploadId" in params else "Other"
    if method == "DELETE":
        return "AbortMultipartUpload" if "uploadId" in params else "DeleteObject"
    return {"GET": "GetObject", "HEAD": "HeadObject"}.get(method, "Other")


class FaultProxy:
    def __init__(self, upstream: str):
        parsed = urllib.parse.urlsplit(upstream)
        self.upstream = (parsed.hostname, parsed.port)
        self.faults: list[Fault] = []
        self.requests: list[Seen] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                proxy._handle(self)

            do_PUT = do_POST = do_DELETE = do_HEAD = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    # ----- what the test uses ---------------------------------------------------------

    def inject(self, action: str, **match) -> Fault:
        fault = Fault(action, **match)
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            for fault in self.faults:
                fault.release()
            self.faults.clear()

    def count(self, operation_: str) -> int:
        """How many requests of this S3 operation went through (since the last `reset_counts`)."""
        return self.operations()[operation_]

    def operations(self) -> collections.Counter:
        """Requests by S3 operation (since the last `reset_counts`)."""
        return collections.Counter(seen.operation for seen in list(self.requests))

    def reset_counts(self) -> None:
        self.requests = []

    def environment(self, base: dict[str, str]) -> dict[str, str]:
        """`base` (an S3 client environment) pointed at the proxy."""
        return {**base, "AWS_ENDPOINT_URL": self.url}

    def stop(self) -> None:
        self.clear()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "FaultProxy":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # ----- the proxy ----------------------------------------------------------------------

    def _fault_for(self, method: str, path: str, query: str, headers, operation_: str) -> Optional[Fault]:
        with self._lock:
            for fault in self.faults:
                if fault.matches(method, path, query, headers, operation_):
                    if fault.passed < fault.after:
                        fault.passed += 1
                        continue
                    fault.hits += 1
                    return fault
        return None

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        method = handler.command
        path, _, query = handler.path.partition("?")
        assert "chunked" not in handler.headers.get("Transfer-Encoding", ""), "chunked uploads are not proxied"
        length = int(handler.headers.get("Content-Length") or 0)
        operation_ = operation(method, path, query, handler.headers)
        fault = self._fault_for(method, path, query, handler.headers, operation_)
        seen = Seen(method, path, query, fault.action if fault else None, operation=operation_)
        self.requests.append(seen)

        if fault and fault.action in ("drop", "stall"):
            handler.rfile.read(length // 2)
            if fault.action == "stall":
                fault.stalled.set()
                fault.released.wait(fault.stall_seconds)
            self._abort(handler)
            return
        body = handler.rfile.read(length) if length else b""
        if operation_ == "DeleteObjects":
            seen.keys = len(re.findall(rb"<Key>", body))
        if fault and fault.action == "error":
            self._answer(handler, 500, {"Content-Type": "application/xml"}, ERROR_BODY, seen)
            return
        if fault and fault.action == "truncate":
            body = body[: len(body) // 2]
        elif fault and fault.action == "corrupt" and body:
            middle = len(body) // 2
            body = body[:middle] + bytes([body[middle] ^ 0xFF]) + body[middle + 1 :]

        headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_BY_HOP}
        if body or method in ("PUT", "POST"):
            headers["Content-Length"] = str(len(body))
        connection = http.client.HTTPConnection(*self.upstream, timeout=120)
        try:
            connection.request(method, handler.path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
            status, reply_headers = response.status, {k: v for k, v in response.getheaders()}
        finally:
            connection.close()
        if fault and fault.action == "error-after":
            self._answer(handler, 500, {"Content-Type": "application/xml"}, ERROR_BODY, seen)
            return
        if fault and fault.action == "short":
            if method == "HEAD":
                self._cut_head(handler, status, reply_headers, seen)
                return
            data = data[: len(data) // 2]
        self._answer(handler, status, reply_headers, data, seen, head=method == "HEAD")

    @staticmethod
    def _answer(handler, status: int, headers: dict, data: bytes, seen: Seen, head: bool = False) -> None:
        seen.status = status
        handler.send_response_only(status)
        for key, value in headers.items():
            if key.lower() in HOP_BY_HOP and not (head and key.lower() == "content-length"):
                continue
            handler.send_header(key, value)
        if not head:
            handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if not head and data:
            handler.wfile.write(data)
        handler.wfile.flush()

    @classmethod
    def _cut_head(cls, handler, status: int, headers: dict, seen: Seen) -> None:
        """The status line and the first half of the headers, then the connection closes."""
        seen.status = status
        lines = [f"HTTP/1.1 {status} OK"] + [f"{k}: {v}" for k, v in headers.items() if k.lower() not in HOP_BY_HOP]
        lines.append(f"Content-Length: {headers.get('Content-Length') or headers.get('content-length') or 0}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        handler.wfile.write(head[: len(head) // 2])
        handler.wfile.flush()
        cls._abort(handler)

    @staticmethod
    def _abort(handler) -> None:
        handler.close_connection = True
        try:
            handler.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
