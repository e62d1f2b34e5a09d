"""One-shot Jobs: the Job, its script pod, and when it runs, how long it may take, and
what a change or a pause does to it.

Every component that makes a one-shot Job (storage: the buckets of the in-cluster
MinIO; cloud_storages: the bootstrap; database and backups: the backups before an
upgrade and before a pause, a restore; cvat: migrations, the admin account) makes it
with :func:`one_shot_job`, bounded by a :class:`Deadline`, and keeps these rules:

- It is bounded in time: ``activeDeadlineSeconds``, and Pulumi waits a margin
  longer (``customTimeouts``, and the ``pulumi.com/timeoutSeconds`` annotation),
  so that a stuck Job ends with its own ``DeadlineExceeded``, which the Job
  awaiter reports, not with Pulumi's timeout.
- It runs once per name. Its name says what it is for (a CVAT release, a pause,
  a restore request, a revision of the credentials or schemas): a new name is a
  new run, created before the old Job is deleted.
- How it runs (images of the same release, environment, resources, the
  endpoint) is not what it is for: changes there are ignored
  (``ignore_changes``) instead of replacing the Job, which would run it again
  (pulumi-kubernetes replaces a Job whose ``spec.template`` changes,
  provider/diff.go). A Job that failed is still replaced on the next ``up``
  (``pulumi.com/replaceUnready``), and a replacement is made from the program's
  current values: a corrected endpoint or image takes effect.
- While the workspace is paused, every Job but the pause's own final backup is
  held: its name, annotations and spec are ignored, so no change made while
  paused runs anything against the scaled-down database; a Job the pause's
  program declares for the first time is created suspended (``spec.suspend``,
  no pod), not awaited (``pulumi.com/skipAwait``) and deleted in the
  background. On resume the held changes apply as they would have from a
  running workspace. A Job still suspended is not complete, so
  ``replaceUnready`` replaces it then (pulumi-kubernetes provider.go Diff,
  await/checker/job: no ``startTime``): it runs from the program's current
  values and is awaited. A Job that had failed before the pause is replaced
  by a suspended one (a replacement is made from the program's values), so it
  too runs on resume, not against the stopped database.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import pulumi
import pulumi_kubernetes as k8s

from components import kube

REPLACE_UNREADY = "pulumi.com/replaceUnready"
SKIP_AWAIT = kube.SKIP_AWAIT_ANNOTATION
TIMEOUT = kube.TIMEOUT_ANNOTATION
# While paused: neither the name, nor the annotations (a held Job is not even updated), nor
# anything the Job runs changes. The spec's fields one by one, not `spec` whole: were a held
# Job ever updated, server-side apply would copy the live spec, and Pulumi's field manager
# would own the selector Kubernetes generated, which a later apply would then drop (refused:
# immutable).
HELD = ("metadata.name", "metadata.annotations", "spec.template", "spec.suspend", "spec.backoffLimit",
        "spec.activeDeadlineSeconds")
# A Job made while paused is deleted without waiting (skipAwait) when it is replaced on resume:
# deleted in the background, it is gone at once (a suspended Job has no pods), so the
# replacement of the same name does not meet AlreadyExists (pulumi-kubernetes
# await/await.go deletes in the foreground by default and leaves the object to the garbage
# collector; metadata/annotations.go deletionPropagationPolicy).
DELETION_POLICY = "pulumi.com/deletionPropagationPolicy"
# Running: only the name says whether a Job runs again.
HOW_IT_RUNS = ("spec.template",)


def annotations(paused: bool, await_seconds: Optional[int] = None) -> dict[str, str]:
    """The Job's annotations: awaited (for `await_seconds`, when given; `custom_timeouts` win
    over it) and retried when it failed; made while paused, neither (held Jobs keep theirs)."""
    if paused:
        return {SKIP_AWAIT: "true", DELETION_POLICY: "background"}
    return {REPLACE_UNREADY: "true", **({TIMEOUT: str(await_seconds)} if await_seconds else {})}


def spec(body: dict[str, Any], paused: bool) -> dict[str, Any]:
    """The Job's spec; suspended while paused (only a Job created while paused keeps it: the spec is held)."""
    return {**body, "suspend": True} if paused else body


def ignored(paused: bool, how_it_runs: Sequence[str] = HOW_IT_RUNS) -> list[str]:
    """Paths whose changes the engine ignores: everything while paused, else how the Job runs."""
    return list(HELD if paused else how_it_runs)


@dataclass(frozen=True)
class Deadline:
    """How long a one-shot Job may run, and how long `pulumi up` waits for it: a margin longer.

    customTimeouts win over the annotation (pulumi-kubernetes metadata.TimeoutDuration);
    where a Job has both, they are equal. Each Job keeps the numbers, and the way of writing
    them, it was first registered with: a changed annotation would update the Job.
    """

    seconds: int
    """The Job's own limit (``activeDeadlineSeconds``)."""
    margin_seconds: int
    """How much longer Pulumi waits than the Job may run."""
    annotated: bool = True
    """Also state the wait as the ``pulumi.com/timeoutSeconds`` annotation (CVAT's Jobs never had it)."""
    in_minutes: bool = False
    """customTimeouts written in minutes ("130m") rather than seconds ("1020s"): the same wait."""

    @property
    def await_seconds(self) -> int:
        """How long `pulumi up` waits for the Job."""
        return self.seconds + self.margin_seconds

    def custom_timeouts(self) -> pulumi.CustomTimeouts:
        """The engine's wait for a created or replaced Job."""
        wait = f"{self.await_seconds // 60}m" if self.in_minutes else f"{self.await_seconds}s"
        return pulumi.CustomTimeouts(create=wait, update=wait)

    def annotations(self, held: bool) -> dict[str, str]:
        """The Job's annotations (see :func:`annotations`)."""
        return annotations(held, self.await_seconds if self.annotated else None)


# The Jobs that prepare a workspace (buckets of the in-cluster MinIO, the bootstrap): as long as
# a first image pull may take.
PREPARATION = Deadline(kube.AWAIT_TIMEOUT_SECONDS, margin_seconds=2 * 60)
# A backup before an upgrade or a pause: a large dump and data volume.
BACKUP = Deadline(2 * 3600, margin_seconds=10 * 60, in_minutes=True)
# A restore: the same download, the other way.
RESTORE = Deadline(2 * 3600, margin_seconds=10 * 60, in_minutes=True)
# CVAT's migrations of a release, and its admin account.
MIGRATION = Deadline(3600, margin_seconds=5 * 60, annotated=False, in_minutes=True)
SUPERUSER = Deadline(900, margin_seconds=5 * 60, annotated=False, in_minutes=True)

SCRIPTS_DIR = "/scripts"


def scripts_mount() -> dict[str, Any]:
    """Where a Job's container finds its scripts (read-only)."""
    return {"name": "scripts", "mountPath": SCRIPTS_DIR, "readOnly": True}


def scripts_volume(configmap_name: pulumi.Input[str], executable: bool = False) -> dict[str, Any]:
    """The volume of a scripts ConfigMap; `executable`: files mode 0555 (shell scripts)."""
    volume: dict[str, Any] = {"name": "scripts", "configMap": {"name": configmap_name}}
    if executable:
        volume["configMap"]["defaultMode"] = 0o555
    return volume


def scripts_configmap(resource_name: str, metadata: dict[str, Any], names: Sequence[str],
                      parent: pulumi.Resource) -> k8s.core.v1.ConfigMap:
    """The ConfigMap that ships these scripts of components/assets/ to a Job's pod."""
    return k8s.core.v1.ConfigMap(
        resource_name, metadata=metadata, data={name: kube.asset(name) for name in names},
        opts=pulumi.ResourceOptions(parent=parent),
    )


def script_pod(labels: dict[str, str], containers: list[dict], volumes: list[dict],
               security_context: dict[str, Any], init_containers: Optional[list[dict]] = None) -> dict[str, Any]:
    """A Job's pod template: never restarted in place (the Job retries with a new pod), no
    service account token; `init_containers` run one after the other before the containers."""
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "securityContext": security_context,
    }
    if init_containers is not None:
        spec["initContainers"] = init_containers
    spec["containers"] = containers
    spec["volumes"] = volumes
    return {"metadata": {"labels": labels}, "spec": spec}


@dataclass(frozen=True)
class JobOptions:
    """How a one-shot Job is held and ordered: what it waits for, whether it is held, what does not run it again."""

    parent: pulumi.Resource
    held: bool
    """Declared while the workspace is paused: created suspended, or left as it is (:data:`HELD`)."""
    depends_on: Sequence[pulumi.Resource] = ()
    how_it_runs: Sequence[str] = HOW_IT_RUNS


def one_shot_job(resource_name: str, metadata: dict[str, Any], template: dict[str, Any], backoff_limit: int,
                 deadline: Deadline, options: JobOptions) -> k8s.batch.v1.Job:
    """A Job that runs once per name (`metadata` holds it), bounded by `deadline`, replaced on the
    next `pulumi up` when it failed, held while the workspace is paused (this module's rules)."""
    return k8s.batch.v1.Job(
        resource_name,
        metadata={**metadata, "annotations": deadline.annotations(options.held)},
        spec=spec({"backoffLimit": backoff_limit, "activeDeadlineSeconds": deadline.seconds, "template": template},
                  options.held),
        opts=pulumi.ResourceOptions(
            parent=options.parent,
            depends_on=list(options.depends_on),
            custom_timeouts=deadline.custom_timeouts(),
            ignore_changes=ignored(options.held, options.how_it_runs),
        ),
    )
