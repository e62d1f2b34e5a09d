"""The CVAT component under mocks, held to the deployment contract (reference/cvat-v2.73.md)."""


from dataclasses import replace

import pytest

from support import harness
from components.cvat_release import RELEASES
from support.harness import ROOT, load_stack_file, render
from support.stacks import SCALEWAY, SECRETS, keys_of, problems_of, with_

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
        # 24 h annotation jobs and 25 s webhook deliveries apart, as upstream runs them.
        "cvat-worker-annotation": ["annotation"],
        "cvat-worker-webhooks": ["webhooks"],
        "cvat-worker-quality": ["quality_reports", "consensus"],
    }
    workers = {r.manifest()["metadata"]["name"] for r in acme.kubernetes_objects()
               if r.manifest()["kind"] == "Deployment" and r.manifest()["metadata"]["name"].startswith("cvat-worker-")}
    assert workers == set(expected)
    for name, queues in expected.items():
        (container,) = pod(acme.kubernetes_object("Deployment", name))["containers"]
        # Webhook retries go through rq's scheduled registry, which only a worker with a scheduler drains.
        flags = ["--with-scheduler"] if "webhooks" in queues else []
        assert container["args"] == ["run", "worker", *queues, *flags], name
        # The probe names queues only: the flag is the worker's, not workerprobe's.
        probe = ["django-admin", "workerprobe", *queues, "--expected-num-workers", "1"]
        assert container["livenessProbe"]["exec"]["command"] == probe
        assert container["readinessProbe"]["exec"]["command"] == probe
    served = [queue for queues in expected.values() for queue in queues]
    assert sorted(served) == sorted(RELEASES["v2.73.0"].queues)


def test_optional_queues_can_be_chosen():
    rendering = render(with_(workers=["annotation", "consensus"]), stack="acme", secrets=SECRETS)
    (annotation,) = pod(rendering.kubernetes_object("Deployment", "cvat-worker-annotation"))["containers"]
    assert annotation["args"] == ["run", "worker", "annotation"]
    (quality,) = pod(rendering.kubernetes_object("Deployment", "cvat-worker-quality"))["containers"]
    assert quality["args"] == ["run", "worker", "consensus"]
    names = {r.manifest()["metadata"]["name"] for r in rendering.kubernetes_objects()}
    assert "cvat-worker-webhooks" not in names
    none = render(with_(workers=[]), stack="acme", secrets=SECRETS)
    names = {r.manifest()["metadata"]["name"] for r in none.kubernetes_objects()}
    assert not {"cvat-worker-annotation", "cvat-worker-webhooks", "cvat-worker-quality"} & names


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
        ("cvat-redis", "redis:7.2.16-alpine", 6379, "/data"),
        ("cvat-kvrocks", "apache/kvrocks:2.15.0", 6666, "/var/lib/kvrocks/data"),
    ):
        statefulset = acme.kubernetes_object("StatefulSet", name)
        (container,) = pod(statefulset)["containers"]
        assert container["image"] == image and container["ports"][0]["containerPort"] == port
        # The password is in a config file from the Secret, never in the process's arguments.
        config_file = f"/etc/{name[5:]}/{name[5:]}.conf"
        assert config_file in container["command"]
        assert not any("PASSWORD" in part or "requirepass" in part for part in container["command"])
        assert {"name": "config", "mountPath": f"/etc/{name[5:]}", "readOnly": True} in container["volumeMounts"]
        (config_volume,) = [v for v in pod(statefulset)["volumes"] if v["name"] == "config"]
        assert config_volume["secret"]["secretName"] == name
        secret = acme.one("kubernetes:core/v1:Secret", f"{name[5:]}-secret")
        password = secret.inputs["stringData"]["password"]
        config_text = secret.inputs["stringData"][f"{name[5:]}.conf"]
        assert config_text.startswith(f"requirepass {password}\n")
        assert "stringData" in secret.secret_paths
        assert env_of(container)["REDISCLI_AUTH"] == {"secretKeyRef": {"name": name, "key": "password"}}
        assert "PONG" in " ".join(container["livenessProbe"]["exec"]["command"])
        assert {"name": "data", "mountPath": data} in container["volumeMounts"]
        assert statefulset["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
        assert acme.kubernetes_object("Service", name)["spec"]["ports"][0]["port"] == port


def test_every_backend_container_has_the_backend_environment(acme, dev):
    for rendering, smokescreen in ((acme, ""), (dev, f"--allow-address={harness.MINIO_CLUSTER_IP}")):
        containers = backend_containers(rendering)
        assert len(containers) >= 10  # server, 7 workers, migration, superuser
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
            # CVAT's boto3 1.39 would send CRC checksums that S3-compatible servers refuse.
            assert env["AWS_REQUEST_CHECKSUM_CALCULATION"] == "when_required"
            assert env["AWS_RESPONSE_CHECKSUM_VALIDATION"] == "when_required"
            hosts = env["ALLOWED_HOSTS"].split(",")
            assert rendering.outputs["annotationUrl"].split("://")[1] in hosts and "cvat-backend" in hosts
            # Always set, empty when nothing is allowed: supervisord refuses an unset one.
            assert env["SMOKESCREEN_OPTS"] == smokescreen, where


# Every stack shape: dev (in-cluster MinIO), Scaleway, external MinIO (private IP), share access, restore.
SHAPES = {
    "dev": (DEV, "dev", []),
    "scaleway": (TLS, "acme", SECRETS),
    "minio-private": (
        with_(storageProvider="minio", storageEndpoint="http://10.20.0.5:9000", egressAllow=["192.168.7.0/24"]),
        "lab", SECRETS,
    ),
    "share": (with_(datasetAccess="both", workers=["annotation"]), "acme", SECRETS),
    "restore": (with_(restoreFrom="latest", size="large"), "acme", SECRETS),
}


def supervisord_components(container):
    """`["server"]` or the queues of a worker, from its arguments."""
    args = container["args"]
    if args[:2] == ["run", "server"]:
        return ["server"]
    assert args[:2] == ["run", "worker"], args
    return [arg for arg in args[2:] if not arg.startswith("--")]


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_every_server_and_worker_sets_what_supervisord_expands(shape):
    """Held against the %(ENV_...)s names of upstream's supervisord includes at the release (cvat_release)."""
    config, stack, secrets = SHAPES[shape]
    rendering = render(config, stack=stack, secrets=secrets)
    release = RELEASES[rendering.outputs["cvatVersion"]]
    checked = 0
    for (where, _), container in backend_containers(rendering).items():
        if container.get("args", [""])[0] != "run":
            continue  # Jobs run `init` or django-admin, not supervisord
        components = supervisord_components(container)
        missing = release.expanded_env(components) - set(env_of(container))
        assert not missing, f"{where} ({components}) would not start: {sorted(missing)} unset"
        assert "NUMPROCS" in env_of(container)
        checked += 1
    assert checked >= 6


def test_the_expansion_table_follows_upstream():
    release = RELEASES["v2.73.0"]
    assert release.expanded_env(["server"]) == {"SMOKESCREEN_OPTS"}
    assert release.expanded_env(["notifications", "cleaning"]) == {
        "CVAT_REDIS_INMEM_HOST", "CVAT_REDIS_INMEM_PORT", "CVAT_REDIS_INMEM_PASSWORD"}
    for queue in ("import", "export", "chunks", "annotation", "webhooks"):
        assert release.expanded_env([queue]) == {"SMOKESCREEN_OPTS"}, queue
    assert release.expanded_env(["quality_reports", "consensus"]) == set()


def test_egress_allow_reaches_the_ssrf_guard():
    rendering = render(*SHAPES["minio-private"][:2], secrets=SECRETS)
    for where, container in backend_containers(rendering).items():
        # The endpoint's private address is allowed unasked; ranges and addresses get their flags.
        assert env_of(container)["SMOKESCREEN_OPTS"] == "--allow-range=192.168.7.0/24 --allow-address=10.20.0.5", where


def test_a_public_or_named_endpoint_is_not_allowed_unasked():
    for endpoint in ("https://minio.internal.example", "https://203.0.113.10:9000"):
        rendering = render(with_(storageProvider="minio", storageEndpoint=endpoint), stack="lab", secrets=SECRETS)
        for container in backend_containers(rendering).values():
            assert env_of(container)["SMOKESCREEN_OPTS"] == ""


@pytest.mark.parametrize(
    "entries, words",
    [
        (["minio.internal"], "not an IP address or CIDR range"),
        (["10.0.0.5 --allow-range=0.0.0.0/0"], "not an IP address or CIDR range"),
        (["10.0.0.5/8"], "host bits set"),
        (["10.0.0.300"], "not an IP address"),
        (["--allow-range=0.0.0.0/0"], "not an IP address"),
        (["١٠.0.0.1"], "not an IP address"),
        ("10.0.0.5", "list of strings"),
    ],
)
def test_bad_egress_entries_are_refused(entries, words):
    problems, _ = problems_of(with_(egressAllow=entries))
    assert [key for key, _ in problems] == ["egressAllow"]
    assert words in problems[0][1]


def test_version_sets_backend_and_ui_images_together(monkeypatch):
    monkeypatch.setitem(RELEASES, "v2.74.1", replace(RELEASES["v2.73.0"], version="v2.74.1"))
    rendering = render(with_(cvatVersion="v2.74.1"), stack="acme", secrets=SECRETS)
    images = {c["image"] for c in backend_containers(rendering).values()}
    assert images == {"cvat/server:v2.74.1"}
    assert pod(rendering.kubernetes_object("Deployment", "cvat-ui"))["containers"][0]["image"] == "cvat/ui:v2.74.1"
    assert rendering.outputs["cvatVersion"] == "v2.74.1"


def test_only_releases_with_a_known_contract_are_deployed():
    problems, message = problems_of(with_(cvatVersion="v2.74.0"))
    assert [key for key, _ in problems] == ["cvatVersion"]
    assert "v2.73.0" in message and "known" in message


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


def test_migration_reruns_for_a_new_version_only(monkeypatch):
    monkeypatch.setitem(RELEASES, "v2.74.0", replace(RELEASES["v2.73.0"], version="v2.74.0"))
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
    assert len(mounting) == 8  # server and seven workers
    for manifest in mounting:
        labels = manifest["spec"]["template"]["metadata"]["labels"]
        (term,) = pod(manifest)["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert term["topologyKey"] == "kubernetes.io/hostname"
        assert term["labelSelector"]["matchLabels"].items() <= labels.items()


def test_read_write_many_data_needs_no_affinity():
    rendering = render(with_(cvatDataAccessMode="ReadWriteMany", cvatDataSize="100Gi"), stack="acme", secrets=SECRETS)
    claim = rendering.kubernetes_object("PersistentVolumeClaim", "cvat-data")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"] and claim["spec"]["resources"]["requests"]["storage"] == "100Gi"
    assert not pod(rendering.kubernetes_object("Deployment", "cvat-backend")).get("affinity")


def policy_peers(policy):
    """(pods the policy selects, pods or namespaces it admits, ports)."""
    selected = set(policy["spec"]["podSelector"]["matchExpressions"][0]["values"])
    (rule,) = policy["spec"]["ingress"]
    (peer,) = rule["from"]
    selector = peer.get("podSelector") or peer["namespaceSelector"]
    return selected, set(selector["matchExpressions"][0]["values"]), {p["port"] for p in rule["ports"]}


def test_network_policies(acme):
    deny = acme.kubernetes_object("NetworkPolicy", "default-deny-ingress")
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    for name, pod_name, port in (("allow-ingress-to-backend", "cvat-backend", 8080), ("allow-ingress-to-ui", "cvat-ui", 8000)):
        controller = acme.kubernetes_object("NetworkPolicy", name)
        (peer,) = controller["spec"]["ingress"][0]["from"]
        assert peer["namespaceSelector"]["matchExpressions"][0]["key"] == "kubernetes.io/metadata.name"
        # The default: ingress-nginx's namespace only (kube-system's pods would bypass the Ingress).
        assert policy_peers(controller) == ({pod_name}, {"ingress-nginx"}, {port})
    workers = {f"cvat-worker-{key}" for key in ("import", "export", "chunks", "utils", "annotation", "webhooks", "quality")}
    backend = {"cvat-backend"} | workers
    expected = {
        "allow-backend-callers": ({"cvat-backend"}, {"cvat-opa", "cvat-cloud-storages"}, {8080}),
        "allow-to-postgres": ({"postgres"}, backend | {"cvat-migrate", "cvat-superuser", "database-backup", "database-restore"}, {5432}),
        "allow-to-redis": ({"cvat-redis"}, backend | {"cvat-migrate", "cvat-superuser"}, {6379}),
        "allow-to-kvrocks": ({"cvat-kvrocks"}, backend | {"cvat-migrate", "cvat-superuser"}, {6666}),
        "allow-to-opa": ({"cvat-opa"}, backend, {8181}),
        "allow-to-minio": ({"minio"}, backend | {"database-backup", "database-restore", "ensure-buckets"}, {9000}),
    }
    for name, peers in expected.items():
        assert policy_peers(acme.kubernetes_object("NetworkPolicy", name)) == peers, name
    # Neither the UI nor OPA reach a store; the UI is reached from the controller only.
    for name in ("allow-to-postgres", "allow-to-redis", "allow-to-kvrocks"):
        assert not {"cvat-ui", "cvat-opa"} & policy_peers(acme.kubernetes_object("NetworkPolicy", name))[1]
    # Egress (tests/program/test_network_policies.py computes what each pod reaches): every pod of the
    # namespace is denied by default; each group of pods gets its own policy; DNS goes to kube-dns only.
    assert acme.kubernetes_object("NetworkPolicy", "default-deny-egress")["spec"] == {"podSelector": {}, "policyTypes": ["Egress"]}
    dns = acme.kubernetes_object("NetworkPolicy", "allow-dns")["spec"]
    assert set(dns["podSelector"]["matchExpressions"][0]["values"]) == backend | {
        "cvat-ui", "cvat-redis", "cvat-kvrocks", "postgres", "cvat-opa", "cvat-migrate", "cvat-superuser",
        "database-backup", "database-restore", "cvat-cloud-storages", "ensure-buckets"}  # all but MinIO
    (rule,) = dns["egress"]
    assert rule["to"][0]["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}
    assert rule["to"][0]["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}
    groups = {
        "egress-from-opa": {"cvat-opa"},
        "egress-from-backend": backend,
        "egress-from-backend-jobs": {"cvat-migrate", "cvat-superuser"},
        "egress-from-database-jobs": {"database-backup", "database-restore"},
        "egress-from-bootstrap": {"cvat-cloud-storages"},
        "egress-from-ensure-buckets": {"ensure-buckets"},
    }
    for name, selected in groups.items():
        spec = acme.kubernetes_object("NetworkPolicy", name)["spec"]
        assert spec["policyTypes"] == ["Egress"] and "ingress" not in spec, name
        assert set(spec["podSelector"]["matchExpressions"][0]["values"]) == selected, name
    assert not [r for r in acme.kubernetes_objects() if r.manifest()["metadata"]["name"] == "deny-egress-but-dns"]
    # Every selector names pods that exist, with the labels they carry.
    names = {r.manifest()["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]
             for r in acme.kubernetes_objects() if r.manifest()["kind"] in ("Deployment", "StatefulSet", "Job")}
    names |= {"database-backup", "database-restore", "cvat-cloud-storages", "minio", "ensure-buckets"}  # CronJob, optional pods
    for name in expected:
        selected, clients, _ = policy_peers(acme.kubernetes_object("NetworkPolicy", name))
        assert selected | clients <= names, name
    for registration in acme.kubernetes_objects():
        manifest = registration.manifest()
        if manifest["kind"] in ("Deployment", "StatefulSet", "Job"):
            assert manifest["spec"]["template"]["metadata"]["labels"]["labeling.dev/workspace"] == "acme"


def test_cert_managers_http01_solver_is_reachable_from_the_controller():
    rendering = render(TLS, stack="acme", secrets=SECRETS)
    solver = rendering.kubernetes_object("NetworkPolicy", "allow-acme-http01-solver")
    plain = render(SCALEWAY, stack="acme", secrets=SECRETS)
    assert not [r for r in plain.kubernetes_objects() if r.manifest()["metadata"]["name"] == "allow-acme-http01-solver"]
    assert solver["spec"]["podSelector"] == {"matchLabels": {"acme.cert-manager.io/http01-solver": "true"}}
    (rule,) = solver["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8089}]
    assert rule["from"][0]["namespaceSelector"]["matchExpressions"][0]["values"] == ["ingress-nginx"]


def test_host_network_controllers_and_load_balancers_by_address_range():
    rendering = render(with_(ingressAllowCidrs=["10.0.0.0/16", "192.168.4.7"]), stack="acme", secrets=SECRETS)
    for name in ("allow-ingress-to-backend", "allow-ingress-to-ui"):
        peers = rendering.kubernetes_object("NetworkPolicy", name)["spec"]["ingress"][0]["from"]
        assert peers[1:] == [{"ipBlock": {"cidr": "10.0.0.0/16"}}, {"ipBlock": {"cidr": "192.168.4.7/32"}}]
    for bad in (["0.0.0.0/0"], ["nodes"], ["10.0.0.1/8"]):
        assert keys_of(with_(ingressAllowCidrs=bad)) == {"ingressAllowCidrs"}


def test_kvrocks_keeps_its_logs_on_stdout_and_its_caches_within_its_limit():
    for size, cache in (("small", 256), ("medium", 512), ("large", 1024)):
        rendering = render(with_(size=size), stack="acme", secrets=SECRETS)
        text = rendering.one("kubernetes:core/v1:Secret", "kvrocks-secret").inputs["stringData"]["kvrocks.conf"]
        lines = text.splitlines()
        assert "log-dir stdout" in lines and f"rocksdb.block_cache_size {cache}" in lines, size
        (container,) = pod(rendering.kubernetes_object("StatefulSet", "cvat-kvrocks"))["containers"]
        limit_mib = int(container["resources"]["limits"]["memory"][:-2]) * 1024
        assert cache * 2 < limit_mib  # block cache and row cache together stay under the limit


def test_the_ui_runs_as_the_unprivileged_nginx_user(acme):
    context = pod(acme.kubernetes_object("Deployment", "cvat-ui"))["securityContext"]
    assert context["runAsUser"] == 101 and context["runAsNonRoot"] is True


def test_ingress_namespaces_can_be_set_and_are_checked():
    rendering = render(with_(ingressNamespaces=["traefik"]), stack="acme", secrets=SECRETS)
    controller = rendering.kubernetes_object("NetworkPolicy", "allow-ingress-to-ui")
    assert policy_peers(controller)[1] == {"traefik"}
    assert keys_of(with_(ingressNamespaces=[])) == {"ingressNamespaces"}
    assert keys_of(with_(ingressNamespaces=["Ingress Nginx"])) == {"ingressNamespaces"}


def test_everything_is_awaited_with_generous_timeouts(acme):
    for registration in acme.kubernetes_objects():
        annotations = registration.manifest()["metadata"].get("annotations", {})
        # Only the Ingress is not awaited: many controllers never publish a load-balancer address.
        if registration.manifest()["kind"] == "Ingress":
            assert annotations["pulumi.com/skipAwait"] == "true"
            server = acme.one("kubernetes:apps/v1:Deployment", "cvat-server")
            ui = acme.one("kubernetes:apps/v1:Deployment", "cvat-ui")
            superuser = acme.one("kubernetes:batch/v1:Job", "cvat-superuser")
            assert {server.urn, ui.urn, superuser.urn} <= set(registration.depends_on)
        else:
            assert "pulumi.com/skipAwait" not in annotations, registration.name
    awaited = ("kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:StatefulSet", "kubernetes:batch/v1:Job", "kubernetes:core/v1:Service")
    for registration in acme.registrations:
        if registration.type in awaited and "cvat" in registration.name:
            if registration.type == "kubernetes:batch/v1:Job":
                # A one-shot Job ends by its own deadline first, so the awaiter reports DeadlineExceeded.
                deadline = registration.inputs["spec"]["activeDeadlineSeconds"]
                assert int(registration.custom_timeouts.create.rstrip("m")) * 60 > deadline, registration.name
            else:
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


def test_one_shot_jobs_are_bounded_and_replaced_after_a_failure(acme):
    for part in ("cvat-migrate", "cvat-superuser"):
        registration = job(acme, part)
        manifest = registration.manifest()
        # A failed Job stays in the state: without this, every later up awaits it again and fails.
        assert manifest["metadata"]["annotations"]["pulumi.com/replaceUnready"] == "true", part
        deadline = manifest["spec"]["activeDeadlineSeconds"]
        assert 0 < deadline <= 3600, part
        assert int(registration.custom_timeouts.update.rstrip("m")) * 60 > deadline, part


def test_data_claim_keeps_the_mode_and_class_it_was_made_with(monkeypatch):
    # The claim was made ReadWriteOnce on class "standard"; the config now asks for others.
    monkeypatch.setattr(harness.Mocks, "state_overrides", {
        "workspace-cvat-data": {"spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "standard",
                                         "resources": {"requests": {"storage": "20Gi"}}}},
    })
    rendering = render(with_(cvatDataAccessMode="ReadWriteMany", storageClassName="scw-bssd"), stack="acme", secrets=SECRETS)
    claim = rendering.one("kubernetes:core/v1:PersistentVolumeClaim", "cvat-data")
    # Either would force a replacement, and with a fixed name the old claim (and its data) goes first.
    assert {"spec.accessModes", "spec.storageClassName"} <= set(claim.ignore_changes)
    warnings = "\n".join(rendering.warnings)
    assert "cvatDataAccessMode is ReadWriteMany but the claim cvat-data was made ReadWriteOnce" in warnings
    assert "storageClassName is scw-bssd but the claim cvat-data was made with class standard" in warnings
    # Pods follow the volume as it is: still one node.
    server = pod(rendering.kubernetes_object("Deployment", "cvat-backend"))
    assert server["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]


def test_no_warning_when_the_claim_matches_or_the_class_is_the_cluster_default(monkeypatch):
    monkeypatch.setattr(harness.Mocks, "state_overrides", {
        "workspace-cvat-data": {"spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "standard",
                                         "resources": {"requests": {"storage": "20Gi"}}}},
    })
    rendering = render(SCALEWAY, stack="acme", secrets=SECRETS)
    assert not [w for w in rendering.warnings if "cvat-data" in w]


def secrets_revisions(rendering):
    return {r.name: r for r in rendering.of_type("random:index/randomId:RandomId") if r.name.endswith("-secrets-revision")}


def test_secret_changes_roll_the_pods_that_read_them(acme):
    revisions = secrets_revisions(acme)
    backend = revisions["workspace-cvat-backend-secrets-revision"]
    assert set(backend.inputs["keepers"]) == {"redis", "kvrocks", "django"}
    assert {f"keepers.{key}" for key in backend.inputs["keepers"]} <= backend.secret_paths  # never in plain text
    for name in ["cvat-backend", "cvat-worker-import", "cvat-worker-webhooks"]:
        template = acme.kubernetes_object("Deployment", name)["spec"]["template"]
        assert template["metadata"]["annotations"]["labeling.dev/secrets-revision"] == harness.RANDOM_HEX, name
    for store in ("redis", "kvrocks"):
        keepers = revisions[f"workspace-cvat-{store}-secrets-revision"].inputs["keepers"]
        assert keepers == {"password": f"GeneratedWorkspaceCvat{store.title()}PasswordSecret0"}
        template = acme.kubernetes_object("StatefulSet", f"cvat-{store}")["spec"]["template"]
        assert template["metadata"]["annotations"]["labeling.dev/secrets-revision"] == harness.RANDOM_HEX
    # Mutable Secrets and ConfigMaps: updated in place, never a window without them.
    provider = acme.one("pulumi:providers:kubernetes")
    assert provider.inputs["enableSecretMutable"] in (True, "true")
    assert provider.inputs["enableConfigMapMutable"] in (True, "true")


def test_new_share_keys_roll_the_backend():
    def keepers(secret):
        rendering = render(with_(datasetAccess="share", storageSecretKey=secret), stack="acme", secrets=SECRETS)
        return secrets_revisions(rendering)["workspace-cvat-backend-secrets-revision"].inputs["keepers"]

    first = keepers("first-secret-key-value")
    assert first["s3-secret-key"] == "first-secret-key-value"
    assert keepers("second-secret-key-value") != first


def test_superuser_job_runs_again_when_its_script_changes(acme):
    keepers = acme.one("random:index/randomId:RandomId", "superuser-revision").inputs["keepers"]
    from components import kube

    assert keepers["script"] == kube.content_hash(kube.asset("superuser.py"))
