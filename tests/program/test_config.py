"""The stack config: defaults, every validation rule, one error naming each bad key."""

import json

import pytest

from components.config import (
    DEFAULTS,
    INGRESS_NAMESPACES_WARNING,
    ConfigError,
    IngressConfig,
    bucket_name_problem,
    dns_label,
    dns_name_problem,
    email_problem,
    redact_endpoint,
)
from support.harness import ROOT, load_stack_file, loaded_config, render
from support.stacks import (
    ADMIN_SECRETS,
    SCALEWAY,
    SECRETS,
    keys_of,
    only_problem,
    problems_of,
    with_,
)


def test_valid_scaleway_config_uses_documented_defaults():
    rendering = render(SCALEWAY, stack="acme", secrets=SECRETS)
    outputs = rendering.outputs
    assert outputs["namespace"] == "cvat-acme"
    assert outputs["adminUsername"] == "admin"
    assert outputs["annotationUrl"] == "http://label.acme.example"
    assert outputs["description"] == ""
    provider = rendering.one("pulumi:providers:aws")
    assert provider.inputs["region"] == "fr-par"
    assert outputs["backupRetentionDays"] == 30


@pytest.mark.parametrize(
    "changes, key, words",
    [
        ({"storageProvider": "aws"}, "storageProvider", "not one of scaleway, minio"),
        ({"storageRegion": "us-west-1"}, "storageRegion", "not a Scaleway region"),
        ({"storageEndpoint": "s3.fr-par.scw.cloud"}, "storageEndpoint", "not an http(s) URL"),
        ({"storageEndpoint": "ftp://s3.example.com"}, "storageEndpoint", "not an http(s) URL"),
        ({"storageEndpoint": "https://s3.example.com/bucket"}, "storageEndpoint", "without a path"),
        ({"storageAccessKey": None}, "storageAccessKey", "required unless minioInCluster"),
        ({"storageSecretKey": None}, "storageSecretKey", "required unless minioInCluster"),
        ({"datasetBuckets": ["ab"]}, "datasetBuckets", "3 to 63 characters"),
        ({"datasetBuckets": ["a" * 64]}, "datasetBuckets", "3 to 63 characters"),
        ({"datasetBuckets": ["Images"]}, "datasetBuckets", "lowercase letters"),
        ({"datasetBuckets": ["images_2024"]}, "datasetBuckets", "lowercase letters"),
        ({"datasetBuckets": ["-images"]}, "datasetBuckets", "start and end with a letter or digit"),
        ({"datasetBuckets": ["images-"]}, "datasetBuckets", "start and end with a letter or digit"),
        ({"datasetBuckets": ["my..images"]}, "datasetBuckets", "'..'"),
        ({"datasetBuckets": ["192.168.10.12"]}, "datasetBuckets", "IP address"),
        ({"datasetBuckets": ["acme-images", "acme-images"]}, "datasetBuckets", "listed twice"),
        ({"datasetBuckets": "acme-images"}, "datasetBuckets", "list of strings"),
        ({"datasetBuckets": [1, 2]}, "datasetBuckets", "list of strings"),
        ({"backupBucket": "Backups"}, "backupBucket", "lowercase letters"),
        ({"backupBucket": "acme-images"}, "backupBucket", "also a dataset bucket"),
        ({"adminEmail": "not-an-address"}, "adminEmail", "not an e-mail address"),
        ({"adminEmail": "lead@acme"}, "adminEmail", "invalid domain"),
        ({"adminEmail": None}, "adminEmail", "required"),
        ({"adminUsername": "ml lead"}, "adminUsername", "letters, digits or @.+-_"),
        ({"adminUsername": "x" * 151}, "adminUsername", "1 to 150"),
        ({"adminUsername": "lead/ops"}, "adminUsername", "letters, digits or @.+-_"),
        ({"hostname": "https://label.acme.example"}, "hostname", "without scheme"),
        ({"hostname": "label_acme.example"}, "hostname", "not a DNS name"),
        ({"hostname": "Label.Acme.Example"}, "hostname", "lowercase"),
        ({"hostname": None}, "hostname", "required"),
        ({"namespace": "CVAT"}, "namespace", "DNS-1123 label"),
        ({"namespace": "cvat.acme"}, "namespace", "DNS-1123 label"),
        ({"namespace": "n" * 64}, "namespace", "DNS-1123 label"),
        ({"backupRetentionDays": 0}, "backupRetentionDays", "at least 1"),
        ({"backupRetentionDays": -3}, "backupRetentionDays", "at least 1"),
        ({"backupRetentionDays": "a week"}, "backupRetentionDays", "whole number"),
        ({"minioInCluster": "yes"}, "minioInCluster", "not a boolean"),
        ({"minioInCluster": True}, "minioInCluster", "requires storageProvider 'minio'"),
        ({"tlsSecretName": "acme-tls", "certManagerIssuer": "letsencrypt"}, "tlsSecretName", "not both"),
        ({"tlsSecretName": "acme-tls", "certManagerIssuer": "letsencrypt"}, "certManagerIssuer", "not both"),
        ({"tlsSecretName": "Acme_TLS"}, "tlsSecretName", "Kubernetes object name"),
        ({"ingressClassName": "nginx class"}, "ingressClassName", "Kubernetes object name"),
        ({"kubeContext": None}, "kubeContext", "kubectl config current-context"),
        ({"kubeContext": ""}, "kubeContext", "is required"),
        ({"cvatDataSize": "1.1Gi"}, "cvatDataSize", "whole number of bytes"),
        ({"databaseStorageSize": "0.5Gi"}, "databaseStorageSize", "at least 1Gi"),
        ({"minioImage": "quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z"}, "minioImage", "only means something with minioInCluster"),
        ({"cvatVersion": "v2.72.0"}, "cvatVersion", "known: v2.73.0"),
    ],
)
def test_bad_value_stops_with_message_naming_the_key(changes, key, words):
    problems, message = problems_of(with_(**changes))
    reasons = [reason for bad_key, reason in problems if bad_key == key]
    assert reasons, f"{key} not named in: {message}"
    assert any(words in reason for reason in reasons), reasons
    assert f"- {key}: " in message


def test_minio_needs_an_endpoint_unless_in_cluster():
    config = with_(storageProvider="minio")
    assert "storageEndpoint" in keys_of(config)


def test_in_cluster_minio_needs_no_keys_and_rejects_external_settings():
    base = {"storageProvider": "minio", "minioInCluster": True, "adminEmail": "a@example.com", "hostname": "cvat.localhost"}
    render(base)  # no keys, no endpoint: fine
    bad = {**base, "storageEndpoint": "http://minio:9000", "storageAccessKey": "x", "storageSecretKey": "y"}
    assert keys_of(bad, secrets=["storageSecretKey"]) == {"storageEndpoint", "storageAccessKey", "storageSecretKey"}


def test_secret_values_must_be_stored_encrypted():
    config = with_(adminPassword="correct-horse-battery")
    problems, _ = problems_of(config, secrets=[])
    keys = {key for key, _ in problems}
    assert keys == {"storageSecretKey", "adminPassword"}
    assert all("--secret" in reason for _, reason in problems)
    # The message never repeats a secret value.
    _, message = problems_of(config, secrets=[])
    assert "scaleway-secret-key-value" not in message and "correct-horse-battery" not in message


def test_weak_admin_password_is_refused_without_echoing_it():
    problems, message = problems_of(with_(adminPassword="1234567"), secrets=SECRETS + ["adminPassword"])
    assert [key for key, _ in problems] == ["adminPassword"]
    assert "1234567" not in message
    assert keys_of(with_(adminPassword="123456789012"), secrets=SECRETS + ["adminPassword"]) == {"adminPassword"}


def test_every_problem_is_reported_at_once():
    config = with_(
        storageRegion="mars-1",
        datasetBuckets=["Bad_Bucket"],
        adminEmail="nobody",
        hostname="not a host",
        backupRetentionDays=0,
        namespace="Bad",
        storageAccessKey=None,
    )
    problems, message = problems_of(config)
    assert {key for key, _ in problems} == {
        "storageRegion",
        "datasetBuckets",
        "adminEmail",
        "hostname",
        "backupRetentionDays",
        "namespace",
        "storageAccessKey",
    }
    assert message.startswith("Invalid stack configuration (7 problems)")


def test_region_and_endpoint_for_minio_and_scaleway():
    rendering = render(with_(storageRegion="nl-ams"), stack="acme", secrets=SECRETS)
    # Provider inputs arrive JSON-encoded.
    assert json.loads(rendering.one("pulumi:providers:aws").inputs["endpoints"]) == [{"s3": "https://s3.nl-ams.scw.cloud"}]
    minio = with_(storageProvider="minio", storageEndpoint="https://minio.acme.example/")
    provider = render(minio, stack="acme", secrets=SECRETS).one("pulumi:providers:aws")
    assert json.loads(provider.inputs["endpoints"]) == [{"s3": "https://minio.acme.example"}]
    assert provider.inputs["region"] == "minio"


def test_default_names_follow_the_stack():
    rendering = render(SCALEWAY, stack="Team_A.Prod", secrets=SECRETS)
    assert rendering.outputs["namespace"] == "cvat-team-a-prod"
    assert rendering.outputs["backupBucket"].startswith("labeling-team-a-prod-backups-")
    assert bucket_name_problem(rendering.outputs["backupBucket"]) is None
    long = render(SCALEWAY, stack="x" * 80, secrets=SECRETS).outputs
    assert len(long["namespace"]) <= 63 and bucket_name_problem(long["backupBucket"]) is None


@pytest.mark.parametrize("name", ["abc", "a.b-c", "bucket-2026.v1", "a" * 63])
def test_valid_bucket_names(name):
    assert bucket_name_problem(name) is None


@pytest.mark.parametrize("address", ["a@example.com", "first.last+tag@sub.example.org", "admin@localhost"])
def test_valid_email_addresses(address):
    assert email_problem(address) is None


@pytest.mark.parametrize("name", ["cvat.localhost", "label.acme.example", "a", "x-1.y-2.z"])
def test_valid_hostnames(name):
    assert dns_name_problem(name) is None


def test_dns_label_sanitizes_free_text():
    assert dns_label("My Stack__01") == "my-stack-01"
    assert dns_label("---") == "workspace"
    assert len(dns_label("a" * 100)) == 63


@pytest.mark.parametrize(
    "given, stored",
    [("1024Mi", "1Gi"), ("1.5Gi", "1536Mi"), ("20Gi", "20Gi"), ("2048Gi", "2Ti"), ("2000M", "2G"), ("1500M", "1500M"),
     ("10737418240", "10Gi"), ("0.5Ti", "512Gi")],
)
def test_sizes_are_stored_the_way_the_api_server_writes_them(given, stored):
    from components.config import canonical_quantity

    expected = stored if stored != "10Gi" else "10737418240"  # a plain number stays decimal
    assert canonical_quantity(given) == expected
    rendering = render(with_(cvatDataSize=given, databaseStorageSize=given), stack="acme", secrets=SECRETS)
    claim = rendering.kubernetes_object("PersistentVolumeClaim", "cvat-data")
    assert claim["spec"]["resources"]["requests"]["storage"] == expected
    postgres = rendering.kubernetes_object("StatefulSet", "postgres")
    assert postgres["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == expected


def test_kube_context_is_not_needed_by_the_development_stack():
    dev = {"storageProvider": "minio", "minioInCluster": True, "adminEmail": "a@example.com", "hostname": "cvat.localhost"}
    rendering = render(dev)
    assert "context" not in rendering.one("pulumi:providers:kubernetes").inputs
    scaleway = render(SCALEWAY, stack="acme", secrets=SECRETS)
    assert scaleway.one("pulumi:providers:kubernetes").inputs["context"] == "scw-acme"


@pytest.mark.parametrize(
    "image, words",
    [
        ("registry.example.com/mirror/minio", "tag or a digest"),
        ("minio/minio:latest", "'latest' moves"),
        ("minio minio:1", "not a container image reference"),
        ("Minio/minio:1", "not a container image reference"),
    ],
)
def test_bad_minio_images_are_refused(image, words):
    dev = {"storageProvider": "minio", "minioInCluster": True, "adminEmail": "a@example.com",
           "hostname": "cvat.localhost", "minioImage": image}
    problems, _ = problems_of(dev, secrets=[], stack="dev")
    assert [key for key, _ in problems] == ["minioImage"] and words in problems[0][1]


@pytest.mark.parametrize(
    "changes, key, words",
    [
        ({"backupSchedule": "³ 3 * * *"}, "backupSchedule", "not a valid minute"),
        ({"backupSchedule": "*/² * * * *"}, "backupSchedule", "not a valid minute"),
        ({"backupSchedule": "٣ 3 * * *"}, "backupSchedule", "not a valid minute"),
        ({"backupSchedule": "0 3 31 2 *"}, "backupSchedule", "never fires"),
        ({"backupSchedule": "0 3 30 2 *"}, "backupSchedule", "never fires"),
        ({"backupSchedule": "0 3 31 4 *"}, "backupSchedule", "never fires"),
        ({"backupSchedule": "0 3 29 feb *"}, "backupSchedule", "leap years"),
        ({"storageEndpoint": "https://[…"}, "storageEndpoint", "not an http(s) URL"),
        ({"storageEndpoint": "https://[::1"}, "storageEndpoint", "not an http(s) URL"),
        ({"storageEndpoint": "https://user:pass@s3.example.com"}, "storageEndpoint", "must not hold a user name or password"),
        ({"cvatVersion": "v2.٧٣.0"}, "cvatVersion", "known: v2.73.0"),
        ({"cvatVersion": "v2.73.0" + "0" * 60}, "cvatVersion", "known: v2.73.0"),
        ({"hostname": "cvat\n.example.com"}, "hostname", "not a DNS name"),
        ({"hostname": "label.acme.example\nx"}, "hostname", "not a DNS name"),
        ({"hostname": "10.0.0.5"}, "hostname", "IP address"),
        ({"ingressClassName": "nginx\nx"}, "ingressClassName", "Kubernetes object name"),
        ({"tlsSecretName": "acme-tls\nx"}, "tlsSecretName", "Kubernetes object name"),
        ({"certManagerIssuer": "le\nx"}, "certManagerIssuer", "Kubernetes object name"),
        ({"datasetCsiDriver": "ru.yandex.s3.csi\nx"}, "datasetCsiDriver", "Kubernetes object name"),
        ({"adminEmail": "lead@acme.example\nx"}, "adminEmail", "invalid"),
        ({"adminUsername": "ädmin"}, "adminUsername", "letters, digits or @.+-_"),
        ({"description": "x" * 300_000}, "description", "at most 1000"),
        ({"description": "batch\x00two"}, "description", "printable"),
        ({"description": "line one\nline two"}, "description", "printable"),
        ({"restoreFrom": "it's.dump"}, "restoreFrom", "not a backup"),
        ({"restoreFrom": "a b.dump"}, "restoreFrom", "not a backup"),
        ({"namespace": "kube-system"}, "namespace", "Kubernetes keeps for itself"),
        ({"namespace": "default"}, "namespace", "Kubernetes keeps for itself"),
        ({"namespace": "kube-public"}, "namespace", "Kubernetes keeps for itself"),
        ({"namespace": "kube-node-lease"}, "namespace", "Kubernetes keeps for itself"),
        ({"backupRetentionDays": 3651}, "backupRetentionDays", "at most 3650"),
        ({"backupRetentionDays": 10**12}, "backupRetentionDays", "at most 3650"),
        ({"backupRetentionDays": "٣"}, "backupRetentionDays", "whole number"),
        ({"backupRetentionDays": "1_000"}, "backupRetentionDays", "whole number"),
        ({"storageAccessKey": "A" * 41}, "storageAccessKey", "the most CVAT stores"),
        ({"storageSecretKey": "s" * 65}, "storageSecretKey", "the most CVAT stores"),
        ({"storageAccessKey": "key with space"}, "storageAccessKey", "not an S3 access key"),
        ({"paused": "yes"}, "paused", "not a boolean"),
        ({"allowInsecureHttp": "maybe"}, "allowInsecureHttp", "not a boolean"),
    ],
)
def test_hostile_and_broken_values_are_refused_naming_the_key(changes, key, words):
    problems, message = problems_of(with_(**changes))
    reasons = [reason for bad_key, reason in problems if bad_key == key]
    assert reasons and any(words in reason for reason in reasons), message


def test_surrounding_whitespace_is_dropped_not_kept():
    rendering = render(with_(hostname=" label.acme.example\n"), stack="acme", secrets=SECRETS)
    assert rendering.outputs["annotationUrl"] == "http://label.acme.example"


def test_schedules_that_fire():
    for schedule in ("0 3 29 2 1", "0 3 31 1-12 *", "15 */6 * * *", "0 3 * * sun", "5/15 * * * *", "@daily"):
        rendering = render(with_(backupSchedule=schedule), stack="acme", secrets=SECRETS)
        assert rendering.outputs["backupSchedule"] == schedule
        assert rendering.kubernetes_object("CronJob", "database-backup")["spec"]["schedule"] == schedule


def test_a_userinfo_password_is_never_echoed():
    _, message = problems_of(with_(storageProvider="minio", storageEndpoint="https://user:Sup3rSecret@s3.example.com"))
    assert "Sup3rSecret" not in message


@pytest.mark.parametrize(
    "stack, key",
    [("acme", "acme"), ("acme-prod", "acme-prod"), ("acme_prod", None), ("Acme.Prod", None), ("a" * 70, None)],
)
def test_backup_prefix_is_unique_per_stack_and_kept_for_dns_label_names(stack, key):
    from components.config import workspace_key

    rendering = render(SCALEWAY, stack=stack, secrets=SECRETS)
    prefix = rendering.outputs["backupPrefix"]
    if key:  # a valid DNS label keeps the prefix it always had: existing backups stay found
        assert prefix == f"{key}/database/"
    else:
        assert prefix == f"{workspace_key('labeling', stack)}/database/"
        assert len(prefix.split("/")[0]) <= 63


def test_look_alike_stacks_never_share_a_backup_prefix():
    from components.config import workspace_key

    keys = {workspace_key("labeling", stack) for stack in ("acme_prod", "acme-prod", "Acme.Prod", "acme.prod", "ACME-PROD")}
    assert len(keys) == 5
    long_a, long_b = "x" * 60 + "-one", "x" * 60 + "-two"
    assert workspace_key("labeling", long_a) != workspace_key("labeling", long_b)
    assert workspace_key("labeling", "acme_prod") != workspace_key("other-project", "acme_prod")


def test_plain_http_needs_an_explicit_yes_outside_localhost():
    problems, message = problems_of(with_(allowInsecureHttp=None))
    assert [key for key, _ in problems] == ["hostname"] and "plain http" in message
    for changes in ({"certManagerIssuer": "letsencrypt"}, {"tlsSecretName": "acme-tls"}, {"hostname": "cvat.localhost"},
                    {"hostname": "localhost"}):
        render(with_(allowInsecureHttp=None, **changes), stack="acme", secrets=SECRETS)


def test_restore_from_takes_manifests_and_older_dumps():
    for source in ("latest", "acme/backups/20261130T030000Z.json", "acme/database/20261130T030000Z.dump",
                   "s3://kept-backups/acme/backups/20261130T030000Z.json"):
        rendering = render(with_(restoreFrom=source), stack="acme", secrets=SECRETS)
        job = rendering.one("kubernetes:batch/v1:Job", "database-restore")
        env = {e["name"]: e.get("value") for e in job.inputs["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["RESTORE_FROM"] == source
    assert "restoreFrom" in keys_of(with_(restoreFrom="acme/backups/20261130T030000Z.txt"))


# ----- storageEndpoint and CVAT's SSRF guard (smokescreen) -----------------------------------------
# Smokescreen refuses, unless allowed, the private ranges and every address that is not global
# unicast, loopback (127/8, ::1) and link-local (169.254/16, fe80::/10) included.


def smokescreen_options(rendering):
    """The SMOKESCREEN_OPTS values of every container that sets it (CVAT's server and workers)."""
    found = set()
    for registration in rendering.kubernetes_objects():
        template = registration.manifest().get("spec", {}).get("template") or {}
        for container in template.get("spec", {}).get("containers", []):
            found |= {e.get("value") for e in container.get("env", []) if e["name"] == "SMOKESCREEN_OPTS"}
    return found


@pytest.mark.parametrize(
    "endpoint",
    ["http://127.0.0.1:9000", "http://127.8.9.10", "https://[::1]:9000", "http://localhost:9000", "https://LOCALHOST",
     "http://localhost.:9000", "http://[::ffff:127.0.0.1]:9000", "http://0.0.0.0:9000", "http://[::]:9000"],
)
def test_a_loopback_endpoint_is_refused_naming_the_key(endpoint):
    for egress in ([], ["127.0.0.0/8", "::1"]):  # allowing it would not help: inside a pod it is the pod
        problems, message = problems_of(with_(storageProvider="minio", storageEndpoint=endpoint, egressAllow=egress))
        assert [key for key, _ in problems] == ["storageEndpoint"], message
        (reason,) = [reason for _, reason in problems]
        assert "inside CVAT's pods it is the pod itself" in reason and "loopback" in reason
        assert "  - storageEndpoint: " in message


@pytest.mark.parametrize("endpoint", ["http://169.254.169.254", "http://169.254.169.254:80", "http://[::ffff:169.254.169.254]"])
def test_the_cloud_metadata_address_is_refused_as_an_endpoint(endpoint):
    problems, message = problems_of(with_(storageProvider="minio", storageEndpoint=endpoint))
    assert [key for key, _ in problems] == ["storageEndpoint"], message
    assert "cloud metadata" in message and "never allowed through CVAT's SSRF guard" in message


@pytest.mark.parametrize(
    "endpoint, allowed",
    [
        ("http://169.254.10.5:9000", "169.254.10.5"),
        ("http://169.254.169.253", "169.254.169.253"),  # only the metadata address itself is refused
        ("http://[fe80::5]:9000", "fe80::5"),
        ("http://[FE80::a:5]", "fe80::a:5"),
        ("http://10.20.0.5:9000", "10.20.0.5"),
        ("http://[::ffff:10.20.0.5]:9000", "10.20.0.5"),  # smokescreen sees the IPv4 address
    ],
)
def test_a_link_local_or_private_endpoint_ip_is_allowed_through_the_ssrf_guard(endpoint, allowed):
    rendering = render(with_(storageProvider="minio", storageEndpoint=endpoint), stack="lab", secrets=SECRETS)
    assert smokescreen_options(rendering) == {f"--allow-address={allowed}"}
    # Listed in egressAllow already: not twice; beside a range, it comes after the entries given.
    for egress, options in (([allowed], f"--allow-address={allowed}"),
                            (["169.254.0.0/16"], f"--allow-range=169.254.0.0/16 --allow-address={allowed}")):
        rendering = render(with_(storageProvider="minio", storageEndpoint=endpoint, egressAllow=egress), stack="lab", secrets=SECRETS)
        assert smokescreen_options(rendering) == {options}


def test_names_that_only_look_local_are_not_refused():
    for endpoint in ("https://localhost-s3.example.com", "https://s3.localhost.example.com", "https://203.0.113.10:9000"):
        rendering = render(with_(storageProvider="minio", storageEndpoint=endpoint), stack="lab", secrets=SECRETS)
        assert smokescreen_options(rendering) == {""}


# ----- issue 15: values accepted that failed later, and what the messages show ----------------------
# Each test here failed before its fix.


# Item 6: egressAllow cannot open CVAT's SSRF guard to the world.
@pytest.mark.parametrize(
    "entry",
    ["0.0.0.0/0", "0.0.0.0/1", "10.0.0.0/7", "128.0.0.0/4", "::/0", "fc00::/6", "8000::/1",
     # Go's net.IPNet.Contains reads an IPv4-mapped range as the IPv4 range it maps.
     "::ffff:0:0/96", "::ffff:0.0.0.0/100", "::ffff:10.0.0.0/103"],
)
def test_egress_allow_refuses_ranges_wider_than_8_or_7(entry):
    message = only_problem(with_(egressAllow=["10.1.2.3", entry]), "egressAllow")
    assert "wider than /" in message and "SSRF guard" in message


@pytest.mark.parametrize("entry", ["10.0.0.0/8", "100.64.0.0/10", "fc00::/7", "::ffff:10.0.0.0/104", "2001:db8::/32"])
def test_egress_allow_keeps_ranges_of_8_or_7_and_narrower(entry):
    render(with_(egressAllow=[entry]), stack="acme", secrets=SECRETS)


# Item 7: kube-system is no longer in the default ingressNamespaces; the preview says so.
def ingress_peers(rendering):
    policy = rendering.kubernetes_object("NetworkPolicy", "allow-ingress-to-backend")
    return policy["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchExpressions"][0]["values"]


def test_ingress_namespaces_default_to_ingress_nginx_and_the_preview_warns():
    assert DEFAULTS["ingressNamespaces"] == ["ingress-nginx"]
    assert IngressConfig.__dataclass_fields__["namespaces"].default == ("ingress-nginx",)
    rendering = render(SCALEWAY, stack="acme", secrets=SECRETS)
    assert ingress_peers(rendering) == ["ingress-nginx"]
    assert INGRESS_NAMESPACES_WARNING in rendering.warnings
    assert "kube-system is no longer allowed by default" in INGRESS_NAMESPACES_WARNING
    assert "pulumi config set --path 'ingressNamespaces[1]' kube-system" in INGRESS_NAMESPACES_WARNING
    # Pulumi.yaml gives it no default, so the program sees an unset key: set to the default, no warning.
    assert INGRESS_NAMESPACES_WARNING not in render(with_(ingressNamespaces=["ingress-nginx"]), stack="acme",
                                                    secrets=SECRETS).warnings


def test_ingress_namespaces_set_to_other_values_do_not_warn():
    for namespaces in (["ingress-nginx", "kube-system"], ["kube-system"], ["traefik"]):
        rendering = render(with_(ingressNamespaces=namespaces), stack="acme", secrets=SECRETS)
        assert INGRESS_NAMESPACES_WARNING not in rendering.warnings
        assert ingress_peers(rendering) == namespaces


def test_the_development_stack_keeps_traefik_in_kube_system():
    dev = load_stack_file(ROOT / "Pulumi.dev.yaml")
    assert dev["ingressNamespaces"] == ["ingress-nginx", "kube-system"]
    rendering = render(dev, stack="dev")
    assert ingress_peers(rendering) == ["ingress-nginx", "kube-system"]
    assert INGRESS_NAMESPACES_WARNING not in rendering.warnings


def test_a_refused_config_stops_without_the_warning():
    from support import harness

    _, _, warnings, error = harness._run(with_(hostname=None), "acme", SECRETS)
    assert isinstance(error, ConfigError) and INGRESS_NAMESPACES_WARNING not in warnings


# Item 8: the schedule is checked as Kubernetes checks it (robfig/cron v3 ParseStandard, no TZ).
@pytest.mark.parametrize(
    "schedule, words",
    [
        ("0 3 * * 7", "not a valid day of week (0-6"),
        ("0 3 * * 5-7", "not a valid day of week"),
        ("0 3 * * sun,7", "not a valid day of week"),
        ("0 3 * * 7/1", "not a valid day of week"),
        ("0 3 * * 1-2-3", "too many hyphens"),
        ("0 3 * * 1/2/3", "too many slashes"),
        ("*/0 * * * *", "step of range should be a positive number"),
        ("0 3 * * -1", "not a valid day of week"),
        ("@every 1d", "not a Go duration"),
        ("@every", "not a cron descriptor"),
        ("@DAILY", "not a cron descriptor"),
        ("@reboot", "not a cron descriptor"),
        ("CRON_TZ=UTC 0 3 * * *", "TZ"),
        ("0 3 * * * *", "5 fields"),
        ("0 , * * *", "never fires"),
    ],
)
def test_schedules_kubernetes_refuses_are_refused(schedule, words):
    message = only_problem(with_(backupSchedule=schedule), "backupSchedule")
    assert words in message, message


@pytest.mark.parametrize(
    "schedule",
    ["0 3 * * ?", "0 3 ? * mon", "0 3 * * SUN", "0 3 * JAN-dec *", "@every 12h", "@every 90m", "@every 1h30m",
     "@yearly", "@annually", "@monthly", "@weekly", "@midnight", "@hourly", "5/15 * * * *", "0 3 1,,15 * *",
     "*-5 3 * * *", "+5 3 * * *", "007 3 * * *", "0 3 * * */8"],
)
def test_every_form_kubernetes_accepts_is_accepted(schedule):
    # The config decides; test_schedules_that_fire renders schedules into the CronJob.
    assert loaded_config(with_(backupSchedule=schedule), stack="acme", secrets=SECRETS).backups.schedule == schedule


# Item 9: no traceback, whatever the JSON of a list key or of projects holds.
DEEP = "[" * 100_000 + "]" * 100_000
HUGE = "1" + "0" * 5000


@pytest.mark.parametrize("key", ["datasetBuckets", "workers", "egressAllow", "ingressNamespaces", "ingressAllowCidrs", "projects"])
@pytest.mark.parametrize("text, words", [(DEEP, "nested"), ("[" * 50 + "]" * 50, "nested"), (f"[{HUGE}]", "4300 digits")])
def test_deep_nesting_and_huge_integers_are_refused_naming_the_key(key, text, words):
    problems, message = problems_of(with_(**{key: text}))
    reasons = [reason for bad_key, reason in problems if bad_key == key]
    assert reasons and any(words in reason for reason in reasons), message
    assert len(message) < 2000


@pytest.mark.parametrize("label_type", [["rectangle"], {"kind": "rectangle"}, [], {}])
def test_a_label_type_given_as_a_list_or_a_map_is_refused(label_type):
    projects = [{"name": "p", "labels": [{"name": "car", "type": label_type}]}]
    message = only_problem(with_(projects=projects), "projects")
    assert "type must be one of" in message


@pytest.mark.parametrize("size", [HUGE + "Gi", "1." + "0" * 5000 + "Gi", "9" * 41])
def test_sizes_with_thousands_of_digits_are_refused(size):
    only_problem(with_(cvatDataSize=size), "cvatDataSize")


# Item 10: a password CVAT's login would trim.
@pytest.mark.parametrize("password", [" correct-horse-battery", "correct-horse-battery\n", "\tcorrect horse battery\u00a0"])
def test_an_admin_password_with_surrounding_whitespace_is_refused_without_echoing_it(password):
    message = only_problem(with_(adminPassword=password), "adminPassword", secrets=ADMIN_SECRETS)
    assert "whitespace" in message and "correct" not in message
    render(with_(adminPassword="correct horse battery"), stack="acme", secrets=ADMIN_SECRETS)  # inside is fine


# Item 11: other values that failed later.
def test_an_admin_email_over_254_characters_is_refused():
    local = "a" * 64
    domain = ".".join(["b" * 60] * 3) + ".example"  # a valid domain of 190 characters
    assert len(f"{local}@{domain}") == 255
    assert "at most 254" in only_problem(with_(adminEmail=f"{local}@{domain}"), "adminEmail")
    assert email_problem(f"{local}@{domain[:-1]}") is None  # 254 characters: fine


@pytest.mark.parametrize(
    "endpoint, words",
    [
        ("https://minio_1.storage.internal", "not a host name"),
        ("http://$(id)", "not a host name"),
        ("http://$(id):9000", "not a host name"),
        ("https://-minio.example.com", "not a host name"),
        ("https://minio-.example.com", "not a host name"),
        ("https://minio..example.com", "not a host name"),
        ("https://" + "a" * 64 + ".example.com", "not a host name"),
        ("https://s3.example.com:0", "invalid port"),
        ("https://s3.example.com:65536", "invalid port"),
        ("https://s3.example.com:", "invalid port"),
        ("https://s3.example.com:+80", "invalid port"),
    ],
)
def test_an_endpoint_host_botocore_refuses_is_refused(endpoint, words):
    from botocore.utils import is_valid_endpoint_url, is_valid_ipv6_endpoint_url

    message = only_problem(with_(storageProvider="minio", storageEndpoint=endpoint), "storageEndpoint")
    assert words in message, message
    if words == "not a host name":
        assert not is_valid_endpoint_url(endpoint) and not is_valid_ipv6_endpoint_url(endpoint)


@pytest.mark.parametrize("endpoint", ["https://S3.Example.com", "https://s3.example.com.", "http://10.1.2.3:9000",
                                      "http://[fd00::5]:9000", "https://s3.example.com:65535", "http://minio:1"])
def test_endpoints_botocore_takes_are_kept(endpoint):
    render(with_(storageProvider="minio", storageEndpoint=endpoint), stack="acme", secrets=SECRETS)


def test_a_csi_driver_name_over_63_characters_is_refused():
    name = "csi." + "a" * 56 + ".io"
    assert len(name) == 63
    render(with_(datasetAccess="share", datasetCsiDriver=name), stack="acme", secrets=SECRETS)
    assert "at most 63" in only_problem(with_(datasetCsiDriver="x" + name), "datasetCsiDriver")


@pytest.mark.parametrize("name", ["acme.-images", "acme-.images", "a.-b", "a-.b"])
def test_bucket_names_with_a_dot_next_to_a_hyphen_are_refused(name):
    assert "'.-' or '-.'" in bucket_name_problem(name)
    only_problem(with_(datasetBuckets=["acme-images", name]), "datasetBuckets")
    only_problem(with_(backupBucket=name), "backupBucket")


@pytest.mark.parametrize("size", ["8Ei", "9223372036854775808", "9223372036854775808k", "9.3E", "100000Pi"])
def test_sizes_over_2_63_bytes_are_refused(size):
    assert "2^63" in only_problem(with_(databaseStorageSize=size), "databaseStorageSize")


def test_sizes_up_to_2_63_minus_1_bytes_are_kept():
    from components.config import storage_size_problem

    assert storage_size_problem("9223372036854775807") is None
    assert storage_size_problem("7Ei") is None and storage_size_problem("9E") is None


@pytest.mark.parametrize("key", ["storageSecretKey", "adminPassword"])
def test_a_nul_byte_in_a_secret_is_refused_without_echoing_it(key):
    value = "sekret-value\x00-tail-part"
    message = only_problem(with_(**{key: value}), key, secrets=ADMIN_SECRETS)
    assert "NUL" in message and "sekret" not in message and "tail-part" not in message


# Item 12: credentials in an endpoint never reach a message, whatever else is wrong with it.
@pytest.mark.parametrize(
    "endpoint",
    ["ftp://admin:Sup3rSecret@s3.example.com", "https://admin:Sup3rSecret@s3.example.com/bucket",
     "https://admin:Sup3rSecret@minio_1.internal", "https://admin:Sup3rSecret@s3.example.com:0",
     "https://admin:Sup3rSecret@[::1", "https://admin:Sup3r/Secret@s3.example.com", "admin:Sup3rSecret@s3.example.com",
     "https://admin:Sup3r Secret@s3.example.com", "https://admin:Sup3rSecret@localhost:9000",
     "https://adm@in:Sup3r@Secret@s3.example.com?x=1"],
)
def test_endpoint_credentials_never_reach_a_message(endpoint):
    problems, message = problems_of(with_(storageProvider="minio", storageEndpoint=endpoint))
    assert {key for key, _ in problems} == {"storageEndpoint"}, message
    assert "Sup3r" not in message and "admin:" not in message and "adm@in" not in message, message
    assert "must not hold a user name or password" in message
    assert len([key for key, _ in problems]) >= 2 or endpoint.endswith("s3.example.com"), message


def test_redact_endpoint():
    assert redact_endpoint("https://user:pass@s3.example.com:9000") == "https://***@s3.example.com:9000"
    assert redact_endpoint("user:pass@host") == "***@host"
    assert redact_endpoint("https://s3.example.com") == "https://s3.example.com"
    assert redact_endpoint("https://u:p/a@ss@host/x") == "https://***@host/x"
