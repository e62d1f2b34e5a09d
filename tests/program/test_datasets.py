"""Dataset buckets: preflight and inventory against a real S3 server; share and registration under mocks."""

import re
import tracemalloc

import pytest

from components.datasets import SHARE_MOUNT_OPTIONS
from components.inventory import DatasetInventoryProvider, InventoryError, count_bucket
from support import harness
from support.harness import ROOT, render
from support.stacks import SCALEWAY, SECRETS, keys_of, with_
from support.dataset_buckets import (
    DEV,
    keys_denied,
    new_bucket,
)

MIXED = {
    "cats/IMG_0001.JPG": 1000,
    "cats/img_0002.jpeg": 1100,
    "cats/deep/nested/frame.png": 900,
    "dogs/scan.TIFF": 5000,
    "dogs/photo.webp": 700,
    "dogs/anim.gif": 300,
    "video/drive-01.mp4": 100_000,
    "video/nested/drive-02.MOV": 200_000,
    "README.txt": 50,
    "labels/annotations.json": 400,
    "logo.svg": 80,
    "data.csv": 60,
    "cats/": 0,  # a folder marker
}


# ----- inventory ------------------------------------------------------------

def test_inventory_counts_images_videos_and_the_rest(moto):
    bucket = new_bucket(moto, MIXED)
    counts = count_bucket(moto.client(), bucket, limit=100_000)
    assert counts == {
        "images": 6,
        "videos": 2,
        "ignored": 4,  # txt, json, svg, csv
        "bytes": sum(MIXED.values()),
        "imageBytes": 1000 + 1100 + 900 + 5000 + 700 + 300,
        "videoBytes": 300_000,
        "truncated": False,
    }


def test_inventory_of_an_empty_bucket(moto):
    assert count_bucket(moto.client(), new_bucket(moto), limit=10) == {
        "images": 0, "videos": 0, "ignored": 0, "bytes": 0, "imageBytes": 0, "videoBytes": 0, "truncated": False,
    }


def test_inventory_stops_at_the_limit_and_says_so(moto):
    bucket = new_bucket(moto, MIXED)
    counts = count_bucket(moto.client(), bucket, limit=5)
    assert counts["truncated"] is True
    assert counts["images"] + counts["videos"] + counts["ignored"] == 5
    exact = count_bucket(moto.client(), bucket, limit=12)
    assert exact["truncated"] is False


class ListingOf:
    """A client whose list_objects_v2 paginator yields `count` keys, page by page, made on the fly.

    Stands in for a bucket too large to fill on the test server: the pages look like
    boto3's (Contents of Key/Size dicts, PageSize keys at most) and only the page being
    read exists in memory, so what counting holds on top of it is counting's own.
    """

    def __init__(self, count: int):
        self.count = count
        self.pages = 0
        self.page_sizes: set[int] = set()

    def get_paginator(self, operation):
        assert operation == "list_objects_v2"
        return self

    def paginate(self, Bucket, PaginationConfig):
        size = PaginationConfig["PageSize"]
        self.page_sizes.add(size)
        for start in range(0, self.count, size):
            self.pages += 1
            yield {"Contents": [
                {"Key": f"frames/{i // 1000:05d}/{i:07d}.{'jpg' if i % 10 else 'txt'}", "Size": 10}
                for i in range(start, min(start + size, self.count))
            ]}


def peak_memory_of_counting(count):
    client = ListingOf(count)
    tracemalloc.start()
    try:
        counts = count_bucket(client, "huge", limit=10_000_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return counts, peak, client


@pytest.mark.slow  # a memory measure, like the benchmarks
def test_inventory_memory_does_not_grow_with_the_number_of_objects():
    small, small_peak, _ = peak_memory_of_counting(10_000)
    large, large_peak, client = peak_memory_of_counting(100_000)
    assert (large["images"], large["ignored"], large["bytes"], large["truncated"]) == (90_000, 10_000, 1_000_000, False)
    assert (small["images"], small["ignored"]) == (9_000, 1_000)
    assert client.pages == 100 and client.page_sizes == {1000}
    # Ten times the keys, the same peak (one page); holding the keys would take ten times the memory.
    assert large_peak < small_peak * 1.25 + 64 * 1024, f"{small_peak} bytes for 10,000 keys, {large_peak} for 100,000"
    assert large_peak < 4 * 2**20, f"peak {large_peak / 2**20:.1f} MiB"


def test_inventory_reads_every_page_of_a_real_listing(moto):
    objects = {f"shots/{i:03d}.{'png' if i % 5 else 'mov'}": i for i in range(25)}
    bucket = new_bucket(moto, {**objects, "shots/": 0})
    client = moto.client()
    listings = []
    client.meta.events.register("before-call.s3.ListObjectsV2", lambda params, **_: listings.append(params))
    counts = count_bucket(client, bucket, limit=100, page_size=10)
    assert (counts["images"], counts["videos"], counts["ignored"], counts["truncated"]) == (20, 5, 0, False)
    assert counts["bytes"] == sum(objects.values())
    assert counts["videoBytes"] == sum(size for key, size in objects.items() if key.endswith(".mov"))
    # 26 keys (with the folder marker) in pages of 10: three requests.
    assert len(listings) == 3


def test_inventory_provider_recounts_on_refresh_and_when_inputs_change(moto):
    bucket = new_bucket(moto, {"a.jpg": 10})
    props = {"endpoint_url": moto.url, "region": "us-east-1", "access_key": moto.access_key,
             "secret_key": moto.secret_key, "buckets": [bucket], "limit": 1000, "datasets": None}
    provider = DatasetInventoryProvider()
    created = provider.create(props).outs
    assert created["datasets"][bucket]["images"] == 1
    moto.client().put_object(Bucket=bucket, Key="b.mp4", Body=b"x")
    # Same inputs: no change (an unchanged stack passes `pulumi preview --expect-no-changes`)...
    assert provider.diff("dataset-inventory", created, props).changes is False
    # ...and a refresh (`pulumi refresh`, `pulumi up --refresh`) recounts.
    refreshed = provider.read("dataset-inventory", created).outs
    assert refreshed["datasets"][bucket]["videos"] == 1
    assert provider.diff("dataset-inventory", refreshed, props).changes is False
    # New inputs: an update, which recounts.
    moto.client().put_object(Bucket=bucket, Key="c.png", Body=b"x")
    limited = {**props, "limit": 2}
    assert provider.diff("dataset-inventory", refreshed, limited).changes
    updated = provider.update("dataset-inventory", refreshed, limited).outs
    assert updated["datasets"][bucket]["truncated"] is True
    assert updated["datasets"][bucket]["images"] + updated["datasets"][bucket]["videos"] == 2


def inventory_state(**inputs):
    """The inputs a DatasetInventory sends (`datasets` None), and the outputs its state keeps for them."""
    from pulumi.dynamic.dynamic import serialize_provider

    news = {"endpoint_url": "https://s3.fr-par.scw.cloud", "region": "fr-par", "access_key": "SCWACCESS",
            "secret_key": "secret", "buckets": ["acme-images", "acme.videos"], "limit": 5000, "datasets": None,
            "__provider": serialize_provider(DatasetInventoryProvider())}
    counts = {"images": 3, "videos": 1, "ignored": 0, "bytes": 40, "imageBytes": 30, "videoBytes": 10, "truncated": False}
    olds = {**news, "datasets": {"acme-images": counts, "acme.videos": {"error": "the bucket does not exist (NoSuchBucket)"}}}
    return olds, {**news, **inputs}


def test_inventory_diff_of_unchanged_inputs_is_no_change():
    olds, news = inventory_state()
    assert "__provider" in olds and "__provider" in news
    diff = DatasetInventoryProvider().diff("dataset-inventory", olds, news)
    assert diff.changes is False  # not None either: None lets the engine compare, and it would see `datasets`
    assert not diff.replaces


@pytest.mark.parametrize(
    "change",
    [
        {"buckets": ["acme-images"]},
        {"buckets": ["acme-images", "acme.videos", "acme-more"]},
        {"buckets": ["acme.videos", "acme-images"]},
        {"limit": 100},
        {"endpoint_url": "https://s3.nl-ams.scw.cloud"},
        {"region": "nl-ams"},
        {"access_key": "SCWROTATED"},
        {"secret_key": "rotated"},
        {"__provider": "another-serialized-provider"},
    ],
    ids=lambda change: "-".join(f"{key}={value}" for key, value in change.items()),
)
def test_inventory_diff_of_changed_inputs_is_an_update(change):
    olds, news = inventory_state(**change)
    diff = DatasetInventoryProvider().diff("dataset-inventory", olds, news)
    assert diff.changes is True
    assert not diff.replaces and not diff.delete_before_replace  # an update, never a replacement


def test_inventory_diff_ignores_the_counts_and_sees_unknown_inputs():
    from pulumi.runtime import rpc

    olds, news = inventory_state()
    recounted = {**olds, "datasets": {"acme-images": {"error": "access denied (AccessDenied)"}}}
    assert DatasetInventoryProvider().diff("dataset-inventory", recounted, news).changes is False
    # In a preview, an input not known yet (e.g. an endpoint from another resource) may differ.
    _, unknown = inventory_state(endpoint_url=rpc.UNKNOWN)
    assert DatasetInventoryProvider().diff("dataset-inventory", olds, unknown).changes is True


def inventory_props(server, buckets, **keys):
    return {"endpoint_url": server.url, "region": "us-east-1", "access_key": server.access_key,
            "secret_key": server.secret_key, "buckets": buckets, "limit": 1000, **keys}


def test_refresh_records_a_deleted_bucket_and_counts_the_others(moto):
    kept, deleted = new_bucket(moto, {"a.jpg": 10}), new_bucket(moto, {"b.mp4": 20})
    provider = DatasetInventoryProvider()
    created = provider.create(inventory_props(moto, [kept, deleted])).outs
    assert created["datasets"][deleted]["videos"] == 1
    moto.client().delete_object(Bucket=deleted, Key="b.mp4")
    moto.client().delete_bucket(Bucket=deleted)
    refreshed = provider.read("dataset-inventory", created)
    assert refreshed.id == "dataset-inventory"  # the inventory itself is still there
    datasets = refreshed.outs["datasets"]
    assert datasets[kept]["images"] == 1
    assert set(datasets[deleted]) == {"error"} and "does not exist" in datasets[deleted]["error"]
    # An update (inputs changed) records it the same way instead of failing.
    updated = provider.update("dataset-inventory", created, inventory_props(moto, [kept, deleted])).outs
    assert updated["datasets"] == datasets


def test_refresh_records_a_forbidden_bucket_and_counts_the_others(moto_with_auth):
    readable, forbidden = new_bucket(moto_with_auth, {"a.jpg": 1, "b.png": 2}), new_bucket(moto_with_auth, {"c.jpg": 3})
    props = inventory_props(moto_with_auth, [readable, forbidden], **keys_denied(moto_with_auth, forbidden))
    provider = DatasetInventoryProvider()
    for outs in (provider.create(props).outs, provider.read("dataset-inventory", props).outs):
        assert outs["datasets"][readable]["images"] == 2
        assert set(outs["datasets"][forbidden]) == {"error"}
        assert outs["datasets"][forbidden]["error"].startswith("access denied (AccessDenied)")


def test_refresh_with_refused_keys_fails_and_says_which_keys(moto_with_auth):
    bucket = new_bucket(moto_with_auth, {"a.jpg": 1})
    props = inventory_props(moto_with_auth, [bucket], secret_key="revoked-secret-key")
    with pytest.raises(InventoryError, match="SignatureDoesNotMatch") as raised:
        DatasetInventoryProvider().read("dataset-inventory", props)
    assert "keys kept in the stack's state" in str(raised.value) and "pulumi up" in str(raised.value)
    assert "revoked-secret-key" not in str(raised.value)


# ----- the share: read-only, and geesefs never writes ------------------------

def test_share_mount_options_keep_the_buckets_unchanged():
    options = SHARE_MOUNT_OPTIONS.split()
    # Read-only mount, read-only modes for CVAT's user.
    assert options[options.index("-o") + 1] == "ro"
    assert options[options.index("--dir-mode") + 1] == "0555"
    assert options[options.index("--file-mode") + 1] == "0444"
    # geesefs aborts a bucket's multipart uploads older than 48 h at every mount, read-only or not.
    assert "--no-expire-multipart" in options
    assert not any(option.startswith("--multipart-age") for option in options)
    rendering = render({**SCALEWAY, "datasetBuckets": ["acme-images"], "datasetAccess": "share"}, stack="acme", secrets=SECRETS)
    (volume,) = [r.manifest() for r in rendering.kubernetes_objects() if r.manifest()["kind"] == "PersistentVolume"]
    assert volume["spec"]["csi"]["volumeAttributes"]["options"] == SHARE_MOUNT_OPTIONS


# ----- the cloud-storage registration Job -----------------------------------

def cloud_storages(description="", workspace="acme"):
    from components.cloud_storages import CloudStorages
    from components.endpoint import S3Endpoint
    from support.components import run_component

    def build():
        CloudStorages("cloud-storages", {
            "namespace": "cvat-acme",
            "workspace": workspace,
            "description": description,
            "backend_image": "cvat/server:v2.73.0",
            "backend_url": "http://cvat-backend:8080",
            "endpoint": S3Endpoint.from_settings("scaleway", "fr-par", "", "SCWXXXXXXXXXXXXXXXXX", "secret-key"),
            "s3_credentials_secret": "s3-credentials",
            "admin_credentials_secret": "admin-credentials",
            "buckets": ["acme-images"],
            "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
            "cvat_ready": [],
        })

    job = run_component(build).one("kubernetes:batch/v1:Job")
    env = {e["name"]: e.get("value") for e in job.inputs["spec"]["template"]["spec"]["containers"][0]["env"]}
    return job, env


@pytest.mark.parametrize(
    "description, name",
    [
        ("", "Workspace acme"),
        ("ACME street scenes", "ACME street scenes"),
        # 68 characters: cut to CVAT's 64, without the space the cut would end on.
        ("Street scenes of the ACME fleet, " + "x" * 30 + " tail", "Street scenes of the ACME fleet, " + "x" * 30),
        ("Line one\n  line two\t", "Line one line two"),
        ("é" * 80, "é" * 64),
    ],
)
def test_organization_name_fits_cvat(description, name):
    _, env = cloud_storages(description)
    assert env["ORGANIZATION_NAME"] == name
    assert len(env["ORGANIZATION_NAME"]) <= 64 and env["ORGANIZATION_NAME"] == env["ORGANIZATION_NAME"].strip()


def test_cloud_storage_job_is_bounded_and_replaced_when_it_failed():
    from components.cloud_storages import JOB_AWAIT_SECONDS, JOB_DEADLINE_SECONDS
    from support.components import timeout_seconds

    job, env = cloud_storages()
    annotations = job.inputs["metadata"]["annotations"]
    assert annotations["pulumi.com/replaceUnready"] == "true"
    deadline = job.inputs["spec"]["activeDeadlineSeconds"]
    awaited = int(annotations["pulumi.com/timeoutSeconds"])
    assert (deadline, awaited) == (JOB_DEADLINE_SECONDS, JOB_AWAIT_SECONDS)
    assert deadline < awaited <= deadline + 300
    assert timeout_seconds(job.custom_timeouts.create) == timeout_seconds(job.custom_timeouts.update) == awaited
    # The script's wait for CVAT (WAIT_SECONDS, 600 unless set) fits in the deadline.
    assert int(env.get("WAIT_SECONDS") or 600) < deadline


# ----- the program's objects ------------------------------------------------

def share_mounts(rendering):
    """{deployment/container: [(mountPath, readOnly)]} of the share mounts."""
    found = {}
    for registration in rendering.kubernetes_objects():
        manifest = registration.manifest()
        if manifest["kind"] != "Deployment":
            continue
        for container in manifest["spec"]["template"]["spec"]["containers"]:
            mounts = [(m["mountPath"], m.get("readOnly")) for m in container.get("volumeMounts", []) if m["mountPath"].startswith("/home/django/share")]
            if mounts:
                found[f"{manifest['metadata']['name']}/{container['name']}"] = mounts
    return found


@pytest.mark.parametrize("access", ["cloudStorage", "share", "both"])
def test_dataset_access(access):
    config = {**SCALEWAY, "datasetBuckets": ["acme-images", "acme.videos"], "datasetAccess": access}
    rendering = render(config, stack="acme", secrets=SECRETS)
    jobs = [r for r in rendering.of_type("kubernetes:batch/v1:Job") if "cloud-storages" in r.name]
    volumes = [r.manifest() for r in rendering.kubernetes_objects() if r.manifest()["kind"] == "PersistentVolume"]
    mounts = share_mounts(rendering)
    if access in ("cloudStorage", "both"):
        (job,) = jobs
        container = job.inputs["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
        assert env["BUCKETS"] == "acme-images acme.videos"
        assert env["S3_ENDPOINT_URL"] == "https://s3.fr-par.scw.cloud" and env["S3_REGION"] == "fr-par"
        assert env["ORGANIZATION_SLUG"] == "acme"
        assert env["AWS_SECRET_ACCESS_KEY"] == {"secretKeyRef": {"name": "s3-credentials", "key": "secretAccessKey"}}
        assert env["ADMIN_PASSWORD"] == {"secretKeyRef": {"name": "admin-credentials", "key": "password"}}
        assert container["command"] == ["python3", "/scripts/cloud_storages.py"]
        for part in ("cvat-superuser", "cvat-server", "cvat-opa"):
            assert any(part in r.name and r.urn in job.depends_on for r in rendering.registrations), part
        configmap = rendering.kubernetes_object("ConfigMap", "cvat-cloud-storages")
        assert configmap["data"]["cloud_storages.py"] == (ROOT / "components" / "assets" / "cloud_storages.py").read_text()
    else:
        assert jobs == []
    if access in ("share", "both"):
        assert sorted(v["spec"]["csi"]["volumeHandle"] for v in volumes) == ["acme-images", "acme.videos"]
        for volume in volumes:
            assert volume["spec"]["csi"]["driver"] == "ru.yandex.s3.csi"
            assert volume["spec"]["csi"]["readOnly"] is True
            assert volume["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
            assert volume["spec"]["accessModes"] == ["ReadOnlyMany"]
            assert volume["spec"]["csi"]["nodePublishSecretRef"] == {"name": "dataset-share-credentials", "namespace": "cvat-acme"}
            assert volume["metadata"]["name"].startswith("cvat-acme-share-")
        secret = rendering.one("kubernetes:core/v1:Secret", "share-credentials")
        assert set(secret.inputs["stringData"]) == {"accessKeyID", "secretAccessKey", "endpoint", "region"}
        assert "stringData" in secret.secret_paths
        expected = [("/home/django/share/acme-images", True), ("/home/django/share/acme.videos", True)]
        assert mounts == {
            "cvat-backend/server": expected,
            "cvat-worker-import/worker": expected,
            "cvat-worker-export/worker": expected,
            "cvat-worker-chunks/worker": expected,
            "cvat-worker-annotation/worker": expected,  # serves the annotation queue
        }
        claims = {r.manifest()["metadata"]["name"] for r in rendering.kubernetes_objects() if r.manifest()["kind"] == "PersistentVolumeClaim"}
        # Named after what they mount with (a new pair when that changes, components/datasets.share_revision).
        share = sorted(claim for claim in claims if claim.startswith("share-"))
        assert [re.fullmatch(r"share-(acme-images|acme\.videos)-[0-9a-f]{8}", claim) is not None for claim in share] == [True, True]
        for volume in volumes:
            claim_ref = volume["spec"]["claimRef"]["name"]
            assert claim_ref in share and volume["metadata"]["name"] == f"cvat-acme-{claim_ref}"
    else:
        assert volumes == [] and mounts == {}


def test_share_is_not_mounted_where_no_queue_reads_it():
    config = {**SCALEWAY, "datasetBuckets": ["acme-images"], "datasetAccess": "share", "workers": ["webhooks"]}
    mounts = share_mounts(render(config, stack="acme", secrets=SECRETS))
    assert "cvat-worker-annotation/worker" not in mounts and "cvat-worker-utils/worker" not in mounts
    assert "cvat-worker-chunks/worker" in mounts


def test_datasets_output_is_the_inventorys_counts(monkeypatch):
    # What the inventory counted (values of the test's own, as its provider would return them).
    counted = {
        "acme-images": {"images": 1234, "videos": 56, "ignored": 7, "bytes": 98765, "imageBytes": 90000,
                        "videoBytes": 8000, "truncated": True},
        "acme.videos": {"error": "the bucket does not exist (NoSuchBucket)"},
    }
    monkeypatch.setattr(harness.Mocks, "state_overrides", {"workspace-datasets-inventory": {"datasets": counted}})
    config = {**SCALEWAY, "datasetBuckets": ["acme-images", "acme.videos"], "datasetInventoryLimit": 5000}
    rendering = render(config, stack="acme", secrets=SECRETS)
    assert rendering.outputs["datasets"] == counted
    assert "datasets" not in rendering.secret_outputs  # counts, readable with `pulumi stack output`
    inventory = rendering.one("pulumi-python:dynamic/labeling:DatasetInventory")
    assert inventory.inputs["limit"] == 5000 and inventory.inputs["buckets"] == ["acme-images", "acme.videos"]
    assert inventory.inputs["endpoint_url"] == "https://s3.fr-par.scw.cloud"
    assert {"access_key", "secret_key"} <= inventory.secret_paths
    assert {"access_key", "secret_key"} <= set(inventory.additional_secret_outputs)


def test_datasets_output_with_the_in_cluster_minio_says_why_nothing_is_counted():
    dev = render(DEV, stack="dev")
    assert dev.of_type("pulumi-python:dynamic/labeling:DatasetInventory") == []
    assert dev.outputs["datasets"] == {"images": {"counted": False, "reason": "not counted: the in-cluster MinIO is not reachable from the Pulumi program"}}


def test_dev_registers_its_in_cluster_buckets_through_smokescreen(monkeypatch):
    # The address the cluster gives the MinIO Service (a value of the test's own).
    monkeypatch.setattr(harness.Mocks, "state_overrides", {"workspace-minio-service": {"spec": {"clusterIP": "10.96.7.7"}}})
    dev = render(DEV, stack="dev")
    server = dev.kubernetes_object("Deployment", "cvat-backend")["spec"]["template"]["spec"]["containers"][0]
    server_env = {e["name"]: e.get("value") for e in server["env"]}
    assert server_env["SMOKESCREEN_OPTS"] == "--allow-address=10.96.7.7"
    job = dev.one("kubernetes:batch/v1:Job", "cloud-storages")
    env = {e["name"]: e.get("value") for e in job.inputs["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["S3_ENDPOINT_URL"] == "http://minio.cvat-dev.svc:9000" and env["BUCKETS"] == "images"
    assert dev.one("kubernetes:batch/v1:Job", "ensure-buckets").urn in job.depends_on


@pytest.mark.parametrize(
    "changes, key",
    [
        ({"datasetAccess": "fuse"}, "datasetAccess"),
        ({"datasetAccess": "Share"}, "datasetAccess"),
        ({"datasetInventoryLimit": 0}, "datasetInventoryLimit"),
        ({"datasetInventoryLimit": "all"}, "datasetInventoryLimit"),
        ({"datasetCsiDriver": "Not A Driver"}, "datasetCsiDriver"),
    ],
)
def test_bad_dataset_config_is_refused(changes, key):
    assert key in keys_of(with_(**changes))


def test_share_is_refused_with_the_in_cluster_minio():
    from support.harness import render_failure as failure

    error, registrations = failure({**DEV, "datasetAccess": "share"}, stack="dev")
    assert registrations == [] and [key for key, _ in error.problems] == ["datasetAccess"]
    assert "nodes can reach" in error.problems[0][1]
