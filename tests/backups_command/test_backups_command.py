"""`python -m backups` against a real S3 server and real pg_dump archives.

The layout of backups it reads, and the server with a clock, are in support/backups_command.py.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from backups import cli
from backups.display import Progress, human_age, human_size
from backups.errors import BackupsError
from backups.location import Stack, location_from_stack, resolve_location
from support.harness import ROOT
from support.backups_command import (  # noqa: F401  (fixtures)
    DroppingProxy,
    archive,
    command,
    fake_pulumi,
    layout,
    moto,
    no_env_keys,
    no_options,
    one_error,
    only_one_line,
    postgres_tools,
    rows,
    stamp_at,
)


# ---------------------------------------------------------------- list and latest


def test_list_marks_every_kind_of_backup(moto, layout, archive):
    good = layout.backup(timedelta(hours=1), archive, reason="manual")
    sha = layout.backup(timedelta(hours=2), archive, fault="sha-metadata")
    missing = layout.backup(timedelta(hours=3), archive, fault="missing-dump")
    unverifiable = layout.backup(timedelta(hours=4), archive, fault="no-metadata")
    orphan = layout.orphan(timedelta(hours=5), archive)
    broken = layout.backup(timedelta(hours=6), archive, fault="bad-json")
    size = layout.backup(timedelta(hours=7), archive, fault="size")
    no_snapshot = layout.backup(timedelta(hours=8), archive, data={"repository": "acme/data", "snapshot": "feed" * 16, "files": 1, "bytes": 1})
    legacy = layout.legacy(timedelta(days=30), archive)
    incoming = layout.incoming(timedelta(minutes=10), archive[:100])
    layout.s3.put_object(Bucket=layout.bucket, Key="acme/database/notes.txt", Body=b"not a backup")
    layout.s3.put_object(Bucket=layout.bucket, Key=f"beta/database/{stamp_at(timedelta(0))}.dump", Body=b"another workspace")

    code, out, err = command(moto, layout.bucket, "list")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["STAMP", "AGE", "SIZE", "HOLDS", "REASON", "STATE"]
    by_stamp = rows(out)
    # Newest first, every kind listed once, nothing of other workspaces or other objects.
    assert list(by_stamp) == [incoming, good, sha, missing, unverifiable, orphan, broken, size, no_snapshot, legacy]
    assert "notes.txt" not in out and "another" not in out
    assert by_stamp[good].endswith("ok (latest)") and " manual " in by_stamp[good] and "database" in by_stamp[good]
    assert human_size(len(archive)) in by_stamp[good] and " 1h 0m " in by_stamp[good]
    assert "INCOMPLETE: upload in progress or abandoned (.incoming/)" in by_stamp[incoming]
    assert "BAD: dump's sha256 metadata differs from the manifest" in by_stamp[sha]
    assert "BAD: dump missing" in by_stamp[missing]
    assert "BAD: dump has no sha256 metadata (unverifiable)" in by_stamp[unverifiable]
    assert "INCOMPLETE: no manifest" in by_stamp[orphan]
    assert "BAD: manifest is not JSON" in by_stamp[broken]
    assert "BAD: dump holds" in by_stamp[size] and "the manifest says" in by_stamp[size]
    assert "BAD: data snapshot feedfeed not in the repository" in by_stamp[no_snapshot]
    assert "database, data (1 file, 1 B)" in by_stamp[no_snapshot]
    assert by_stamp[legacy].endswith("legacy, unverified until downloaded") and " 30d 0h " in by_stamp[legacy]
    assert lines[-1] == f"latest good: {good} (s3://{layout.bucket}/acme/backups/{good}.json)"


def test_list_as_json(moto, layout, archive):
    layout.snapshot_file("0123abcd" * 8)
    good = layout.backup(timedelta(hours=2), archive, data={"repository": "acme/data", "snapshot": "0123abcd" * 8, "files": 12, "bytes": 4096})
    bad = layout.backup(timedelta(hours=1), archive, fault="sha-metadata")
    code, out, err = command(moto, layout.bucket, "list", "--json", "--no-data-check")
    assert code == 0, err
    document = json.loads(out)
    assert document["latest"] == good and document["bucket"] == layout.bucket and document["root"] == "acme/"
    first, second = document["backups"]
    assert (first["stamp"], first["good"], second["stamp"], second["good"]) == (bad, False, good, True)
    assert second["reason"] == "scheduled" and second["size"] == len(archive)
    assert second["sha256"] == hashlib.sha256(archive).hexdigest()
    assert second["dump"] == f"acme/database/{good}.dump" and second["manifest"] == f"acme/backups/{good}.json"
    assert second["data"]["snapshot"] == "0123abcd" * 8 and second["data"]["state"] == "not read (--no-data-check)"
    assert second["taken"].startswith(good[:4]) and 7000 < second["ageSeconds"] < 7400


def test_latest_skips_incomplete_and_bad_backups(moto, layout, archive, tmp_path):
    good = layout.backup(timedelta(hours=5), archive)
    layout.backup(timedelta(hours=4), archive, fault="sha-metadata")
    layout.backup(timedelta(hours=3), archive, fault="missing-dump")
    layout.orphan(timedelta(hours=2), archive[:10])
    layout.incoming(timedelta(hours=1), archive[:10])
    code, out, err = command(moto, layout.bucket, "download", "latest", "-o", str(tmp_path))
    assert code == 0, err
    assert (tmp_path / f"{good}.dump").read_bytes() == archive
    assert f"downloaded {good} " in out and "size and SHA-256 match the manifest" in out


def test_latest_falls_back_to_legacy_dumps_and_says_when_there_is_none(moto, layout, archive, tmp_path):
    code, out, _ = command(moto, layout.bucket, "list")
    assert code == 0 and out == f"no backups under s3://{layout.bucket}/acme/\n"
    layout.backup(timedelta(hours=1), archive, fault="no-metadata")
    code, _, err = command(moto, layout.bucket, "download", "latest", "-o", str(tmp_path))
    assert code == 1
    only_one_line(err, f"no good backup under s3://{layout.bucket}/acme/", "1 incomplete or unverifiable")
    legacy = layout.legacy(timedelta(days=2), archive)
    code, out, err = command(moto, layout.bucket, "download", "latest", "-o", str(tmp_path))
    assert code == 0, err
    assert (tmp_path / f"{legacy}.dump").read_bytes() == archive
    # A dump without a checksum is accepted once pg_restore reads its table of contents.
    assert "legacy dump without a checksum: pg_restore --list reads its" in out


# ---------------------------------------------------------------- download


def test_download_into_a_folder_is_atomic_and_private(moto, layout, archive, tmp_path):
    stamp = layout.backup(timedelta(hours=1), archive)
    folder = tmp_path / "out"
    folder.mkdir()
    code, out, err = command(moto, layout.bucket, "download", "latest", "-o", str(folder))
    assert code == 0, err
    target = folder / f"{stamp}.dump"
    assert target.read_bytes() == archive
    assert sorted(p.name for p in folder.iterdir()) == [target.name]  # no temporary file left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no stray out.partial beside the folder
    assert stat.S_IMODE(target.stat().st_mode) == 0o600  # the dump holds every password hash of CVAT
    assert "100.0%" in err and f"to {target}" in out
    # Again: the file is there, so it is not replaced without --force.
    code, _, err = command(moto, layout.bucket, "download", stamp, "-o", str(folder))
    assert code == 1
    only_one_line(err, f"{target} exists", "--force")
    target.write_bytes(b"old")
    code, _, err = command(moto, layout.bucket, "download", stamp, "-o", str(folder), "--force")
    assert code == 0, err
    assert target.read_bytes() == archive


def test_download_to_the_current_folder(moto, layout, archive, tmp_path, monkeypatch):
    stamp = layout.backup(timedelta(hours=1), archive)
    monkeypatch.chdir(tmp_path)
    code, _, err = command(moto, layout.bucket, "download", stamp, "-o", ".")
    assert code == 0, err
    assert (tmp_path / f"{stamp}.dump").read_bytes() == archive
    (tmp_path / f"{stamp}.dump").unlink()
    code, _, err = command(moto, layout.bucket, "download", f"{stamp}.dump")  # no -o: the current folder
    assert code == 0, err
    assert [p.name for p in tmp_path.iterdir()] == [f"{stamp}.dump"]


def test_download_by_every_kind_of_reference(moto, layout, archive, tmp_path):
    stamp = layout.backup(timedelta(hours=1), archive)
    legacy = layout.legacy(timedelta(days=3), archive)
    references = {
        "manifest-key": f"acme/backups/{stamp}.json",
        "dump-key": f"acme/database/{stamp}.dump",
        "s3-url": f"s3://{layout.bucket}/acme/backups/{stamp}.json",
        "legacy-key": f"acme/database/{legacy}.dump",
        "stamp": legacy,
    }
    for name, reference in references.items():
        target = tmp_path / f"{name}.dump"
        code, out, err = command(moto, layout.bucket, "download", reference, "-o", str(target))
        assert code == 0, (name, err)
        assert target.read_bytes() == archive, name
        expected = "legacy dump without a checksum" if legacy in reference else "SHA-256 match the manifest"
        assert expected in out, (name, out)


def test_download_problems_are_one_error_line(moto, layout, archive, tmp_path, monkeypatch):
    stamp = layout.backup(timedelta(hours=1), archive)
    incoming = layout.incoming(timedelta(minutes=1), archive[:10])
    monkeypatch.chdir(tmp_path)
    cases = {
        ("-o", "/missing/dir/x.dump"): ("the folder /missing/dir does not exist",),
        ("-o", "missing-folder/"): ("the folder missing-folder/ does not exist",),
    }
    for options, fragments in cases.items():
        code, _, err = command(moto, layout.bucket, "download", "latest", *options)
        assert code == 1
        only_one_line(err, *fragments)
    for reference, fragments in {
        "yesterday": ("'yesterday' is not a backup", "latest", "see `list`"),
        "20200101T000000Z": ("no backup 20200101T000000Z under", "see `list`"),
        "acme/database/20200101T000000Z.dump": (f"no backup s3://{layout.bucket}/acme/database/20200101T000000Z.dump",),
        "acme/backups/20200101T000000Z.json": ("no manifest",),
        f"acme/database/.incoming/{incoming}.dump": ("incomplete upload",),
        incoming: (f"{incoming} is an incomplete upload (.incoming/)",),
        f"s3://missing-{uuid.uuid4().hex[:8]}/acme/database/{stamp}.dump": ("does not exist",),
    }.items():
        code, _, err = command(moto, layout.bucket, "download", reference)
        assert code == (2 if reference == "yesterday" else 1), reference  # a reference that is none: a usage error
        only_one_line(err, *fragments)
    assert list(tmp_path.iterdir()) == [] and not Path("/missing").exists()


def test_a_damaged_backup_is_refused_and_a_corrupt_download_leaves_nothing(moto, layout, archive, tmp_path):
    corrupt = layout.backup(timedelta(hours=1), archive, fault="bytes")
    sized = layout.backup(timedelta(hours=2), archive, fault="size")
    missing = layout.backup(timedelta(hours=3), archive, fault="missing-dump")
    not_a_dump = layout.legacy(timedelta(days=3), b"a dump without a checksum, and not an archive")
    code, _, err = command(moto, layout.bucket, "download", corrupt, "-o", str(tmp_path))
    assert code == 1
    one_error(err, "is corrupt", "differs from the manifest's", "nothing was written")
    code, _, err = command(moto, layout.bucket, "download", sized, "-o", str(tmp_path))
    assert code == 1
    only_one_line(err, f"backup {sized} is damaged: its dump does not match its manifest (the dump holds")
    code, _, err = command(moto, layout.bucket, "download", missing, "-o", str(tmp_path))
    assert code == 1
    only_one_line(err, "its dump is missing")
    code, _, err = command(moto, layout.bucket, "download", not_a_dump, "-o", str(tmp_path))
    assert code == 1
    one_error(err, "not a readable pg_dump archive")
    assert list(tmp_path.iterdir()) == []


def test_a_dump_its_manifest_does_not_describe_is_told_from_a_corrupt_dump(moto, layout, archive, tmp_path):
    other = layout.backup(timedelta(hours=1), archive, fault="other-dump")
    corrupt = layout.backup(timedelta(hours=2), archive, fault="bytes")
    url = f"s3://{layout.bucket}/acme/database/{other}.dump"
    code, _, err = command(moto, layout.bucket, "download", other, "-o", str(tmp_path))
    assert code == 1
    line = one_error(err, f"{url} does not match its manifest", "the dump is whole", "the manifest describes another dump",
                     "nothing was written")
    assert "corrupt" not in line
    code, _, err = command(moto, layout.bucket, "download", corrupt, "-o", str(tmp_path))
    assert code == 1
    line = one_error(err, "is corrupt", "differs from the manifest's", "and from its sha256 metadata", "nothing was written")
    assert "does not match its manifest" not in line
    assert list(tmp_path.iterdir()) == []
    # `verify` tells them apart the same way, and writes no file of the operator's: it says nothing of one.
    for stamp, fragment in ((other, "does not match its manifest"), (corrupt, "is corrupt")):
        code, out, err = command(moto, layout.bucket, "verify", stamp)
        assert code == 1 and out == ""
        assert "nothing was written" not in one_error(err, fragment)


def test_bytes_the_manifest_describes_are_good_whatever_the_metadata_says(moto, layout, archive, tmp_path):
    stamp = layout.backup(timedelta(hours=1), archive, fault="sha-metadata")
    code, out, _ = command(moto, layout.bucket, "list")
    assert "BAD: dump's sha256 metadata differs from the manifest" in rows(out)[stamp]
    code, out, err = command(moto, layout.bucket, "download", stamp, "-o", str(tmp_path))
    assert code == 0, err
    assert "size and SHA-256 match the manifest (its sha256 metadata differs: the bytes are the manifest's)" in out
    assert (tmp_path / f"{stamp}.dump").read_bytes() == archive


def test_a_failed_check_in_verify_says_nothing_of_files_written(moto, layout, archive):
    sized = layout.backup(timedelta(hours=1), archive, fault="size")
    code, _, err = command(moto, layout.bucket, "verify", sized)
    assert code == 1
    assert "nothing was written" not in one_error(err, f"backup {sized} is damaged: its dump does not match its manifest")


def test_an_interrupted_download_exits_130_and_removes_its_temporary_file(moto, layout, archive, tmp_path):
    stamp = layout.backup(timedelta(hours=1), archive)

    class CtrlC(io.StringIO):
        def write(self, text):
            if "%" in text:  # the first progress report: the download is under way
                raise KeyboardInterrupt
            return super().write(text)

    argv = ["--endpoint", moto.url, "--region", "us-east-1", "--bucket", layout.bucket, "--prefix", "acme/database/",
            "--access-key", moto.access_key, "--secret-key", moto.secret_key, "download", stamp, "-o", str(tmp_path)]
    err = CtrlC()
    assert cli.main(argv, io.StringIO(), err) == 130
    one_error(err.getvalue(), "interrupted")
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_on_the_real_command(moto, layout, archive, tmp_path):
    """SIGINT to the process while it downloads: exit 130, one error line, no temporary file."""
    stamp = layout.backup(timedelta(hours=1), archive)
    driver = tmp_path / "driver.py"
    driver.write_text(
        "import os, signal, sys, time\n"
        "from backups import cli, display\n"
        "original = display.Progress.__call__\n"
        "def call(self, chunk):\n"
        "    original(self, chunk)\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    time.sleep(10)\n"
        "display.Progress.__call__ = call\n"
        "sys.exit(cli.main())\n"
    )
    folder = tmp_path / "out"
    folder.mkdir()
    argv = ["--endpoint", moto.url, "--bucket", layout.bucket, "--prefix", "acme/database/", "download", stamp, "-o", str(folder)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AWS_ACCESS_KEY_ID": moto.access_key, "AWS_SECRET_ACCESS_KEY": moto.secret_key}
    result = subprocess.run([sys.executable, str(driver), *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 130, result.stderr
    one_error(result.stderr, "interrupted")
    assert list(folder.iterdir()) == []


def test_a_dropped_connection_resumes_where_it_stopped(moto, layout, archive, tmp_path):
    stamp = layout.backup(timedelta(hours=1), archive)
    proxy = DroppingProxy(moto.url, f"{stamp}.dump")
    try:
        argv = ["--endpoint", proxy.url, "--region", "us-east-1", "--bucket", layout.bucket, "--prefix", "acme/database/",
                "--access-key", moto.access_key, "--secret-key", moto.secret_key, "download", stamp, "-o", str(tmp_path)]
        out, err = io.StringIO(), io.StringIO()
        assert cli.main(argv, out, err) == 0, err.getvalue()
    finally:
        proxy.close()
    assert proxy.dropped == 1
    assert proxy.ranges[0] is None and proxy.ranges[-1] == f"bytes={len(archive) // 2}-"
    assert (tmp_path / f"{stamp}.dump").read_bytes() == archive


# ---------------------------------------------------------------- verify


def test_verify_reads_the_archive_back(moto, layout, archive):
    stamp = layout.backup(timedelta(hours=1), archive)
    code, out, err = command(moto, layout.bucket, "verify", stamp)
    assert code == 0, err
    assert out.startswith("database: ok, ") and "SHA-256 match the manifest" in out and "pg_restore reads all" in out
    assert "data: none in this backup" in out


def test_verify_rejects_a_damaged_archive_and_needs_pg_restore(moto, layout, archive):
    # A dump whose checksum is right but whose content is not an archive: written so, never readable.
    junk = b"PGDMP" + os.urandom(2000)
    stamp = layout.backup(timedelta(hours=1), junk)
    code, out, err = command(moto, layout.bucket, "verify", stamp)
    assert code == 1 and out == ""
    one_error(err, "pg_dump archive")
    legacy = layout.legacy(timedelta(days=1), archive[:-200])
    code, out, err = command(moto, layout.bucket, "verify", legacy)
    assert code == 1
    one_error(err)
    code, _, err = command(moto, layout.bucket, "--pg-restore", "no-such-pg_restore", "verify", stamp)
    assert code == 1
    only_one_line(err, "pg_restore is not installed")


# ---------------------------------------------------------------- status


@pytest.mark.parametrize("age,expected", [(timedelta(hours=30), 0), (timedelta(hours=50), 3)])
def test_status_alerts_past_twice_the_interval(moto, layout, archive, age, expected):
    stamp = layout.backup(age, archive)
    layout.backup(timedelta(hours=1), archive, fault="sha-metadata")  # newer, but not good
    code, out, err = command(moto, layout.bucket, "status", "--schedule", "0 3 * * *")
    assert code == expected, err
    assert out.startswith(f"newest good backup: {stamp} (scheduled), {'1d 6h' if expected == 0 else '2d 2h'} old")
    assert "limit 48h" in out and "(24h)" in out and "1 newer incomplete or bad" in out
    if expected:
        only_one_line(err, f"the newest good backup ({stamp}) is 2d 2h old, more than 48h")
    else:
        assert err == ""


def test_status_without_a_good_backup_and_with_max_age(moto, layout, archive):
    code, _, err = command(moto, layout.bucket, "status", "--schedule", "@daily")
    assert code == 1
    only_one_line(err, "no good backup under")
    layout.backup(timedelta(hours=3), archive)
    code, _, err = command(moto, layout.bucket, "status", "--max-age", "2h")
    assert code == 3
    only_one_line(err, "more than 2h (--max-age 2h)")
    code, _, _ = command(moto, layout.bucket, "status", "--schedule", "@hourly")
    assert code == 3
    code, _, err = command(moto, layout.bucket, "status", "--schedule", "0 3 * *")
    assert code == 2  # a usage error
    only_one_line(err, "--schedule '0 3 * *'", "bad schedule", "5 fields")


def test_status_takes_the_schedule_from_the_stack(moto, layout, archive):
    layout.backup(timedelta(hours=3), archive)
    outputs = {"backupBucket": layout.bucket, "backupPrefix": "acme/database/", "backupSchedule": "0 * * * *"}
    config = {"storageProvider": "minio", "storageEndpoint": moto.url, "storageRegion": "us-east-1",
              "storageAccessKey": moto.access_key, "storageSecretKey": moto.secret_key}
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["status"], out, err, run=fake_pulumi(outputs, config)) == 3
    only_one_line(err.getvalue(), "more than 2h", "'0 * * * *'")
    # A bad schedule in the stack is no usage error: exit 1, naming where it came from.
    outputs["backupSchedule"] = "0 3 * *"
    err = io.StringIO()
    assert cli.main(["status"], io.StringIO(), err, run=fake_pulumi(outputs, config)) == 1
    only_one_line(err.getvalue(), "the stack's backupSchedule '0 3 * *'", "bad schedule")


# ---------------------------------------------------------------- where the backups are


def test_location_comes_from_the_stack(no_env_keys):
    outputs = {"backupBucket": "labeling-acme-backups-0a1b2c3d", "backupPrefix": "acme/database/"}
    config = {"storageProvider": "scaleway", "storageRegion": "nl-ams", "storageAccessKey": "SCWKEY", "storageSecretKey": "s3cret"}
    calls = []
    location = resolve_location(no_options(), run=fake_pulumi(outputs, config, calls))
    assert location.endpoint_url == "https://s3.nl-ams.scw.cloud"
    assert (location.bucket, location.prefix, location.region, location.root) == ("labeling-acme-backups-0a1b2c3d", "acme/database/", "nl-ams", "acme/")
    assert (location.access_key, location.secret_key) == ("SCWKEY", "s3cret")
    assert len(calls) == 2  # one stack output, one config
    # Options override the stack.
    location = resolve_location(no_options(prefix="old/database"), run=fake_pulumi(outputs, config))
    assert location.prefix == "old/database/" and location.manifests == "old/backups/"
    location = resolve_location(no_options(prefix="old"), run=fake_pulumi(outputs, config))
    assert location.prefix == "old/database/" and location.data_repository == "old/data"


def test_explicit_options_derive_the_region_from_the_endpoint(no_env_keys):
    keys = dict(access_key="k", secret_key="s", bucket="b", prefix="acme/database/")
    assert resolve_location(no_options(endpoint="https://s3.nl-ams.scw.cloud", **keys)).region == "nl-ams"
    assert resolve_location(no_options(endpoint="https://s3.pl-waw.scw.cloud/", **keys)).region == "pl-waw"
    assert resolve_location(no_options(endpoint="http://localhost:9000", **keys)).region == "minio"
    assert resolve_location(no_options(endpoint="https://s3.nl-ams.scw.cloud", region="fr-par", **keys)).region == "fr-par"
    for endpoint in ("localhost:9000", "s3.fr-par.scw.cloud", "ftp://x", "http://user:pw@host:9000"):
        with pytest.raises(BackupsError, match="--endpoint"):
            resolve_location(no_options(endpoint=endpoint, **keys))


def test_endpoint_without_a_scheme_is_one_error_line(moto, layout):
    out, err = io.StringIO(), io.StringIO()
    argv = ["--endpoint", "localhost:9000", "--bucket", layout.bucket, "--prefix", "acme/database/", "--access-key", "a", "--secret-key", "b", "list"]
    assert cli.main(argv, out, err) == 2
    only_one_line(err.getvalue(), "--endpoint 'localhost:9000' needs a scheme", "http://localhost:9000")


def test_in_cluster_minio_stack_explains_how_to_reach_it(no_env_keys):
    outputs = {"backupBucket": "b", "backupPrefix": "dev/database/", "namespace": "cvat-dev"}
    with pytest.raises(BackupsError, match="kubectl -n cvat-dev port-forward svc/minio"):
        location_from_stack(Stack(None, fake_pulumi(outputs, {"minioInCluster": "true"})))
    # Forwarded: the endpoint is given, the rest comes from the stack.
    location = resolve_location(no_options(endpoint="http://localhost:9000", access_key="root", secret_key="pw"),
                                run=fake_pulumi(outputs, {"minioInCluster": "true", "storageProvider": "minio"}))
    assert (location.endpoint_url, location.region, location.bucket, location.prefix) == ("http://localhost:9000", "minio", "b", "dev/database/")


def test_keys_are_required_and_the_missing_one_is_named(no_env_keys):
    with pytest.raises(BackupsError, match="no S3 keys: pass --access-key and --secret-key, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        resolve_location(no_options(endpoint="http://x", bucket="b", prefix="p/"))
    with pytest.raises(BackupsError, match="no S3 secret key: pass --secret-key, or set AWS_SECRET_ACCESS_KEY$"):
        resolve_location(no_options(endpoint="http://x", bucket="b", prefix="p/", access_key="k"))
    # Keys the stack should have given are named by its config key too.
    outputs = {"backupBucket": "b", "backupPrefix": "acme/database/"}
    config = {"storageProvider": "minio", "storageEndpoint": "http://minio:9000", "storageSecretKey": "s"}
    with pytest.raises(BackupsError, match=r"no S3 access key \(the stack's storageAccessKey is empty\): pass --access-key, or set AWS_ACCESS_KEY_ID"):
        resolve_location(no_options(), run=fake_pulumi(outputs, config))


def test_without_the_pulumi_cli_it_says_which_options_to_pass(no_env_keys, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["list"], out, err) == 1
    only_one_line(err.getvalue(), "the Pulumi CLI is not installed: pass --endpoint, --bucket and --prefix instead, "
                                  "with --access-key and --secret-key (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)")


def test_runs_as_a_module_with_the_pulumi_cli(moto, layout, archive, tmp_path):
    stamp = layout.backup(timedelta(hours=1), archive)
    # A stand-in `pulumi` on PATH answers like the CLI does.
    fake = tmp_path / "pulumi"
    outputs = json.dumps({"backupBucket": layout.bucket, "backupPrefix": "acme/database/"})
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
    result = subprocess.run([sys.executable, "-m", "backups", "list"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert rows(result.stdout)[stamp].endswith("ok (latest)")


def test_the_old_module_name_still_runs_the_command_after_a_notice(moto, layout, archive):
    stamp = layout.backup(timedelta(hours=1), archive)
    env = {**os.environ, "AWS_ACCESS_KEY_ID": moto.access_key, "AWS_SECRET_ACCESS_KEY": moto.secret_key}
    where = ["--endpoint", moto.url, "--region", "us-east-1", "--bucket", layout.bucket, "--prefix", "acme/"]
    result = subprocess.run([sys.executable, "-m", "components.backups", *where, "list"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "components.backups is now `python -m backups`\n"
    assert rows(result.stdout)[stamp].endswith("ok (latest)")
    # Its exit codes are the command's.
    result = subprocess.run([sys.executable, "-m", "components.backups", *where, "lsit"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    notice, error = result.stderr.splitlines()
    assert notice == "components.backups is now `python -m backups`" and error.startswith("error: argument COMMAND: invalid choice")


def test_server_errors_are_one_error_line(moto, moto_with_auth, layout):
    from support.servers import free_port

    out, err = io.StringIO(), io.StringIO()
    argv = ["--endpoint", f"http://127.0.0.1:{free_port()}", "--bucket", "b-unreachable", "--prefix", "acme/database/",
            "--access-key", "a", "--secret-key", "b", "list"]
    assert cli.main(argv, out, err) == 1
    only_one_line(err.getvalue(), "cannot reach the S3 endpoint http://127.0.0.1:")
    missing = f"missing-{uuid.uuid4().hex[:8]}"
    err = io.StringIO()
    argv = ["--endpoint", moto.url, "--bucket", missing, "--prefix", "acme/database/", "--access-key", "a", "--secret-key", "b", "list"]
    assert cli.main(argv, io.StringIO(), err) == 1
    only_one_line(err.getvalue(), f"bucket {missing} does not exist at {moto.url}")
    moto_with_auth.client().create_bucket(Bucket="guarded")
    err = io.StringIO()
    argv = ["--endpoint", moto_with_auth.url, "--region", "us-east-1", "--bucket", "guarded", "--prefix", "acme/database/",
            "--access-key", "AKIAWRONGWRONGWRONG0", "--secret-key", "wrong", "download", "latest"]
    assert cli.main(argv, io.StringIO(), err) == 1
    only_one_line(err.getvalue(), "the S3 server refused the keys", "--access-key/--secret-key")


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
