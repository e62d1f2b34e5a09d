"""An HTTP proxy in front of an S3-compatible server (moto) that injects the faults a test asks for.

    with FaultProxy(moto.url) as proxy:
        proxy.inject("truncate", path_contains="/.incoming/")   # every upload there arrives cut in half
        run the script with AWS_ENDPOINT_URL=proxy.url ...
        proxy.requests                                          # what went through, and what was done to it

Faults (on the requests a Fault matches: method, a part of the path or query, copy or not):
- "truncate":    the server receives only the first half of the request body;
- "corrupt":     the server receives the body with one byte changed (same size);
- "error-after": the request reaches the server (the object is stored), the client gets 500;
- "error":       the client gets 500, the server never sees the request;
- "drop":        the proxy reads half of the body, then closes the connection without answer;
- "stall":       like "drop", but only once `release()` is called (or after `stall_seconds`):
                 the client hangs mid-upload meanwhile (`stalled` is set).
`times` limits a fault to its first N matching requests (None: all of them).
"""

from __future__ import annotations

import http.client
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
ACTIONS = {"truncate", "corrupt", "error-after", "error", "drop", "stall"}
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
    stall_seconds: float = 60.0
    hits: int = 0
    stalled: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self):
        assert self.action in ACTIONS, self.action

    def matches(self, method: str, path: str, query: str, headers) -> bool:
        if method != self.method or self.path_contains not in path or self.query_contains not in query:
            return False
        if method == "PUT" and self.copy is not None and self.copy != ("x-amz-copy-source" in headers):
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
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
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

    def _fault_for(self, method: str, path: str, query: str, headers) -> Optional[Fault]:
        with self._lock:
            for fault in self.faults:
                if fault.matches(method, path, query, headers):
                    fault.hits += 1
                    return fault
        return None

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        method = handler.command
        path, _, query = handler.path.partition("?")
        assert "chunked" not in handler.headers.get("Transfer-Encoding", ""), "chunked uploads are not proxied"
        length = int(handler.headers.get("Content-Length") or 0)
        fault = self._fault_for(method, path, query, handler.headers)
        seen = Seen(method, path, query, fault.action if fault else None)
        self.requests.append(seen)

        if fault and fault.action in ("drop", "stall"):
            handler.rfile.read(length // 2)
            if fault.action == "stall":
                fault.stalled.set()
                fault.released.wait(fault.stall_seconds)
            self._abort(handler)
            return
        body = handler.rfile.read(length) if length else b""
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

    @staticmethod
    def _abort(handler) -> None:
        handler.close_connection = True
        try:
            handler.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
