"""What a workspace asks of the cluster, per size preset.

Renders the development stack (which includes the in-cluster MinIO) under
Pulumi mocks for each size and prints the total CPU and memory requests and
limits of its long-running pods (Deployments and StatefulSets, times their
replicas), and the number of pods. Exits 1 if `small` asks for more than
2 CPU or 4 GiB. The figures come from the manifests, not from a cluster, so they
are exact and do not depend on the machine (a few seconds; no server needed).

    venv/bin/python benchmarks/workspace_size.py     # the figures of docs/architecture.md (Sizes)
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

SMALL_CPU, SMALL_MEMORY = 2.0, 4 * 2**30
_UNITS = {"": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def cpu(quantity: str) -> float:
    """'250m' -> 0.25 cores."""
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def memory(quantity: str) -> float:
    """'768Mi' -> bytes."""
    number, unit = re.match(r"^([0-9.]+)([A-Za-z]*)$", quantity).groups()
    return float(number) * _UNITS[unit]


@dataclass
class Totals:
    """Requests and limits of a workspace's long-running pods."""

    pods: int = 0
    cpu_requests: float = 0.0
    memory_requests: float = 0.0
    memory_limits: float = 0.0
    cpu_limits: float = 0.0


def totals(manifests: list[dict]) -> Totals:
    """Sums the containers of Deployments and StatefulSets, times their replicas."""
    result = Totals()
    for manifest in manifests:
        if manifest.get("kind") not in ("Deployment", "StatefulSet"):
            continue
        replicas = int(manifest["spec"].get("replicas", 1))
        result.pods += replicas
        for container in manifest["spec"]["template"]["spec"]["containers"]:
            resources = container.get("resources", {})
            requests, limits = resources.get("requests", {}), resources.get("limits", {})
            result.cpu_requests += replicas * cpu(requests.get("cpu", "0"))
            result.memory_requests += replicas * memory(requests.get("memory", "0"))
            result.memory_limits += replicas * memory(limits.get("memory", "0"))
            result.cpu_limits += replicas * cpu(limits.get("cpu", "0"))
    return result


def workspace_totals(size: str) -> Totals:
    """Totals of the development stack (with its in-cluster MinIO) at `size`."""
    from support.harness import load_stack_file, render

    config = {**load_stack_file(ROOT / "Pulumi.dev.yaml"), "size": size}
    rendering = render(config, stack="dev")
    return totals([r.manifest() for r in rendering.kubernetes_objects()])


def main(argv: Sequence[str] = ()) -> int:
    """Prints the totals of every size; 1 when `small` asks for too much. It takes no option but --help."""
    from components.sizes import SIZES

    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)
    print(f"{'size':<8}{'pods':>6}{'CPU req':>10}{'mem req':>10}{'mem limit':>11}{'CPU limit':>11}")
    failed = False
    for size in SIZES:
        t = workspace_totals(size)
        cpu_limit = f"{t.cpu_limits:.2f}" if t.cpu_limits else "none"
        print(f"{size:<8}{t.pods:>6}{t.cpu_requests:>10.2f}{t.memory_requests / 2**30:>9.2f}G{t.memory_limits / 2**30:>10.2f}G{cpu_limit:>11}")
        if size == "small" and (t.cpu_requests > SMALL_CPU or t.memory_requests > SMALL_MEMORY):
            failed = True
    print(f"small must request at most {SMALL_CPU:g} CPU and {SMALL_MEMORY / 2**30:g} GiB: {'FAILED' if failed else 'ok'}")
    print("CPU limits are left unset on purpose: throttling slows video decoding without protecting the node.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
