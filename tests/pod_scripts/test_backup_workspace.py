"""The whole workspace: the database and CVAT's data volume, backed up together (dump + restic
snapshot + manifest) and restored together, through the Jobs' pods as the Database component
renders them, run container by container against real PostgreSQL, S3 and restic.

restic must be installed (./test.sh installs the Debian package as root): these tests fail,
they are not skipped, without it.
"""

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from support.backup_scripts import (  # noqa: F401  (fixtures)
    NASTY_PASSWORD,
    PREFIX,
    assert_nothing_incomplete_is_visible,
    moto,
    backups,
    database,
    database_comment,
    days_ago,
    dump_of,
    filled,
    fresh_database,
    keys,
    manifest_keys,
    pod_volumes,
    put_backup,
    read_manifest,
    run_pod,
    snapshot,
)
from support.database import render_database

# Runs the pod scripts against the real servers (conftest: the tiers).
pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def restic():
    binary = shutil.which("restic")
    assert binary, "restic is not installed: run ./test.sh as root (it installs the Debian package) or apt-get install restic"
    return binary


@pytest.fixture(scope="module")
def backup_pod():
    rendering = render_database(data_claim="cvat-data")
    return rendering.one("kubernetes:batch/v1:CronJob").inputs["spec"]["jobTemplate"]["spec"]["template"]["spec"]


@pytest.fixture(scope="module")
def restore_pod():
    rendering = render_database(data_claim="cvat-data", restore_from="latest", restore_force=True)
    return rendering.one("kubernetes:batch/v1:Job", "restore").inputs["spec"]["template"]["spec"]


def make_data(root: Path, variant: str = "a") -> Path:
    """A data volume like CVAT's: nested directories, binary and empty files, a dot file, a
    symbolic link, names that are not ASCII."""
    root.mkdir(parents=True, exist_ok=True)
    for task in range(3):
        chunks = root / "data" / "data" / str(task) / "compressed"
        chunks.mkdir(parents=True)
        for chunk in range(4):
            (chunks / f"{chunk}.zip").write_bytes(hashlib.sha256(f"{variant}{task}{chunk}".encode()).digest() * 400)
        (root / "data" / "data" / str(task) / "manifest.jsonl").write_text(f'{{"task": {task}, "variant": "{variant}"}}\n')
    (root / "data" / "tasks" / "0").mkdir(parents=True)
    (root / "data" / "tasks" / "0" / "empty").write_bytes(b"")
    (root / "data" / "tasks" / "0" / "étiquettes 猫.txt").write_text(f"variant {variant}")
    (root / ".hidden").write_text("dot file")
    os.symlink("data/tasks/0/empty", root / "link-to-empty")
    return root


def tree(root: Path) -> dict:
    """What a data volume holds (the restore's own state left out)."""
    found = {}
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = [d for d in subdirectories if d != ".labeling-restore"]
        for name in subdirectories + files:
            path = Path(directory) / name
            relative = str(path.relative_to(root))
            if path.is_symlink():
                found[relative] = ("link", os.readlink(path))
            elif path.is_dir():
                found[relative] = ("dir",)
            else:
                found[relative] = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
    return found


def servers(postgres, moto, target, backups):
    return {**target, **moto.environment(), **backups, "_PGBIN": str(postgres.bindir)}


def run_backup(pod, postgres, moto, target, backups, data, tmp_path, retention="30"):
    env = servers(postgres, moto, target, backups)
    pod = json.loads(json.dumps(pod))
    for container in pod["initContainers"] + pod["containers"]:
        for variable in container["env"]:
            if variable["name"] == "RETENTION_DAYS":
                variable["value"] = retention
    return run_pod(pod, env, pod_volumes(tmp_path, data=data), config_maps={"CVAT_VERSION": "v2.73.0"})


def run_restore(pod, postgres, moto, target, backups, data, tmp_path, stop_after=None, request=None):
    env = servers(postgres, moto, target, backups)
    if request:
        env["RESTORE_REQUEST"] = request
    return run_pod(pod, env, pod_volumes(tmp_path, data=data), stop_after=stop_after)


def restic_snapshots(moto, bucket, password, root="acme/"):
    env = {**os.environ, **moto.environment(), "RESTIC_PASSWORD": password,
           "RESTIC_REPOSITORY": f"s3:{moto.url}/{bucket}/{root}data", "RESTIC_CACHE_DIR": "/tmp/restic-cache-tests"}
    result = subprocess.run(["restic", "-o", "s3.bucket-lookup=path", "snapshots", "--json"], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def password_of(moto, bucket, root="acme/"):
    return moto.shared_client().get_object(Bucket=bucket, Key=f"{root}data-password")["Body"].read().decode()


def test_the_whole_workspace_goes_and_comes_back(restic, backup_pod, restore_pod, postgres, moto, filled, backups, tmp_path):
    bucket = backups["BACKUP_BUCKET"]
    data = make_data(tmp_path / "volume")
    expected = tree(data)
    failed, code, results = run_backup(backup_pod, postgres, moto, filled, backups, data, tmp_path)
    assert failed is None, {name: r.stderr for name, r in results.items()}
    assert list(results) == ["dump", "password", "data", "upload", "prune"]
    assert tree(data) == expected  # read, not changed

    (manifest_key,) = manifest_keys(moto, bucket)
    manifest = read_manifest(moto, bucket, manifest_key)
    assert manifest["cvatVersion"] == "v2.73.0" and manifest["reason"] == "scheduled"
    data_part = manifest["data"]
    assert data_part["repository"] == "acme/data"
    assert len(data_part["snapshot"]) == 64
    assert data_part["files"] == sum(1 for kind in expected.values() if kind[0] == "file")
    assert data_part["bytes"] > 0
    assert_nothing_incomplete_is_visible(moto, bucket)
    # The repository and its password sit next to the dumps, under the workspace's prefix.
    everything = keys(moto, bucket)
    assert "acme/data-password" in everything and "acme/data/config" in everything
    assert all(key.startswith("acme/") for key in everything)
    (snap,) = restic_snapshots(moto, bucket, password_of(moto, bucket))
    assert snap["id"] == data_part["snapshot"] and snap["hostname"] == "acme"
    assert f"stamp:{manifest['stamp']}" in snap["tags"]

    # Into a new workspace: an empty database, a volume with other things on it.
    target = fresh_database(postgres)
    volume = make_data(tmp_path / "other-volume", variant="b")
    (volume / "only-here").write_text("goes away")
    failed, code, results = run_restore(restore_pod, postgres, moto, target, backups, volume, tmp_path)
    assert failed is None, {name: r.stderr for name, r in results.items()}
    assert list(results) == ["check", "fetch", "stage", "restore", "swap"]
    assert snapshot(postgres, target) == snapshot(postgres, filled)
    assert tree(volume) == expected
    assert not (volume / ".labeling-restore" / "staging").exists() and not (volume / ".labeling-restore" / "former").exists()

    # A retried Job of the same request changes nothing.
    (volume / "written-by-cvat-since").write_text("kept")
    failed, code, results = run_restore(restore_pod, postgres, moto, target, backups, volume, tmp_path)
    assert failed is None, {name: r.stderr for name, r in results.items()}
    assert "nothing to download" in results["fetch"].stdout
    assert (volume / "written-by-cvat-since").read_text() == "kept"


def test_a_second_backup_of_unchanged_data_uploads_no_file(restic, backup_pod, postgres, moto, filled, backups, tmp_path):
    bucket = backups["BACKUP_BUCKET"]
    data = make_data(tmp_path / "volume")
    assert run_backup(backup_pod, postgres, moto, filled, backups, data, tmp_path)[0] is None
    packs = [k for k in keys(moto, bucket, "acme/data/data/")]
    failed, code, results = run_backup(backup_pod, postgres, moto, filled, backups, data, tmp_path)
    assert failed is None, {name: r.stderr for name, r in results.items()}
    assert "(0 new, 0 changed, 0 bytes added)" in results["data"].stdout
    assert [k for k in keys(moto, bucket, "acme/data/data/")] == packs
    # Two backups, two snapshots (the second one's parent is the first: same host and path).
    assert len(manifest_keys(moto, bucket)) == 2
    snapshots = restic_snapshots(moto, bucket, password_of(moto, bucket))
    assert len(snapshots) == 2 and snapshots[1].get("parent") == snapshots[0]["id"]


def test_retention_takes_dump_and_snapshot_together(restic, backup_pod, postgres, moto, filled, backups, tmp_path):
    bucket = backups["BACKUP_BUCKET"]
    data = make_data(tmp_path / "volume")
    assert run_backup(backup_pod, postgres, moto, filled, backups, data, tmp_path)[0] is None
    password = password_of(moto, bucket)
    env = {**os.environ, **moto.environment(), "RESTIC_PASSWORD": password, "RESTIC_REPOSITORY": f"s3:{moto.url}/{bucket}/acme/data",
           "RESTIC_CACHE_DIR": str(tmp_path / "cache")}
    body = dump_of(postgres, filled, tmp_path)
    old = {}
    for days in (50, 100, 200, 300):
        stamp = days_ago(days)
        (data / "old-file").write_text(f"only in the backup of {days} days ago")
        result = subprocess.run(
            ["restic", "-o", "s3.bucket-lookup=path", "backup", "--json", "--quiet", "--host", "acme", "--tag", "labeling",
             "--tag", f"stamp:{stamp}", "--time", f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]} 12:00:00", "."],
            cwd=data, env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        short = json.loads(result.stdout.splitlines()[-1])["snapshot_id"]
        (full,) = [s["id"] for s in restic_snapshots(moto, bucket, password) if s["id"].startswith(short)]
        put_backup(moto, bucket, stamp, body, snapshot_id=full)
        old[days] = (stamp, full)
    (data / "old-file").unlink()
    packs_before = len(keys(moto, bucket, "acme/data/data/"))

    failed, code, results = run_backup(backup_pod, postgres, moto, filled, backups, data, tmp_path, retention="30")
    assert failed is None, {name: r.stderr for name, r in results.items()}
    manifests = manifest_keys(moto, bucket)
    # The two backups of today, the newest old one (the newest 3 good are kept); 100, 200 and 300 days go.
    assert len(manifests) == 3 and f"acme/backups/{old[50][0]}.json" in manifests
    remaining = {s["id"] for s in restic_snapshots(moto, bucket, password)}
    assert old[50][1] in remaining
    assert not {old[d][1] for d in (100, 200, 300)} & remaining
    assert remaining == {read_manifest(moto, bucket, key)["data"]["snapshot"] for key in manifests}
    assert len(keys(moto, bucket, "acme/data/data/")) < packs_before  # pruned
    assert not [k for k in keys(moto, bucket, PREFIX) if any(old[d][0] in k for d in (100, 200, 300))]
    assert_nothing_incomplete_is_visible(moto, bucket)


def test_a_failed_database_restore_leaves_the_volume_as_it_was(restic, backup_pod, restore_pod, postgres, moto, filled, backups, tmp_path):
    data = make_data(tmp_path / "volume")
    assert run_backup(backup_pod, postgres, moto, filled, backups, data, tmp_path)[0] is None
    target = fresh_database(postgres)
    # Staged on the volume, beside what it holds: nothing of it changes yet.
    volume = make_data(tmp_path / "live", variant="live")
    before = tree(volume)
    failed, code, results = run_restore(restore_pod, postgres, moto, target, backups, volume, tmp_path, stop_after="stage")
    assert failed is None, {name: r.stderr for name, r in results.items()}
    assert tree(volume) == before
    backup_manifest = manifest_keys(moto, backups["BACKUP_BUCKET"])[0]
    # The dump damaged in the bucket: the restore container fails (checksum), the swap never runs.
    s3 = moto.shared_client()
    dump = read_manifest(moto, backups["BACKUP_BUCKET"], backup_manifest)["database"]["key"]
    obj = s3.get_object(Bucket=backups["BACKUP_BUCKET"], Key=dump)
    body = obj["Body"].read()
    s3.put_object(Bucket=backups["BACKUP_BUCKET"], Key=dump, Body=body[:100] + bytes([body[100] ^ 1]) + body[101:], Metadata=obj["Metadata"])
    failed, code, results = run_restore(restore_pod, postgres, moto, target, backups, volume, tmp_path)
    assert failed == "restore", {name: r.stderr for name, r in results.items()}
    assert "SHA-256" in results["restore"].stderr
    assert tree(volume) == before
    assert postgres.admin("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'", target["PGDATABASE"]) == "0"


def test_a_swap_that_stopped_halfway_finishes_on_the_next_run(restic, backup_pod, restore_pod, postgres, moto, filled, backups, tmp_path):
    data = make_data(tmp_path / "volume")
    expected = tree(data)
    assert run_backup(backup_pod, postgres, moto, filled, backups, data, tmp_path)[0] is None
    target = fresh_database(postgres)
    volume = make_data(tmp_path / "live", variant="live")
    # A swap killed after two renames: `mv` fails from the third call on.
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "mv").write_text(f'#!/bin/sh\nn=$(cat "{fake}/count" 2>/dev/null || echo 0)\necho $((n + 1)) > "{fake}/count"\n'
                             f'[ "$n" -lt 2 ] || exit 1\nexec /bin/mv "$@"\n')
    (fake / "mv").chmod(0o755)
    env = servers(postgres, moto, target, backups)
    volumes = pod_volumes(tmp_path, data=volume)
    failed, _, results = run_pod(restore_pod, env, volumes, stop_after="restore")
    assert failed is None, {name: r.stderr for name, r in results.items()}
    swap = next(c for c in restore_pod["containers"] if c["name"] == "swap")
    halfway = {**swap, "env": swap["env"] + [{"name": "PATH", "value": f"{fake}:/usr/bin:/bin"}]}
    failed, _, results = run_pod({"containers": [halfway]}, env, volumes)
    assert failed == "swap"
    assert tree(volume) not in (expected, tree(make_data(tmp_path / "reference", variant="live")))
    # The Job's next attempt (a new pod) finishes it.
    failed, _, results = run_restore(restore_pod, postgres, moto, target, backups, volume, tmp_path)
    assert failed is None, {name: r.stderr for name, r in results.items()}
    assert tree(volume) == expected
    assert snapshot(postgres, target) == snapshot(postgres, filled)
    assert database_comment(postgres, target).startswith("labeling-restore: ")


def test_the_password_is_made_once_and_never_replaced(restic, backup_pod, postgres, moto, filled, backups, tmp_path):
    bucket = backups["BACKUP_BUCKET"]
    data = make_data(tmp_path / "volume")
    assert run_backup(backup_pod, postgres, moto, filled, backups, data, tmp_path)[0] is None
    password = password_of(moto, bucket)
    assert len(password) == 64
    assert run_backup(backup_pod, postgres, moto, filled, backups, data, tmp_path)[0] is None
    assert password_of(moto, bucket) == password
    # A repository whose password went missing: the backup stops, it does not make a new one.
    moto.shared_client().delete_object(Bucket=bucket, Key="acme/data-password")
    failed, code, results = run_backup(backup_pod, postgres, moto, filled, backups, data, tmp_path)
    assert failed == "password"
    assert "cannot be regenerated" in results["password"].stderr
    assert "acme/data-password" not in keys(moto, bucket)


@pytest.mark.parametrize("source", ["dump key", "legacy latest"])
def test_a_database_dump_alone_leaves_the_volume_as_it_is(restic, postgres, moto, filled, backups, source, tmp_path):
    bucket = backups["BACKUP_BUCKET"]
    body = dump_of(postgres, filled, tmp_path)
    key = f"{PREFIX}{days_ago(1)}.dump"
    moto.shared_client().put_object(Bucket=bucket, Key=key, Body=body)  # no manifest, no metadata: an older backup
    rendering = render_database(data_claim="cvat-data", restore_from=key if source == "dump key" else "latest")
    pod = rendering.one("kubernetes:batch/v1:Job", "restore").inputs["spec"]["template"]["spec"]
    target = fresh_database(postgres)
    volume = make_data(tmp_path / "live", variant="live")
    before = tree(volume)
    for attempt in range(2):
        failed, code, results = run_restore(pod, postgres, moto, target, backups, volume, tmp_path)
        assert failed is None, {name: r.stderr for name, r in results.items()}
        assert tree(volume) == before
    assert "nothing to download" in results["fetch"].stdout  # the retry
    assert snapshot(postgres, target) == snapshot(postgres, filled)


# ----- an empty data volume ------------------------------------------------------------
# restic refuses a snapshot whose root is empty, 0.14 (the tests') as 0.18.1 (the pods'):
# "Fatal: unable to save snapshot: snapshot is empty", exit 1 (restic v0.18.1
# internal/archiver/archiver.go:903-905). data-backup.sh takes an empty volume by its
# absolute path instead; the restores take such a snapshot from below that path.


def restic_ls(moto, bucket, snapshot_id, root="acme/"):
    env = {**os.environ, **moto.environment(), "RESTIC_PASSWORD": password_of(moto, bucket, root),
           "RESTIC_REPOSITORY": f"s3:{moto.url}/{bucket}/{root}data", "RESTIC_CACHE_DIR": "/tmp/restic-cache-tests"}
    result = subprocess.run(["restic", "-o", "s3.bucket-lookup=path", "ls", snapshot_id], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if line.startswith("/")]


def leave_restore_state(volume: Path) -> None:
    """What an earlier restore leaves on the volume: its state, which no backup holds."""
    (volume / ".labeling-restore").mkdir(parents=True)
    (volume / ".labeling-restore" / "done").write_text("an-earlier-request\n")


def backups_command(moto, bucket, *args):
    from backups import cli as command

    out, err = io.StringIO(), io.StringIO()
    code = command.main(["--endpoint", moto.url, "--region", "us-east-1", "--bucket", bucket, "--prefix", "acme/",
                         "--access-key", moto.access_key, "--secret-key", moto.secret_key, *args], out, err)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("leftover", [False, True], ids=["empty", "only-restore-state"])
def test_an_empty_volume_backs_up_and_restores_to_an_empty_volume(restic, backup_pod, restore_pod, postgres, moto, filled, backups,
                                                                  leftover, tmp_path):
    bucket = backups["BACKUP_BUCKET"]
    data = tmp_path / "volume"
    data.mkdir()
    if leftover:
        leave_restore_state(data)
    # The refusal this is about, with the restic of this machine.
    env = {**os.environ, "RESTIC_PASSWORD": "x", "RESTIC_REPOSITORY": str(tmp_path / "repo"), "RESTIC_CACHE_DIR": str(tmp_path / "cache")}
    subprocess.run(["restic", "init"], env=env, check=True, capture_output=True)
    refused = subprocess.run(["restic", "backup", "--json", "--exclude", str(data / ".labeling-restore"), "."], cwd=data, env=env,
                             capture_output=True, text=True)
    assert refused.returncode == 1 and "snapshot is empty" in refused.stderr

    failed, code, results = run_backup(backup_pod, postgres, moto, filled, backups, data, tmp_path)
    assert failed is None, {name: r.stderr for name, r in results.items()}
    assert list(results) == ["dump", "password", "data", "upload", "prune"]
    assert "the data volume is empty" in results["data"].stdout
    (manifest_key,) = manifest_keys(moto, bucket)
    data_part = read_manifest(moto, bucket, manifest_key)["data"]
    assert len(data_part["snapshot"]) == 64 and data_part["files"] == 0 and data_part["bytes"] == 0
    (snap,) = restic_snapshots(moto, bucket, password_of(moto, bucket))
    assert snap["id"] == data_part["snapshot"] and snap["paths"] == [str(data)]
    listed = restic_ls(moto, bucket, snap["id"])
    assert str(data) in listed  # the path down to the volume, and nothing in it
    assert all(str(data) == path or str(data).startswith(path + "/") for path in listed), listed
    assert_nothing_incomplete_is_visible(moto, bucket)

    # Restored onto a volume that holds files: all of them go.
    target = fresh_database(postgres)
    volume = make_data(tmp_path / "live", variant="live")
    failed, code, results = run_restore(restore_pod, postgres, moto, target, backups, volume, tmp_path)
    assert failed is None, {name: r.stderr for name, r in results.items()}
    assert list(results) == ["check", "fetch", "stage", "restore", "swap"]
    assert "will be restored" in results["fetch"].stdout
    assert tree(volume) == {}
    assert [p.name for p in volume.iterdir()] == [".labeling-restore"]
    assert sorted(p.name for p in (volume / ".labeling-restore").iterdir()) == ["done"]
    assert snapshot(postgres, target) == snapshot(postgres, filled)

    # The operators' command gives an empty folder too.
    code, out, err = backups_command(moto, bucket, "download", "latest", "-o", str(tmp_path), "--with-data", str(tmp_path / "downloaded"))
    assert code == 0, err
    assert list((tmp_path / "downloaded").iterdir()) == []


def test_a_volume_emptied_and_filled_again_restores_each_backup_as_it_was(restic, backup_pod, restore_pod, postgres, moto, filled,
                                                                          backups, tmp_path):
    bucket = backups["BACKUP_BUCKET"]
    data = tmp_path / "volume"
    data.mkdir()
    states = []
    for fill in (False, True, False, True):
        if fill:
            make_data(data, variant=str(len(states)))
        else:
            for entry in data.iterdir():
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        before = set(manifest_keys(moto, bucket))
        failed, code, results = run_backup(backup_pod, postgres, moto, filled, backups, data, tmp_path)
        assert failed is None, {name: r.stderr for name, r in results.items()}
        assert ("the data volume is empty" in results["data"].stdout) == (not fill)
        (key,) = set(manifest_keys(moto, bucket)) - before
        states.append((key, tree(data)))
    assert [bool(expected) for _, expected in states] == [False, True, False, True]
    # The snapshot after the empty one (its parent) holds every file all the same.
    assert read_manifest(moto, bucket, states[1][0])["data"]["files"] == sum(1 for k in states[1][1].values() if k[0] == "file")

    target = fresh_database(postgres)
    volume = make_data(tmp_path / "live", variant="live")
    for key, expected in [states[1], states[2], states[3], states[0]]:
        failed, code, results = run_restore(restore_pod, postgres, moto, target, {**backups, "RESTORE_FROM": key}, volume, tmp_path,
                                            request=f"restore-{uuid.uuid4().hex[:6]}")
        assert failed is None, {name: r.stderr for name, r in results.items()}
        assert tree(volume) == expected, key
        assert snapshot(postgres, target) == snapshot(postgres, filled)


RESTIC_0_18_1 = '''#!{python}
"""restic as the pods' 0.18.1 answers `backup --json`, the rest passed to the real one ({real}).

- A root left empty (target "." of a folder holding nothing but what --exclude names) is refused:
  v0.18.1 internal/archiver/archiver.go:903-905 "snapshot is empty", made fatal by
  cmd/restic/cmd_backup.go:686, exit code 1 (cmd/restic/main.go:217-218), printed as JSON on
  stderr under --json (cmd/restic/main.go:128-150).
- The summary names the snapshot by its full id (internal/ui/backup/json.go:165-191).
"""
import json, os, subprocess, sys

args = sys.argv[1:]
with open({log!r}, "a") as log:
    log.write(json.dumps(args) + "\\n")
if "backup" in args:
    excluded = [args[i + 1] for i, a in enumerate(args) if a == "--exclude"]
    if args[-1] == ".":
        names = [n for n in os.listdir(".") if os.path.join(os.getcwd(), n) not in excluded]
        if not names:
            sys.stderr.write(json.dumps({{"message_type": "exit_error", "code": 1,
                                          "message": "Fatal: unable to save snapshot: snapshot is empty"}},
                                        separators=(",", ":")) + "\\n")
            sys.exit(1)
    result = subprocess.run([{real!r}, *args], capture_output=True, text=True)
    sys.stderr.write(result.stderr)
    if result.returncode != 0:
        sys.stdout.write(result.stdout)
        sys.exit(result.returncode)
    lines = result.stdout.splitlines()
    summary = json.loads(lines[-1])
    options = args[:args.index("backup")]
    listed = subprocess.run([{real!r}, *options, "snapshots", "--json", summary["snapshot_id"]], capture_output=True, text=True, check=True)
    (snapshot,) = json.loads(listed.stdout)
    summary.update(snapshot_id=snapshot["id"], backup_start="2025-07-20T10:00:00.000000001Z",
                   backup_end="2025-07-20T10:00:01.5Z", data_added_packed=summary["data_added"])
    print("\\n".join(lines[:-1] + [json.dumps(summary, separators=(",", ":"))]))  # compact, as Go's encoder
    sys.exit(0)
os.execv({real!r}, [{real!r}, *args])
'''


def restic_like_0_18_1(tmp_path, restic) -> tuple[Path, Path]:
    """A `restic` on the PATH that answers as 0.18.1 does, and the log of its calls."""
    fake = tmp_path / "restic-0.18.1"
    fake.mkdir()
    log = tmp_path / "restic-calls"
    (fake / "restic").write_text(RESTIC_0_18_1.format(python=sys.executable, real=restic, log=str(log)))
    (fake / "restic").chmod(0o755)
    return fake, log


def with_path(pod, container_name, directory):
    pod = json.loads(json.dumps(pod))
    for container in pod.get("initContainers", []) + pod["containers"]:
        if container["name"] == container_name:
            container["env"].append({"name": "PATH", "value": f"{directory}:{os.environ['PATH']}"})
    return pod


@pytest.mark.parametrize("volume", ["empty", "only-restore-state", "files"])
def test_the_data_backup_works_with_restic_0_18_1(restic, backup_pod, restore_pod, postgres, moto, filled, backups, volume, tmp_path):
    bucket = backups["BACKUP_BUCKET"]
    fake, log = restic_like_0_18_1(tmp_path, restic)
    # The stand-in refuses an empty root as 0.18.1 does.
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {**os.environ, "RESTIC_PASSWORD": "x", "RESTIC_REPOSITORY": str(tmp_path / "repo"), "RESTIC_CACHE_DIR": str(tmp_path / "cache")}
    subprocess.run([str(fake / "restic"), "init"], env=env, check=True, capture_output=True)
    refused = subprocess.run([str(fake / "restic"), "backup", "--json", "."], cwd=empty, env=env, capture_output=True, text=True)
    assert refused.returncode == 1 and json.loads(refused.stderr)["message"].endswith("snapshot is empty")
    log.unlink()

    data = tmp_path / "volume"
    data.mkdir()
    if volume == "only-restore-state":
        leave_restore_state(data)
    elif volume == "files":
        make_data(data)
    expected = tree(data)
    failed, code, results = run_backup(with_path(backup_pod, "data", fake), postgres, moto, filled, backups, data, tmp_path)
    assert failed is None, {name: r.stderr for name, r in results.items()}
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert [call for call in calls if "backup" in call], "the stand-in was not called"
    (manifest_key,) = manifest_keys(moto, bucket)
    data_part = read_manifest(moto, bucket, manifest_key)["data"]
    (snap,) = restic_snapshots(moto, bucket, password_of(moto, bucket))
    assert snap["id"] == data_part["snapshot"]
    assert data_part["files"] == sum(1 for kind in expected.values() if kind[0] == "file")

    target = fresh_database(postgres)
    live = make_data(tmp_path / "live", variant="live")
    failed, code, results = run_restore(restore_pod, postgres, moto, target, backups, live, tmp_path)
    assert failed is None, {name: r.stderr for name, r in results.items()}
    assert tree(live) == expected
