"""backup.sh's dump step waits for the database to be idle (BACKUP_WAIT_IDLE_SECONDS).

The final backup of a pause starts once Pulumi reports CVAT's Deployments scaled to zero,
which it does at once, while their pods are still stopping. With BACKUP_WAIT_IDLE_SECONDS
the dump waits until no other client is connected, and ends the sessions still there when
the time is up. Run against the real PostgreSQL 15 of the test suite; the other clients are
`psql` processes with their own application name.
"""

import subprocess
import time
import uuid

import pytest

from support.backup_scripts import (  # noqa: F401  (fixtures)
    database,
    env_for,
    filled,
    run,
    script_env,
)

# Runs the pod scripts against the real servers (conftest: the tiers).
pytestmark = pytest.mark.integration

LAST_WRITE = "written just before disconnecting"


def dump_env(postgres, database, tmp_path, **extra):
    """The environment of the dump step as the backup Jobs give it (no S3 needed)."""
    return {"_PGBIN": str(postgres.bindir), **database, "BACKUP_STEP": "dump", "BACKUP_DIR": str(tmp_path),
            **{key: str(value) for key, value in extra.items()}}


def client(postgres, database, *statements, database_name=None):
    """Another client of the database (like a CVAT pod): a psql process running `statements`
    one after the other, then disconnecting. Returns it with its application name, once it
    is connected."""
    name = f"client-{uuid.uuid4().hex[:8]}"
    env = script_env({"_PGBIN": str(postgres.bindir), **database}, PGAPPNAME=name)
    if database_name:
        env["PGDATABASE"] = database_name
    command = [str(postgres.bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1"]
    for statement in statements:
        command += ["-c", statement]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while connected(postgres, name) == 0:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{name} did not connect"
        time.sleep(0.05)
    return process, name


def connected(postgres, application_name):
    return int(postgres.admin(f"SELECT count(*) FROM pg_stat_activity WHERE application_name = '{application_name}'"))


def the_dump(tmp_path):
    (dump,) = tmp_path.glob("*.dump")
    return dump


def labels_in(postgres, dump):
    """The rows of the table `labels` in a dump, as pg_restore writes them."""
    result = subprocess.run([str(postgres.bindir / "pg_restore"), "--data-only", "--table=labels", "--file=-", str(dump)],
                            capture_output=True, text=True, check=True)
    return result.stdout


def lines_with(output, text):
    return [number for number, line in enumerate(output.splitlines()) if text in line]


def stop(process):
    if process.poll() is None:
        process.kill()
    process.communicate(timeout=10)


def test_the_dump_starts_once_the_last_client_disconnected(postgres, filled, tmp_path):
    # A client that writes once more after 3 s, then disconnects: the dump must hold that write.
    process, name = client(postgres, filled, "SELECT pg_sleep(3)", f"INSERT INTO labels (name) VALUES ('{LAST_WRITE}')")
    started = time.monotonic()
    try:
        result = run("backup.sh", dump_env(postgres, filled, tmp_path, BACKUP_WAIT_IDLE_SECONDS=30), timeout=60)
        elapsed = time.monotonic() - started
        assert result.returncode == 0, result.stderr
        assert process.wait(timeout=1) == 0, process.stderr.read()
    finally:
        stop(process)
    out = result.stdout
    (waiting,) = lines_with(out, "waiting up to 30s for 1 other session(s)")
    assert name in out.splitlines()[waiting]
    (idle,) = lines_with(out, "no other session on database")
    (dumping,) = lines_with(out, "dumping database")
    assert waiting < idle < dumping
    assert 2.5 < elapsed < 15
    assert LAST_WRITE in labels_in(postgres, the_dump(tmp_path))
    assert "entries" in out and not list(tmp_path.glob("*.partial"))


def test_a_client_that_never_leaves_is_ended_and_the_dump_succeeds(postgres, filled, tmp_path):
    # A stale session in a transaction that locks a table pg_dump must read: without being
    # ended, it would block the dump until the Job's deadline.
    process, name = client(postgres, filled, "BEGIN; LOCK TABLE labels IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(600)")
    pid = postgres.admin(f"SELECT pid FROM pg_stat_activity WHERE application_name = '{name}'")
    started = time.monotonic()
    try:
        result = run("backup.sh", dump_env(postgres, filled, tmp_path, BACKUP_WAIT_IDLE_SECONDS=4), timeout=60)
        elapsed = time.monotonic() - started
        assert result.returncode == 0, result.stderr
        # Ended by the server, not by the test.
        assert process.wait(timeout=5) != 0
        assert "administrator command" in process.stderr.read()
    finally:
        stop(process)
    out = result.stdout
    ended_lines = lines_with(out, "ended 1 session(s) still on database")
    assert len(ended_lines) == 1, out  # the whole log when it is not so
    (ended,) = ended_lines
    assert f"pid {pid} ({name} from 127.0.0.1)" in out.splitlines()[ended]
    (dumping,) = lines_with(out, "dumping database")
    assert lines_with(out, "waiting up to 4s")[0] < ended < dumping
    assert 4 <= elapsed < 15
    assert connected(postgres, name) == 0
    assert "Straße" in labels_in(postgres, the_dump(tmp_path))


def test_without_the_setting_the_dump_does_not_wait(postgres, filled, tmp_path):
    process, name = client(postgres, filled, "SELECT pg_sleep(3)", f"INSERT INTO labels (name) VALUES ('{LAST_WRITE}')")
    try:
        result = run("backup.sh", dump_env(postgres, filled, tmp_path), timeout=60)
        assert result.returncode == 0, result.stderr
        # The client was still connected when the dump was done.
        assert process.poll() is None and connected(postgres, name) == 1
    finally:
        stop(process)
    assert "waiting" not in result.stdout and "session" not in result.stdout
    assert LAST_WRITE not in labels_in(postgres, the_dump(tmp_path))


def test_clients_of_other_databases_are_not_waited_for(postgres, filled, tmp_path):
    process, name = client(postgres, filled, "SELECT pg_sleep(30)", database_name="postgres")
    started = time.monotonic()
    try:
        result = run("backup.sh", dump_env(postgres, filled, tmp_path, BACKUP_WAIT_IDLE_SECONDS=20), timeout=60)
        assert result.returncode == 0, result.stderr
        assert time.monotonic() - started < 5
        assert process.poll() is None and connected(postgres, name) == 1
    finally:
        stop(process)
    assert "waiting" not in result.stdout and name not in result.stdout
    the_dump(tmp_path)


def test_a_bad_wait_is_refused_before_anything_is_read(postgres, filled, tmp_path):
    # One check of the settings, before anything else: every bad value, each in a directory of its own.
    for number, value in enumerate(["abc", "-1", "1.5", " 5", "07", "3601", "99999"]):
        work = tmp_path / str(number)
        work.mkdir()
        env = dump_env(postgres, filled, work, BACKUP_WAIT_IDLE_SECONDS=value)
        env["PGPORT"] = "1"  # nothing is asked of the database before the settings are checked
        result = run("backup.sh", env, timeout=30)
        assert result.returncode != 0, value
        assert f"BACKUP_WAIT_IDLE_SECONDS must be a whole number of seconds from 0 to 3600 (got '{value}')" in result.stderr
        assert list(work.iterdir()) == [], value


def test_an_unreachable_database_fails_the_wait(postgres, database, tmp_path):
    from support.servers import free_port

    env = dump_env(postgres, database, tmp_path, BACKUP_WAIT_IDLE_SECONDS=30)
    env["PGPORT"] = str(free_port())
    started = time.monotonic()
    result = run("backup.sh", env, timeout=30)
    assert result.returncode != 0
    assert f"cannot connect to database {database['PGDATABASE']} to list its sessions" in result.stderr
    assert time.monotonic() - started < 10
    assert list(tmp_path.iterdir()) == []


def test_the_whole_backup_passes_the_setting_to_the_dump(postgres, moto, filled, tmp_path):
    """BACKUP_STEP=all (dump and upload in one place) validates and waits the same way."""
    from support.backup_scripts import PREFIX

    bucket = f"backups-{uuid.uuid4().hex[:10]}"
    moto.shared_client().create_bucket(Bucket=bucket)
    backups = {"BACKUP_BUCKET": bucket, "BACKUP_PREFIX": PREFIX}
    result = run("backup.sh", env_for(postgres, moto, filled, backups, BACKUP_WAIT_IDLE_SECONDS="soon"))
    assert result.returncode != 0 and "BACKUP_WAIT_IDLE_SECONDS" in result.stderr
    result = run("backup.sh", env_for(postgres, moto, filled, backups, BACKUP_WAIT_IDLE_SECONDS="5"))
    assert result.returncode == 0, result.stderr
