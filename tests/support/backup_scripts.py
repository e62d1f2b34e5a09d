"""What the tests of the pod scripts (backup.sh, restore.sh, data-backup.sh, data-restore.sh) share:
running a script as its pod would, a real PostgreSQL database filled with awkward data, the layout of
docs/backups.md as seen in the bucket, backups made by hand (any stamp, legacy dumps), and whether a
backup is good.

Backups are dated by the server's time of their manifest (LastModified), not by their stamp: the
S3 server here (the `moto` fixture, which overrides conftest's) is moto with a clock the tests set
(support/clocked_s3.py), and a backup made by hand "N days ago" is stored with that LastModified
(put_backup). Modules that import `moto` from here share that server.
"""

import contextlib
import hashlib
import json
import os
import re
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from support.clocked_s3 import ClockedMotoServer, shared_server
from support.servers import aws_cli_bin, aws_cli_server

ASSETS = Path(__file__).resolve().parents[2] / "components" / "assets"

BIN = Path(sys.executable).parent

# Shell metacharacters of every kind: the scripts must pass it through untouched.
NASTY_PASSWORD = "p@ss w'o\"rd $(touch /tmp/pwned) `id` ;|&<>*?\\!#"

# docs/backups.md: a stamp, with the random suffix of the backups made since the stamps are unique.
STAMP_PATTERN = r"[0-9]{8}T[0-9]{6}Z(-[0-9a-f]{8})?"

NAME_PATTERN = rf"^{STAMP_PATTERN}\.dump$"

PREFIX = "acme/database/"

MANIFESTS = "acme/backups/"

SCHEMA = """
CREATE SEQUENCE invoice_numbers START 1000 INCREMENT 7;
CREATE TABLE labels (
    id serial PRIMARY KEY,
    name text NOT NULL,
    color bytea,
    created timestamptz NOT NULL DEFAULT '2026-01-02 03:04:05+00'
);
CREATE INDEX labels_name ON labels (lower(name));
CREATE TABLE frames (
    id bigserial PRIMARY KEY,
    label_id integer REFERENCES labels (id),
    payload bytea NOT NULL,
    note text
);
INSERT INTO labels (name, color) VALUES
    ('voiture 🚗', '\\x00ff7f'), ('Straße', '\\xdeadbeef00'), ('猫', NULL), ('emoji 😀 and ''quotes''', '\\x');
INSERT INTO frames (label_id, payload, note)
    SELECT 1 + (n % 4), decode(md5(n::text), 'hex') || '\\x00'::bytea, 'frame ' || n FROM generate_series(1, 500) AS n;
SELECT nextval('invoice_numbers'), nextval('invoice_numbers'), nextval('invoice_numbers');
"""

SNAPSHOT = """
SELECT 'labels', md5(string_agg(t::text, '|' ORDER BY id)) FROM labels t
UNION ALL SELECT 'frames', md5(string_agg(t::text, '|' ORDER BY id)) FROM frames t
UNION ALL SELECT 'invoice_numbers', last_value::text FROM invoice_numbers
UNION ALL SELECT 'labels_id_seq', last_value::text FROM labels_id_seq
UNION ALL SELECT 'frames_id_seq', last_value::text FROM frames_id_seq
UNION ALL SELECT 'index', indexdef FROM pg_indexes WHERE indexname = 'labels_name'
ORDER BY 1
"""


@pytest.fixture(scope="module")
def moto():
    """The S3 server of the backup tests: moto whose clock put_backup sets (shared by the run)."""
    server = shared_server()
    server.set_clock(timedelta(0))
    yield server
    server.set_clock(timedelta(0))


def script_env(env, installed_aws=False, **extra):
    """The environment of a pod script: `_PGBIN` says where the PostgreSQL tools are. Its `aws` is
    the installed AWS CLI run from a process that loaded it once (servers.aws_cli_bin), or with
    `installed_aws` (or TEST_AWS_CLI=installed in the environment) the installed command itself."""
    env = dict(env)
    installed_aws = installed_aws or os.environ.get("TEST_AWS_CLI") == "installed"
    first = "" if installed_aws else f"{aws_cli_bin()}{os.pathsep}"
    return {
        "PATH": f"{first}{BIN}{os.pathsep}{env.pop('_PGBIN')}{os.pathsep}{os.environ['PATH']}",
        "HOME": "/tmp",
        **env,
        **{key: str(value) for key, value in extra.items()},
    }


def run(script, env, timeout=300, **extra):
    return subprocess.run(["/bin/sh", str(ASSETS / script)], env=script_env(env, **extra), capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture
def database(postgres):
    """A fresh database with its owner (whose password is full of shell metacharacters)."""
    suffix = uuid.uuid4().hex[:8]
    return postgres.create_database(f"cvat_{suffix}", f"cvat_{suffix}", NASTY_PASSWORD)


def fresh_database(postgres):
    name = f"fresh_{uuid.uuid4().hex[:8]}"
    return postgres.create_database(name, name, NASTY_PASSWORD)


@pytest.fixture
def filled(postgres, database):
    postgres.admin(SCHEMA, database["PGDATABASE"])
    return database


@pytest.fixture(scope="module")
def filled_dump(postgres, tmp_path_factory):
    """The bytes of a pg_dump archive of a database filled with SCHEMA, made once a module: the
    body of backups a test puts in the bucket by hand, of a database as `filled` gives it."""
    database = fresh_database(postgres)
    postgres.admin(SCHEMA, database["PGDATABASE"])
    return dump_of(postgres, database, tmp_path_factory.mktemp("dump"))


@pytest.fixture
def backups(moto):
    """An empty backup bucket and this test's prefix."""
    bucket = f"backups-{uuid.uuid4().hex[:10]}"
    moto.shared_client().create_bucket(Bucket=bucket)
    return {"BACKUP_BUCKET": bucket, "BACKUP_PREFIX": PREFIX}


@pytest.fixture
def no_s3():
    """An S3 endpoint that records every request and refuses it (403): a test that expects no
    download points the scripts here and asserts that nothing came."""
    from support.s3_stub import StubS3Server

    with StubS3Server("access-denied") as server:
        server.environment = {
            "AWS_ENDPOINT_URL": server.url, "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "test-access-key", "AWS_SECRET_ACCESS_KEY": "test-secret-key",
        }
        yield server


def env_for(postgres, moto, database, backups, **extra):
    env = {"_PGBIN": str(postgres.bindir), **moto.environment(), **database, **backups, "RETENTION_DAYS": "30"}
    return {**env, **{key: str(value) for key, value in extra.items()}}


def keys(moto, bucket, prefix=""):
    s3 = moto.shared_client()
    found = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        found += [o["Key"] for o in page.get("Contents", [])]
    return sorted(found)


def dump_keys(moto, bucket, prefix=PREFIX):
    """The dumps under their final names (what a listing of backups shows)."""
    return [k for k in keys(moto, bucket, prefix) if re.match(NAME_PATTERN, k[len(prefix):])]


def manifest_keys(moto, bucket, root="acme/"):
    return [k for k in keys(moto, bucket, root + "backups/") if re.fullmatch(rf"{STAMP_PATTERN}\.json", k.rsplit("/", 1)[1])]


def read_manifest(moto, bucket, key):
    return json.loads(moto.shared_client().get_object(Bucket=bucket, Key=key)["Body"].read())


def snapshot(postgres, database):
    return postgres.admin(SNAPSHOT, database["PGDATABASE"])


def table_count(postgres, database):
    return int(postgres.admin("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'", database["PGDATABASE"]))


def database_comment(postgres, database):
    return postgres.admin(
        "SELECT coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database WHERE datname = current_database()",
        database["PGDATABASE"],
    )


def accepts_connections(postgres, database):
    return postgres.admin(f"SELECT datallowconn FROM pg_database WHERE datname = '{database['PGDATABASE']}'") == "t"


def stamp_of(moment):
    return moment.strftime("%Y%m%dT%H%M%SZ")


def moment_of(stamp):
    """The time in a stamp (its suffix ignored)."""
    return datetime.strptime(stamp[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)


@contextlib.contextmanager
def stored_at(moto, moment):
    """What is written inside the block gets LastModified `moment` (when the server's clock can be set)."""
    if not isinstance(moto, ClockedMotoServer):
        yield
        return
    with moto.frozen(moment):
        yield


def days_ago(days, seconds=0):
    return stamp_of(datetime.now(timezone.utc) - timedelta(days=days, seconds=seconds))


def put_backup(moto, bucket, stamp, body, root="acme/", snapshot_id=None, reason="scheduled", metadata=None, stored=None):
    """A whole backup made by hand: the dump (with its sha256 metadata) and its manifest, stored
    (LastModified) at the time of its stamp, or at `stored` (a pod whose clock was wrong)."""
    s3 = moto.shared_client()
    key = f"{root}database/{stamp}.dump"
    digest = hashlib.sha256(body).hexdigest()
    data = None if snapshot_id is None else {"repository": f"{root}data", "snapshot": snapshot_id, "files": 1, "bytes": 1}
    manifest = {"format": 1, "stamp": stamp, "workspace": root.rstrip("/"), "cvatVersion": "v2.73.0", "reason": reason,
                "database": {"key": key, "size": len(body), "sha256": digest}, "data": data}
    with stored_at(moto, stored or moment_of(stamp)):
        s3.put_object(Bucket=bucket, Key=key, Body=body, Metadata={"sha256": digest} if metadata is None else metadata)
        s3.put_object(Bucket=bucket, Key=f"{root}backups/{stamp}.json", Body=json.dumps(manifest).encode())
    return key


def backup_is_good(moto, bucket, manifest_key):
    """docs/backups.md: the manifest parses, its dump exists with its size and sha256 metadata,
    and (stricter than the rule) the dump's bytes have that SHA-256."""
    s3 = moto.shared_client()
    try:
        manifest = read_manifest(moto, bucket, manifest_key)
        database = manifest["database"]
        head = s3.head_object(Bucket=bucket, Key=database["key"])
        body = s3.get_object(Bucket=bucket, Key=database["key"])["Body"].read()
    except Exception:  # noqa: BLE001 - any failure means "not good"
        return False
    return (manifest.get("format") == 1 and head["ContentLength"] == database["size"] == len(body)
            and head["Metadata"].get("sha256") == database["sha256"] == hashlib.sha256(body).hexdigest())


def assert_nothing_incomplete_is_visible(moto, bucket, root="acme/"):
    """Every manifest names a good backup, and every dump under its final name holds the bytes
    its sha256 metadata says (or is a legacy dump without metadata, put there by the test)."""
    s3 = moto.shared_client()
    for key in manifest_keys(moto, bucket, root):
        assert backup_is_good(moto, bucket, key), f"{key} is visible but not a good backup"
    for key in dump_keys(moto, bucket, root + "database/"):
        body = s3.get_object(Bucket=bucket, Key=key)
        digest = body["Metadata"].get("sha256")
        if digest is not None:
            assert hashlib.sha256(body["Body"].read()).hexdigest() == digest, f"{key} is visible but damaged"


def dump_of(postgres, database, tmp_path):
    """The bytes of a pg_dump archive of `database`, as backup.sh makes it."""
    out = tmp_path / f"{uuid.uuid4().hex}.dump"
    env = script_env({"_PGBIN": str(postgres.bindir), **database})
    subprocess.run(["pg_dump", "--format=custom", "--compress=1", f"--file={out}"], env=env, check=True)
    return out.read_bytes()


def seed_backup(postgres, moto, database, backups, stamp=None):
    """A good backup of `database` in the bucket, made without backup.sh (restore tests: the
    layout is the contract; backup.sh has its own tests). Returns its manifest key."""
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        body = dump_of(postgres, database, Path(scratch))
    stamp = stamp or days_ago(0)
    put_backup(moto, backups["BACKUP_BUCKET"], stamp, body, root=backups["BACKUP_PREFIX"][: -len("database/")])
    return f"{backups['BACKUP_PREFIX'][: -len('database/')]}backups/{stamp}.json"


def run_pod(pod_spec, servers, volumes, config_maps=None, stop_after=None):
    """Runs a Job's pod like the kubelet: init containers in order, then the main one; the first
    failure ends the pod. Returns (the failed container or None, its exit code, results).

    Each container gets only the environment the pod gives it: its literal values (a value
    that is one of its mount paths becomes the local directory of that volume), ConfigMap
    values from `config_maps`, and the connection settings (database, S3 endpoint and keys,
    bucket) from `servers`. `volumes` maps the pod's volume names to local directories.
    The postgres image's tools are on the PATH only in containers of that image.
    """
    results = {}
    for container in pod_spec.get("initContainers", []) + pod_spec["containers"]:
        shell, script = container["command"]
        assert shell == "/bin/sh" and script.startswith("/scripts/"), container["command"]
        paths = {m["mountPath"]: str(volumes[m["name"]]) for m in container["volumeMounts"] if m["name"] in volumes}
        env = {}
        for variable in container["env"]:
            name = variable["name"]
            if name in servers:
                env[name] = servers[name]
            elif "value" in variable:
                env[name] = paths.get(variable["value"], variable["value"])
            elif "configMapKeyRef" in variable.get("valueFrom", {}):
                if (config_maps or {}).get(name) is not None:
                    env[name] = config_maps[name]
        env["_PGBIN"] = servers["_PGBIN"] if container["image"].startswith("postgres:") else "/nonexistent"
        result = run(script[len("/scripts/"):], env)
        results[container["name"]] = result
        if result.returncode != 0:
            return container["name"], result.returncode, results
        if container["name"] == stop_after:
            break
    return None, 0, results


def pod_volumes(tmp_path, **extra):
    """Local directories for a Job pod's emptyDirs (and `extra` volumes)."""
    volumes = {}
    for name in ("work", "secret", "cache"):
        volumes[name] = tmp_path / f"volume-{name}-{uuid.uuid4().hex[:6]}"
        volumes[name].mkdir()
    return {**volumes, **extra}


def aws_both_ways(moto, tmp_path, shell):
    """`shell` (sh code calling `aws`) run with the installed CLI and with the preloaded one:
    [(exit code, stdout, stderr), ...] in that order, each in a directory of its own ($PWD)."""
    answers = []
    for installed in (True, False):
        work = tmp_path / ("installed" if installed else "preloaded")
        work.mkdir(parents=True)
        env = script_env({**moto.environment(), "_PGBIN": "/nonexistent"}, installed_aws=installed)
        result = subprocess.run(["/bin/sh", "-c", shell], env=env, cwd=work, capture_output=True, text=True, timeout=120)
        answers.append((result.returncode, result.stdout, result.stderr.replace(str(work), "$PWD")))
    return answers


def preloaded_commands():
    """The commands the preloaded AWS CLI runs now: the processes forked from its server (their
    command line is the server's), the server left out."""
    server = aws_cli_server()
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and str(server.socket) in (entry / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(entry.name))
        except OSError:
            continue
    return sorted(set(found) - {server.process.pid})
