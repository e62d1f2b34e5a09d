"""One-shot Jobs: when they run, and what a change or a pause does to them.

Every one-shot Job of a workspace (migrations, the admin account, the bootstrap,
the backups before an upgrade and before a pause, a restore) keeps these rules:

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

from typing import Any, Optional, Sequence

REPLACE_UNREADY = "pulumi.com/replaceUnready"
SKIP_AWAIT = "pulumi.com/skipAwait"
TIMEOUT = "pulumi.com/timeoutSeconds"
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
