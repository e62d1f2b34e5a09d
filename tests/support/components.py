"""One component of the program run on its own under mocks, and what it registered."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import pulumi
from pulumi.runtime import settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from support import harness


@dataclass
class ComponentRun:
    registrations: list[harness.Registration]
    options: dict[str, dict]
    warnings: list[str] = field(default_factory=list)

    def one(self, type_: str, name_contains: str = "") -> harness.Registration:
        found = [r for r in self.registrations if r.type == type_ and name_contains in r.name]
        assert len(found) == 1, f"expected one {type_} named *{name_contains}*, found {[r.name for r in found]}"
        return found[0]


class OptionsMonitor(harness.RecordingMonitor):
    """Also keeps the import ID and ignore_changes of each registration."""

    def __init__(self, mocks):
        super().__init__(mocks)
        self.options: dict[str, dict] = {}

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        self.options[request.name] = {"import_id": request.importId, "ignore_changes": list(request.ignoreChanges)}
        return response


def run_component(build: Callable[[], Any], mocks: Optional[pulumi.runtime.Mocks] = None) -> ComponentRun:
    """Runs `build` (which constructs components) as a Pulumi program under mocks."""
    mocks = mocks or harness.Mocks()
    monitor = OptionsMonitor(mocks)
    warnings: list[str] = []
    settings.ROOT.set(None)
    pulumi.runtime.set_mocks(
        mocks, project="labeling", stack="test", preview=False, monitor=monitor, logger=harness._warning_logger(warnings)
    )
    _sync_await(run_pulumi_func(build))
    return ComponentRun(monitor.registrations, monitor.options, warnings)


def timeout_seconds(value: str) -> int:
    """A Pulumi custom timeout ("1020s", "17m") in seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    return int(value[:-1]) * units[value[-1]]
