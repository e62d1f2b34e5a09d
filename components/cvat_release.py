"""The CVAT releases this program deploys, and what each one's images expect.

One place holds the deployment contract that the manifests follow, taken from
CVAT's source at each release's tag (``backend_entrypoint.sh``,
``backend_entrypoint.d/cvat.conf``, ``supervisord/*.conf``, the Helm chart):
the queues, the supervisord includes each queue pulls in, and the environment
variables those includes expand. supervisord stops at start when an include
names an unset ``%(ENV_X)s``, so a container that misses one never runs.

Adding a release: read those files at the new tag, add a :class:`CvatRelease`
to :data:`RELEASES` (a copy of the previous one, changed where the release
changed), and run the tests (they hold every container against this table).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# supervisord includes (backend_entrypoint.d/cvat.conf) -> the variables they expand.
_INCLUDE_ENV_V2_73 = {
    "smokescreen": frozenset({"SMOKESCREEN_OPTS"}),
    "rqscheduler": frozenset({"CVAT_REDIS_INMEM_HOST", "CVAT_REDIS_INMEM_PORT", "CVAT_REDIS_INMEM_PASSWORD"}),
    # Only with CLAM_AV=yes, which the workspace never sets.
    "clamav": frozenset(),
}
# Component (server, or a queue) -> its includes.
_INCLUDES_V2_73 = {
    "server": ("smokescreen", "clamav"),
    "import": ("smokescreen", "clamav"),
    "export": ("smokescreen",),
    "chunks": ("smokescreen",),
    "annotation": ("smokescreen",),
    "webhooks": ("smokescreen",),
    "cleaning": ("rqscheduler",),
    "notifications": (),
    "quality_reports": (),
    "consensus": (),
}


@dataclass(frozen=True)
class CvatRelease:
    """What the images of one CVAT release expect from their pods."""

    version: str
    includes: dict[str, tuple[str, ...]]
    """Component (`server` or a queue name) -> supervisord includes it starts with."""
    include_env: dict[str, frozenset[str]]
    """Include -> environment variables supervisord expands in it."""
    scheduler_queues: frozenset[str] = field(default_factory=frozenset)
    """Queues whose worker must run with rqworker's --with-scheduler (retries via the scheduled registry)."""

    @property
    def queues(self) -> tuple[str, ...]:
        """Every RQ queue of the release."""
        return tuple(component for component in self.includes if component != "server")

    def expanded_env(self, components: list[str]) -> set[str]:
        """The variables supervisord expands for a server (`["server"]`) or a worker of these queues.

        Besides these, the entrypoint exports CVAT_QUEUES, CVAT_RQWORKER_EXTRA_FLAGS and
        CVAT_SUPERVISORD_INCLUDES itself, and the image sets HOME and NUMPROCS.
        """
        names: set[str] = set()
        for component in components:
            for include in self.includes[component]:
                names |= self.include_env[include]
        return names


RELEASES: dict[str, CvatRelease] = {
    "v2.73.0": CvatRelease(
        version="v2.73.0",
        includes=_INCLUDES_V2_73,
        include_env=_INCLUDE_ENV_V2_73,
        scheduler_queues=frozenset({"webhooks"}),
    ),
}
