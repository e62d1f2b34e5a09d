"""Under mocks: the moments that matter, wired across components (issue 10 §4 and §2).

- a pause scales CVAT to zero, then takes a final backup, then scales the database to zero;
- a new CVAT release is backed up before its migrations run;
- a restore rolls the server and workers once it succeeded;
- every one-shot Job, whichever component makes it, is awaited a margin past its own deadline.
"""

import pytest

from components import jobs
from support.harness import render
from support.stacks import SECRETS, with_
from support.components import timeout_seconds

RUNNING_KINDS = ("Deployment", "StatefulSet")


@pytest.fixture(scope="module")
def paused():
    return render(with_(paused=True), stack="acme", secrets=SECRETS)


@pytest.fixture(scope="module")
def running():
    return render(with_(restoreFrom="latest"), stack="acme", secrets=SECRETS)


def test_a_paused_workspace_runs_nothing(paused):
    workloads = [r.manifest() for r in paused.kubernetes_objects() if r.manifest()["kind"] in RUNNING_KINDS]
    assert len(workloads) >= 10
    for manifest in workloads:
        assert manifest["spec"]["replicas"] == 0, manifest["metadata"]["name"]
    assert paused.kubernetes_object("CronJob", "database-backup")["spec"]["suspend"] is True
    assert paused.outputs["status"] == "paused"
    # Nothing that holds data goes: the claims are still declared.
    assert paused.kubernetes_object("PersistentVolumeClaim", "cvat-data")


def test_a_pause_backs_up_after_cvat_stopped_and_before_the_database_stops(paused):
    final = paused.one("kubernetes:batch/v1:Job", "backup-final")
    cvat_pods = [r for r in paused.registrations if r.type in ("kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:StatefulSet")
                 and "-cvat-" in r.name]
    assert {r.urn for r in cvat_pods} <= set(final.depends_on)
    assert {"workspace-cvat-server", "workspace-cvat-worker-import", "workspace-cvat-redis"} <= {r.name for r in cvat_pods}
    postgres = paused.one("kubernetes:apps/v1:StatefulSet", "database-server")
    assert final.urn in postgres.depends_on


def test_a_running_workspace_takes_the_backup_before_migrating(running):
    backup = running.one("kubernetes:batch/v1:Job", "backup-before-upgrade")
    assert backup.manifest()["metadata"]["name"] == "backup-before-v2-73-0"
    migration = running.one("kubernetes:batch/v1:Job", "cvat-migrate")
    assert backup.urn in migration.depends_on
    assert running.one("kubernetes:batch/v1:Job", "database-restore").urn in migration.depends_on
    assert running.kubernetes_object("CronJob", "database-backup")["spec"].get("suspend") in (None, False)
    assert running.outputs["status"] == "running"


def test_a_restore_rolls_the_server_and_workers(running):
    request = running.one("random:index/randomId:RandomId", "restore-request")
    for name in ("cvat-backend", "cvat-worker-import", "cvat-worker-chunks"):
        annotations = running.kubernetes_object("Deployment", name)["spec"]["template"]["metadata"]["annotations"]
        assert annotations["labeling.dev/restore-request"] == "0a1b2c3d", name
    assert request is not None
    plain = render(with_(), stack="acme", secrets=SECRETS)
    annotations = plain.kubernetes_object("Deployment", "cvat-backend")["spec"]["template"]["metadata"]["annotations"]
    assert "labeling.dev/restore-request" not in annotations


@pytest.mark.parametrize("state", ["running", "paused"])
def test_every_one_shot_job_is_awaited_a_margin_past_its_own_deadline(state, request):
    rendering = request.getfixturevalue(state)
    made = rendering.of_type("kubernetes:batch/v1:Job")
    expected = ["cvat-migrate", "cvat-superuser", "cloud-storages-job", "backup-before-upgrade",
                "database-restore" if state == "running" else "backup-final"]
    assert all(any(job.name.endswith(name) for job in made) for name in expected), [job.name for job in made]
    for job in made:
        deadline = job.inputs["spec"]["activeDeadlineSeconds"]
        waits = {timeout_seconds(job.custom_timeouts.create), timeout_seconds(job.custom_timeouts.update)}
        assert len(waits) == 1, job.name
        (wait,) = waits
        # Long enough that the Job's own DeadlineExceeded is what `pulumi up` reports.
        assert deadline + 2 * 60 <= wait <= deadline + 10 * 60, job.name
        annotations = job.inputs["metadata"]["annotations"]
        if jobs.TIMEOUT in annotations:
            assert int(annotations[jobs.TIMEOUT]) == wait, job.name
        held = state == "paused" and "backup-final" not in job.name
        assert (jobs.SKIP_AWAIT in annotations) == held and (jobs.REPLACE_UNREADY in annotations) == (not held), job.name
