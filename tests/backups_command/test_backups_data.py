"""The data part of a backup: restic snapshots of CVAT's data volume in `<key>/data`.

The real restic runs against the S3 server when it is installed (as on the
operators' machines that restore data); a stand-in checks how it is called,
and the command's answers when restic is missing.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from backups import cli
# `moto`: the S3 server whose clock `layout` sets, so that a backup "taken 1 hour ago" was stored then.
from support.backups_command import archive, layout, moto, one_error, only_one_line, postgres_tools, rows  # noqa: F401  (fixtures)

PASSWORD = "correct horse battery staple"
RESTIC = shutil.which("restic")
needs_restic = pytest.mark.skipif(RESTIC is None, reason="restic is not installed (apt-get install restic)")


def command(moto, bucket, *args, restic=None):
    argv = ["--endpoint", moto.url, "--region", "us-east-1", "--bucket", bucket, "--prefix", "acme/",
            "--access-key", moto.access_key, "--secret-key", moto.secret_key, *(["--restic", restic] if restic else []), *args]
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(argv, out, err)
    return code, out.getvalue(), err.getvalue()


def restic_env(moto) -> dict:
    return {**os.environ, "AWS_ACCESS_KEY_ID": moto.access_key, "AWS_SECRET_ACCESS_KEY": moto.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1", "RESTIC_PASSWORD": PASSWORD, "RESTIC_CACHE_DIR": "/nonexistent-cache"}


def make_volume(root: Path) -> Path:
    """A small stand-in of CVAT's data volume."""
    (root / "data" / "tasks" / "1").mkdir(parents=True)
    (root / "data" / "tasks" / "1" / "frame_000.jpg").write_bytes(os.urandom(3000))
    (root / "data" / "keys").mkdir()
    (root / "data" / "keys" / "secret_key.py").write_text("SECRET_KEY = 'x'\n")
    return root / "data"


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def repository(moto, layout, tmp_path):
    """`acme/data`, a real restic repository with one snapshot of a small volume; its password beside it."""
    if RESTIC is None:
        pytest.skip("restic is not installed (apt-get install restic)")
    repo = f"s3:{moto.url}/{layout.bucket}/acme/data"
    env = restic_env(moto)
    subprocess.run([RESTIC, "-r", repo, "--no-cache", "init"], env=env, check=True, capture_output=True)
    volume = make_volume(tmp_path / "volume")
    # Taken in the folder, as a pod does with `cd /home/django/data && restic backup .`.
    result = subprocess.run([RESTIC, "-r", repo, "--no-cache", "backup", ".", "--json"], cwd=volume, env=env,
                            check=True, capture_output=True, text=True)
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    layout.s3.put_object(Bucket=layout.bucket, Key="acme/data-password", Body=(PASSWORD + "\n").encode())
    return {"repo": repo, "snapshot": summary["snapshot_id"], "volume": volume, "env": env,
            "data": {"repository": "acme/data", "snapshot": summary["snapshot_id"], "files": 2, "bytes": 3018}}


@needs_restic
def test_list_checks_each_snapshot_with_restic(moto, layout, archive, repository):
    good = layout.backup(timedelta(hours=2), archive, data=repository["data"])
    gone = layout.backup(timedelta(hours=1), archive, data={**repository["data"], "snapshot": "deadbeef"})
    code, out, err = command(moto, layout.bucket, "list")
    assert code == 0, err
    by_stamp = rows(out)
    assert by_stamp[good].endswith("ok (latest)") and "database, data (2 files, 2.9 KiB)" in by_stamp[good]
    assert "BAD: data snapshot deadbeef not in the repository" in by_stamp[gone]
    code, out, _ = command(moto, layout.bucket, "list", "--no-data-check")
    by_stamp = rows(out)
    assert by_stamp[good].endswith("ok, data not read (--no-data-check) (latest)")
    assert "BAD: data snapshot deadbeef not in the repository" in by_stamp[gone]  # its file is looked for all the same


@needs_restic
def test_download_with_data_restores_the_snapshot(moto, layout, archive, repository, tmp_path):
    stamp = layout.backup(timedelta(hours=1), archive, data=repository["data"])
    target = tmp_path / "restore"
    target.mkdir()
    code, out, err = command(moto, layout.bucket, "download", "latest", "-o", str(target), "--with-data", str(target / "data"))
    assert code == 0, err
    assert (target / f"{stamp}.dump").read_bytes() == archive
    assert tree(target / "data") == tree(repository["volume"])
    assert sorted(p.name for p in target.iterdir()) == [f"{stamp}.dump", "data"]  # no partial folder left
    assert f"restored data snapshot {repository['snapshot'][:8]} into {target / 'data'}" in out
    assert not Path("/nonexistent-cache").exists()


@needs_restic
def test_a_snapshot_taken_by_absolute_path_restores_at_the_top_of_the_folder(moto, layout, archive, repository, tmp_path):
    # `restic backup /home/django/data` keeps the whole path in the snapshot.
    result = subprocess.run([RESTIC, "-r", repository["repo"], "--no-cache", "backup", str(repository["volume"]), "--json"],
                            env=repository["env"], check=True, capture_output=True, text=True)
    snapshot = json.loads(result.stdout.strip().splitlines()[-1])["snapshot_id"]
    layout.backup(timedelta(hours=1), archive, data={**repository["data"], "snapshot": snapshot})
    code, _, err = command(moto, layout.bucket, "download", "latest", "-o", str(tmp_path), "--with-data", str(tmp_path / "data"))
    assert code == 0, err
    assert tree(tmp_path / "data") == tree(repository["volume"])


@needs_restic
def test_an_empty_volume_lists_verifies_and_downloads_as_an_empty_folder(moto, layout, archive, repository, tmp_path):
    # restic refuses `restic backup .` in an empty folder ("snapshot is empty", restic v0.18.1
    # internal/archiver/archiver.go:903-905); data-backup.sh takes an empty volume by its path.
    empty = tmp_path / "home" / "django" / "data"
    empty.mkdir(parents=True)
    refused = subprocess.run([RESTIC, "-r", repository["repo"], "--no-cache", "backup", ".", "--json"], cwd=empty,
                             env=repository["env"], capture_output=True, text=True)
    assert refused.returncode == 1 and "snapshot is empty" in refused.stderr
    result = subprocess.run([RESTIC, "-r", repository["repo"], "--no-cache", "backup", str(empty), "--json"],
                            env=repository["env"], check=True, capture_output=True, text=True)
    snapshot = json.loads(result.stdout.strip().splitlines()[-1])["snapshot_id"]
    stamp = layout.backup(timedelta(hours=1), archive, data={"repository": "acme/data", "snapshot": snapshot, "files": 0, "bytes": 0})
    code, out, err = command(moto, layout.bucket, "list")
    assert code == 0, err
    assert rows(out)[stamp].endswith("ok (latest)") and "data (0 files, 0 B)" in rows(out)[stamp]
    code, out, err = command(moto, layout.bucket, "verify", stamp)
    assert code == 0, err
    assert out.splitlines()[1].startswith(f"data: ok, snapshot {snapshot[:8]} (0 files, 0 B) is listed")
    code, out, err = command(moto, layout.bucket, "download", stamp, "-o", str(tmp_path), "--with-data", str(tmp_path / "restored"))
    assert code == 0, err
    assert (tmp_path / "restored").is_dir() and list((tmp_path / "restored").iterdir()) == []
    assert not list(tmp_path.glob(".restored.partial-*"))


@needs_restic
def test_verify_checks_the_repository(moto, layout, archive, repository):
    stamp = layout.backup(timedelta(hours=1), archive, data=repository["data"])
    code, out, err = command(moto, layout.bucket, "verify", stamp)
    assert code == 0, err
    assert out.splitlines()[0].startswith("database: ok")
    assert out.splitlines()[1] == (f"data: ok, snapshot {repository['snapshot'][:8]} (2 files, 2.9 KiB) "
                                   "is listed; restic check (read 5% of its data): no errors")
    # A pack file damaged in the bucket: restic check reads every pack and finds it.
    packs = [item["Key"] for item in layout.s3.list_objects_v2(Bucket=layout.bucket, Prefix="acme/data/data/")["Contents"]]
    for key in packs:
        body = bytearray(layout.s3.get_object(Bucket=layout.bucket, Key=key)["Body"].read())
        body[len(body) // 2] ^= 0xFF
        layout.s3.put_object(Bucket=layout.bucket, Key=key, Body=bytes(body))
    code, out, err = command(moto, layout.bucket, "verify", stamp, "--read-data-subset", "100%")
    assert code == 1
    one_error(err, "restic check of", "failed")


@needs_restic
def test_a_wrong_or_missing_password_makes_the_data_unreadable(moto, layout, archive, repository, tmp_path):
    stamp = layout.backup(timedelta(hours=1), archive, data=repository["data"])
    layout.s3.put_object(Bucket=layout.bucket, Key="acme/data-password", Body=b"not the password")
    code, out, _ = command(moto, layout.bucket, "list")
    assert code == 0 and "BAD: data unreadable: Fatal: wrong password or no key found" in rows(out)[stamp]
    layout.s3.delete_object(Bucket=layout.bucket, Key="acme/data-password")
    code, out, _ = command(moto, layout.bucket, "list")
    assert "BAD: data unreadable: no repository password at" in rows(out)[stamp]
    # Still downloadable by name, database only.
    code, _, err = command(moto, layout.bucket, "download", stamp, "-o", str(tmp_path))
    assert code == 0, err
    code, _, err = command(moto, layout.bucket, "download", stamp, "-o", str(tmp_path), "--with-data", str(tmp_path / "d"), "--force")
    assert code == 1
    one_error(err, "no repository password at")
    assert not (tmp_path / "d").exists()


FAKE_RESTIC = r'''#!{python}
"""A restic stand-in: logs how it was called (and the password file it was given), answers like restic."""
import json, os, sys
args = sys.argv[1:]
password = open(args[args.index("--password-file") + 1]).read()
env = {k: v for k, v in os.environ.items() if k.startswith(("AWS_", "RESTIC_"))}
with open(os.environ["FAKE_RESTIC_LOG"], "a") as log:
    log.write(json.dumps({"args": args, "password": password, "env": env}) + "\n")
command = [a for a in args if not a.startswith("-")]
if "snapshots" in args:
    print(json.dumps([{"id": "0123456789abcdef" * 4, "short_id": "01234567", "paths": ["/home/django/data"]}]))
elif "restore" in args:
    target = args[args.index("--target") + 1]
    os.makedirs(os.path.join(target, "home/django/data/tasks"))
    open(os.path.join(target, "home/django/data/tasks/frame.jpg"), "w").write("jpeg")
elif "check" in args:
    print("no errors were found")
'''


@pytest.fixture
def fake_restic(tmp_path, monkeypatch):
    script = tmp_path / "fake-restic"
    script.write_text(FAKE_RESTIC.replace("{python}", sys.executable))
    script.chmod(0o755)
    log = tmp_path / "restic.log"
    monkeypatch.setenv("FAKE_RESTIC_LOG", str(log))
    monkeypatch.setenv("RESTIC_PASSWORD", "from the operator's shell: must not be used")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "a token of another account: must not be used")

    def calls():
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    return str(script), calls


def test_how_restic_is_called(moto, layout, archive, fake_restic, tmp_path):
    binary, calls = fake_restic
    layout.s3.put_object(Bucket=layout.bucket, Key="acme/data-password", Body=b"s3cret\n")
    data = {"repository": "acme/data", "snapshot": "0123456789abcdef" * 4, "files": 1, "bytes": 4}
    layout.snapshot_file(data["snapshot"])
    stamp = layout.backup(timedelta(hours=1), archive, data=data)
    code, out, err = command(moto, layout.bucket, "download", stamp, "-o", str(tmp_path), "--with-data", str(tmp_path / "data"), restic=binary)
    assert code == 0, err
    assert tree(tmp_path / "data") == {"tasks/frame.jpg": b"jpeg"}
    snapshots, restore = calls()
    for call in (snapshots, restore):
        args = call["args"]
        assert args[:2] == ["--repo", f"s3:{moto.url}/{layout.bucket}/acme/data"]
        assert call["password"] == "s3cret\n"  # the object as it is; restic trims the newline
        assert call["env"] == {"AWS_ACCESS_KEY_ID": moto.access_key, "AWS_SECRET_ACCESS_KEY": moto.secret_key, "AWS_DEFAULT_REGION": "us-east-1"}
        assert "--no-cache" in args and "--no-lock" in args
        assert args[args.index("--option") + 1] == "s3.region=us-east-1" and "s3.bucket-lookup=path" in args
    args = restore["args"]
    assert args[args.index("restore"):][:3] == ["restore", "0123456789abcdef" * 4, "--target"] and "--verify" in args
    assert snapshots["args"][-2:] == ["snapshots", "--json"]
    assert not list(tmp_path.glob(".data.partial-*"))
    # The password file is gone once restic is done.
    assert not Path(snapshots["args"][snapshots["args"].index("--password-file") + 1]).exists()


def test_without_restic(moto, layout, archive, tmp_path):
    layout.s3.put_object(Bucket=layout.bucket, Key="acme/data-password", Body=b"s3cret")
    data = {"repository": "acme/data", "snapshot": "0123abcd" * 8, "files": 1, "bytes": 4}
    layout.snapshot_file(data["snapshot"])
    stamp = layout.backup(timedelta(hours=1), archive, data=data)
    missing = str(tmp_path / "no-restic-here")
    code, out, _ = command(moto, layout.bucket, "list", restic=missing)
    assert code == 0 and rows(out)[stamp].endswith("ok, data not read (restic not installed) (latest)")
    code, out, err = command(moto, layout.bucket, "download", "latest", "-o", str(tmp_path), "--with-data", str(tmp_path / "d"), restic=missing)
    assert code == 1
    only_one_line(err, "restic is not installed", "--with-data")
    assert list(tmp_path.iterdir()) == []  # refused before anything was downloaded
    code, out, err = command(moto, layout.bucket, "verify", "latest", restic=missing)
    assert code == 0, err
    assert out.splitlines()[1] == "data: skipped: restic is not installed (snapshot 0123abcd not checked)"
    code, out, err = command(moto, layout.bucket, "download", "latest", "-o", str(tmp_path), restic=missing)
    assert code == 0 and "add --with-data DIR to restore it" in out


def test_with_data_needs_a_new_or_empty_folder_and_a_backup_with_data(moto, layout, archive, tmp_path, fake_restic):
    binary, _ = fake_restic
    stamp = layout.backup(timedelta(hours=1), archive)
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    code, _, err = command(moto, layout.bucket, "download", stamp, "-o", str(tmp_path), "--with-data", str(full), restic=binary)
    assert code == 1
    only_one_line(err, "give a new or empty folder")
    code, _, err = command(moto, layout.bucket, "download", stamp, "-o", str(tmp_path), "--with-data", str(tmp_path / "new"), restic=binary)
    assert code == 1
    only_one_line(err, f"backup {stamp} holds no data snapshot")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fake-restic", "full"]
