"""Large exports are streamed (issue 15, item 16): memory stays within the goal of 500 MiB for a 200 MB export.

The goal is for the whole command (peak RSS), measured at 200 MB by
benchmarks/audit_memory.py. Of the 500 MiB, about 140 MiB is the interpreter
with numpy, scipy and matplotlib before any export is read (the benchmark's
figure for a tiny export), which leaves 360 MiB for 200 MB of export: 1.8
bytes of memory per byte read. tracemalloc counts what Python allocates,
which is the part that grows with the export, so a 20 MB export may take
360 × 20 / 200 = 36 MiB of it. Measured: about 15 MiB (it was about 88 MiB
when the whole model of each image, every string and dict included, was
kept, and 88 MiB × 10 is the 1.1 GiB the benchmark saw).
"""

import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
from support.audit_exports import write_large_video, write_large_xml
from support.harness import load_benchmark

from audit.archive import DEFAULT_MAX_UNPACKED_BYTES
from audit.dataset import build_dataset
from audit.errors import AuditError
from audit.exports import load_export

ROOT = Path(__file__).resolve().parents[2]
MIB = 2**20
GOAL_MIB, FIXED_MIB, GOAL_EXPORT_MB = 500, 140, 200
PER_EXPORT_MB = (GOAL_MIB - FIXED_MIB) * MIB / GOAL_EXPORT_MB  # bytes of Python heap allowed per MB of export
EXPORT_MB = 20
SHAPES_MB = 5


def traced_peak(function):
    """`function()`'s result and the peak of what Python allocated meanwhile."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = function()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.fixture(scope="module")
def images_export(tmp_path_factory):
    """A 20 MB CVAT for images export: about 66,000 images of one tag each, written once for the module."""
    path = tmp_path_factory.mktemp("large") / "annotations.xml"
    return path, write_large_xml(path, EXPORT_MB * 10**6, "images")


@pytest.fixture(scope="module")
def shapes_export(tmp_path_factory):
    """One image holding about 40,000 boxes (5 MB)."""
    path = tmp_path_factory.mktemp("shapes") / "annotations.xml"
    return path, write_large_xml(path, SHAPES_MB * 10**6, "shapes")


def test_a_20_mb_export_is_read_within_its_share_of_the_memory_goal(images_export):
    path, count = images_export

    def read():
        return build_dataset([load_export(str(path))], False, None)

    dataset, peak = traced_peak(read)
    assert len(dataset.items) == count
    assert peak < EXPORT_MB * PER_EXPORT_MB, f"peak {peak / MIB:.1f} MiB, bound {EXPORT_MB * PER_EXPORT_MB / MIB:.0f} MiB"


def test_shapes_of_one_image_are_dropped_as_they_are_read(shapes_export):
    # Clearing only top-level elements keeps the whole <image>, every box and its attributes, until it ends.
    path, count = shapes_export

    def read():
        return build_dataset([load_export(str(path))], True, None)

    dataset, peak = traced_peak(read)
    assert len(dataset.items) == count and dataset.items[0].id.startswith("crowd.jpg#")
    assert peak < SHAPES_MB * PER_EXPORT_MB, f"peak {peak / MIB:.1f} MiB, bound {SHAPES_MB * PER_EXPORT_MB / MIB:.0f} MiB"


def test_tag_mode_keeps_nothing_of_the_shapes(shapes_export):
    from audit.model import KEEP_TAGS

    path, _ = shapes_export
    export, peak = traced_peak(lambda: load_export(str(path), keep=KEEP_TAGS))
    assert [(frame.name, frame.tags, frame.objects) for frame in export.frames] == [("crowd.jpg", (), ())]
    # The parser's buffers only: nothing grows with the shapes.
    assert peak < 2 * MIB, f"peak {peak / MIB:.1f} MiB"


def test_a_track_is_tallied_as_its_frames_stream_by(tmp_path):
    # Issue 16: a track is one item. Keeping every frame's box until the track ends would grow with the
    # frames; the tally keeps a count per value.
    path = tmp_path / "annotations.xml"
    frames = write_large_video(path, SHAPES_MB * 10**6)
    assert frames > 3000

    def read():
        return build_dataset([load_export(str(path))], True, None)

    dataset, peak = traced_peak(read)
    assert [item.id for item in dataset.items] == [f"task1/clip.mp4#track{number}" for number in range(8)]
    assert peak < 2 * MIB, f"peak {peak / MIB:.1f} MiB"


def test_the_default_unpacked_size_cap_is_what_the_memory_goal_allows(tmp_path):
    assert DEFAULT_MAX_UNPACKED_BYTES == 200 * MIB
    help_text = subprocess.run(
        [sys.executable, "-m", "audit", "report", "--help"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert "(default: 200)" in " ".join(help_text.split())
    big = tmp_path / "annotations.xml"
    with big.open("wb") as file:
        file.truncate(DEFAULT_MAX_UNPACKED_BYTES + 1)
        file.seek(0)
        file.write(b"<annotations>")
    with pytest.raises(AuditError, match="larger than the --max-unpacked-mb limit"):
        load_export(str(big))


def test_the_memory_benchmark_prints_its_peaks_and_enforces_its_limit(capsys):
    benchmark = load_benchmark("audit_memory")
    assert benchmark.main(["--size-mb", "0.5", "--shape", "images", "--shape", "coco", "--limit-mib", "4000"]) == 0
    out = capsys.readouterr().out
    assert "default --max-unpacked-mb: 200" in out
    assert out.count("peak RSS") == 2 and out.count(" ok") == 2
    assert benchmark.main(["--size-mb", "0.5", "--shape", "shapes", "--limit-mib", "1"]) == 1
    assert "OVER 1 MiB" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exited:
        benchmark.main(["--help"])
    assert exited.value.code == 0
