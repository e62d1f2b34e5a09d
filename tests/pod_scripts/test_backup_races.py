"""Two backups at once lose nothing: `backups now` or the pre-upgrade Job may run beside the
CronJob, in the same second.

The runs' clocks stand still at the same second (tests/support/fake_clock.py), so only the random
suffix of their stamps tells them apart; their S3 traffic goes through the fault proxy,
which applies each class of fault once on every code path it applies to (whichever run
comes first gets it). Then: each run either completed a good backup or left none of its
objects visible, the older good backups that retention must keep are there, and `latest`
is the newest good backup by the server's time.

And a run that draws a stamp another run has (forced: the fake `od` gives both the same
suffix) stops without deleting or overwriting anything of the other's: final names are
written only where nothing is, and a run deletes only the objects it wrote.
"""

import re
import subprocess
import uuid
from datetime import datetime, timezone

import pytest

from support.fake_clock import clocked, fake_bin
from support.fault_proxy import FaultProxy
from support.backup_scripts import (  # noqa: F401  (fixtures)
    ASSETS,
    MANIFESTS,
    PREFIX,
    assert_nothing_incomplete_is_visible,
    backup_is_good,
    backups,
    database,
    days_ago,
    dump_keys,
    env_for,
    filled,
    filled_dump,
    keys,
    manifest_keys,
    moto,
    put_backup,
    run,
    script_env,
)

# Runs the pod scripts against the real servers (conftest: the tiers).
pytestmark = pytest.mark.integration

# The code paths of backup.sh and the classes of fault that apply to each: (operation, part of the path).
UPLOAD = ("PutObject", "/.incoming/")
COPY = ("CopyObject", "/database/")
MANIFEST = ("PutObject", "/backups/")
HEAD = ("HeadObject", "")
READ = ("GetObject", "")
LIST = ("ListObjectsV2", "")
DELETE_MANY = ("DeleteObjects", "")
DELETE_ONE = ("DeleteObject", "")
PATHS = {
    "truncate": [UPLOAD, MANIFEST],
    "corrupt": [UPLOAD, MANIFEST],
    "error-after": [UPLOAD, COPY, MANIFEST, DELETE_MANY, DELETE_ONE],
    "error": [UPLOAD, COPY, MANIFEST, HEAD, READ, LIST, DELETE_MANY, DELETE_ONE],
    "drop": [UPLOAD, COPY, MANIFEST, HEAD, READ, LIST, DELETE_MANY, DELETE_ONE],
    "short": [COPY, HEAD, READ, LIST],
}


@pytest.fixture(scope="module")
def proxy(moto):
    with FaultProxy(moto.url) as proxy_:
        yield proxy_


@pytest.fixture(scope="module")
def clock_bin(tmp_path_factory):
    return fake_bin(tmp_path_factory.mktemp("clock"))


@pytest.fixture
def old_backups(moto, filled_dump, backups):
    """Three good backups older than the retention (1 day), stored 200, 300 and 400 days ago.
    Returns their manifest keys, newest first."""
    stamps = [days_ago(d) for d in (200, 300, 400)]
    for stamp in stamps:
        put_backup(moto, backups["BACKUP_BUCKET"], stamp, filled_dump)
    return [f"{MANIFESTS}{s}.json" for s in stamps]


def start(env):
    return subprocess.Popen(["/bin/sh", str(ASSETS / "backup.sh")], env=script_env(env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def stamp_of_run(stdout):
    return re.search(r"^dump (\S+)\.dump:", stdout, re.M).group(1)


def newest_by_server_time(moto, bucket, manifests):
    """The manifest with the latest LastModified, its stamp breaking ties (the rule of `latest`)."""
    listed = {o["Key"]: o["LastModified"] for o in moto.shared_client().list_objects_v2(Bucket=bucket, Prefix="acme/backups/")["Contents"]}
    return max(manifests, key=lambda k: (listed[k], k))


def latest_choice(moto, backups, tmp_path):
    work = tmp_path / f"fetch-{uuid.uuid4().hex[:6]}"
    work.mkdir()
    result = run("restore.sh", {**moto.environment(), **backups, "_PGBIN": "/nonexistent"}, RESTORE_STEP="fetch", RESTORE_DIR=work,
                 RESTORE_FROM="latest")
    assert result.returncode == 0, result.stderr
    return (work / "source").read_text().strip()


@pytest.mark.parametrize("fault", sorted(PATHS))
def test_two_runs_in_the_same_second_lose_nothing(proxy, clock_bin, postgres, moto, filled, backups, old_backups, fault, tmp_path):
    bucket = backups["BACKUP_BUCKET"]
    injected = [proxy.inject(fault, operation=operation, path_contains=where, times=1) for operation, where in PATHS[fault]]
    second = datetime.now(timezone.utc).replace(microsecond=0)
    env = clocked(env_for(postgres, moto, filled, backups, RETENTION_DAYS=1, AWS_MAX_ATTEMPTS=2, AWS_RETRY_MODE="standard"),
                  clock_bin, frozen=second)
    try:
        runs = [start(proxy.environment(env)) for _ in range(2)]
        results = [process.communicate(timeout=300) + (process.returncode,) for process in runs]
    finally:
        proxy.clear()
    assert any(f.hits for f in injected), "no fault applied"
    stamps = [stamp_of_run(out) for out, _, _ in results]
    # The same second, told apart by the suffix.
    assert stamps[0][:16] == stamps[1][:16] == second.strftime("%Y%m%dT%H%M%SZ") and stamps[0] != stamps[1], stamps

    manifests = manifest_keys(moto, bucket)
    made = []
    for stamp, (out, err, code) in zip(stamps, results):
        key = f"{MANIFESTS}{stamp}.json"
        if f"backup {stamp} complete" in out:
            assert backup_is_good(moto, bucket, key), (fault, err)
            made.append(key)
        else:
            # Failed before its manifest: nothing of it is visible, and it says why.
            assert code != 0 and "error:" in err, (fault, out, err)
            assert key not in manifests and f"{PREFIX}{stamp}.dump" not in dump_keys(moto, bucket), (fault, err)
    assert_nothing_incomplete_is_visible(moto, bucket)
    # Each run kept its own backup and the newest good old ones (the newest 3 good are kept):
    # the two newest old backups are there whatever happened.
    for key in old_backups[:2]:
        assert backup_is_good(moto, bucket, key), f"{key} was lost ({fault})"
    assert set(manifests) == set(made) | set(old_backups[:2]) | ({old_backups[2]} & set(manifests))
    if made:
        assert latest_choice(moto, backups, tmp_path) == f"s3://{bucket}/{newest_by_server_time(moto, bucket, made)}"


def test_two_runs_in_the_same_second_without_faults_both_complete(proxy, clock_bin, postgres, moto, filled, backups, old_backups, tmp_path):
    bucket = backups["BACKUP_BUCKET"]
    second = datetime.now(timezone.utc).replace(microsecond=0)
    env = clocked(env_for(postgres, moto, filled, backups, RETENTION_DAYS=1), clock_bin, frozen=second)
    runs = [start(proxy.environment(env)) for _ in range(2)]
    results = [process.communicate(timeout=300) + (process.returncode,) for process in runs]
    assert [code for _, _, code in results] == [0, 0], [err for _, err, _ in results]
    stamps = [stamp_of_run(out) for out, _, _ in results]
    assert stamps[0][:16] == stamps[1][:16] and stamps[0] != stamps[1], stamps  # two backups, not one written twice
    made = [f"{MANIFESTS}{s}.json" for s in stamps]
    assert all(backup_is_good(moto, bucket, key) for key in made + old_backups[:2])
    assert_nothing_incomplete_is_visible(moto, bucket)
    assert keys(moto, bucket, PREFIX + ".incoming/") == []
    assert latest_choice(moto, backups, tmp_path) == f"s3://{bucket}/{newest_by_server_time(moto, bucket, made)}"


def objects(moto, bucket):
    """Every object and what it holds (ETag, metadata): what must not change."""
    s3 = moto.shared_client()
    found = {}
    for key in keys(moto, bucket):
        head = s3.head_object(Bucket=bucket, Key=key)
        found[key] = (head["ETag"], head["ContentLength"], head.get("Metadata"), head["LastModified"])
    return found


def test_a_run_that_draws_a_taken_stamp_leaves_the_other_backup_alone(proxy, clock_bin, postgres, moto, filled, backups, tmp_path):
    """Backup A completes at stamp T; backup B starts in the same second, draws the same suffix
    and its manifest upload would fail (the issue's race, which deleted A's manifest and dump):
    B stops before it writes any final name, and A's backup stays exactly as it was."""
    bucket = backups["BACKUP_BUCKET"]
    second = datetime.now(timezone.utc).replace(microsecond=0)
    env = clocked(env_for(postgres, moto, filled, backups, RETENTION_DAYS=30, AWS_MAX_ATTEMPTS=2), clock_bin, frozen=second,
                  random4="0badcafe")
    first = run("backup.sh", env)
    assert first.returncode == 0, first.stderr
    stamp = stamp_of_run(first.stdout)
    assert stamp == second.strftime("%Y%m%dT%H%M%SZ") + "-0badcafe"
    before = objects(moto, bucket)
    assert set(before) == {f"{PREFIX}{stamp}.dump", f"{MANIFESTS}{stamp}.json"}

    postgres.admin("INSERT INTO labels (name) VALUES ('written after A')", filled["PGDATABASE"])
    proxy.inject("error", operation="PutObject", path_contains="/backups/")
    try:
        second_run = run("backup.sh", proxy.environment(env))
    finally:
        proxy.clear()
    assert second_run.returncode != 0, second_run.stdout
    assert f"s3://{bucket}/{PREFIX}{stamp}.dump exists already: another backup has the stamp" in second_run.stderr
    assert objects(moto, bucket) == before  # A untouched; B's upload deleted (its own)
    assert backup_is_good(moto, bucket, f"{MANIFESTS}{stamp}.json")


@pytest.mark.parametrize("taken", ["the upload's name", "the manifest's name"])
def test_a_name_another_run_wrote_is_never_deleted(proxy, clock_bin, postgres, moto, filled, backups, taken, tmp_path):
    """The same stamp, and the other run's object sits at a name this run is about to write:
    If-None-Match refuses the write, and the run deletes only what it wrote itself."""
    bucket = backups["BACKUP_BUCKET"]
    second = datetime.now(timezone.utc).replace(microsecond=0)
    stamp = second.strftime("%Y%m%dT%H%M%SZ") + "-5ca1ab1e"
    foreign = f"{PREFIX}.incoming/{stamp}.dump" if taken == "the upload's name" else f"{MANIFESTS}{stamp}.json"
    moto.shared_client().put_object(Bucket=bucket, Key=foreign, Body=b"another run's", Metadata={"backup-run": "another run"})
    before = objects(moto, bucket)
    env = clocked(env_for(postgres, moto, filled, backups, RETENTION_DAYS=30), clock_bin, frozen=second, random4="5ca1ab1e")
    result = run("backup.sh", proxy.environment(env))
    assert result.returncode != 0, result.stdout
    assert f"s3://{bucket}/{foreign} exists already" in result.stderr
    # The other run's object as it was, and nothing of this run left (its upload and copy deleted).
    assert objects(moto, bucket) == before
    # The manifest's name was reached with If-None-Match (no HEAD request before it).
    if taken == "the manifest's name":
        assert [s for s in proxy.requests if s.operation == "PutObject" and s.path.endswith(foreign) and s.status == 412]
