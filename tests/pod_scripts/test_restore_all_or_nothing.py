"""restore.sh is all or nothing: whatever goes wrong (a truncated or damaged archive, a lock it
cannot get, the process killed), the database is left exactly as it was and the script exits
non-zero; connections are allowed again afterwards.

The archives here hold a table without primary key, constraint or index, where partial data
would be committed without complaint, and a keyed one. A failed restore is attempted both
into a database holding other data (forced: the data must survive) and into an empty one
(which must stay empty).
"""

import hashlib
import os
import signal
import subprocess
import time
import uuid

import pytest

from support.backup_scripts import (  # noqa: F401  (fixtures)
    NASTY_PASSWORD,
    accepts_connections,
    database_comment,
    fresh_database,
    run,
    script_env,
    ASSETS,
)

# One text column and no key: any line is a row, so whatever a broken stream puts inside
# its COPY would be taken as data.
KEYLESS_SCHEMA = """
CREATE TABLE events (payload text);
INSERT INTO events (payload) SELECT md5(n::text) || repeat('x', n % 50) FROM generate_series(1, {rows}) AS n;
CREATE TABLE tags (id serial PRIMARY KEY, name text UNIQUE);
INSERT INTO tags (name) SELECT 'tag ' || n FROM generate_series(1, 200) AS n;
"""
CONTENT = """
SELECT string_agg(table_name, ',' ORDER BY table_name) FROM information_schema.tables WHERE table_schema = 'public';
"""


def content(postgres, database):
    """Every table, and the rows of each (enough to see a partial restore)."""
    tables = postgres.admin(CONTENT, database["PGDATABASE"])
    rows = {}
    for table in filter(None, tables.split(",")):
        rows[table] = postgres.admin(f"SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM {table} t",
                                     database["PGDATABASE"])
    return tables, rows


@pytest.fixture(scope="module")
def archive(postgres, tmp_path_factory):
    """A dump (gzip level 1, as backup.sh makes them) of a keyless one-column table of 30,000 rows
    and a keyed one."""
    name = f"source_{uuid.uuid4().hex[:8]}"
    source = postgres.create_database(name, name, NASTY_PASSWORD)
    postgres.admin(KEYLESS_SCHEMA.format(rows=30000), name)
    path = tmp_path_factory.mktemp("archive") / "source.dump"
    env = script_env({"_PGBIN": str(postgres.bindir), **source})
    subprocess.run(["pg_dump", "--format=custom", "--compress=1", f"--file={path}"], env=env, check=True)
    return path.read_bytes(), content(postgres, source)


def other_data(postgres):
    """A database that holds something else (the restore is forced onto it)."""
    target = fresh_database(postgres)
    postgres.admin("CREATE TABLE events (payload text); INSERT INTO events (payload) VALUES ('kept');"
                   "CREATE TABLE notes (body text); INSERT INTO notes VALUES ('also kept');", target["PGDATABASE"])
    return target


def restore_step(postgres, target, body, tmp_path, expected_sha256=None, **extra):
    """The restore step of the Job on `body` (as the fetch step leaves it)."""
    work = tmp_path / f"restore-{uuid.uuid4().hex[:6]}"
    work.mkdir()
    (work / "restore.dump").write_bytes(body)
    if expected_sha256:
        (work / "expected-sha256").write_text(expected_sha256 + "\n")
    env = {"_PGBIN": str(postgres.bindir), **target}
    return run("restore.sh", env, RESTORE_STEP="restore", RESTORE_DIR=work, RESTORE_FROM="latest", RESTORE_REQUEST="r1",
               RESTORE_FORCE="true", **extra)


def assert_left_as_it_was(postgres, target, before, result):
    assert result.returncode != 0, result.stdout
    assert content(postgres, target) == before
    assert database_comment(postgres, target) == ""
    assert accepts_connections(postgres, target)


def test_the_archive_restores_whole(postgres, archive, tmp_path):
    body, expected = archive
    for target in (fresh_database(postgres), other_data(postgres)):
        result = restore_step(postgres, target, body, tmp_path, hashlib.sha256(body).hexdigest())
        assert result.returncode == 0, result.stderr
        tables, rows = content(postgres, target)
        # Forced onto the other database: its own extra table stays (pg_restore --clean drops
        # what the archive holds), the archive's tables are the archive's.
        assert {t: rows[t] for t in expected[1]} == expected[1]
        assert accepts_connections(postgres, target)


def truncation_points(size):
    return sorted({*(size * k // 13 for k in range(1, 13)), size - 1, size - 17, size - 300})


@pytest.mark.parametrize("into", ["other data", "empty"])
def test_a_truncated_archive_changes_nothing_wherever_it_ends(postgres, archive, tmp_path, into):
    body, _ = archive
    target = other_data(postgres) if into == "other data" else fresh_database(postgres)
    before = content(postgres, target)
    points = truncation_points(len(body))
    assert len(points) >= 12
    for point in points:
        # Without a checksum to compare (a legacy dump): only pg_restore can tell.
        result = restore_step(postgres, target, body[:point], tmp_path)
        assert_left_as_it_was(postgres, target, before, result)


@pytest.mark.parametrize("where", [0.2, 0.55, 0.9])
def test_a_damaged_archive_changes_nothing(postgres, archive, tmp_path, where):
    body, _ = archive
    position = int(len(body) * where)
    damaged = body[:position] + bytes([body[position] ^ 0x5A]) + body[position + 1:]
    target = other_data(postgres)
    before = content(postgres, target)
    # With the backup's checksum (every manifest has one): refused whatever the byte.
    result = restore_step(postgres, target, damaged, tmp_path, hashlib.sha256(body).hexdigest())
    assert_left_as_it_was(postgres, target, before, result)
    assert "SHA-256" in result.stderr or "pg_restore" in result.stderr
    # Without one (a legacy dump): the compressed data's own checks fail, the restore too.
    if where > 0.5:
        result = restore_step(postgres, target, damaged, tmp_path)
        assert_left_as_it_was(postgres, target, before, result)


def test_a_restore_ends_the_other_sessions_and_closes_the_database_meanwhile(postgres, archive, tmp_path):
    """A live workspace: CVAT holds a transaction open on a table the restore drops. The restore
    ends that session (no Kubernetes API needed) instead of waiting for it."""
    body, expected = archive
    target = other_data(postgres)
    env = script_env({"_PGBIN": str(postgres.bindir), **target})
    holder = subprocess.Popen(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=env, text=True)
    holder.stdin.write("BEGIN; LOCK TABLE events IN ACCESS SHARE MODE; SELECT 'locked';\n")
    holder.stdin.flush()
    assert holder.stdout.readline().strip() == "locked"
    started = time.monotonic()
    result = restore_step(postgres, target, body, tmp_path, hashlib.sha256(body).hexdigest())
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 60
    assert "1 other session(s) ended" in result.stdout
    assert {t: content(postgres, target)[1][t] for t in expected[1]} == expected[1]
    # Its session was ended: the next statement does not run.
    holder.stdin.write("SELECT 'still there';\n")
    holder.stdin.close()
    assert holder.wait(timeout=10) != 0
    assert "still there" not in holder.stdout.read()
    assert accepts_connections(postgres, target)


def test_a_lock_it_cannot_get_fails_the_restore_instead_of_hanging(postgres, archive, tmp_path):
    """A transaction the restore cannot end (here in another database) holds a lock it needs:
    lock_timeout makes it fail, rolled back, instead of blocking until the Job's deadline."""
    body, _ = archive
    target = other_data(postgres)
    before = content(postgres, target)
    env = script_env({"_PGBIN": str(postgres.bindir), **target, "PGDATABASE": "postgres"})
    holder = subprocess.Popen(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=env, text=True)
    holder.stdin.write(f'BEGIN; COMMENT ON DATABASE "{target["PGDATABASE"]}" IS \'held\'; SELECT \'locked\';\n')
    holder.stdin.flush()
    assert holder.stdout.readline().strip() == "locked"
    try:
        started = time.monotonic()
        result = restore_step(postgres, target, body, tmp_path, hashlib.sha256(body).hexdigest(), RESTORE_LOCK_TIMEOUT="2s")
        assert time.monotonic() - started < 60
        assert "lock timeout" in result.stderr
    finally:
        holder.stdin.write("ROLLBACK;\n")
        holder.stdin.close()
        holder.wait(timeout=10)
    assert_left_as_it_was(postgres, target, before, result)


def test_a_killed_restore_changes_nothing_and_the_next_run_opens_the_database_again(postgres, tmp_path):
    name = f"big_{uuid.uuid4().hex[:8]}"
    source = postgres.create_database(name, name, NASTY_PASSWORD)
    postgres.admin(KEYLESS_SCHEMA.format(rows=400000), name)
    dump = tmp_path / "big.dump"
    subprocess.run(["pg_dump", "--format=custom", "--compress=1", f"--file={dump}"],
                   env=script_env({"_PGBIN": str(postgres.bindir), **source}), check=True)
    target = other_data(postgres)
    before = content(postgres, target)
    work = tmp_path / "work"
    work.mkdir()
    (work / "restore.dump").write_bytes(dump.read_bytes())
    env = script_env({"_PGBIN": str(postgres.bindir), **target}, RESTORE_STEP="restore", RESTORE_DIR=work,
                     RESTORE_FROM="latest", RESTORE_REQUEST="r1", RESTORE_FORCE="true")
    process = subprocess.Popen(["/bin/sh", str(ASSETS / "restore.sh")], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    # Killed inside the transaction, in the middle of the keyless table's data.
    deadline = time.monotonic() + 60
    while postgres.admin("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'labeling-restore%' "
                         "AND query LIKE 'COPY public.events%'") != "1":
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    # Left closed by the killed run...
    assert not accepts_connections(postgres, target)
    # ... and opened again by the next one (here its first step), unchanged.
    check = run("restore.sh", {"_PGBIN": str(postgres.bindir), **target}, RESTORE_STEP="check", RESTORE_DIR=work,
                RESTORE_FROM="latest", RESTORE_REQUEST="r1", RESTORE_FORCE="true")
    assert check.returncode == 0, check.stderr
    assert "accepts connections again" in check.stdout
    assert accepts_connections(postgres, target)
    assert content(postgres, target) == before
    assert database_comment(postgres, target) == ""
