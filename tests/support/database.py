"""The Database component rendered on its own."""

import pulumi
import pulumi_kubernetes as k8s
import pytest
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from components.backups import BackupStore
from components.config import BackupsConfig
from components.database import Database
from components.endpoint import S3Endpoint
from support import harness
from support.harness import render
from support.stacks import SCALEWAY, SECRETS


def render_database(**changes) -> harness.Rendering:
    """Runs a program that makes a Database alone (the arguments the Workspace gives it, changed
    by `changes`) under the recording mocks. `pause_after=True` passes a stand-in for CVAT's
    scaled-down Deployments (a ConfigMap named cvat-scaled-down). The backups' settings are
    changed by name too (restore_from, restore_force, backup_schedule, retention_days)."""
    from pulumi.runtime import settings

    mocks = harness.Mocks()
    monitor = harness.RecordingMonitor(mocks)
    settings.ROOT.set(None)
    pulumi.runtime.set_mocks(mocks, project="labeling", stack="acme", preview=False, monitor=monitor)
    pulumi.runtime.set_all_config({}, [])

    backups = {"schedule": "0 3 * * *", "retention_days": 30, "restore_from": "", "restore_force": False}
    for key in ("restore_from", "restore_force", "retention_days"):
        if key in changes:
            backups[key] = changes.pop(key)
    if "backup_schedule" in changes:
        backups["schedule"] = changes.pop("backup_schedule")

    def program():
        endpoint = S3Endpoint.from_settings("scaleway", "fr-par", "", "access-key", "secret-key")
        args = {
            "namespace": "cvat-acme",
            "workspace": "acme",
            "storage_size": "10Gi",
            "storage_class_name": "",
            "store": BackupStore(endpoint, "acme-backups", "acme/database/", "s3-credentials"),
            "backups": BackupsConfig(bucket="acme-backups", **backups),
            "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}},
            "cvat_version": "v2.73.0",
            **changes,
        }
        if args.get("pause_after") is True:
            args["pause_after"] = [k8s.core.v1.ConfigMap("cvat-scaled-down", metadata={"name": "cvat-scaled-down"})]
        database = Database("workspace-database", args)
        exported["restore_request"] = database.restore_request
        exported["pre_upgrade_backup"] = database.pre_upgrade_backup.urn

    exported: dict = {}
    _sync_await(run_pulumi_func(program))
    outputs = {key: _sync_await(pulumi.Output.from_input(value).future()) for key, value in exported.items()}
    return harness.Rendering(monitor.registrations, outputs, set())


@pytest.fixture(scope="module")
def acme():
    config = {**SCALEWAY, "backupSchedule": "30 1 * * *", "backupRetentionDays": 9, "databaseStorageSize": "25Gi",
              "storageClassName": "scw-bssd"}
    return render(config, stack="acme", secrets=SECRETS)
