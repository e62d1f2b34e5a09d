"""Every mistake a user can make ends with one `error: ...` line and a non-zero exit, never a traceback."""

import os
import subprocess
import sys

import pytest
from support.audit_exports import Image, coco_json, images_xml, video_xml, zipped
from support.audit_exports import BILLION_LAUGHS

from audit.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_module(*args, cwd):
    """`python -m audit ARGS` as a user runs it."""
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": ROOT, "MPLCONFIGDIR": str(cwd)}
    return subprocess.run([sys.executable, "-m", "audit", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_the_module_command_reports_a_missing_file_in_one_line(tmp_path):
    result = run_module("report", "missing.zip", "--out", "out", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == "error: missing.zip: no such file\n"
    assert result.stdout == ""


def test_the_module_command_refuses_hostile_xml_without_a_traceback(tmp_path):
    (tmp_path / "evil.xml").write_bytes(BILLION_LAUGHS)
    result = run_module("sample", "evil.xml", "--size", "3", "--out", "list.csv", cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: evil.xml: the XML declares a DTD") and result.stderr.count("\n") == 1
    assert not (tmp_path / "list.csv").exists()


def good_export(tmp_path):
    path = tmp_path / "good.xml"
    path.write_bytes(images_xml([Image("a.jpg", tags=[("car", {"lighting": "day"})])], attributes={"lighting": ["day", "night"]}))
    return str(path)


def cases(tmp_path):
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04garbage")
    (tmp_path / "photo.zip").write_bytes(zipped({"images/a.jpg": b"\xff\xd8\xff"}))
    (tmp_path / "coco.json").write_bytes(coco_json([Image("a.jpg", shapes=[("car", {"lighting": "day"})])]))
    (tmp_path / "video.xml").write_bytes(video_xml([{"id": 0, "label": "car", "boxes": [(0, False, {"lighting": "day"})]}]))
    (tmp_path / "two.yaml").write_text("projects:\n- {name: a, conditions: {x: [1a]}}\n- {name: b, conditions: {x: [1b]}}\n")
    (tmp_path / "blocker").write_text("a file where a directory is wanted")
    (tmp_path / "absent.yaml").write_text("projects:\n- {name: a, conditions: {lighting: [day, night], weather: [rain]}}\n")
    good = good_export(tmp_path)
    t = str(tmp_path)
    return [
        (["report", f"{t}/bad.zip", "--out", f"{t}/o"], "not a readable zip"),
        (["report", f"{t}/photo.zip", "--out", f"{t}/o"], "unknown format"),
        (["report", f"{t}/coco.json", "--out", f"{t}/o"], "--per-object"),
        (["report", f"{t}/video.xml", "--out", f"{t}/o"], "the exports hold no item"),
        (["report", "--out", f"{t}/o"], "no export given"),
        (["report", "--url", "http://127.0.0.1:9", "--out", f"{t}/o"], "--url needs --user and --project"),
        (["report", good, "--user", "me", "--out", f"{t}/o"], "--user and --org only make sense with --url"),
        (["report", good, "--schema", f"{t}/two.yaml", "--out", f"{t}/o"], "pick one with --project"),
        (["report", good, "--schema", f"{t}/none.yaml", "--out", f"{t}/o"], "cannot read the schema"),
        (["report", good, "--schema", f"{t}/absent.yaml", "--out", f"{t}/o"], "the schema's attribute 'weather' is not in"),
        (["report", good, "--multi-label", "--per-object", "--out", f"{t}/o"], "--multi-label and --per-object"),
        # A tags-only export in per-object mode: it said "hold no item (0 frames without a tag, 0 with several)".
        (["report", good, "--per-object", "--out", f"{t}/o"], "no object (no shape or track with a label)"),
        (["report", good, "--per-object", "--out", f"{t}/o"], "try without --per-object"),
        (["report", good, "--out", f"{t}/blocker/out"], "blocker"),
        (["split", f"{t}/coco.json", "--per-object", "--per-cell", "2", "--out", f"{t}/m.csv"], "nothing to balance"),
        (["errors", good, "--predictions", f"{t}/none.csv", "--out", f"{t}/o"], "cannot read the predictions"),
    ]


def test_user_mistakes_end_with_one_error_line(tmp_path, capsys):
    for argv, message in cases(tmp_path):
        code = main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 1, argv
        assert err and err[-1].startswith("error: ") and message in err[-1], (argv, err)
        assert all(line.startswith(("error: ", "note: ")) for line in err), (argv, err)


@pytest.mark.parametrize(
    "argv",
    [
        ["split", "x.xml", "--out", "m.csv"],  # neither --per-cell nor --size
        ["split", "x.xml", "--per-cell", "2", "--size", "9", "--out", "m.csv"],
        ["sample", "x.xml", "--size", "0", "--out", "l.csv"],
        ["report", "x.xml", "--out", "o", "--alpha", "2"],
        ["report", "x.xml", "--out", "o", "--format", "YOLO 1.1"],
    ],
)
def test_malformed_command_lines_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert "error:" in capsys.readouterr().err
