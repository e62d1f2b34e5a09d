"""What `pulumi up` would do between two renderings: the engine's step for every resource.

A rendering (tests/support/harness.py) is what the program registers for one stack
config. `plan(before, after)` compares two of them resource by resource, the
way the engine and the providers do, and says for each resource whether the
engine would leave it (same), update it in place, replace it (create the new
one, then delete the old: create-before-delete), replace it deleting first
(delete-before-replace), create it or delete it; for a Job, whether the step
starts its pods (`runs`).

The rules are read from the providers' and the engine's source; the citation
keys are those of shared/reference/pulumi-replacements.md:

- K = pulumi/pulumi-kubernetes v4.32.0 (a03ff6ba), paths under provider/pkg/;
  E = pulumi/pulumi (1b594989), SG = pkg/resource/deploy/step_generator.go;
  B = pulumi-terraform-bridge v3.136.0; R = terraform-provider-random v3.9.0;
  A2 = terraform-provider-aws internal/service/s3/bucket.go.
- Kubernetes replacement paths per kind: K provider/diff.go L23-38 (name and
  namespace always), L53-56 and L171-176 (Deployment selector), L78-82 and
  L178-186 (Job), L87-110 (PersistentVolume sources), L111-118 (claim),
  L155-160 (Secret type; Service clusterIP), L196-205 (StatefulSet), L65-69
  and L192-194 (roleRef); Secret and ConfigMap data only when not mutable
  (K provider/provider.go L696-726). A changed value at or under a listed path
  replaces (K provider/provider.go L3343-3357, openapi/match.go L26-49).
- Same name and namespace: delete-before-replace; a new name: create-before-
  delete (K provider/provider.go L1645-1658). The resource option
  `delete_before_replace` wins (E SG L2040-2046).
- `pulumi.com/replaceUnready` on a Job: replaced when the live Job is not
  complete, even with no diff (K provider/provider.go L1622-1643); live Jobs
  are complete here unless a test says which failed.
- ignoreChanges: each ignored path of the new inputs is reset to its old value
  before the diff (E SG L1264-1269, L3074-3096).
- The Kubernetes provider's config: `clusterIdentifier` changed between two
  values replaces it; otherwise the active cluster of a parsed kubeconfig
  (`$KUBECONFIG`) decides; with no kubeconfig parsed nothing is compared
  (K provider/provider.go L486-560, provider/util.go L199-226). A replaced
  provider replaces every resource it manages, create-before-delete unless the
  option says otherwise (E SG L2800-2880, L2919-2926).
- random: RandomId's `keepers`, `byteLength`, `prefix` (R resource_id.go
  L60-84); RandomPassword's and RandomString's keepers and character rules
  (R resource_password.go L570-720); a keeper replaces when its value changes
  or it is removed, not when one is added (R planmodifiers/map L18-99);
  replacements are create-before-delete (B pf/tfbridge/provider_diff.go L111-121).
- aws.s3.Bucket: `bucket`, `bucketPrefix`, `objectLockEnabled` and `region`
  force a new bucket (A2 L45-59; B pkg/tfbridge/provider.go L1236-1261); an
  explicit `bucket` is replaced deleting first (B provider.go L1275-1276).
- Dynamic resources: their provider's own `diff(id, olds, news)` with the old
  outputs; `changes=None` compares the inputs (E dynamic/__main__.py L110-122,
  SG L2996-3006).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

from support.harness import ROOT, Rendering

STABLE = json.loads((ROOT / "tests" / "data" / "stable_urns.json").read_text())
SHAPES = ("dev", "acme", "minio-external")

SAME, UPDATE, REPLACE, DELETE_BEFORE_REPLACE, CREATE, DELETE = (
    "same", "update", "replace", "delete-before-replace", "create", "delete"
)
REPLACEMENTS = (REPLACE, DELETE_BEFORE_REPLACE)

JOB = "kubernetes:batch/v1:Job"
CLAIM = "kubernetes:core/v1:PersistentVolumeClaim"
VOLUME = "kubernetes:core/v1:PersistentVolume"
STATEFULSET = "kubernetes:apps/v1:StatefulSet"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
BUCKET = "aws:s3/bucket:Bucket"

_ALWAYS = [("metadata", "name"), ("metadata", "namespace")]
_VOLUME_SOURCES = (
    "awsElasticBlockStore", "azureDisk", "azureFile", "cephfs", "cinder", "csi", "fc", "flexVolume", "flocker",
    "gcePersistentDisk", "glusterfs", "hostPath", "iscsi", "local", "nfs", "photonPersistentDisk", "portworxVolume",
    "quobyte", "rbd", "scaleIO", "storageos", "vsphereVolume",
)
_REPLACE_PATHS: dict[str, list[tuple]] = {
    "apps/v1:Deployment": [("spec", "selector")],
    "apps/v1:StatefulSet": [("spec", name) for name in
                            ("podManagementPolicy", "revisionHistoryLimit", "selector", "serviceName", "volumeClaimTemplates")],
    "batch/v1:Job": [("spec", name) for name in ("completions", "parallelism", "selector", "template")],
    "core/v1:PersistentVolume": [("spec", source) for source in _VOLUME_SOURCES],
    "core/v1:PersistentVolumeClaim": [("spec", name) for name in ("accessModes", "selector", "storageClassName", "volumeName")],
    "core/v1:Service": [("spec", "clusterIP")],
    "rbac.authorization.k8s.io/v1:RoleBinding": [("roleRef",)],
}
_RANDOM_REPLACE_KEYS = {
    "random:index/randomId:RandomId": ("keepers", "byteLength", "prefix"),
    "random:index/randomPassword:RandomPassword": (
        "keepers", "length", "special", "upper", "lower", "number", "numeric", "minNumeric", "minUpper", "minLower",
        "minSpecial", "overrideSpecial"),
    "random:index/randomString:RandomString": (
        "keepers", "length", "special", "upper", "lower", "number", "numeric", "minNumeric", "minUpper", "minLower",
        "minSpecial", "overrideSpecial"),
}
_BUCKET_REPLACE_KEYS = ("bucket", "bucketPrefix", "objectLockEnabled", "region")
# The dynamic providers, by the type the engine records.
_DYNAMIC_PROVIDERS = {
    "pulumi-python:dynamic/labeling:BucketLifecycleRules": ("components.lifecycle", "BucketLifecycleRulesProvider"),
    "pulumi-python:dynamic/labeling:DatasetInventory": ("components.inventory", "DatasetInventoryProvider"),
    "pulumi-python:dynamic/labeling:ClusterBinding": ("components.cluster", "ClusterBindingProvider"),
}
# What the mocks (and the providers) add to a dynamic resource's inputs as outputs.
_DYNAMIC_OUTPUTS = {
    "pulumi-python:dynamic/labeling:BucketLifecycleRules": {"supported": True},
    "pulumi-python:dynamic/labeling:DatasetInventory": {"datasets": {}},
}


# ----- renderings as data -----------------------------------------------------

def snapshot(rendering: Rendering) -> dict:
    """A rendering as plain JSON: what the engine gets for every resource."""
    return {
        "registrations": [
            {
                "urn": r.urn, "type": r.type, "name": r.name, "parent": r.parent, "provider": r.provider, "custom": r.custom,
                "inputs": r.inputs, "depends_on": r.depends_on, "ignore_changes": r.ignore_changes,
                "delete_before_replace": getattr(r, "delete_before_replace", None),
                "replace_on_changes": getattr(r, "replace_on_changes", []), "aliases": getattr(r, "aliases", []),
                "retain_on_delete": r.retain_on_delete, "import_id": r.import_id,
            }
            for r in rendering.registrations
        ],
        "outputs": rendering.outputs,
        "warnings": rendering.warnings,
    }


def shape_config(shape: str) -> tuple[str, dict, list[str]]:
    """(stack, config, secret keys) of a stack shape of stable_urns.json, with the keys required since."""
    entry = STABLE[shape]
    config = dict(entry["config"])
    if not config.get("minioInCluster"):
        config["kubeContext"] = "the-cluster"
        if not (config.get("certManagerIssuer") or config.get("tlsSecretName")):
            config["allowInsecureHttp"] = True
    return entry["stack"], config, list(entry["secrets"])


def load_rendering(commit: str, shape: str, directory: Optional[Path] = None) -> dict:
    """A rendering of an earlier release made by tests/data/renderings/make.py (hash checked)."""
    import hashlib

    directory = directory or ROOT / "tests" / "data" / "renderings"
    path = directory / f"{commit[:7]}.json"
    sums = dict(reversed(line.split("  ")) for line in (directory / "SHA256SUMS").read_text().splitlines())
    assert hashlib.sha256(path.read_bytes()).hexdigest() == sums[path.name], f"{path.name} differs from SHA256SUMS"
    return json.loads(path.read_text())["shapes"][shape]


def as_snapshot(value: Rendering | dict) -> dict:
    return snapshot(value) if isinstance(value, Rendering) else value


# ----- full URNs --------------------------------------------------------------

def full_urns(rendering: Rendering | dict) -> dict[str, str]:
    """Mock URN -> the URN the engine builds: the types of every parent up to the stack, joined by '$'.

    The mocks qualify a type by its parent's type only; the engine by the parent's
    qualified type (E pkg/resource/urn.go NewURN; the stack's own type is left out).
    """
    registrations = {r["urn"]: r for r in as_snapshot(rendering)["registrations"]}
    result: dict[str, str] = {}

    def qualified(urn: str) -> str:
        registration = registrations.get(urn)
        if registration is None:  # the stack
            return ""
        parent = qualified(registration["parent"]) if registration["parent"] else ""
        return f"{parent}${registration['type']}" if parent else registration["type"]

    for urn, registration in registrations.items():
        prefix = urn.split("::")[0:2]
        result[urn] = f"{prefix[0]}::{prefix[1]}::{qualified(urn)}::{registration['name']}"
    return result


# ----- property paths ---------------------------------------------------------

_SEGMENT = re.compile(r'\.?([A-Za-z0-9_$\-/]+)|\[(\d+)\]|\["([^"]+)"\]')


def parse_path(path: str) -> tuple:
    """A Pulumi property path (`spec.template.spec.containers[0].env`, `metadata.annotations["a/b"]`)."""
    segments: list[Any] = []
    position = 0
    while position < len(path):
        match = _SEGMENT.match(path, position)
        assert match, f"cannot parse property path {path!r} at {position}"
        name, index, quoted = match.groups()
        segments.append(int(index) if index is not None else (quoted if quoted is not None else name))
        position = match.end()
    return tuple(segments)


_MISSING = object()


def _get(value: Any, path: tuple) -> Any:
    for segment in path:
        if isinstance(segment, int) and isinstance(value, list) and segment < len(value):
            value = value[segment]
        elif isinstance(segment, str) and isinstance(value, dict) and segment in value:
            value = value[segment]
        else:
            return _MISSING
    return value


def _set(value: Any, path: tuple, new: Any) -> None:
    for segment in path[:-1]:
        value = value[segment]
    value[path[-1]] = new


def reset_ignored(old: dict, new: dict, ignored: Iterable[str]) -> dict:
    """The new inputs with each ignored path set back to its old value (E SG processIgnoreChanges,
    resource.PropertyPath.Reset): an old value is put back, a value only in the new inputs is
    removed; a path whose parent is missing in the new inputs fails the update."""
    result = json.loads(json.dumps(new))
    for path in ignored:
        segments = parse_path(path)
        before, after = _get(old, segments), _get(result, segments)
        if before is _MISSING and after is _MISSING:
            continue
        # Reset gives up, and the engine only logs it, when an element above the last one is
        # missing on either side (pulumi sdk/go/common/resource/properties_path.go Reset;
        # step_generator.go "cannot ignore changes in added or removed elements").
        if _get(old, segments[:-1]) is _MISSING or _get(result, segments[:-1]) is _MISSING:
            continue
        parent = _get(result, segments[:-1])
        if before is _MISSING:
            if isinstance(parent, dict):
                del parent[segments[-1]]
            continue
        if isinstance(parent, list) and not segments[-1] < len(parent):
            continue
        _set(result, segments, json.loads(json.dumps(before)))
    return result


def changed_paths(old: Any, new: Any, path: tuple = ()) -> list[tuple]:
    """Every path whose value differs (a key only on one side, a list of another length: that path)."""
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in sorted(set(old) | set(new), key=str):
            if key not in old or key not in new:
                found.append((*path, key))
            else:
                found += changed_paths(old[key], new[key], (*path, key))
        return found
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        found = []
        for index, (a, b) in enumerate(zip(old, new)):
            found += changed_paths(a, b, (*path, index))
        return found
    return [] if old == new else [path]


def _related(changed: tuple, listed: tuple) -> bool:
    """A change at or under a listed path, or a change of a whole object holding one."""
    shorter = min(len(changed), len(listed))
    return changed[:shorter] == listed[:shorter]


# ----- the plan ---------------------------------------------------------------

@dataclass
class Step:
    """The engine's step for one resource."""

    urn: str
    type: str
    name: str
    op: str
    changed: list[str] = field(default_factory=list)
    reason: str = ""
    runs: bool = False
    """A Job whose pods this step starts (created, replaced, or taken out of suspension)."""
    object_name: str = ""
    """Kubernetes: metadata.name after the step (before it, for a delete)."""

    def __repr__(self) -> str:
        extra = f" ({self.reason})" if self.reason else ""
        return f"{self.op}{' [runs]' if self.runs else ''} {self.type} {self.name}{extra} {self.changed[:6]}"


@dataclass
class Plan:
    steps: dict[str, Step]

    def of(self, name: str) -> Step:
        found = [step for step in self.steps.values() if step.name == name]
        assert len(found) == 1, f"no single step for {name}: {[s.name for s in found]}"
        return found[0]

    def with_op(self, *ops: str) -> list[Step]:
        return [step for step in self.steps.values() if step.op in ops]

    def jobs_run(self) -> set[str]:
        """Pulumi names of the Jobs whose pods this `up` starts."""
        return {step.name for step in self.steps.values() if step.runs}

    def changes(self) -> list[Step]:
        return [step for step in self.steps.values() if step.op != SAME]


def _path_text(path: tuple) -> str:
    return ".".join(str(segment) for segment in path)


def _kube_kind(type_: str) -> str:
    return type_.split(":", 1)[1]


def _suspended(inputs: dict) -> bool:
    return bool(_get(inputs, ("spec", "suspend")) is True)


def _provider_urn(reference: str) -> str:
    return reference.rsplit("::", 1)[0] if reference else ""


def _kubernetes_provider_replaced(old: dict, new: dict, kubeconfig: Optional[dict[str, str]]) -> Optional[str]:
    """Why the Kubernetes provider is replaced, or None (K provider/provider.go L486-560)."""
    old_id, new_id = old.get("clusterIdentifier"), new.get("clusterIdentifier")
    if old_id and new_id:
        return f"clusterIdentifier {old_id} -> {new_id}" if old_id != new_id else None
    if kubeconfig is None:
        return None  # no clusters parsed: nothing compared (K provider/util.go L201-204)
    current = kubeconfig.get("__current__", "")
    old_cluster = kubeconfig.get(old.get("context") or current)
    new_cluster = kubeconfig.get(new.get("context") or current)
    if old_cluster and new_cluster and old_cluster != new_cluster:
        return f"active cluster {old_cluster} -> {new_cluster}"
    return None


def _mutable(provider_inputs: dict, key: str) -> bool:
    return str(provider_inputs.get(key, "false")).lower() == "true"


def _kubernetes_step(old: dict, new: dict, provider_inputs: dict, failed_jobs: set[str]) -> tuple[str, list[tuple], str]:
    inputs_old, inputs_new = old["inputs"], reset_ignored(old["inputs"], new["inputs"], new["ignore_changes"])
    changes = changed_paths(inputs_old, inputs_new)
    kind = _kube_kind(new["type"])
    listed = list(_ALWAYS) + _REPLACE_PATHS.get(kind, [])
    if kind == "core/v1:Secret":
        listed.append(("type",))
        if not _mutable(provider_inputs, "enableSecretMutable") or inputs_new.get("immutable"):
            listed += [("stringData",), ("data",)]
    if kind == "core/v1:ConfigMap" and (not _mutable(provider_inputs, "enableConfigMapMutable") or inputs_new.get("immutable")):
        listed += [("data",), ("binaryData",)]
    listed += [parse_path(path) for path in new.get("replace_on_changes") or []]
    replacing = [path for path in changes if any(_related(path, item) for item in listed)]
    reason = "replacing fields changed" if replacing else ""
    unready = _get(inputs_new, ("metadata", "annotations", "pulumi.com/replaceUnready")) == "true"
    # A live Job is not ready when it failed, or while it is suspended (no startTime:
    # K await/checker/job/check.go L37-47).
    if kind == "batch/v1:Job" and unready and (new["name"] in failed_jobs or _suspended(inputs_old)):
        replacing = replacing or [("metadata", "annotations", "pulumi.com/replaceUnready")]
        reason = "replaceUnready: the live Job did not complete"
    if not replacing:
        return (UPDATE if changes else SAME), changes, ""
    option = new.get("delete_before_replace")
    if option is not None:
        return (DELETE_BEFORE_REPLACE if option else REPLACE), changes, reason
    same_name = _get(inputs_old, ("metadata", "name")) == _get(inputs_new, ("metadata", "name"))
    same_namespace = _get(inputs_old, ("metadata", "namespace")) == _get(inputs_new, ("metadata", "namespace"))
    autonamed = _get(inputs_new, ("metadata", "name")) is _MISSING
    dbr = same_name and same_namespace and not autonamed
    return (DELETE_BEFORE_REPLACE if dbr else REPLACE), changes, reason


def _keepers_replace(old: dict, new: dict) -> bool:
    """A keeper changed or removed (added ones with a value also differ from null: replace)."""
    old, new = old or {}, new or {}
    return any(key not in new or new[key] != value for key, value in old.items()) or any(
        key not in old and value is not None for key, value in new.items()
    )


def _random_step(old: dict, new: dict) -> tuple[str, list[tuple]]:
    inputs_old, inputs_new = old["inputs"], reset_ignored(old["inputs"], new["inputs"], new["ignore_changes"])
    changes = changed_paths(inputs_old, inputs_new)
    keys = _RANDOM_REPLACE_KEYS.get(new["type"], ())
    replace = any(
        (_keepers_replace(inputs_old.get(key), inputs_new.get(key)) if key == "keepers" else inputs_old.get(key) != inputs_new.get(key))
        for key in keys
    )
    return (REPLACE if replace else UPDATE if changes else SAME), changes


def _bucket_step(old: dict, new: dict) -> tuple[str, list[tuple]]:
    inputs_old, inputs_new = old["inputs"], reset_ignored(old["inputs"], new["inputs"], new["ignore_changes"])
    changes = changed_paths(inputs_old, inputs_new)
    if any(inputs_old.get(key) != inputs_new.get(key) for key in _BUCKET_REPLACE_KEYS):
        return (DELETE_BEFORE_REPLACE if inputs_new.get("bucket") else REPLACE), changes
    return (UPDATE if changes else SAME), changes


def _dynamic_step(old: dict, new: dict) -> tuple[str, list[tuple]]:
    import importlib

    inputs_new = reset_ignored(old["inputs"], new["inputs"], new["ignore_changes"])
    changes = changed_paths(old["inputs"], inputs_new)
    module, name = _DYNAMIC_PROVIDERS[new["type"]]
    provider = getattr(importlib.import_module(module), name)()
    olds = {**old["inputs"], **_DYNAMIC_OUTPUTS.get(new["type"], {})}
    result = provider.diff(f"{old['name']}-id", olds, inputs_new)
    if result.changes is False:
        return SAME, changes
    if result.changes is None and not changes:
        return SAME, changes
    if result.replaces:
        return (DELETE_BEFORE_REPLACE if result.delete_before_replace else REPLACE), changes
    return UPDATE, changes


def plan(before: Rendering | dict, after: Rendering | dict, *, failed_jobs: Iterable[str] = (),
         kubeconfig: Optional[dict[str, str]] = None) -> Plan:
    """The engine's step for every resource going from `before` to `after`.

    `failed_jobs`: Pulumi names of Jobs whose live object did not complete.
    `kubeconfig`: context -> cluster of the user's $KUBECONFIG ("__current__": the
    current context); None when no kubeconfig is parsed.
    """
    old_all = {r["urn"]: r for r in as_snapshot(before)["registrations"]}
    new_all = {r["urn"]: r for r in as_snapshot(after)["registrations"]}
    failed = set(failed_jobs)
    steps: dict[str, Step] = {}
    replaced_providers: dict[str, str] = {}
    old_by_alias = _alias_index(old_all, new_all)

    for urn, new in new_all.items():
        if not new["custom"]:
            continue
        old = old_all.get(urn) or old_by_alias.get(urn)
        object_name = str(_get(new["inputs"], ("metadata", "name")) if new["type"].startswith("kubernetes:") else "")
        if old is None:
            runs = new["type"] == JOB and not _suspended(new["inputs"])
            steps[urn] = Step(urn, new["type"], new["name"], CREATE, runs=runs, object_name=object_name)
            continue
        reason = ""
        if new["type"].startswith("pulumi:providers:"):
            changes = changed_paths(old["inputs"], new["inputs"])
            why = _kubernetes_provider_replaced(old["inputs"], new["inputs"], kubeconfig) if new["type"].endswith(":kubernetes") else None
            if why:
                replaced_providers[urn] = why
                op, reason = REPLACE, why
            else:
                op = UPDATE if changes else SAME
        elif _provider_urn(new["provider"]) in replaced_providers:
            changes = changed_paths(old["inputs"], new["inputs"])
            option = new.get("delete_before_replace")
            op = DELETE_BEFORE_REPLACE if option else REPLACE
            reason = f"its provider is replaced: {replaced_providers[_provider_urn(new['provider'])]}"
        elif new["type"].startswith("kubernetes:"):
            provider = new_all.get(_provider_urn(new["provider"]), {"inputs": {}})
            op, changes, reason = _kubernetes_step(old, new, provider["inputs"], failed)
        elif new["type"].startswith("random:"):
            op, changes = _random_step(old, new)
        elif new["type"] == BUCKET:
            op, changes = _bucket_step(old, new)
        elif new["type"].startswith("pulumi-python:dynamic/"):
            op, changes = _dynamic_step(old, new)
        else:
            changes = changed_paths(old["inputs"], new["inputs"])
            op = UPDATE if changes else SAME
        runs = new["type"] == JOB and not _suspended(new["inputs"]) and (
            op in REPLACEMENTS or (op == UPDATE and _suspended(old["inputs"]))
        )
        steps[urn] = Step(urn, new["type"], new["name"], op, [_path_text(p) for p in changes], reason, runs, object_name)

    kept = {id(r) for r in old_by_alias.values()}
    for urn, old in old_all.items():
        if old["custom"] and urn not in new_all and id(old) not in kept:
            object_name = str(_get(old["inputs"], ("metadata", "name")) if old["type"].startswith("kubernetes:") else "")
            steps[urn] = Step(urn, old["type"], old["name"], DELETE, object_name=object_name)
    return Plan(steps)


def _alias_index(old_all: dict[str, dict], new_all: dict[str, dict]) -> dict[str, dict]:
    """New URN -> old registration, through the new resource's aliases (URNs or name/type specs)."""
    index: dict[str, dict] = {}
    for urn, new in new_all.items():
        if urn in old_all:
            continue
        for alias in new.get("aliases") or []:
            target = alias
            if alias.startswith("{"):
                spec = json.loads(alias)
                target = spec.get("urn", "")
                if not target and "spec" in spec:
                    details = spec["spec"]
                    stack_project = "::".join(urn.split("::")[:2])
                    parent_urn = details.get("parentUrn", new["parent"])
                    parent_type = old_all.get(parent_urn, {}).get("type") or (parent_urn.split("::")[2].split("$")[-1] if parent_urn else "")
                    type_ = details.get("type", new["type"])
                    qualified = f"{parent_type}${type_}" if parent_type and not details.get("noParent") else type_
                    target = f"{stack_project}::{qualified}::{details.get('name', new['name'])}"
            if target in old_all:
                index[urn] = old_all[target]
                break
    return index


# ----- the order of the engine's steps -----------------------------------------

def waits_for(rendering: Rendering | dict) -> dict[str, set[str]]:
    """URN -> every URN it waits for, directly or not (components stand for their children).

    The Python SDK registers a resource only once its dependencies' URNs resolved,
    which is once their steps (awaits included) are done (E resource.py L190-260,
    source_eval.go L3023-3045): a dependency's step always comes first.
    """
    registrations = as_snapshot(rendering)["registrations"]
    children: dict[str, list[str]] = {}
    for r in registrations:
        children.setdefault(r["parent"], []).append(r["urn"])
    custom = {r["urn"]: r["custom"] for r in registrations}

    def expand(urn: str) -> set[str]:
        if custom.get(urn, True):
            return {urn}
        found: set[str] = set()
        for child in children.get(urn, []):
            found |= expand(child)
        return found

    direct = {r["urn"]: set().union(*[expand(d) for d in r["depends_on"]]) if r["depends_on"] else set() for r in registrations}
    closure: dict[str, set[str]] = {}

    def visit(urn: str, trail: frozenset = frozenset()) -> set[str]:
        if urn in closure:
            return closure[urn]
        assert urn not in trail, f"dependency cycle through {urn}"
        found: set[str] = set()
        for dependency in direct.get(urn, ()):
            found |= {dependency} | visit(dependency, trail | {urn})
        closure[urn] = found
        return found

    for urn in direct:
        visit(urn)
    return closure
