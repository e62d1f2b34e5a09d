"""A minimal S3-compatible HTTP server for the answers moto does not give.

It records every request and answers in one of a few modes:
- "no-lifecycle": lists buckets, says every bucket exists, and answers
  501 NotImplemented to any lifecycle request (like servers without that API);
- "md5-required": keeps lifecycle rules but refuses to store them without a
  correct Content-MD5 header (like servers that never adopted CRC checksums);
- "minio-rules": like "md5-required" without the MD5 check, but refuses (like
  MinIO) a lifecycle rule that has no Expiration or Transition;
- "access-denied": answers 403 AccessDenied to everything;
- "wrong-region": answers like a server whose region is nl-ams to a request
  signed for another region.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field

from support.local_http import LocalHTTPServer, Request


@dataclass
class StubS3Server(LocalHTTPServer):
    mode: str
    requests: list[Request] = field(default_factory=list)
    lifecycle: dict[str, bytes] = field(default_factory=dict)
    content_type = "application/xml"

    def answer(self, request: Request) -> tuple[int, bytes]:
        self.requests.append(request)
        status, payload = self.s3_answer(request)
        return status, payload.encode()

    def s3_answer(self, request: Request) -> tuple[int, str]:
        if self.mode == "access-denied":
            return 403, _error("AccessDenied", "Access Denied")
        if self.mode == "wrong-region":
            return 400, _error(
                "AuthorizationHeaderMalformed",
                "The authorization header is malformed; the region 'fr-par' is wrong; expecting 'nl-ams'",
            )
        bucket = request.path.strip("/").split("/")[0]
        if "lifecycle" in request.query:
            if self.mode == "no-lifecycle":
                return 501, _error("NotImplemented", "A header you provided implies functionality that is not implemented")
            if request.method == "GET":
                if bucket not in self.lifecycle:
                    return 404, _error("NoSuchLifecycleConfiguration", "The lifecycle configuration does not exist")
                return 200, self.lifecycle[bucket].decode()
            if request.method == "PUT" and self.mode == "minio-rules":
                rules = request.body.split(b"<Rule>")[1:]
                if any(b"<Expiration>" not in rule and b"<Transition>" not in rule for rule in rules):
                    return 400, _error("MalformedXML", "The XML you provided was not well-formed")
                self.lifecycle[bucket] = request.body
                return 200, ""
            if request.method == "PUT":
                expected = base64.b64encode(hashlib.md5(request.body).digest()).decode()
                if request.headers.get("Content-MD5") != expected:
                    return 400, _error("InvalidRequest", "Missing required header for this request: Content-MD5")
                self.lifecycle[bucket] = request.body
                return 200, ""
            if request.method == "DELETE":
                self.lifecycle.pop(bucket, None)
                return 204, ""
        if request.method == "GET" and not bucket:
            return 200, (
                '<?xml version="1.0" encoding="UTF-8"?><ListAllMyBucketsResult>'
                "<Owner><ID>stub</ID></Owner><Buckets></Buckets></ListAllMyBucketsResult>"
            )
        return 200, ""


def _error(code: str, message: str) -> str:
    return f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message></Error>'
