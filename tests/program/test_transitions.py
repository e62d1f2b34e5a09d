"""Every change of state is safe: what `pulumi up` would do, resource by resource (issue 14).

A *before* and an *after* rendering of the program under mocks are compared by
`transitions.plan`, which applies the engine's and the providers' replace rules
as read in their source (the citations are in tests/support/transitions.py: pulumi-
kubernetes provider/diff.go L23-205 and provider/provider.go L1433-1658 for
what replaces a Kubernetes object and whether it is deleted first, L486-560 for
the provider's cluster; pulumi step_generator.go L1264-1269 and L3074-3096 for
ignoreChanges, L2800-2926 for a replaced provider; terraform-provider-random
resource_id.go L60-84 and resource_password.go L570-720; terraform-provider-aws
s3/bucket.go L45-59; the dynamic providers' own diff()).

Held for every transition:
- no volume, claim or StatefulSet that holds data, no bucket and no generated
  secret is replaced (the share's read-only volumes may be, under new names,
  created before the old ones go);
- a one-shot Job runs only when the transition asks for it;
- paused, nothing held runs; resumed, exactly what would have run.
"""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from support import harness
from support import transitions as T
from components.cluster import ClusterBindingProvider, ClusterMoveRefused
from components.config import ConfigError
from components.cvat_release import RELEASES
from components.workspace import PAUSED_WARNING

NEXT_RELEASE = "v2.74.0"
# Pulumi names of the one-shot Jobs.
MIGRATE = "workspace-cvat-migrate"
SUPERUSER = "workspace-cvat-superuser"
BEFORE_UPGRADE = "workspace-database-backup-before-upgrade"
FINAL = "workspace-database-backup-final"
RESTORE = "workspace-database-restore"
BOOTSTRAP = "workspace-cloud-storages-job"
ENSURE_BUCKETS = "workspace-storage-ensure-buckets"
DATA_TYPES = (T.STATEFULSET, T.CLAIM, T.VOLUME, T.BUCKET, "kubernetes:core/v1:Namespace",
              "random:index/randomPassword:RandomPassword", "random:index/randomString:RandomString")
# Read-only volumes of the connected file share: no data of their own.
SHARE = re.compile(r"workspace-datasets-share-")


@pytest.fixture(autouse=True)
def ids_follow_inputs(monkeypatch):
    """A replaced RandomId gets a new value, as the real provider gives; a second CVAT release exists."""
    monkeypatch.setattr(harness.Mocks, "ids_from_inputs", True)
    monkeypatch.setitem(RELEASES, NEXT_RELEASE, dataclasses.replace(RELEASES["v2.73.0"], version=NEXT_RELEASE))


_RENDERED: dict[str, dict] = {}


def render(shape: str, **changes) -> dict:
    """The shape's rendering with these keys changed (None removes a key), as plain data (cached)."""
    identity = json.dumps([shape, changes, sorted(RELEASES)], sort_keys=True)
    if identity not in _RENDERED:
        stack, config, secrets = T.shape_config(shape)
        config = {**config, **changes}
        for key, value in changes.items():
            if value is None:
                del config[key]
        rendering = harness.render(config, stack=stack, secrets=[*secrets, *[k for k in ("adminPassword",) if k in changes]])
        _RENDERED[identity] = T.snapshot(rendering)
    return _RENDERED[identity]


def registrations(rendering: dict) -> list[dict]:
    return rendering["registrations"]


def assert_data_kept(plan: T.Plan, *, retained_bucket_may_move: bool = False, own_admin_password: bool = False) -> None:
    """Nothing that holds data is replaced or deleted; the share's volumes only under new names, made first."""
    for step in plan.steps.values():
        if step.type not in DATA_TYPES:
            continue
        if own_admin_password and step.name == "workspace-admin-password" and step.op == T.DELETE:
            continue  # adminPassword set: the generated one is no longer used
        if SHARE.match(step.name):
            if step.op in T.REPLACEMENTS or step.op == T.DELETE:
                assert step.op in (T.REPLACE, T.DELETE), f"share volume deleted before its replacement exists: {step}"
            continue
        if retained_bucket_may_move and step.type == T.BUCKET and step.op in T.REPLACEMENTS:
            continue  # checked by the caller: the old bucket is retained, its backups stay
        assert step.op in (T.SAME, T.UPDATE, T.CREATE), f"data would be lost: {step}"


def assert_share_moves_safely(before, plan: T.Plan) -> None:
    """A replaced share volume or claim keeps its URN and gets a new object name, made before the old one goes."""
    old_names = {r["urn"]: r["inputs"]["metadata"]["name"] for r in T.as_snapshot(before)["registrations"] if SHARE.match(r["name"]) and r["custom"]
                 and r["type"] in (T.CLAIM, T.VOLUME)}
    for step in plan.steps.values():
        if step.type in (T.CLAIM, T.VOLUME) and SHARE.match(step.name) and step.op in T.REPLACEMENTS:
            assert step.op == T.REPLACE and step.urn in old_names and step.object_name != old_names[step.urn], step


def state_after(before, after) -> dict:
    """The stack's state once `up` from `before` to `after` succeeded: ignored paths keep their old values."""
    old = {r["urn"]: r for r in T.as_snapshot(before)["registrations"]}
    plan = T.plan(before, after)
    registrations = []
    for new in T.as_snapshot(after)["registrations"]:
        step = plan.steps.get(new["urn"])
        if new["urn"] in old and (step is None or step.op not in T.REPLACEMENTS):
            new = {**new, "inputs": T.reset_ignored(old[new["urn"]]["inputs"], new["inputs"], new["ignore_changes"])}
        registrations.append(new)
    return {**T.as_snapshot(after), "registrations": registrations}


# ----- the classifier itself --------------------------------------------------

def registration(type_, name, inputs, **extra):
    return {"urn": f"urn:pulumi:s::labeling::{type_}::{name}", "type": type_, "name": name, "parent": "", "provider": "",
            "custom": True, "inputs": inputs, "depends_on": [], "ignore_changes": [], "delete_before_replace": None,
            "replace_on_changes": [], "aliases": [], **extra}


def one_step(old, new, **options):
    return next(iter(T.plan({"registrations": [old]}, {"registrations": [new]}, **options).steps.values()))


def test_the_classifier_follows_the_providers_rules():
    job = {"metadata": {"name": "a", "namespace": "n"}, "spec": {"template": {"spec": {"containers": [{"image": "x:1"}]}}}}
    changed = {**job, "spec": {"template": {"spec": {"containers": [{"image": "x:2"}]}}}}
    renamed = {**changed, "metadata": {"name": "b", "namespace": "n"}}
    assert one_step(registration(T.JOB, "j", job), registration(T.JOB, "j", job)).op == T.SAME
    same_name = one_step(registration(T.JOB, "j", job), registration(T.JOB, "j", changed))
    assert (same_name.op, same_name.runs) == (T.DELETE_BEFORE_REPLACE, True)
    assert one_step(registration(T.JOB, "j", job), registration(T.JOB, "j", renamed)).op == T.REPLACE
    # ignoreChanges resets the new value to the old one before the diff.
    ignored = one_step(registration(T.JOB, "j", job), registration(T.JOB, "j", changed, ignore_changes=["spec.template"]))
    assert ignored.op == T.SAME
    # A failed Job with replaceUnready is replaced even unchanged.
    unready = {**job, "metadata": {**job["metadata"], "annotations": {"pulumi.com/replaceUnready": "true"}}}
    assert one_step(registration(T.JOB, "j", unready), registration(T.JOB, "j", unready), failed_jobs=["j"]).op == T.DELETE_BEFORE_REPLACE
    # A suspended Job taken out of suspension runs; created suspended, it does not. Still
    # suspended, it is not complete: replaceUnready replaces it (deleting first: same name).
    suspended = {**job, "spec": {**job["spec"], "suspend": True}}
    assert one_step(registration(T.JOB, "j", suspended), registration(T.JOB, "j", job)).runs
    assert not T.plan({"registrations": []}, {"registrations": [registration(T.JOB, "j", suspended)]}).jobs_run()
    resumed = one_step(registration(T.JOB, "j", suspended), registration(T.JOB, "j", unready))
    assert (resumed.op, resumed.runs) == (T.DELETE_BEFORE_REPLACE, True)
    # ignoreChanges gives up on a path whose parent is missing on one side (the engine logs it).
    emptied = {**job, "spec": {"template": {"spec": {"containers": []}}}}
    given_up = one_step(registration(T.JOB, "j", emptied),
                        registration(T.JOB, "j", changed, ignore_changes=["spec.template.spec.containers[0].image"]))
    assert given_up.op == T.DELETE_BEFORE_REPLACE
    # A claim's class replaces it; its size does not.
    claim = {"metadata": {"name": "c"}, "spec": {"storageClassName": "a", "resources": {"requests": {"storage": "1Gi"}}}}
    assert one_step(registration(T.CLAIM, "c", claim), registration(T.CLAIM, "c", {**claim, "spec": {**claim["spec"], "storageClassName": "b"}})).op == T.DELETE_BEFORE_REPLACE
    assert one_step(registration(T.CLAIM, "c", claim), registration(T.CLAIM, "c", {**claim, "spec": {**claim["spec"], "resources": {"requests": {"storage": "2Gi"}}}})).op == T.UPDATE
    # random: keepers replace (create first); aws: a bucket's name replaces, deleting first.
    rid = "random:index/randomId:RandomId"
    assert one_step(registration(rid, "r", {"byteLength": 4, "keepers": {"a": "1"}}), registration(rid, "r", {"byteLength": 4, "keepers": {"a": "2"}})).op == T.REPLACE
    assert one_step(registration(T.BUCKET, "b", {"bucket": "x"}), registration(T.BUCKET, "b", {"bucket": "y"})).op == T.DELETE_BEFORE_REPLACE
    assert one_step(registration(T.BUCKET, "b", {"bucket": "x", "tags": {}}), registration(T.BUCKET, "b", {"bucket": "x", "tags": {"a": "b"}})).op == T.UPDATE


def test_the_kubernetes_provider_is_replaced_only_for_another_cluster():
    old = registration("pulumi:providers:kubernetes", "k", {"context": "a", "clusterIdentifier": "a"})
    assert one_step(old, registration("pulumi:providers:kubernetes", "k", {"context": "b", "clusterIdentifier": "b"})).op == T.REPLACE
    # Adding the identifier does not replace; without it, the kubeconfig decides (when one is parsed).
    bare = registration("pulumi:providers:kubernetes", "k", {"context": "a"})
    assert one_step(bare, old).op == T.UPDATE
    moved = registration("pulumi:providers:kubernetes", "k", {"context": "b"})
    assert one_step(bare, moved).op == T.UPDATE
    assert one_step(bare, moved, kubeconfig={"a": "cluster-1", "b": "cluster-2"}).op == T.REPLACE


# ----- the renderings of earlier releases -------------------------------------

@pytest.mark.parametrize("commit", ["df6eeca", "ca26037"])
@pytest.mark.parametrize("shape", T.SHAPES)
def test_upgrading_this_program_keeps_data_and_runs_only_changed_scripts(commit, shape):
    before = T.load_rendering(commit, shape)
    after = render(shape)
    plan = T.plan(before, after)
    assert_data_kept(plan)
    assert_share_moves_safely(before, plan)
    # Full URNs, parents' types and all, as the engine builds them: every stateful resource is still there.
    old_urns = T.full_urns(before)
    new_urns = set(T.full_urns(after).values())
    stateful = [r["urn"] for r in before["registrations"] if r["type"] in DATA_TYPES or r["type"].startswith("random:")]
    assert stateful and not [old_urns[urn] for urn in stateful if old_urns[urn] not in new_urns]
    # A Job runs again only when what it runs changed: its script (the revision keeps its hash).
    scripts = {
        SUPERUSER: ("workspace-cvat-scripts", "superuser.py"),
        BOOTSTRAP: ("workspace-cloud-storages-scripts", "cloud_storages.py"),
        ENSURE_BUCKETS: ("workspace-storage-bucket-scripts", "ensure-buckets.sh"),
    }
    changed_scripts = {job for job, (configmap, key) in scripts.items() if _configmap_data(before, configmap, key) != _configmap_data(after, configmap, key)}
    allowed = set(changed_scripts)
    if commit == "df6eeca":
        # That release took no backup before its migrations: the Job is new, its first backup runs once.
        allowed.add(BEFORE_UPGRADE)
    assert plan.jobs_run() <= allowed, plan.jobs_run() - allowed


# The commit the restructuring (issue 17) started from: moving code must change nothing the engine sees.
RESTRUCTURING_START = "f927cfc"
# The one change the restructuring makes to a rendering: the README became a front door, and a
# warning that sent people to one of its sections names the page that section moved to.
REPOINTED = ("(see 'Upgrading this program' in the README).",
             "(see 'The release where ingressNamespaces defaults to ingress-nginx' in docs/operations/upgrade.md).")


def _by_urn(rendering: dict) -> dict[str, dict]:
    """Registrations by URN, their dependency lists as sets (the order of `depends_on` means nothing)."""
    return {r["urn"]: {**r, "depends_on": sorted(r["depends_on"] or [])} for r in rendering["registrations"]}


@pytest.mark.parametrize("shape", T.SHAPES)
def test_the_restructuring_changes_no_resource(shape):
    before = T.load_rendering(RESTRUCTURING_START, shape)
    after = render(shape)
    assert not T.plan(before, after).changes()
    assert T.full_urns(before) == T.full_urns(after)
    old, new = _by_urn(before), _by_urn(after)
    assert old.keys() == new.keys()
    assert [urn for urn in old if old[urn] != new[urn]] == []
    # On purpose: the warning that pointed at a README section now points where that section moved.
    moved = [warning.replace(*REPOINTED) for warning in before["warnings"]]
    assert before["outputs"] == after["outputs"] and moved == after["warnings"]


def _configmap_data(rendering, name, key):
    for r in T.as_snapshot(rendering)["registrations"]:
        if r["name"] == name:
            return r["inputs"].get("data", {}).get(key)
    return None


def test_the_share_of_the_first_release_moves_to_new_names():
    before = T.load_rendering("df6eeca", "minio-external")
    plan = T.plan(before, render("minio-external"))
    volume, claim = plan.of("workspace-datasets-share-frames"), plan.of("workspace-datasets-share-frames-claim")
    # The old mount options changed spec.csi: a new volume and claim are made first, then the old pair goes.
    assert volume.op == T.REPLACE and claim.op == T.REPLACE
    assert re.fullmatch(r"cvat-lab-share-frames-[0-9a-f]{8}", volume.object_name)
    server = plan.of("workspace-cvat-server")
    assert server.op == T.UPDATE and any("claimName" in path for path in server.changed)


def test_full_urns_carry_every_parent_type():
    urns = T.full_urns(render("acme"))
    postgres = next(urn for urn in urns.values() if urn.endswith("::workspace-database-server"))
    assert "::labeling:index:Workspace$labeling:index:Database$kubernetes:apps/v1:StatefulSet::" in postgres


def test_an_edited_rendering_is_refused(tmp_path):
    source = harness.ROOT / "tests" / "data" / "renderings"
    for name in ("SHA256SUMS", "ca26037.json"):
        (tmp_path / name).write_bytes((source / name).read_bytes())
    assert T.load_rendering("ca26037", "dev", directory=tmp_path)["registrations"]
    (tmp_path / "ca26037.json").write_text((source / "ca26037.json").read_text().replace("cvat.localhost", "cvat.example"))
    with pytest.raises(AssertionError, match="differs from SHA256SUMS"):
        T.load_rendering("ca26037", "dev", directory=tmp_path)


# ----- each config key, changed on its own --------------------------------------

def _changes(shape: str) -> dict[str, dict]:
    """Each key -> the change of it for this shape: {key: new value} (None removes a key); a key that
    cannot change alone (tlsSecretName against certManagerIssuer) brings the one it replaces."""
    _, config, _ = T.shape_config(shape)
    external = not config.get("minioInCluster")
    values: dict[str, object] = {
        "description": "Another description",
        "datasetBuckets": [*config.get("datasetBuckets", []), "more-frames"],
        "backupBucket": "another-backup-bucket",
        "backupRetentionDays": 90,
        "backupSchedule": "30 1 * * *",
        "databaseStorageSize": "50Gi",
        "storageClassName": "fast-ssd",
        "restoreFrom": "" if config.get("restoreFrom") else "latest",
        "cvatVersion": NEXT_RELEASE,
        "size": "medium",
        "workers": ["annotation"],
        "cvatDataSize": "40Gi",
        "cvatDataAccessMode": "ReadWriteMany",
        "datasetInventoryLimit": 5000,
        "adminUsername": "someone-else",
        "adminEmail": "someone@example.com",
        "adminPassword": "Another-Admin-Pass-5678",
        "hostname": "other.localhost" if not external else "other.example",
        "ingressClassName": "traefik",
        "egressAllow": ["10.20.30.40"],
        "ingressNamespaces": ["ingress-nginx"],
        "ingressAllowCidrs": ["203.0.113.0/24"],
        "projects": [{"name": "street", "labels": ["car", "pedestrian"]}],
        "paused": True,
    }
    changes = {key: {key: value} for key, value in values.items()}
    if config.get("restoreFrom"):
        changes["restoreForce"] = {"restoreForce": True}
    if external:
        changes.update({
            "storageAccessKey": {"storageAccessKey": "ANOTHERACCESSKEY0001"},
            "storageSecretKey": {"storageSecretKey": "another-secret-key-value"},
            "storageRegion": {"storageRegion": "nl-ams" if config.get("storageProvider") == "scaleway" else "eu-west-2"},
            "storageEndpoint": {"storageEndpoint": "https://s3.other.example:9000"},
            "datasetAccess": {"datasetAccess": "cloudStorage" if config.get("datasetAccess") == "both" else "both"},
            "datasetCsiDriver": {"datasetCsiDriver": "other.csi.example"},
        })
        if config.get("storageEndpoint"):
            # The same server, named as another provider: nothing to redo.
            changes["storageProvider"] = {"storageProvider": "scaleway" if config.get("storageProvider") == "minio" else "minio"}
        if config.get("certManagerIssuer"):
            changes["certManagerIssuer"] = {"certManagerIssuer": "letsencrypt-staging"}
            changes["tlsSecretName"] = {"tlsSecretName": "workspace-tls", "certManagerIssuer": None}
        else:
            changes["tlsSecretName"] = {"tlsSecretName": "workspace-tls", "allowInsecureHttp": None}
            changes["certManagerIssuer"] = {"certManagerIssuer": "letsencrypt", "allowInsecureHttp": None}
            changes["allowInsecureHttp"] = {"allowInsecureHttp": None, "tlsSecretName": "workspace-tls"}
    else:
        changes.update({
            "minioImage": {"minioImage": "quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z"},
            "storageRegion": {"storageRegion": "eu-west-2"},
            "allowInsecureHttp": {"allowInsecureHttp": True},
            "kubeContext": {"kubeContext": "k3d-labeling"},  # a first kubeContext on the dev stack: recorded
            "datasetCsiDriver": {"datasetCsiDriver": "other.csi.example"},  # no share: nothing changes
        })
    return changes


# Changes the config refuses for a shape, before anything is created.
REFUSED = {
    ("dev", "datasetAccess"): ("share", "datasetAccess"),  # the nodes cannot mount the in-cluster MinIO
    ("dev", "restoreForce"): (True, "restoreForce"),  # only with restoreFrom
    ("acme", "restoreForce"): (True, "restoreForce"),
    # Another kind of object storage is another workspace: the keys that go with it are missing.
    ("dev", "storageProvider"): ("scaleway", "minioInCluster"),
    ("acme", "storageProvider"): ("minio", "storageEndpoint"),
    ("dev", "minioInCluster"): (False, "storageEndpoint"),
    ("acme", "minioInCluster"): (True, "minioInCluster"),
    ("minio-external", "minioInCluster"): (True, "storageEndpoint"),
}


def _expected_runs(shape: str, key: str) -> set[str]:
    _, config, _ = T.shape_config(shape)
    registers = config.get("datasetAccess", "cloudStorage") in ("cloudStorage", "both")
    if key == "cvatVersion":
        # A release: the backup, then its migrations; the admin step runs with the new release.
        return {BEFORE_UPGRADE, MIGRATE, SUPERUSER}
    if key in ("adminUsername", "adminEmail", "adminPassword"):
        return {SUPERUSER}
    if key == "restoreFrom":
        return set() if config.get("restoreFrom") else {RESTORE}
    if key == "restoreForce":
        return {RESTORE} if config.get("restoreFrom") else set()
    if key == "paused":
        return {FINAL}
    if key == "projects":
        return {BOOTSTRAP}
    if key == "datasetAccess":
        return {BOOTSTRAP} if not registers else set()  # newly registered buckets
    if key == "datasetBuckets":
        return ({BOOTSTRAP} if registers else set()) | (set() if shape != "dev" else {ENSURE_BUCKETS})
    # storageProvider: the default region is the provider's (fr-par, us-east-1): the storages' region changes.
    if key in ("storageAccessKey", "storageSecretKey", "storageRegion", "storageEndpoint", "storageProvider"):
        return {BOOTSTRAP} if registers else set()
    if key == "backupBucket" and shape == "dev":
        return {ENSURE_BUCKETS}  # the in-cluster MinIO gets the bucket
    return set()


def _loop_shape(key: str, index: int) -> str:
    """The shape a key's change is tested on in the fast tier: the shapes in turn, the first that accepts
    the change; a key no shape accepts (minioInCluster) is tested where it is refused."""
    turn = [*T.SHAPES[index % len(T.SHAPES):], *T.SHAPES[:index % len(T.SHAPES)]]
    accepted = [shape for shape in turn if key in _changes(shape) and (shape, key) not in REFUSED]
    return (accepted or [shape for shape in turn if (shape, key) in REFUSED])[0]


def _sweep(cases: list[tuple[str, str]]) -> list:
    """Each key on one shape in the fast tier (the shapes in turn), and every refusal (it renders nothing);
    every other shape × key is `slow`, for the whole suite: a rendering each, and the loop while working
    needs each key once."""
    keys = sorted({key for _, key in cases})
    loop = {(_loop_shape(key, index), key) for index, key in enumerate(keys)} | set(REFUSED)
    return [pytest.param(shape, key, id=f"{shape}-{key}", marks=() if (shape, key) in loop else pytest.mark.slow)
            for shape, key in cases]


CASES = [(shape, key) for shape in T.SHAPES for key in _changes(shape)] + sorted(REFUSED)


@pytest.mark.parametrize("shape,key", _sweep(CASES))
def test_a_config_change_keeps_data_and_runs_only_what_it_asks_for(shape, key):
    if (shape, key) in REFUSED:
        value, named = REFUSED[(shape, key)]
        with pytest.raises(ConfigError, match=named):
            render(shape, **{key: value})
        return
    before = render(shape)
    after = render(shape, **_changes(shape)[key])
    plan = T.plan(before, after)
    assert_data_kept(plan, retained_bucket_may_move=key == "backupBucket", own_admin_password=key == "adminPassword")
    assert_share_moves_safely(before, plan)
    if key == "backupBucket" and shape != "dev":
        bucket = next(r for r in registrations(after) if r["type"] == T.BUCKET)
        assert bucket["retain_on_delete"]  # the old bucket and its backups stay where they are
    assert plan.jobs_run() == _expected_runs(shape, key), (key, plan.jobs_run())


def test_a_new_release_backs_up_before_it_migrates():
    after = render("acme", cvatVersion=NEXT_RELEASE)
    waits = T.waits_for(after)
    urn = _urns(after)
    assert urn[BEFORE_UPGRADE] in waits[urn[MIGRATE]]
    plan = T.plan(render("acme"), after)
    assert plan.of(BEFORE_UPGRADE).object_name == "backup-before-v2-74-0" and plan.of(BEFORE_UPGRADE).op == T.REPLACE


def test_a_failed_job_is_retried_with_the_current_template():
    # The endpoint was wrong and the restore failed: the next up replaces it with the corrected one.
    before = render("minio-external")
    after = render("minio-external", storageEndpoint="https://minio.fixed.example:9000")
    assert RESTORE not in T.plan(before, after).jobs_run()
    retried = T.plan(before, after, failed_jobs=[RESTORE])
    assert retried.of(RESTORE).runs
    job = next(r for r in registrations(after) if r["name"] == RESTORE)
    assert "minio.fixed.example" in str(job["inputs"]["spec"]["template"])


def test_an_unchanged_stack_shows_no_change():
    for shape in T.SHAPES:
        assert T.plan(render(shape), render(shape)).changes() == [], shape


# ----- moving to another cluster, or namespace ----------------------------------

def test_another_kube_context_is_refused_before_any_step():
    before, after = render("acme"), render("acme", kubeContext="another-cluster")
    with pytest.raises(ClusterMoveRefused, match=r"kubeContext changed from 'the-cluster' to 'another-cluster'.*Nothing was changed"):
        T.plan(before, after)
    # The refusal comes first: the Kubernetes provider (and so every object) waits for the binding.
    waits = T.waits_for(after)
    binding = next(r["urn"] for r in registrations(after) if r["type"].endswith("ClusterBinding"))
    provider = next(r for r in registrations(after) if r["type"] == "pulumi:providers:kubernetes")
    assert binding in waits[provider["urn"]]
    # Were it not refused, the provider and every object on it would be replaced.
    assert provider["inputs"]["clusterIdentifier"] == "another-cluster"
    assert T.plan(before, {**after, "registrations": [r for r in registrations(after) if not r["type"].endswith("ClusterBinding")]}).of(
        "workspace-database-server").op == T.REPLACE


def test_another_namespace_is_refused():
    with pytest.raises(ClusterMoveRefused, match="namespace changed from 'cvat-acme' to 'labeling'"):
        T.plan(render("acme"), render("acme", namespace="labeling"))


def test_the_binding_records_a_first_kube_context_and_refuses_a_change():
    provider = ClusterBindingProvider()
    assert provider.diff("id", {"kube_context": "", "namespace": "cvat-dev"}, {"kube_context": "k3d", "namespace": "cvat-dev"}).changes
    assert not provider.diff("id", {"kube_context": "k3d", "namespace": "n"}, {"kube_context": "k3d", "namespace": "n"}).changes
    with pytest.raises(ClusterMoveRefused):
        provider.diff("id", {"kube_context": "k3d", "namespace": "n"}, {"kube_context": "", "namespace": "n"})


# ----- pause and resume ---------------------------------------------------------

@pytest.mark.parametrize("shape", T.SHAPES)
def test_pause_takes_the_final_backup_and_resume_runs_nothing(shape):
    running, paused = render(shape), render(shape, paused=True)
    pause = T.plan(running, paused)
    assert_data_kept(pause)
    assert pause.jobs_run() == {FINAL}
    assert not [s for s in pause.steps.values() if s.type == T.JOB and s.op in (T.DELETE, *T.REPLACEMENTS)]
    resume = T.plan(state_after(running, paused), render(shape))
    assert_data_kept(resume)
    # The backup before an upgrade stayed declared: a resume takes no backup.
    assert resume.jobs_run() == set()
    assert resume.of(FINAL).op == T.DELETE


HELD = ("cvatVersion", "size", "hostname", "egressAllow", "projects", "adminPassword", "restoreFrom", "datasetBuckets")


@pytest.mark.parametrize("shape,key", _sweep([(shape, key) for shape in T.SHAPES for key in HELD]))
def test_changes_made_while_paused_wait_for_resume(shape, key):
    change = _changes(shape)[key]
    if key == "restoreFrom" and T.shape_config(shape)[1].get("restoreFrom"):
        change = {"restoreFrom": "lab/database/20261201T030000Z.json"}  # a new request (a removed one deletes a finished Job)
    running = render(shape)
    paused = render(shape, paused=True)
    paused_changed = render(shape, paused=True, **change)
    state = state_after(running, paused)
    while_paused = T.plan(state, paused_changed)
    assert_data_kept(while_paused, own_admin_password=key == "adminPassword")
    jobs = [s for s in while_paused.steps.values() if s.type == T.JOB]
    assert not [s for s in jobs if s.op in (T.DELETE, *T.REPLACEMENTS)], [s for s in jobs if s.op != T.SAME]
    # A Job the change declares for the first time is created suspended: it runs nothing.
    assert while_paused.jobs_run() == set()
    assert PAUSED_WARNING in paused_changed["warnings"] and key in PAUSED_WARNING
    # Resumed, exactly what the change runs from a running workspace.
    held_state = state_after(state, paused_changed)
    resumed = T.plan(held_state, render(shape, **change))
    assert_data_kept(resumed)
    assert_no_job_meets_its_own_ghost(held_state, resumed)
    expected = {RESTORE} if key == "restoreFrom" else _expected_runs(shape, key)
    assert resumed.jobs_run() == T.plan(running, render(shape, **change)).jobs_run() == expected


def assert_no_job_meets_its_own_ghost(state: dict, plan: T.Plan) -> None:
    """A Job deleted first and made again under its name is deleted without waiting only in the
    background: with skipAwait a foreground delete returns while the object is still there, and
    the create of its replacement fails with AlreadyExists (pulumi-kubernetes await/await.go)."""
    old = {r["urn"]: r for r in state["registrations"]}
    for step in plan.steps.values():
        if step.type == T.JOB and step.op == T.DELETE_BEFORE_REPLACE:
            annotations = old[step.urn]["inputs"]["metadata"].get("annotations", {})
            if annotations.get("pulumi.com/skipAwait") == "true":
                assert annotations.get("pulumi.com/deletionPropagationPolicy") == "background", step


def test_a_paused_workspace_runs_no_failed_job():
    # A Job that failed before the pause is replaced by a suspended one (the program's values):
    # nothing runs against the stopped database; on resume it runs.
    failed = [MIGRATE, SUPERUSER, BOOTSTRAP, BEFORE_UPGRADE]
    running, paused = render("acme"), render("acme", paused=True)
    pause = T.plan(running, paused, failed_jobs=failed)
    assert pause.jobs_run() == {FINAL}
    replaced = {step.name for step in pause.with_op(*T.REPLACEMENTS) if step.type == T.JOB}
    assert replaced == set(failed)
    state = state_after(running, paused)
    assert T.plan(state, paused, failed_jobs=failed).jobs_run() == set()
    # No held Job is even updated by a pause.
    assert not [step for step in pause.steps.values() if step.type == T.JOB and step.op == T.UPDATE]
    assert T.plan(state, render("acme")).jobs_run() == set()
    # The suspended replacements run on resume, from the program's values, deleted in the background first.
    replaced_state = {**state, "registrations": [
        next((r for r in paused["registrations"] if r["urn"] == old["urn"]), old) if old["name"] in failed else old
        for old in state["registrations"]]}
    resume = T.plan(replaced_state, render("acme"))
    assert resume.jobs_run() == set(failed)
    assert_no_job_meets_its_own_ghost(replaced_state, resume)


def _urns(rendering):
    return {r["name"]: r["urn"] for r in registrations(rendering)}


CVAT_PODS = ("workspace-cvat-server", "workspace-cvat-ui", "workspace-cvat-opa", "workspace-cvat-worker-import",
             "workspace-cvat-worker-export", "workspace-cvat-worker-chunks", "workspace-cvat-worker-utils",
             "workspace-cvat-worker-annotation", "workspace-cvat-worker-webhooks", "workspace-cvat-worker-quality")
STORES = ("workspace-cvat-redis", "workspace-cvat-kvrocks")
POSTGRES = "workspace-database-server"


@pytest.mark.parametrize("shape", T.SHAPES)
def test_the_pause_order_is_pods_stores_final_backup_postgres(shape):
    paused = render(shape, paused=True)
    waits, urn = T.waits_for(paused), _urns(paused)
    for store in STORES:
        for pod in CVAT_PODS:
            assert urn[pod] in waits[urn[store]], f"{store} stops before {pod}"
    for part in (*CVAT_PODS, *STORES):
        assert urn[part] in waits[urn[FINAL]], f"the final backup starts before {part} stopped"
    assert urn[FINAL] in waits[urn[POSTGRES]]
    # Nothing of CVAT waits for PostgreSQL while pausing (it would stop last, so nothing could).
    assert not any(urn[POSTGRES] in waits[urn[part]] for part in (*CVAT_PODS, *STORES))


@pytest.mark.parametrize("shape", T.SHAPES)
def test_resume_starts_postgres_and_the_stores_before_cvat(shape):
    running = render(shape)
    waits, urn = T.waits_for(running), _urns(running)
    for pod in CVAT_PODS:
        assert urn[POSTGRES] in waits[urn[pod]], f"{pod} starts before PostgreSQL"
        for store in STORES:
            assert urn[store] in waits[urn[pod]], f"{pod} starts before {store}"
    assert not any(urn[pod] in waits[urn[store]] for pod in CVAT_PODS for store in STORES)
