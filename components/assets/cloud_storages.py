"""Registers the workspace's dataset buckets as cloud storages in CVAT.

Runs in a Job (backend image) once CVAT is up. It logs in as the admin through
the backend Service, makes sure the workspace's organization exists, and
registers each bucket as an AWS_S3_BUCKET cloud storage of that organization
(endpoint and region in `specific_attributes`, display name = bucket name).
Idempotent: a storage that is already right is left alone; one whose endpoint,
region or credentials revision changed is updated; nothing is duplicated.

Environment:
  CVAT_URL                     the backend, e.g. http://cvat-backend:8080
  ADMIN_USERNAME ADMIN_PASSWORD   the superuser (from a Secret)
  ORGANIZATION_SLUG ORGANIZATION_NAME   (the name is cut to CVAT's 64 characters)
  BUCKETS                      space-separated bucket names
  S3_ENDPOINT_URL S3_REGION    how CVAT reaches them
  AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY   the keys CVAT uses (from a Secret)
  CREDENTIALS_REVISION         changes whenever the keys change (never derived from them)
  WAIT_SECONDS                 how long to wait for CVAT to answer (default 600)
Standard library only; exits 1 with CVAT's message on any refusal.
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
    """The organization's slug, creating it when missing."""
    for organization in cvat.pages("/api/organizations", {"slug": slug}):
        if organization["slug"] == slug:
            return "exists"
    cvat.request("POST", "/api/organizations", {"slug": slug, "name": name})
    return "created"


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


def main():
    env = os.environ
    missing = [name for name in ("CVAT_URL", "ADMIN_USERNAME", "ADMIN_PASSWORD", "ORGANIZATION_SLUG", "BUCKETS",
                                 "S3_ENDPOINT_URL", "S3_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                 "CREDENTIALS_REVISION") if not env.get(name)]
    if missing:
        sys.exit(f"error: not set: {', '.join(missing)}")
    slug = env["ORGANIZATION_SLUG"]
    cvat = Cvat(env["CVAT_URL"])
    try:
        cvat.wait(int(env.get("WAIT_SECONDS", "600")))
        cvat.login(env["ADMIN_USERNAME"], env["ADMIN_PASSWORD"])
        print(f"organization {slug}: {ensure_organization(cvat, slug, organization_name(env.get('ORGANIZATION_NAME'), slug))}")
        cvat.organization = slug
        results = register(cvat, env["BUCKETS"].split(), env["S3_ENDPOINT_URL"], env["S3_REGION"],
                           env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], env["CREDENTIALS_REVISION"], slug)
    except CvatError as error:
        sys.exit(f"error: {error}")
    for bucket, result in results.items():
        print(f"cloud storage {bucket}: {result}")


if __name__ == "__main__":
    main()
