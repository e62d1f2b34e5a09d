"""Benchmark: peak memory of the audit on large exports (goal: under 500 MiB for a 200 MB export).

Writes exports of `--size-mb` megabytes (default 200) shaped like CVAT's, one
per `--shape` (default: all three):
  images  CVAT for images 1.1: images of one tag each with three attributes,
          about 330 bytes an image (200 MB: about 650,000 images), tag mode
  shapes  CVAT for images 1.1: a single image holding one box after another,
          about 125 bytes a box (200 MB: about 1.6 million), per-object mode
  coco    COCO 1.0 instances JSON: boxes and polygons with attributes, about
          255 bytes an annotation (200 MB: about 680,000), per-object mode
then runs `python -m audit report EXPORT --out DIR` on each, as a user
would, in a process of its own, and prints that process's peak resident
memory (Linux's VmHWM, read by the process as it exits: the interpreter,
numpy, scipy and matplotlib included, about 140 MiB of it before any export
is read). Exits 1 when a
peak passes `--limit-mib` (default 500) or the command fails. The export is
read with the default --max-unpacked-mb when it fits, so the default cap is
checked too.

    venv/bin/python benchmarks/audit_memory.py [--size-mb 200] [--shape images] [--limit-mib 500]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from audit.archive import DEFAULT_MAX_UNPACKED_BYTES  # noqa: E402
from audit_exports import write_large_coco, write_large_xml  # noqa: E402

LIMIT_MIB = 500
SHAPES = {
    "images": ("annotations.xml", lambda path, size: write_large_xml(path, size, "images"), []),
    "shapes": ("annotations.xml", lambda path, size: write_large_xml(path, size, "shapes"), ["--per-object"]),
    "coco": ("instances_default.json", write_large_coco, ["--per-object"]),
}


# Runs the audit as `python -m audit` does, and writes the process's peak resident memory (VmHWM,
# in KiB) to the file named first when it exits. ru_maxrss from wait4() would not do: Linux carries
# the parent's high-water mark over into a child at fork and exec, so a large parent (pytest) would
# be counted as the audit's peak.
PROBE = """
import atexit, runpy, sys
peak_file = sys.argv.pop(1)
def record():
    with open("/proc/self/status") as status:
        peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(peak_file, "w") as out:
        out.write(peak)
atexit.register(record)
runpy.run_module("audit", run_name="__main__", alter_sys=True)
"""


def peak_of(arguments: list[str], cwd: Path) -> tuple[int, int, str]:
    """Run `python -m audit ARGUMENTS`; its exit status, its peak resident memory in bytes, and its stderr."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLCONFIGDIR=str(cwd))
    peak_file = cwd / "peak.txt"
    command = [sys.executable, "-c", PROBE, str(peak_file), *arguments]
    result = subprocess.run(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    peak = int(peak_file.read_text()) * 1024 if peak_file.exists() else 0
    return result.returncode, peak, result.stderr.decode("utf-8", "replace")


def measure(shape: str, size_mb: float, limit_mib: float, scratch: Path) -> bool:
    """Write the export of `shape`, run the report on it, print the peak; True when within the limit."""
    name, write, options = SHAPES[shape]
    directory = scratch / shape
    directory.mkdir()
    export = directory / name
    started = time.perf_counter()
    count = write(export, int(size_mb * 1e6))
    size = export.stat().st_size
    arguments = ["report", str(export), "--out", str(directory / "out"), *options]
    if size > DEFAULT_MAX_UNPACKED_BYTES:
        arguments += ["--max-unpacked-mb", str(size // 2**20 + 1)]
    status, peak, stderr = peak_of(arguments, directory)
    export.unlink()
    seconds = time.perf_counter() - started
    unit = "images" if shape == "images" else "objects"
    print(f"{shape:<7} {size / 1e6:8.1f} MB, {count:>9,} {unit:<8} peak RSS {peak / 2**20:7.1f} MiB  ({seconds:.0f} s)", end="  ")
    if status != 0:
        print(f"FAILED: the audit exited with status {status}: {(stderr.strip().splitlines() or [''])[-1]}")
        return False
    if peak > limit_mib * 2**20:
        print(f"OVER {limit_mib:g} MiB")
        return False
    print("ok")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=float, default=200, help="size of each export in MB (default: %(default)s)")
    parser.add_argument(
        "--shape", choices=sorted(SHAPES), action="append", help="export shape to measure, repeatable (default: all)"
    )
    parser.add_argument("--limit-mib", type=float, default=LIMIT_MIB, help="largest peak allowed (default: %(default)s)")
    args = parser.parse_args(argv)
    print(f"default --max-unpacked-mb: {DEFAULT_MAX_UNPACKED_BYTES // 2**20}; limit: {args.limit_mib:g} MiB")
    with tempfile.TemporaryDirectory(prefix="audit-memory-") as scratch:
        results = [measure(shape, args.size_mb, args.limit_mib, Path(scratch)) for shape in args.shape or list(SHAPES)]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
