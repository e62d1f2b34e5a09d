"""components/assets/cloud_storages.py against a local server applying CVAT's rules."""

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qsl

import pytest

from support.fake_cvat import FakeCvat

# Runs the pod script, a process, against the CVAT stand-in (conftest: the tiers).
pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parents[2] / "components" / "assets" / "cloud_storages.py"
BUCKETS = ["acme-street-scenes", "acme-dashcam-videos"]


def run(fake, **changes):
    env = {
        "PATH": os.environ["PATH"],
        "CVAT_URL": fake.url,
        "ADMIN_USERNAME": fake.username,
        "ADMIN_PASSWORD": fake.password,
        "ORGANIZATION_SLUG": "acme",
        "ORGANIZATION_NAME": "ACME street scenes",
        "BUCKETS": " ".join(BUCKETS),
        "S3_ENDPOINT_URL": "https://s3.fr-par.scw.cloud",
        "S3_REGION": "fr-par",
        "AWS_ACCESS_KEY_ID": "SCWXXXXXXXXXXXXXXXXX",
        "AWS_SECRET_ACCESS_KEY": "first-secret-key",
        "CREDENTIALS_REVISION": "0a1b2c3d",
        "WAIT_SECONDS": "5",
        **changes,
    }
    return subprocess.run([sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)


def test_first_run_registers_everything_in_the_workspace_organization():
    with FakeCvat(existing_buckets=set(BUCKETS)) as fake:
        result = run(fake)
        assert result.returncode == 0, result.stderr
        assert "organization acme: created" in result.stdout
        assert fake.organizations["acme"]["name"] == "ACME street scenes"
        assert {s["resource"] for s in fake.storages} == set(BUCKETS)
        for storage in fake.storages:
            assert storage["organization"] == "acme"
            assert storage["provider_type"] == "AWS_S3_BUCKET"
            assert storage["display_name"] == storage["resource"]
            assert storage["credentials_type"] == "KEY_SECRET_KEY_PAIR"
            assert (storage["key"], storage["secret_key"]) == ("SCWXXXXXXXXXXXXXXXXX", "first-secret-key")
            assert dict(parse_qsl(storage["specific_attributes"])) == {"endpoint_url": "https://s3.fr-par.scw.cloud", "region": "fr-par"}
        assert "first-secret-key" not in result.stdout + result.stderr


def test_second_run_changes_nothing():
    with FakeCvat(existing_buckets=set(BUCKETS)) as fake:
        assert run(fake).returncode == 0
        writes = len(fake.writes())
        result = run(fake)
        assert result.returncode == 0, result.stderr
        assert "organization acme: exists" in result.stdout
        assert result.stdout.count(": unchanged") == 2
        assert len(fake.writes()) == writes
        assert len(fake.storages) == 2


def test_new_credentials_update_the_registrations():
    with FakeCvat(existing_buckets=set(BUCKETS)) as fake:
        assert run(fake).returncode == 0
        result = run(fake, AWS_SECRET_ACCESS_KEY="rotated-secret-key", CREDENTIALS_REVISION="99887766")
        assert result.returncode == 0, result.stderr
        assert result.stdout.count(": updated") == 2
        assert {s["secret_key"] for s in fake.storages} == {"rotated-secret-key"}
        assert len(fake.storages) == 2


def test_a_moved_endpoint_updates_and_a_new_bucket_is_added():
    with FakeCvat(existing_buckets=set(BUCKETS) | {"acme-more"}) as fake:
        assert run(fake).returncode == 0
        result = run(fake, S3_ENDPOINT_URL="https://s3.nl-ams.scw.cloud", S3_REGION="nl-ams",
                     BUCKETS=" ".join(BUCKETS + ["acme-more"]))
        assert result.returncode == 0, result.stderr
        assert "cloud storage acme-more: registered" in result.stdout
        assert result.stdout.count(": updated") == 2
        assert all("nl-ams" in s["specific_attributes"] for s in fake.storages)


def test_cvat_refusal_fails_the_job_with_cvats_message():
    with FakeCvat(existing_buckets={BUCKETS[0]}) as fake:
        result = run(fake)
        assert result.returncode == 1
        assert f"The resource {BUCKETS[1]} not found" in result.stderr
        assert "HTTP 400" in result.stderr


def test_wrong_admin_password_fails_clearly():
    with FakeCvat(existing_buckets=set(BUCKETS)) as fake:
        result = run(fake, ADMIN_PASSWORD="wrong")
        assert result.returncode == 1 and "Unable to log in" in result.stderr
        assert fake.storages == []


def test_unreachable_cvat_and_missing_settings():
    from support.servers import free_port

    result = subprocess.run(
        [sys.executable, str(SCRIPT)],
        env={"PATH": os.environ["PATH"], "CVAT_URL": f"http://127.0.0.1:{free_port()}", "WAIT_SECONDS": "1"},
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1 and "not set: ADMIN_USERNAME" in result.stderr
    with FakeCvat(existing_buckets=set(BUCKETS)) as fake:
        url = f"http://127.0.0.1:{free_port()}"
        result = run(fake, CVAT_URL=url, WAIT_SECONDS="1")
        assert result.returncode == 1 and "did not answer within 1s" in result.stderr


class StrictFakeCvat(FakeCvat):
    """Also refuses an organization name over 64 characters, as CVAT's Organization model does."""

    def api(self, method, path, query, headers, body):
        if path == "/api/organizations" and method == "POST" and headers.get("Authorization") == "Token token-123":
            if len(body.get("name", "")) > 64:
                return 400, {"name": ["Ensure this field has no more than 64 characters."]}
        return super().api(method, path, query, headers, body)


def test_a_long_organization_name_is_cut_to_cvats_limit():
    long_name = "ACME street scenes, dashcam videos and the night shift, wintery" + " campaign 2026"
    assert len(long_name) > 64 and long_name[63] == " "  # the 64th character is a space
    with StrictFakeCvat(existing_buckets=set(BUCKETS)) as fake:
        result = run(fake, ORGANIZATION_NAME=long_name)
        assert result.returncode == 0, result.stderr
        name = fake.organizations["acme"]["name"]
        assert name == long_name[:63] and len(name) <= 64 and not name.endswith(" ")
        assert {s["resource"] for s in fake.storages} == set(BUCKETS)


def test_the_strict_stand_in_refuses_what_cvat_refuses():
    # Without the cut, this name fails the Job: the stand-in is strict enough for the test above to mean something.
    import json
    import urllib.error
    import urllib.request

    with StrictFakeCvat(existing_buckets=set(BUCKETS)) as fake:

        request = urllib.request.Request(f"{fake.url}/api/organizations", method="POST",
                                         data=json.dumps({"slug": "acme", "name": "n" * 65}).encode(),
                                         headers={"Authorization": "Token token-123", "Content-Type": "application/json"})
        try:
            urllib.request.urlopen(request, timeout=10)
            refused = False
        except urllib.error.HTTPError as error:
            refused = error.code == 400 and b"64 characters" in error.read()
        assert refused and fake.organizations == {}


def test_a_blank_organization_name_falls_back_to_the_slug():
    with FakeCvat(existing_buckets=set(BUCKETS)) as fake:
        result = run(fake, ORGANIZATION_NAME="  \t ")
        assert result.returncode == 0, result.stderr
        assert fake.organizations["acme"]["name"] == "acme"
