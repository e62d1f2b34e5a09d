"""`python -m components.backups` against a real S3 server and real pg_dump archives."""

import io
import json
import os
import subprocess
import sys
import uuid
from argparse import Namespace
from datetime import datetime, timedelta, timezone

import pytest

from components import backups
from components.backups import BackupsError, Progress, human_age, human_size, location_from_stack, resolve_location
from harness import ROOT

NAMES = ["20261101T030000Z.dump", "20261129T030000Z.dump", "20261130T030000Z.dump"]


@pytest.fixture(scope="module")
def archive(postgres, tmp_path_factory):
    """A real pg_dump archive of a small database."""
    env = postgres.create_database("archive_src", "archive_owner", "pw")
    postgres.admin("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT n, md5(n::text) FROM generate_series(1, 2000) n;", "archive_src")
    path = tmp_path_factory.mktemp("archive") / "db.dump"
    subprocess.run([str(postgres.bindir / "pg_dump"), "--format=custom", f"--file={path}"], env={**os.environ, **env}, check=True)
    return path.read_bytes()


@pytest.fixture
def stored(moto, archive):
    """A bucket with three backups (the newest damaged), and objects that are not backups."""
    bucket = f"backups-{uuid.uuid4().hex[:10]}"
    s3 = moto.client()
    s3.create_bucket(Bucket=bucket)
    for name in NAMES[:2]:
        s3.put_object(Bucket=bucket, Key=f"acme/database/{name}", Body=archive)
    s3.put_object(Bucket=bucket, Key=f"acme/database/{NAMES[2]}", Body=archive[: len(archive) // 2])
    s3.put_object(Bucket=bucket, Key="acme/database/notes.txt", Body=b"not a backup")
    s3.put_object(Bucket=bucket, Key=f"beta/database/{NAMES[0]}", Body=b"another workspace")
    return bucket


def command(moto, bucket, *args):
    argv = ["--endpoint", moto.url, "--region", "us-east-1", "--bucket", bucket, "--prefix", "acme/database/",
            "--access-key", moto.access_key, "--secret-key", moto.secret_key, *args]
    out, err = io.StringIO(), io.StringIO()
    code = backups.main(argv, out, err)
    return code, out.getvalue(), err.getvalue()


def test_list_shows_backups_newest_first_with_size_and_age(moto, stored, archive):
    code, out, _ = command(moto, stored, "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["KEY", "SIZE", "AGE"]
    assert [line.split()[0] for line in lines[1:]] == [f"acme/database/{name}" for name in reversed(NAMES)]
    assert human_size(len(archive)) in lines[2]
    assert "notes.txt" not in out and "beta/" not in out


def test_list_as_json(moto, stored):
    code, out, _ = command(moto, stored, "list", "--json")
    rows = json.loads(out)
    assert code == 0 and [row["key"].rsplit("/", 1)[1] for row in rows] == list(reversed(NAMES))
    assert rows[0]["taken"] == "2026-11-30T03:00:00+00:00"


def test_download_latest_with_progress(moto, stored, archive, tmp_path):
    target = tmp_path / "out.dump"
    code, out, err = command(moto, stored, "download", NAMES[1], "-o", str(target))
    assert code == 0, err
    assert target.read_bytes() == archive
    assert "100.0%" in err and f"to {target}" in out
    code, _, err = command(moto, stored, "download", "latest", "-o", str(tmp_path / "latest.dump"))
    assert code == 0 and (tmp_path / "latest.dump").stat().st_size == len(archive) // 2


def test_verify_accepts_a_complete_archive_and_rejects_a_damaged_one(moto, stored, postgres, monkeypatch):
    monkeypatch.setenv("PATH", f"{postgres.bindir}{os.pathsep}{os.environ['PATH']}")
    code, out, err = command(moto, stored, "verify", NAMES[1])
    assert code == 0, err
    assert out.startswith("ok: ") and "entries" in out
    code, out, err = command(moto, stored, "verify", "latest")
    assert code == 1
    assert "error:" in err and NAMES[2] not in out


def test_missing_backup_and_empty_prefix_are_clear(moto, stored):
    code, _, err = command(moto, stored, "download", "20200101T000000Z.dump")
    assert code == 1 and "cannot read s3://" in err
    empty = f"empty-{uuid.uuid4().hex[:10]}"
    moto.client().create_bucket(Bucket=empty)
    code, _, err = command(moto, empty, "download", "latest")
    assert code == 1 and f"no backup found under s3://{empty}/acme/database/" in err
    code, out, _ = command(moto, empty, "list")
    assert code == 0 and "no backups under" in out


def fake_pulumi(outputs, config):
    def run(command):
        assert command[0] == "pulumi"
        if command[1:3] == ["stack", "output"]:
            return json.dumps(outputs)
        if command[1] == "config":
            assert "--show-secrets" in command
            return json.dumps({f"labeling:{k}": {"value": v, "secret": k == "storageSecretKey"} for k, v in config.items()})
        raise AssertionError(command)

    return run


def no_options(**changes):
    values = dict(stack=None, endpoint=None, region=None, bucket=None, prefix=None, access_key=None, secret_key=None)
    return Namespace(**{**values, **changes})


def test_location_comes_from_the_stack(monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    outputs = {"backupBucket": "labeling-acme-backups-0a1b2c3d", "backupPrefix": "acme/database/"}
    config = {"storageProvider": "scaleway", "storageRegion": "nl-ams", "storageAccessKey": "SCWKEY", "storageSecretKey": "s3cret"}
    location = resolve_location(no_options(), run=fake_pulumi(outputs, config))
    assert location.endpoint_url == "https://s3.nl-ams.scw.cloud"
    assert (location.bucket, location.prefix, location.region) == ("labeling-acme-backups-0a1b2c3d", "acme/database/", "nl-ams")
    assert (location.access_key, location.secret_key) == ("SCWKEY", "s3cret")
    # Options override the stack.
    location = resolve_location(no_options(prefix="old/database"), run=fake_pulumi(outputs, config))
    assert location.prefix == "old/database/"


def test_in_cluster_minio_stack_explains_how_to_reach_it():
    outputs = {"backupBucket": "b", "backupPrefix": "dev/database/"}
    with pytest.raises(BackupsError, match="port-forward svc/minio"):
        location_from_stack(None, fake_pulumi(outputs, {"minioInCluster": "true"}))


def test_keys_are_required(monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    with pytest.raises(BackupsError, match="no S3 keys"):
        resolve_location(no_options(endpoint="http://x", bucket="b", prefix="p/"))


def test_runs_as_a_module_with_the_pulumi_cli(moto, stored, tmp_path):
    # A stand-in `pulumi` on PATH answers like the CLI does.
    fake = tmp_path / "pulumi"
    outputs = json.dumps({"backupBucket": stored, "backupPrefix": "acme/database/"})
    config = json.dumps({
        "labeling:storageProvider": {"value": "minio", "secret": False},
        "labeling:storageEndpoint": {"value": moto.url, "secret": False},
        "labeling:storageRegion": {"value": "us-east-1", "secret": False},
        "labeling:storageAccessKey": {"value": moto.access_key, "secret": False},
        "labeling:storageSecretKey": {"value": moto.secret_key, "secret": True},
    })
    fake.write_text(f"#!/bin/sh\ncase \"$1\" in stack) echo '{outputs}' ;; config) echo '{config}' ;; esac\n")
    fake.chmod(0o755)
    env = {"PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}", "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "components.backups", "list"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"acme/database/{NAMES[2]}" in result.stdout


def test_progress_and_human_units():
    stream = io.StringIO()
    ticks = iter([0.0, 0.1, 0.7, 0.8, 2.0])
    progress = Progress(4 * 1024 * 1024, stream, clock=lambda: next(ticks))
    progress(1024 * 1024)  # t=0.1: too soon to report
    progress(1024 * 1024)  # t=0.7: reported
    progress(2 * 1024 * 1024)  # t=0.8: too soon
    progress.finish()  # t=2.0
    reports = stream.getvalue().strip("\n").split("\r")[1:]
    assert reports[0].startswith(" 50.0%") and reports[-1].startswith("100.0%")
    assert len(reports) == 2
    assert human_size(1536) == "1.5 KiB" and human_size(10) == "10 B"
    now = datetime(2026, 11, 30, 12, tzinfo=timezone.utc)
    assert human_age(now - timedelta(days=3, hours=4), now) == "3d 4h"
    assert human_age(now - timedelta(minutes=25), now) == "25m"


def test_server_errors_are_reported_without_a_traceback(moto):
    from servers import free_port

    out, err = io.StringIO(), io.StringIO()
    argv = ["--endpoint", f"http://127.0.0.1:{free_port()}", "--bucket", "b-unreachable", "--prefix", "acme/database/",
            "--access-key", "a", "--secret-key", "b", "list"]
    assert backups.main(argv, out, err) == 1
    assert err.getvalue().startswith("error: ") and "Traceback" not in err.getvalue()
    missing = ["--endpoint", moto.url, "--bucket", f"missing-{uuid.uuid4().hex[:8]}", "--prefix", "acme/database/",
               "--access-key", "a", "--secret-key", "b", "list"]
    err = io.StringIO()
    assert backups.main(missing, io.StringIO(), err) == 1
    assert "NoSuchBucket" in err.getvalue()
