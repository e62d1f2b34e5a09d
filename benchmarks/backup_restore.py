"""Benchmark: the backup and restore scripts against the bare commands.

Builds a database of about 200 MB in a throwaway PostgreSQL 15, starts a
local S3 server, then times in one run:
  backup   `backup.sh` (dump, full read-back check, upload, size check,
           retention)        vs  `pg_dump --format=custom | aws s3 cp - s3://...`
  restore  `restore.sh` (fetch + checks + single-transaction pg_restore)
                             vs  `aws s3 cp` + `pg_restore`
  restore  the restore step alone (archive already local)
                             vs  bare `pg_restore` of the same file
Each pair runs `--rounds` times, alternating; the medians are compared.
Exits 1 when a script takes more than 1.25x its bare command (`--limit`).

For information it also times the bare pipeline at the script's compression
level (gzip 1): the script dumps, reads back and only then uploads, where the
pipeline streams; that is the price of never uploading an unchecked dump.

    venv/bin/python benchmarks/backup_restore.py [--size-mb 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from servers import MotoServer, PostgresServer  # noqa: E402

ASSETS = ROOT / "components" / "assets"
LIMIT = 1.25


def fill(postgres: PostgresServer, database: str, size_mb: int) -> int:
    """Fills `database` with ~size_mb of realistic rows (text, numbers, some binary); returns its size."""
    postgres.admin(
        """
        CREATE TABLE annotations (
            id bigserial PRIMARY KEY, job_id int NOT NULL, frame int NOT NULL, label text NOT NULL,
            points double precision[] NOT NULL, attributes jsonb NOT NULL, mask bytea);
        CREATE INDEX annotations_job ON annotations (job_id, frame);
        """,
        database,
    )
    rows_per_batch = 50_000
    while True:
        size = int(postgres.admin("SELECT pg_database_size(current_database())", database))
        if size >= size_mb * 1024 * 1024:
            return size
        postgres.admin(
            f"""
            INSERT INTO annotations (job_id, frame, label, points, attributes, mask)
            SELECT n % 97, n % 5000, 'label-' || (n % 40),
                   ARRAY[random() * 1920, random() * 1080, random() * 1920, random() * 1080],
                   jsonb_build_object('occluded', n % 3 = 0, 'note', md5(n::text)),
                   CASE WHEN n % 10 = 0 THEN decode(md5(random()::text) || md5(random()::text), 'hex') END
            FROM generate_series(1, {rows_per_batch}) AS n
            """,
            database,
        )


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=200, help="database size to build (default 200)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each command (default 3)")
    parser.add_argument("--limit", type=float, default=LIMIT, help=f"largest ratio allowed (default {LIMIT})")
    args = parser.parse_args(argv)

    postgres, moto = PostgresServer(), MotoServer()
    work = Path(tempfile.mkdtemp(prefix="labeling-bench-"))
    try:
        password = "bench-password"
        source = postgres.create_database("source", "owner", password)
        size = fill(postgres, "source", args.size_mb)
        bucket = "benchmark-backups"
        moto.client().create_bucket(Bucket=bucket)
        base = {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{postgres.bindir}{os.pathsep}{os.environ['PATH']}",
            "HOME": str(work),
            **moto.environment(),
            "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
            "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
        }
        backup_env = {**base, **source, "BACKUP_BUCKET": bucket, "BACKUP_PREFIX": "bench/database/", "RETENTION_DAYS": "30"}
        bare_backup = f"pg_dump --format=custom --no-password | aws s3 cp - s3://{bucket}/bare/bare.dump --only-show-errors"

        bare_same_level = bare_backup.replace("pg_dump --format=custom", "pg_dump --format=custom --compress=1")
        times: dict[str, list[float]] = {
            name: []
            for name in ("backup", "bare backup", "bare backup gzip 1", "restore", "bare restore", "restore step", "bare pg_restore")
        }
        for round_ in range(args.rounds):
            times["bare backup"].append(timed(["/bin/sh", "-c", bare_backup], backup_env))
            times["bare backup gzip 1"].append(timed(["/bin/sh", "-c", bare_same_level], backup_env))
            times["backup"].append(timed(["/bin/sh", str(ASSETS / "backup.sh")], backup_env))
            key = sorted(o["Key"] for o in moto.client().list_objects_v2(Bucket=bucket, Prefix="bench/database/")["Contents"])[-1]
            local = work / "local.dump"
            moto.client().download_file(bucket, key, str(local))

            def fresh() -> dict[str, str]:
                name = f"target_{uuid.uuid4().hex[:8]}"
                return postgres.create_database(name, name, password)

            bare_restore = f'aws s3 cp "s3://{bucket}/{key}" "{work}/bare.dump" --only-show-errors && pg_restore --no-owner --dbname="$PGDATABASE" "{work}/bare.dump"'
            times["bare restore"].append(timed(["/bin/sh", "-c", bare_restore], {**base, **fresh()}))
            restore_env = {**base, **fresh(), "RESTORE_FROM": key, "BACKUP_BUCKET": bucket, "BACKUP_PREFIX": "bench/database/"}
            times["restore"].append(timed(["/bin/sh", str(ASSETS / "restore.sh")], restore_env))
            times["bare pg_restore"].append(
                timed(["/bin/sh", "-c", f'pg_restore --no-owner --dbname="$PGDATABASE" "{local}"'], {**base, **fresh()})
            )
            step_env = {**base, **fresh(), "RESTORE_FROM": key, "RESTORE_STEP": "restore", "RESTORE_DIR": str(work / "step")}
            (work / "step").mkdir(exist_ok=True)
            (work / "step" / "restore.dump").write_bytes(local.read_bytes())
            times["restore step"].append(timed(["/bin/sh", str(ASSETS / "restore.sh")], step_env))
            print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)

        dump_size = (work / "local.dump").stat().st_size
        print(f"database: {size / 2**20:.0f} MiB on disk, dump: {dump_size / 2**20:.0f} MiB, rounds: {args.rounds}")
        print(f"{'command':<18}{'median s':>10}  runs")
        medians = {name: statistics.median(values) for name, values in times.items()}
        for name, values in times.items():
            print(f"{name:<18}{medians[name]:>10.2f}  {' '.join(f'{v:.2f}' for v in values)}")
        ratios = {
            "backup.sh / pg_dump | aws s3 cp": medians["backup"] / medians["bare backup"],
            "restore.sh / aws s3 cp + pg_restore": medians["restore"] / medians["bare restore"],
            "restore step / pg_restore": medians["restore step"] / medians["bare pg_restore"],
        }
        failed = False
        for name, ratio in ratios.items():
            verdict = "ok" if ratio <= args.limit else f"OVER {args.limit}x"
            failed |= ratio > args.limit
            print(f"ratio {name}: {ratio:.2f}x  {verdict}")
        informative = medians["backup"] / medians["bare backup gzip 1"]
        print(f"for information: backup.sh / the same pipeline at gzip 1: {informative:.2f}x (check before upload)")
        return 1 if failed else 0
    finally:
        postgres.stop()
        moto.stop()
        subprocess.run(["rm", "-rf", str(work)])


if __name__ == "__main__":
    sys.exit(main())
