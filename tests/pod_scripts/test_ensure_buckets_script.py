"""components/assets/ensure-buckets.sh, run with /bin/sh and the AWS CLI against a real S3 server."""

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from support.s3_stub import StubS3Server
from support.servers import aws_cli_bin

# Runs the pod scripts against the real servers (conftest: the tiers).
pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parents[2] / "components" / "assets" / "ensure-buckets.sh"
BIN = Path(sys.executable).parent


def run_script(endpoint, region="us-east-1", **env):
    """The script with its environment; its `aws` is the installed AWS CLI run from a process that
    loaded it once (servers.aws_cli_bin; with TEST_AWS_CLI=installed, the installed command)."""
    assert shutil.which("aws", path=str(BIN)), "the AWS CLI is not installed in the test environment"
    first = "" if os.environ.get("TEST_AWS_CLI") == "installed" else f"{aws_cli_bin()}{os.pathsep}"
    environment = {
        "PATH": f"{first}{BIN}{os.pathsep}{os.environ['PATH']}",
        "HOME": os.environ.get("TMPDIR", "/tmp"),
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_DEFAULT_REGION": region,
        "AWS_ACCESS_KEY_ID": "test-access-key",
        "AWS_SECRET_ACCESS_KEY": "test-secret-key",
        "WAIT_SECONDS": "5",
        **env,
    }
    return subprocess.run(["/bin/sh", str(SCRIPT)], env=environment, capture_output=True, text=True, timeout=120)


def names():
    return f"b-{uuid.uuid4().hex[:10]}", f"d-{uuid.uuid4().hex[:10]}"


def lifecycle(s3, bucket):
    return {rule["ID"]: rule for rule in s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}


def localhost(url):
    """The same server under a host name: only path-style requests reach it (`<bucket>.localhost` does not resolve)."""
    return url.replace("127.0.0.1", "localhost")


RULE_ENV = dict(LIFECYCLE_PREFIX="dev/database/.incoming/", LIFECYCLE_RULE_ID="labeling-dev")


def test_creates_missing_buckets_and_sets_the_clean_up_rule(s3, s3_server):
    backups, dataset = names()
    result = run_script(localhost(s3_server), BUCKETS=f"{backups} {dataset}", LIFECYCLE_BUCKET=backups, **RULE_ENV)
    assert result.returncode == 0, result.stderr
    assert f"bucket {backups}: created" in result.stdout
    existing = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert {backups, dataset} <= existing
    assert lifecycle(s3, backups) == {
        "labeling-dev-backups": {
            "ID": "labeling-dev-backups",
            "Filter": {"Prefix": "dev/database/.incoming/"},
            "Status": "Enabled",
            "Expiration": {"Days": 1},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
        }
    }
    assert "temporary uploads under 'dev/database/.incoming/' expire after 1 day(s)" in result.stdout
    with pytest.raises(ClientError):
        s3.get_bucket_lifecycle_configuration(Bucket=dataset)


def test_replaces_the_earlier_rule_that_expired_every_backup(s3, s3_server):
    backups, _ = names()
    s3.create_bucket(Bucket=backups)
    s3.put_object(Bucket=backups, Key="dev/database/20260101T030000Z.dump", Body=b"dump")
    old = {"ID": "labeling-dev-backups", "Filter": {"Prefix": "dev/"}, "Status": "Enabled",
           "Expiration": {"Days": 37}, "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}
    s3.put_bucket_lifecycle_configuration(Bucket=backups, LifecycleConfiguration={"Rules": [old]})
    result = run_script(s3_server, BUCKETS=backups, LIFECYCLE_BUCKET=backups, **RULE_ENV)
    assert result.returncode == 0, result.stderr
    (rule,) = lifecycle(s3, backups).values()
    assert rule["ID"] == "labeling-dev-backups" and rule["Filter"] == {"Prefix": "dev/database/.incoming/"}
    assert rule["Expiration"] == {"Days": 1}
    assert s3.get_object(Bucket=backups, Key="dev/database/20260101T030000Z.dump")["Body"].read() == b"dump"


def test_is_idempotent_and_keeps_existing_content(s3, s3_server):
    backups, dataset = names()
    s3.create_bucket(Bucket=dataset)
    s3.put_object(Bucket=dataset, Key="cat.jpg", Body=b"\xff\xd8 jpeg")
    env = dict(BUCKETS=f"{backups} {dataset}", LIFECYCLE_BUCKET=backups, LIFECYCLE_RULE_ID="w",
               LIFECYCLE_PREFIX="w/database/.incoming/", LIFECYCLE_EXPIRATION_DAYS="2")
    first = run_script(s3_server, **env)
    second = run_script(s3_server, **env)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert f"bucket {dataset}: exists" in first.stdout
    assert f"bucket {backups}: exists" in second.stdout
    assert s3.get_object(Bucket=dataset, Key="cat.jpg")["Body"].read() == b"\xff\xd8 jpeg"
    assert lifecycle(s3, backups)["w-backups"]["Expiration"] == {"Days": 2}


def test_creates_buckets_outside_us_east_1_with_a_location_constraint(s3_settings, s3_server):
    from components.endpoint import s3_client

    backups, _ = names()
    result = run_script(s3_server, region="eu-west-3", BUCKETS=backups)
    assert result.returncode == 0, result.stderr
    client = s3_client(**{**s3_settings, "region": "eu-west-3"})
    assert client.get_bucket_location(Bucket=backups)["LocationConstraint"] == "eu-west-3"


@pytest.mark.parametrize("days", ["0", "-1", "thirty", "1.5", "07"])
def test_refuses_bad_expiration_days_before_touching_the_server(s3, s3_server, days):
    backups, _ = names()
    result = run_script(s3_server, BUCKETS=backups, LIFECYCLE_BUCKET=backups, LIFECYCLE_EXPIRATION_DAYS=days, **RULE_ENV)
    assert result.returncode != 0
    assert "LIFECYCLE_EXPIRATION_DAYS" in result.stderr
    assert backups not in {b["Name"] for b in s3.list_buckets()["Buckets"]}


@pytest.mark.parametrize("prefix", ["", "dev/", "dev/database/", "dev/database/.incoming", "/dev/database/.incoming/"])
def test_refuses_a_rule_that_could_expire_backups(s3, s3_server, prefix):
    backups, _ = names()
    result = run_script(s3_server, BUCKETS=backups, LIFECYCLE_BUCKET=backups, LIFECYCLE_RULE_ID="labeling-dev",
                        LIFECYCLE_PREFIX=prefix)
    assert result.returncode != 0
    assert "LIFECYCLE_PREFIX must" in result.stderr
    assert backups not in {b["Name"] for b in s3.list_buckets()["Buckets"]}


def test_refuses_to_run_without_buckets(s3_server):
    result = run_script(s3_server, BUCKETS="")
    assert result.returncode != 0 and "BUCKETS is not set" in result.stderr


def test_gives_up_on_an_unreachable_server():
    from support.servers import free_port

    result = run_script(f"http://127.0.0.1:{free_port()}", BUCKETS="backups", WAIT_SECONDS="2")
    assert result.returncode != 0
    assert "did not answer within 2s" in result.stderr


def test_fails_at_once_when_the_server_refuses():
    with StubS3Server("access-denied") as stub:
        result = run_script(stub.url, BUCKETS="backups", WAIT_SECONDS="60")
    assert result.returncode != 0
    assert "refused the request" in result.stderr and "AccessDenied" in result.stderr
    assert len(stub.requests) == 1  # no waiting loop on an authorization error


def test_rules_suit_minio():
    # MinIO refuses a rule whose only action is AbortIncompleteMultipartUpload.
    with StubS3Server("minio-rules") as stub:
        result = run_script(stub.url, region="minio", BUCKETS="backups", LIFECYCLE_BUCKET="backups", **RULE_ENV)
        stored = stub.lifecycle.get("backups", b"")
    assert result.returncode == 0, result.stderr
    assert stored.count(b"<Rule>") == 1 and b"<Prefix>dev/database/.incoming/</Prefix>" in stored
    assert b"<AbortIncompleteMultipartUpload>" in stored


def test_server_without_lifecycle_api_warns_and_succeeds():
    with StubS3Server("no-lifecycle") as stub:
        result = run_script(stub.url, BUCKETS="backups", LIFECYCLE_BUCKET="backups", **RULE_ENV)
    assert result.returncode == 0, result.stderr
    assert "does not implement lifecycle rules" in result.stderr
    # Path-style requests: the bucket is in the path.
    assert any(r.path == "/backups" and "lifecycle" in r.query for r in stub.requests)


def test_script_is_posix_sh():
    dash = shutil.which("dash") or "/bin/sh"
    assert subprocess.run([dash, "-n", str(SCRIPT)]).returncode == 0
    assert "#!/bin/sh" == SCRIPT.read_text().splitlines()[0]
