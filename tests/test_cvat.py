"""The CVAT component under mocks, held to the deployment contract (reference/cvat-v2.73.md)."""


import pytest

import harness
from harness import ROOT, load_stack_file, render
from test_config import SCALEWAY, SECRETS, keys_of, with_

DEV = load_stack_file(ROOT / "Pulumi.dev.yaml")
TLS = {**SCALEWAY, "certManagerIssuer": "letsencrypt", "ingressClassName": "nginx"}
BACKEND_ENV = {
    "CVAT_POSTGRES_HOST", "CVAT_POSTGRES_PORT", "CVAT_POSTGRES_DBNAME", "CVAT_POSTGRES_USER", "CVAT_POSTGRES_PASSWORD",
    "CVAT_REDIS_INMEM_HOST", "CVAT_REDIS_INMEM_PORT", "CVAT_REDIS_INMEM_PASSWORD",
    "CVAT_REDIS_ONDISK_HOST", "CVAT_REDIS_ONDISK_PORT", "CVAT_REDIS_ONDISK_PASSWORD",
    "CVAT_OPA_URL", "ALLOWED_HOSTS", "CVAT_NUM_PROXIES", "DJANGO_SECRET_KEY", "CVAT_HEALTH_DISK_USAGE_MAX", "NUMPROCS",
}


@pytest.fixture(scope="module")
def dev():
    return render(DEV, stack="dev")


@pytest.fixture(scope="module")
def acme():
    return render(TLS, stack="acme", secrets=SECRETS)


def pod(manifest):
    return manifest["spec"]["template"]["spec"]


def env_of(container):
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def backend_containers(rendering):
    """Every container that runs CVAT's backend (Django), by (object, container).

    (nginx only serves files; the cloud-storage Job uses the image only as a Python to call the API.)
    """
    found = {}
    for registration in rendering.kubernetes_objects():
        manifest = registration.manifest()
        if manifest["kind"] in ("Deployment", "Job") and not manifest["metadata"]["name"].startswith("cvat-cloud-storages"):
            for container in pod(manifest)["containers"]:
                if container["image"].startswith("cvat/server:") and container["name"] != "nginx":
                    found[(manifest["metadata"]["name"], container["name"])] = container
    return found


def test_backend_server_pod(acme):
    server = acme.kubernetes_object("Deployment", "cvat-backend")
    containers = {c["name"]: c for c in pod(server)["containers"]}
    assert set(containers) == {"server", "nginx"}
    assert containers["server"]["args"] == ["run", "server"] and containers["nginx"]["args"] == ["run", "nginx"]
    for container in containers.values():
        assert container["image"] == "cvat/server:v2.73.0"
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert {"/tmp/cvat", "/home/django/static", "/home/django/data"} <= set(mounts)
        assert container["readinessProbe"]["httpGet"] == {
            "path": "/api/server/about", "port": 8080, "httpHeaders": [{"name": "Host", "value": "localhost"}],
        }
    for probe in ("livenessProbe", "startupProbe"):
        assert containers["server"][probe]["httpGet"]["path"] == "/api/server/about"
    assert containers["nginx"]["livenessProbe"]["tcpSocket"]["port"] == 8080
    assert "env" not in containers["nginx"]  # no secrets where they are not used
    volumes = {v["name"]: v for v in pod(server)["volumes"]}
    assert "emptyDir" in volumes["sockets"] and "emptyDir" in volumes["static"]
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == "cvat-data"
    assert containers["nginx"]["ports"] == [{"name": "http", "containerPort": 8080}]
    service = acme.kubernetes_object("Service", "cvat-backend")
    assert service["spec"]["ports"][0]["port"] == 8080
    assert pod(server)["securityContext"]["runAsUser"] == 1000 and pod(server)["securityContext"]["fsGroup"] == 1000


def test_workers_serve_every_queue(acme):
    expected = {
        "cvat-worker-import": ["import"],
        "cvat-worker-export": ["export"],
        "cvat-worker-chunks": ["chunks"],
        "cvat-worker-utils": ["notifications", "cleaning"],
        "cvat-worker-extra": ["annotation", "webhooks", "quality_reports", "consensus"],
    }
    for name, queues in expected.items():
        (container,) = pod(acme.kubernetes_object("Deployment", name))["containers"]
        assert container["args"] == ["run", "worker", *queues]
        probe = ["django-admin", "workerprobe", *queues, "--expected-num-workers", "1"]
        assert container["livenessProbe"]["exec"]["command"] == probe
        assert container["readinessProbe"]["exec"]["command"] == probe


def test_optional_queues_can_be_chosen():
    rendering = render(with_(workers=["annotation"]), stack="acme", secrets=SECRETS)
    (container,) = pod(rendering.kubernetes_object("Deployment", "cvat-worker-extra"))["containers"]
    assert container["args"] == ["run", "worker", "annotation"]
    none = render(with_(workers=[]), stack="acme", secrets=SECRETS)
    assert not [r for r in none.kubernetes_objects() if r.manifest()["metadata"]["name"] == "cvat-worker-extra"]


def test_ui_opa_redis_kvrocks(acme):
    (ui,) = pod(acme.kubernetes_object("Deployment", "cvat-ui"))["containers"]
    assert ui["image"] == "cvat/ui:v2.73.0" and ui["ports"][0]["containerPort"] == 8000
    assert ui["readinessProbe"]["tcpSocket"]["port"] == 8000
    assert acme.kubernetes_object("Service", "cvat-ui")["spec"]["ports"][0]["port"] == 8000

    (opa,) = pod(acme.kubernetes_object("Deployment", "cvat-opa"))["containers"]
    assert opa["image"] == "openpolicyagent/opa:1.12.2"
    assert opa["args"] == [
        "run", "--server", "--addr=:8181",
        "--set=services.cvat.url=http://cvat-backend:8080",
        "--set=bundles.cvat.service=cvat",
        "--set=bundles.cvat.resource=/api/auth/rules",
        "--set=bundles.cvat.polling.min_delay_seconds=10",
        "--set=bundles.cvat.polling.max_delay_seconds=15",
    ]
    assert opa["readinessProbe"]["httpGet"] == {"path": "/health?bundles", "port": 8181}

    for name, image, port, data in (
        ("cvat-redis", "redis:7.2.11-alpine", 6379, "/data"),
        ("cvat-kvrocks", "apache/kvrocks:2.15.0", 6666, "/var/lib/kvrocks/data"),
    ):
        statefulset = acme.kubernetes_object("StatefulSet", name)
        (container,) = pod(statefulset)["containers"]
        assert container["image"] == image and container["ports"][0]["containerPort"] == port
        assert "$(STORE_PASSWORD)" in container["args"]  # expanded from the Secret by the kubelet
        assert env_of(container)["STORE_PASSWORD"] == {"secretKeyRef": {"name": name, "key": "password"}}
        assert "PONG" in " ".join(container["livenessProbe"]["exec"]["command"])
        assert {"name": "data", "mountPath": data} in container["volumeMounts"]
        assert statefulset["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
        assert acme.kubernetes_object("Service", name)["spec"]["ports"][0]["port"] == port


def test_every_backend_container_has_the_backend_environment(acme, dev):
    for rendering, smokescreen in ((acme, False), (dev, True)):
        containers = backend_containers(rendering)
        assert len(containers) >= 8  # server, 5 workers, migration, superuser
        for where, container in containers.items():
            env = env_of(container)
            assert BACKEND_ENV <= set(env), (where, BACKEND_ENV - set(env))
            assert env["CVAT_POSTGRES_PASSWORD"] == {"secretKeyRef": {"name": "postgres", "key": "password"}}
            assert env["CVAT_REDIS_INMEM_PASSWORD"]["secretKeyRef"]["name"] == "cvat-redis"
            assert env["CVAT_REDIS_ONDISK_PASSWORD"]["secretKeyRef"]["name"] == "cvat-kvrocks"
            assert env["DJANGO_SECRET_KEY"]["secretKeyRef"]["name"] == "cvat-django"
            assert env["CVAT_REDIS_ONDISK_PORT"] == "6666" and env["CVAT_POSTGRES_HOST"] == "postgres"
            assert env["CVAT_OPA_URL"] == "http://cvat-opa:8181"
            assert env["CVAT_NUM_PROXIES"] == "1"
            hosts = env["ALLOWED_HOSTS"].split(",")
            assert rendering.outputs["annotationUrl"].split("://")[1] in hosts and "cvat-backend" in hosts
            if smokescreen:
                assert env["SMOKESCREEN_OPTS"] == f"--allow-address={harness.MINIO_CLUSTER_IP}"
            else:
                assert "SMOKESCREEN_OPTS" not in env


def test_version_sets_backend_and_ui_images_together():
    rendering = render(with_(cvatVersion="v2.74.1"), stack="acme", secrets=SECRETS)
    images = {c["image"] for c in backend_containers(rendering).values()}
    assert images == {"cvat/server:v2.74.1"}
    assert pod(rendering.kubernetes_object("Deployment", "cvat-ui"))["containers"][0]["image"] == "cvat/ui:v2.74.1"
    assert rendering.outputs["cvatVersion"] == "v2.74.1"


def test_ingress_routes_and_cert_manager_tls(acme):
    ingress = acme.kubernetes_object("Ingress", "cvat")
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "label.acme.example"
    routes = {p["path"]: (p["backend"]["service"]["name"], p["backend"]["service"]["port"]["number"]) for p in rule["http"]["paths"]}
    assert routes == {
        "/api": ("cvat-backend", 8080),
        "/admin": ("cvat-backend", 8080),
        "/static": ("cvat-backend", 8080),
        "/django-rq": ("cvat-backend", 8080),
        "/": ("cvat-ui", 8000),
    }
    assert ingress["spec"]["ingressClassName"] == "nginx"
    annotations = ingress["metadata"]["annotations"]
    assert annotations["cert-manager.io/cluster-issuer"] == "letsencrypt"
    assert annotations["nginx.ingress.kubernetes.io/proxy-body-size"] == "0"
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 300
    assert ingress["spec"]["tls"] == [{"hosts": ["label.acme.example"], "secretName": "cvat-acme-tls"}]
    assert acme.outputs["annotationUrl"] == "https://label.acme.example"


def test_ingress_with_an_existing_tls_secret_and_without_tls(dev):
    rendering = render(with_(tlsSecretName="acme-tls"), stack="acme", secrets=SECRETS)
    ingress = rendering.kubernetes_object("Ingress", "cvat")
    assert ingress["spec"]["tls"] == [{"hosts": ["label.acme.example"], "secretName": "acme-tls"}]
    assert "cert-manager.io/cluster-issuer" not in ingress["metadata"]["annotations"]
    plain = dev.kubernetes_object("Ingress", "cvat")
    assert "tls" not in plain["spec"] and "ingressClassName" not in plain["spec"]
    assert dev.outputs["annotationUrl"] == "http://cvat.localhost"


def job(rendering, part):
    return rendering.one("kubernetes:batch/v1:Job", part)


def test_jobs_run_in_order(acme):
    migration = job(acme, "cvat-migrate")
    superuser = job(acme, "cvat-superuser")
    assert migration.inputs["spec"]["template"]["spec"]["containers"][0]["args"] == ["init"]
    assert acme.one("kubernetes:apps/v1:StatefulSet", "database").urn in migration.depends_on
    assert migration.urn in superuser.depends_on
    for part in ("cvat-server", "cvat-worker-import", "cvat-worker-chunks"):
        assert migration.urn in acme.one("kubernetes:apps/v1:Deployment", part).depends_on


def test_migration_waits_for_a_restore():
    rendering = render(with_(restoreFrom="latest"), stack="acme", secrets=SECRETS)
    restore = job(rendering, "database-restore")
    assert restore.urn in job(rendering, "cvat-migrate").depends_on


def migration_name(**changes):
    rendering = render(with_(**changes), stack="acme", secrets=SECRETS + ["adminPassword"])
    return job(rendering, "cvat-migrate").inputs["metadata"]["name"]


def test_migration_reruns_for_a_new_version_only():
    base = migration_name()
    assert base.startswith("cvat-migrate-v2-73-0-")
    assert base == migration_name(description="other", adminPassword="Another-Passw0rd")
    assert migration_name(cvatVersion="v2.74.0") != base


def test_superuser_job_reruns_when_credentials_change_without_revealing_them():
    def revision(**changes):
        rendering = render(with_(**changes), stack="acme", secrets=SECRETS + ["adminPassword"])
        return rendering.one("random:index/randomId:RandomId", "superuser-revision"), job(rendering, "cvat-superuser")

    base, superuser = revision(adminPassword="First-Passw0rd")
    assert superuser.inputs["metadata"]["name"] == f"cvat-superuser-{harness.RANDOM_HEX}"
    assert "keepers.password" in base.secret_paths or "keepers" in base.secret_paths
    assert base.inputs["keepers"] == revision(adminPassword="First-Passw0rd")[0].inputs["keepers"]
    assert base.inputs["keepers"] != revision(adminPassword="Second-Passw0rd")[0].inputs["keepers"]
    assert base.inputs["keepers"] != revision(adminPassword="First-Passw0rd", adminEmail="new@acme.example")[0].inputs["keepers"]
    container = superuser.inputs["spec"]["template"]["spec"]["containers"][0]
    env = env_of(container)
    assert env["ADMIN_PASSWORD"] == {"secretKeyRef": {"name": "admin-credentials", "key": "password"}}
    assert container["command"][:3] == ["django-admin", "shell", "--command"]
    assert "/scripts/superuser.py" in container["command"][3]


def test_jobs_do_not_need_the_data_volume(acme):
    for part in ("cvat-migrate", "cvat-superuser"):
        spec = job(acme, part).inputs["spec"]["template"]["spec"]
        assert all("persistentVolumeClaim" not in v for v in spec.get("volumes", [])), part
        assert "affinity" not in spec


def test_read_write_once_data_keeps_its_pods_on_one_node(acme):
    claim = acme.kubernetes_object("PersistentVolumeClaim", "cvat-data")
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"] and claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
    mounting = [r.manifest() for r in acme.kubernetes_objects() if r.manifest()["kind"] == "Deployment"
                and any("persistentVolumeClaim" in v for v in pod(r.manifest()).get("volumes", []))]
    assert len(mounting) == 6  # server and five workers
    for manifest in mounting:
        labels = manifest["spec"]["template"]["metadata"]["labels"]
        (term,) = pod(manifest)["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert term["topologyKey"] == "kubernetes.io/hostname"
        assert term["labelSelector"]["matchLabels"].items() <= labels.items()


def test_read_write_many_data_needs_no_affinity():
    rendering = render(with_(cvatDataAccessMode="ReadWriteMany", cvatDataSize="100Gi"), stack="acme", secrets=SECRETS)
    claim = rendering.kubernetes_object("PersistentVolumeClaim", "cvat-data")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"] and claim["spec"]["resources"]["requests"]["storage"] == "100Gi"
    assert "affinity" not in pod(rendering.kubernetes_object("Deployment", "cvat-backend"))


def test_network_policies(acme):
    deny = acme.kubernetes_object("NetworkPolicy", "default-deny-ingress")
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    web = acme.kubernetes_object("NetworkPolicy", "allow-web")
    assert web["spec"]["podSelector"]["matchExpressions"][0]["values"] == ["cvat-backend", "cvat-ui"]
    assert {p["port"] for p in web["spec"]["ingress"][0]["ports"]} == {8080, 8000}
    internal = acme.kubernetes_object("NetworkPolicy", "allow-workspace-to-services")
    assert set(internal["spec"]["podSelector"]["matchExpressions"][0]["values"]) >= {"postgres", "cvat-redis", "cvat-kvrocks", "cvat-opa"}
    assert internal["spec"]["ingress"] == [{"from": [{"podSelector": {"matchLabels": {"labeling.dev/workspace": "acme"}}}]}]
    # Every pod that must reach the stores carries the workspace label.
    for registration in acme.kubernetes_objects():
        manifest = registration.manifest()
        if manifest["kind"] in ("Deployment", "StatefulSet", "Job"):
            assert manifest["spec"]["template"]["metadata"]["labels"]["labeling.dev/workspace"] == "acme"


def test_everything_is_awaited_with_generous_timeouts(acme):
    for registration in acme.kubernetes_objects():
        annotations = registration.manifest()["metadata"].get("annotations", {})
        # Only the Ingress is not awaited: many controllers never publish a load-balancer address.
        if registration.manifest()["kind"] == "Ingress":
            assert annotations["pulumi.com/skipAwait"] == "true"
            server = acme.one("kubernetes:apps/v1:Deployment", "cvat-server")
            ui = acme.one("kubernetes:apps/v1:Deployment", "cvat-ui")
            assert {server.urn, ui.urn} <= set(registration.depends_on)
        else:
            assert "pulumi.com/skipAwait" not in annotations, registration.name
    awaited = ("kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:StatefulSet", "kubernetes:batch/v1:Job", "kubernetes:core/v1:Service")
    for registration in acme.registrations:
        if registration.type in awaited and "cvat" in registration.name:
            assert registration.custom_timeouts.create in ("30m", "2h"), registration.name


def load_size_benchmark():
    return harness.load_benchmark("workspace_size")


def test_size_presets():
    sizes = load_size_benchmark()
    small, medium, large = (sizes.workspace_totals(size) for size in ("small", "medium", "large"))
    assert small.cpu_requests <= 2.0 and small.memory_requests <= 4 * 2**30
    assert small.cpu_requests < medium.cpu_requests < large.cpu_requests
    assert small.pods < medium.pods < large.pods
    rendering = render({**DEV, "size": "large"}, stack="dev")
    server = rendering.kubernetes_object("Deployment", "cvat-backend")
    assert server["spec"]["replicas"] == 3
    assert env_of(pod(server)["containers"][0])["NUMPROCS"] == "4"
    assert rendering.kubernetes_object("PodDisruptionBudget", "cvat-backend")["spec"]["minAvailable"] == 1
    small_rendering = render(DEV, stack="dev")
    assert not [r for r in small_rendering.kubernetes_objects() if r.manifest()["kind"] == "PodDisruptionBudget"]


def test_size_benchmark_prints_every_preset(capsys):
    assert load_size_benchmark().main() == 0
    out = capsys.readouterr().out
    assert all(line in out for line in ("small ", "medium ", "large ")) and "ok" in out


@pytest.mark.parametrize(
    "changes, key",
    [
        ({"size": "huge"}, "size"),
        ({"workers": ["import"]}, "workers"),
        ({"workers": ["annotation", "annotation"]}, "workers"),
        ({"workers": "annotation"}, "workers"),
        ({"cvatVersion": "2.73.0"}, "cvatVersion"),
        ({"cvatVersion": "v2.73"}, "cvatVersion"),
        ({"cvatVersion": "latest"}, "cvatVersion"),
        ({"cvatVersion": "v2.60.0"}, "cvatVersion"),
        ({"cvatDataAccessMode": "ReadOnlyMany"}, "cvatDataAccessMode"),
        ({"cvatDataSize": "lots"}, "cvatDataSize"),
        ({"cvatDataSize": "512Mi"}, "cvatDataSize"),
    ],
)
def test_bad_cvat_config_is_refused(changes, key):
    assert key in keys_of(with_(**changes))
