"""Renders earlier releases of this program, for the transition tests.

    venv/bin/python tests/data/renderings/make.py df6eeca ca26037

For each commit: its tree is taken with `git archive` into a temporary
directory, its `__main__.py` is run under the test harness's mocks (the
harness of the current checkout, with the old tree first on sys.path), for the
three stack shapes of `tests/data/stable_urns.json` (dev, acme,
minio-external), and every registration is written to `<commit>.json` here.
`SHA256SUMS` holds the files' hashes; the transition tests refuse a file
whose hash differs (renderings are made by this script, never edited).

Each RandomId's value is a hash of its inputs (harness.Mocks.ids_from_inputs),
as the transition tests render. The config of each shape is the one
`transitions.shape_config` gives: the
stable-URN config plus the keys required since (`kubeContext` and, for plain
http, `allowInsecureHttp`), which earlier releases ignore or accept.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent.parent
TESTS = ROOT / "tests"


def render_tree(tree: Path) -> dict:
    """Every shape rendered from the program in `tree` (run in a fresh interpreter)."""
    sys.path[:0] = [str(tree), str(TESTS)]
    from support import harness
    from support import transitions

    # A RandomId's value follows its inputs: a replaced one names its Jobs anew.
    harness.Mocks.ids_from_inputs = True
    renderings = {}
    for shape in transitions.SHAPES:
        stack, config, secrets = transitions.shape_config(shape)
        rendering = harness.render(config, stack=stack, secrets=secrets, main=tree / "__main__.py")
        renderings[shape] = transitions.snapshot(rendering)
    return renderings


def write(commit: str) -> Path:
    full = subprocess.run(["git", "rev-parse", commit], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()
    out = HERE / f"{full[:7]}.json"
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "archive", full], cwd=ROOT, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        # A fresh interpreter: the old tree's `components` must not meet the current one's.
        subprocess.run([sys.executable, __file__, "--tree", tmp, "--out", str(out), "--commit", full], check=True)
    return out


def write_sums() -> None:
    lines = [f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}\n" for path in sorted(HERE.glob("*.json"))]
    (HERE / "SHA256SUMS").write_text("".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("commits", nargs="*", help="commits to render (any git revision)")
    parser.add_argument("--tree", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--commit", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tree:
        data = {"commit": args.commit, "shapes": render_tree(Path(args.tree))}
        Path(args.out).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        return
    if not args.commits:
        parser.error("name at least one commit")
    for commit in args.commits:
        print(f"rendered {commit} -> {write(commit).relative_to(ROOT)}")
    write_sums()


if __name__ == "__main__":
    main()
