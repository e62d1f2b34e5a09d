"""Size presets of a workspace: replicas, processes and resources of every container.

`small` fits a few annotators on a modest node (at most 2 CPU and 4 GiB of
requests for the whole workspace, database and in-cluster MinIO included);
`medium` and `large` add server replicas, chunk workers and headroom.
Memory limits sit well above requests: CVAT's workers peak while decoding
videos and building chunks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SIZES = ("small", "medium", "large")


@dataclass(frozen=True)
class Resources:
    """Requests (cpu, memory) and a memory limit."""

    cpu: str
    memory: str
    memory_limit: str

    def spec(self) -> dict[str, Any]:
        """The container `resources` field."""
        return {"requests": {"cpu": self.cpu, "memory": self.memory}, "limits": {"memory": self.memory_limit}}


@dataclass(frozen=True)
class Size:
    """One preset."""

    name: str
    server_replicas: int
    server_processes: int
    ui_replicas: int
    worker_replicas: dict[str, int]
    worker_processes: int
    kvrocks_storage: str
    resources: dict[str, Resources] = field(default_factory=dict)

    @property
    def kvrocks_block_cache_mb(self) -> int:
        """A quarter of Kvrocks' memory limit: its own default (2 x 2 GiB of caches) would be OOM-killed."""
        limit = self.resources["kvrocks"].memory_limit
        mebibytes = int(limit[:-2]) * (1024 if limit.endswith("Gi") else 1)
        return mebibytes // 4

    def of(self, container: str) -> dict[str, Any]:
        """The resources of a container (by role name)."""
        return self.resources[container].spec()


def _preset(name: str, server: tuple[int, int], ui: int, workers: dict[str, int], worker_processes: int,
            kvrocks_storage: str, resources: dict[str, tuple[str, str, str]]) -> Size:
    return Size(
        name=name,
        server_replicas=server[0],
        server_processes=server[1],
        ui_replicas=ui,
        worker_replicas=workers,
        worker_processes=worker_processes,
        kvrocks_storage=kvrocks_storage,
        resources={role: Resources(*values) for role, values in resources.items()},
    )


PRESETS: dict[str, Size] = {
    "small": _preset(
        "small", server=(1, 2), ui=1,
        workers={"import": 1, "export": 1, "chunks": 1, "utils": 1, "annotation": 1, "webhooks": 1, "quality": 1},
        worker_processes=1,
        kvrocks_storage="10Gi",
        resources={
            "server": ("300m", "768Mi", "2Gi"),
            "nginx": ("20m", "32Mi", "128Mi"),
            "ui": ("10m", "32Mi", "128Mi"),
            "opa": ("20m", "64Mi", "256Mi"),
            "redis": ("50m", "128Mi", "512Mi"),
            "kvrocks": ("50m", "256Mi", "1Gi"),
            "worker-import": ("100m", "384Mi", "2Gi"),
            "worker-export": ("100m", "384Mi", "2Gi"),
            "worker-chunks": ("150m", "384Mi", "2Gi"),
            "worker-utils": ("50m", "256Mi", "1Gi"),
            "worker-annotation": ("100m", "384Mi", "2Gi"),
            "worker-webhooks": ("20m", "128Mi", "512Mi"),
            "worker-quality": ("50m", "256Mi", "1Gi"),
            "postgres": ("100m", "256Mi", "1Gi"),
            "minio": ("100m", "256Mi", "1Gi"),
            "job": ("100m", "256Mi", "1Gi"),
        },
    ),
    "medium": _preset(
        "medium", server=(2, 2), ui=2,
        workers={"import": 1, "export": 1, "chunks": 2, "utils": 1, "annotation": 1, "webhooks": 1, "quality": 1},
        worker_processes=2,
        kvrocks_storage="20Gi",
        resources={
            "server": ("500m", "1Gi", "3Gi"),
            "nginx": ("50m", "64Mi", "256Mi"),
            "ui": ("20m", "32Mi", "128Mi"),
            "opa": ("50m", "128Mi", "512Mi"),
            "redis": ("100m", "256Mi", "1Gi"),
            "kvrocks": ("100m", "512Mi", "2Gi"),
            "worker-import": ("250m", "768Mi", "4Gi"),
            "worker-export": ("250m", "768Mi", "4Gi"),
            "worker-chunks": ("250m", "768Mi", "3Gi"),
            "worker-utils": ("100m", "384Mi", "1Gi"),
            "worker-annotation": ("250m", "768Mi", "4Gi"),
            "worker-webhooks": ("50m", "192Mi", "512Mi"),
            "worker-quality": ("100m", "384Mi", "2Gi"),
            "postgres": ("250m", "512Mi", "2Gi"),
            "minio": ("100m", "256Mi", "1Gi"),
            "job": ("100m", "256Mi", "1Gi"),
        },
    ),
    "large": _preset(
        "large", server=(3, 4), ui=2,
        workers={"import": 2, "export": 2, "chunks": 4, "utils": 1, "annotation": 2, "webhooks": 1, "quality": 1},
        worker_processes=2,
        kvrocks_storage="50Gi",
        resources={
            "server": ("1", "2Gi", "4Gi"),
            "nginx": ("100m", "64Mi", "256Mi"),
            "ui": ("50m", "64Mi", "256Mi"),
            "opa": ("100m", "256Mi", "1Gi"),
            "redis": ("200m", "512Mi", "2Gi"),
            "kvrocks": ("250m", "1Gi", "4Gi"),
            "worker-import": ("500m", "1Gi", "6Gi"),
            "worker-export": ("500m", "1Gi", "6Gi"),
            "worker-chunks": ("500m", "1Gi", "4Gi"),
            "worker-utils": ("100m", "512Mi", "2Gi"),
            "worker-annotation": ("500m", "1Gi", "6Gi"),
            "worker-webhooks": ("50m", "256Mi", "1Gi"),
            "worker-quality": ("250m", "768Mi", "4Gi"),
            "postgres": ("500m", "1Gi", "4Gi"),
            "minio": ("250m", "512Mi", "2Gi"),
            "job": ("100m", "256Mi", "1Gi"),
        },
    ),
}
