"""Benchmark: media inventory throughput against a bare boto3 listing.

Fills a bucket of a local S3 server with `--objects` keys (default 20,000: a
mix of images, videos and other files in nested prefixes), then times in one
run, alternating, `--rounds` times:
  inventory  components.inventory.count_bucket (classifies and sums every object)
  bare       a boto3 list_objects_v2 paginator loop that only counts keys
and prints objects per second of each and their ratio. Exits 1 when the
inventory reaches less than 0.8x the bare loop's throughput (or `--limit`).

    venv/bin/python benchmarks/dataset_inventory.py     # the figures of docs/benchmarks.md
    venv/bin/python benchmarks/dataset_inventory.py [--objects 20000] [--rounds 3] [--limit 0.8]

It needs moto's server (requirements-test.txt). At the default size, filling the
bucket takes most of the run: about 2 minutes on 2 loaded cores.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from components.inventory import count_bucket  # noqa: E402
from support.servers import MotoServer  # noqa: E402

LIMIT = 0.8
EXTENSIONS = ("jpg", "JPEG", "png", "tif", "webp", "mp4", "mov", "txt", "json", "svg")


def bare_count(client, bucket: str) -> int:
    """The baseline: page through the bucket and count keys, nothing else."""
    count = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, PaginationConfig={"PageSize": 1000}):
        count += len(page.get("Contents", ()))
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="The figures of docs/benchmarks.md: venv/bin/python benchmarks/dataset_inventory.py",
    )
    parser.add_argument("--objects", type=int, default=20_000, help="objects in the bucket (default 20000)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each side, alternating (default 3)")
    parser.add_argument("--limit", type=float, default=LIMIT, help=f"smallest ratio allowed (default {LIMIT})")
    args = parser.parse_args(argv)

    server = MotoServer()
    try:
        client = server.client()
        bucket = "inventory-benchmark"
        client.create_bucket(Bucket=bucket)
        keys = [f"set-{i % 7}/part-{i // 1000:03d}/item-{i:06d}.{EXTENSIONS[i % len(EXTENSIONS)]}" for i in range(args.objects)]
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda key: client.put_object(Bucket=bucket, Key=key, Body=b"x" * 64), keys))

        times: dict[str, list[float]] = {"inventory": [], "bare": []}
        def run_bare() -> None:
            started = time.perf_counter()
            counted = bare_count(client, bucket)
            times["bare"].append(time.perf_counter() - started)
            assert counted == args.objects

        def run_inventory() -> dict:
            started = time.perf_counter()
            result = count_bucket(client, bucket, limit=10 * args.objects)
            times["inventory"].append(time.perf_counter() - started)
            assert result["images"] + result["videos"] + result["ignored"] == args.objects
            return result

        for round_ in range(args.rounds):
            # Alternate which goes first, so that warm caches favour neither.
            if round_ % 2:
                counts = run_inventory()
                run_bare()
            else:
                run_bare()
                counts = run_inventory()

        rates = {name: args.objects / statistics.median(values) for name, values in times.items()}
        print(f"objects: {args.objects}, rounds: {args.rounds}")
        print(f"counts: {counts}")
        for name, values in times.items():
            print(f"{name:<10} {rates[name]:>10.0f} objects/s   runs: {' '.join(f'{v:.2f}s' for v in values)}")
        ratio = rates["inventory"] / rates["bare"]
        print(f"ratio inventory / bare paginator: {ratio:.2f}x  {'ok' if ratio >= args.limit else f'UNDER {args.limit}x'}")
        return 0 if ratio >= args.limit else 1
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
