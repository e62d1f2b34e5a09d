"""What every pod of a workspace may reach (issue 15, item 5): least-privilege egress.

For each example stack, every pod the program makes (Deployments, StatefulSets, Jobs,
the CronJob's template) is put in a model cluster, and what it may reach is computed
from the rendered NetworkPolicies as Kubernetes defines them: a pod that no policy
selects for Egress reaches everything; one that some policy selects reaches only the
union of what those policies allow (a peer with both a namespaceSelector and a
podSelector means pods so labelled *in* such namespaces; a podSelector alone, pods of
the policy's own namespace; an ipBlock, addresses in its range but not in its
excepts: pod addresses included, as Calico and Cilium apply it).

Held for every pod:
- it never reaches the cloud metadata address (169.254.169.254, fd00:ec2::254);
- it reaches other namespaces only for DNS, at kube-dns's pods in kube-system, port 53;
- it reaches private, shared and link-local ranges (nodes, the API server, node-local
  DNS) only at the addresses CVAT's SSRF guard is told to allow, and only if it must
  reach S3 or the outside;
- in its own namespace, it reaches exactly the peers (pod, port) it needs; MinIO and
  OPA reach only what they must (MinIO: nothing, not even DNS; OPA: the backend's 8080).
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass, field
from typing import Optional

import kubernetes_validate
import pytest

from support import harness
from support import transitions
from components import cvat, database, minio, network
from support.harness import render

# The stacks of tests/data/stable_urns.json (dev: in-cluster MinIO; acme: Scaleway; minio-external:
# a MinIO by name, with a restore), and an external MinIO at a private IP with egressAllow.
_, _PRIVATE_BASE, _ = transitions.shape_config("minio-external")
STACKS = {
    **{shape: transitions.shape_config(shape) for shape in ("dev", "acme", "minio-external")},
    "private-endpoint": (
        "lab",
        {**_PRIVATE_BASE, "storageEndpoint": "http://10.20.0.5:9000", "egressAllow": ["192.168.7.0/24", "fd12:3456::/48"]},
        ["storageSecretKey"],
    ),
}
# The addresses CVAT's SSRF guard allows in each stack (the in-cluster MinIO's ClusterIP, a private
# endpoint IP, egressAllow): reachable by the pods that reach S3; their neighbours are not.
NAMED = {
    "dev": [harness.MINIO_CLUSTER_IP],
    "acme": [],
    "minio-external": [],
    "private-endpoint": ["10.20.0.5", "192.168.7.1", "192.168.7.254", "fd12:3456::1", "fd12:3456:0:ffff::9"],
}
NOT_NAMED = ["10.96.0.43", "10.20.0.6", "192.168.8.1", "192.168.6.255", "fd12:3457::1"]

WORKERS = [f"cvat-worker-{key}" for key in ("import", "export", "chunks", "utils", "annotation", "webhooks", "quality")]
CVAT_PODS = ["cvat-backend", *WORKERS, "cvat-ui", "cvat-opa", "cvat-redis", "cvat-kvrocks", "cvat-migrate", "cvat-superuser",
             "postgres", "database-backup", "cvat-cloud-storages"]
# Every pod each stack makes, by app.kubernetes.io/name.
STACK_PODS = {
    "dev": [*CVAT_PODS, "minio", "ensure-buckets"],
    "acme": CVAT_PODS,
    "minio-external": [*CVAT_PODS, "database-restore"],
    "private-endpoint": [*CVAT_PODS, "database-restore"],
}


@dataclass(frozen=True)
class Needs:
    """What a pod must reach: peers (pod name, TCP port) in its namespace, kube-dns, the outside."""

    peers: frozenset = frozenset()
    dns: bool = True
    outside: bool = False
    """S3, webhooks, cloud storages: public addresses, and the named ones."""


POSTGRES, REDIS, KVROCKS = ("postgres", 5432), ("cvat-redis", 6379), ("cvat-kvrocks", 6666)
OPA, BACKEND, MINIO = ("cvat-opa", 8181), ("cvat-backend", 8080), ("minio", 9000)
CVAT_BACKEND = Needs(frozenset({POSTGRES, REDIS, KVROCKS, OPA, MINIO}), outside=True)
NEEDS = {
    "cvat-backend": CVAT_BACKEND,
    **{worker: CVAT_BACKEND for worker in WORKERS},
    "cvat-opa": Needs(frozenset({BACKEND})),
    "cvat-ui": Needs(),
    "cvat-redis": Needs(),
    "cvat-kvrocks": Needs(),
    "postgres": Needs(),
    "minio": Needs(dns=False),
    "cvat-migrate": Needs(frozenset({POSTGRES, REDIS, KVROCKS})),
    "cvat-superuser": Needs(frozenset({POSTGRES, REDIS, KVROCKS})),
    "database-backup": Needs(frozenset({POSTGRES, MINIO}), outside=True),
    "database-restore": Needs(frozenset({POSTGRES, MINIO}), outside=True),
    # It calls CVAT's API only: CVAT itself reaches the buckets.
    "cvat-cloud-storages": Needs(frozenset({BACKEND})),
    "ensure-buckets": Needs(frozenset({MINIO})),
}
CASES = [(shape, pod) for shape, pods in STACK_PODS.items() for pod in pods]

# Ports tried on every pod of the namespace: each service's, DNS, web, MinIO's console, the solver's.
TCP_PORTS = (53, 80, 443, 5432, 6379, 6666, 8000, 8080, 8089, 8181, 9000, 9001)
METADATA = ["169.254.169.254", "fd00:ec2::254"]
# Nodes, the API server's ClusterIP, kube-dns's ClusterIP, node-local DNS, CGNAT and Alibaba's
# metadata, the private IPv6 ranges.
PRIVATE = ["10.0.0.1", "10.96.0.1", "10.43.0.10", "172.16.0.1", "172.31.255.254", "192.168.1.1", "100.64.0.1",
           "100.100.100.200", "169.254.20.10", "169.254.0.1", "fc00::1", "fd12::1", "fe80::1"]
PUBLIC = ["51.159.0.1", "8.8.8.8", "2001:bc8::1"]
PROBES = [("UDP", 53), ("TCP", 53), ("TCP", 80), ("TCP", 443), ("TCP", 6443), ("TCP", 10250)]


@dataclass(frozen=True)
class Pod:
    namespace: str
    labels: tuple
    ip: str

    @property
    def label_map(self) -> dict:
        return dict(self.labels)


def pod(namespace: str, ip: str, **labels: str) -> Pod:
    return Pod(namespace, tuple(sorted(labels.items())), ip)


def workspace_pod(namespace: str, name: str, ip: str, instance: str) -> Pod:
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": instance}
    return Pod(namespace, tuple(sorted(labels.items())), ip)


def matches(selector: dict, labels: dict) -> bool:
    """A label selector (matchLabels and matchExpressions; {} selects everything)."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        held = {
            "In": key in labels and labels[key] in values,
            "NotIn": not (key in labels and labels[key] in values),
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not held:
            return False
    return True


def in_block(block: dict, ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    cidr = ipaddress.ip_network(block["cidr"])
    if address.version != cidr.version or address not in cidr:
        return False
    return not any(address in ipaddress.ip_network(cut) for cut in block.get("except", []))


@dataclass
class Cluster:
    """The workspace's namespace and its policies, with pods of other namespaces around it."""

    namespace: str
    policies: list[dict]
    pods: dict[str, Pod] = field(default_factory=dict)

    @staticmethod
    def of(rendering) -> "Cluster":
        namespace = rendering.outputs["namespace"]
        manifests = [r.manifest() for r in rendering.kubernetes_objects()]
        policies = [m for m in manifests if m["kind"] == "NetworkPolicy"]
        assert all(p["metadata"]["namespace"] == namespace for p in policies)
        cluster = Cluster(namespace, policies)
        instance = next(m for m in manifests if m["kind"] == "Namespace")["metadata"]["labels"]["app.kubernetes.io/instance"]
        for index, name in enumerate(sorted(pod_names(rendering))):
            cluster.pods[name] = workspace_pod(namespace, name, f"10.42.0.{index + 10}", instance)
        return cluster

    def namespace_labels(self, namespace: str) -> dict:
        return {"kubernetes.io/metadata.name": namespace}

    def egress_policies(self, source: Pod) -> list[dict]:
        """The policies that select this pod for Egress (policies apply to their own namespace)."""
        found = []
        for policy in self.policies:
            spec = policy["spec"]
            types = spec.get("policyTypes") or ["Ingress", *(["Egress"] if "egress" in spec else [])]
            if source.namespace == self.namespace and "Egress" in types and matches(spec["podSelector"], source.label_map):
                found.append(spec)
        return found

    def peer_matches(self, peer: dict, destination: Pod | str) -> bool:
        if "ipBlock" in peer:
            return in_block(peer["ipBlock"], destination.ip if isinstance(destination, Pod) else destination)
        if not isinstance(destination, Pod):
            return False
        if "namespaceSelector" in peer:
            if not matches(peer["namespaceSelector"], self.namespace_labels(destination.namespace)):
                return False
        elif destination.namespace != self.namespace:
            return False
        return matches(peer.get("podSelector", {}), destination.label_map)

    @staticmethod
    def port_matches(ports: Optional[list], protocol: str, port: int) -> bool:
        if not ports:
            return True
        for entry in ports:
            if entry.get("protocol", "TCP") != protocol:
                continue
            if "port" not in entry:
                return True
            assert not isinstance(entry["port"], str), "named ports are not modelled"
            if int(entry["port"]) <= port <= int(entry.get("endPort", entry["port"])):
                return True
        return False

    def allows(self, source: Pod, destination: Pod | str, protocol: str, port: int) -> bool:
        policies = self.egress_policies(source)
        if not policies:
            return True  # not isolated for egress: everything
        return any(
            self.port_matches(rule.get("ports"), protocol, port)
            and (not rule.get("to") or any(self.peer_matches(peer, destination) for peer in rule["to"]))
            for spec in policies
            for rule in spec.get("egress", [])
        )

    def reachable_peers(self, source: Pod) -> set[tuple[str, int]]:
        """(pod name, port) of the namespace's pods this one reaches over TCP, and ("…", 53) over UDP."""
        found = set()
        for name, destination in self.pods.items():
            for port in TCP_PORTS:
                if self.allows(source, destination, "TCP", port):
                    found.add((name, port))
            if self.allows(source, destination, "UDP", 53):
                found.add((name, 53))
        return found


KUBE_DNS = pod("kube-system", "10.42.9.10", **{"k8s-app": "kube-dns"})
# Pods of other namespaces: kube-system's others, a kube-dns look-alike elsewhere, the ingress
# controller, and another workspace's pods with the same names.
FOREIGN = [
    pod("kube-system", "10.42.9.11", **{"app.kubernetes.io/name": "traefik"}),
    pod("kube-system", "10.42.9.12", **{"k8s-app": "metrics-server"}),
    pod("default", "10.42.9.13", **{"k8s-app": "kube-dns"}),
    pod("ingress-nginx", "10.42.9.14", **{"app.kubernetes.io/name": "ingress-nginx"}),
]


def foreign_pods(cluster: Cluster) -> list[Pod]:
    twins = [workspace_pod("cvat-other", name, f"10.42.8.{index + 10}", "other")
             for index, name in enumerate(sorted(cluster.pods))]
    return FOREIGN + twins


def pod_templates(rendering):
    """(kind, name, pod template) of every workload the rendering makes."""
    for registration in rendering.kubernetes_objects():
        manifest = registration.manifest()
        kind = manifest["kind"]
        if kind == "CronJob":
            yield kind, manifest["metadata"]["name"], manifest["spec"]["jobTemplate"]["spec"]["template"]
        elif kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield kind, manifest["metadata"]["name"], manifest["spec"]["template"]


def pod_names(rendering) -> set[str]:
    return {template["metadata"]["labels"]["app.kubernetes.io/name"] for _, _, template in pod_templates(rendering)}


@functools.cache
def rendered(shape: str):
    stack, config, secrets = STACKS[shape]
    return render(config, stack=stack, secrets=secrets)


@functools.cache
def cluster_of(shape: str) -> Cluster:
    return Cluster.of(rendered(shape))


def source(shape: str, name: str) -> tuple[Cluster, Pod]:
    cluster = cluster_of(shape)
    assert name in cluster.pods, f"{shape} makes no {name} pod"
    return cluster, cluster.pods[name]


# ----- every pod the stacks make is checked -----------------------------------


@pytest.mark.parametrize("shape", sorted(STACKS))
def test_every_pod_of_the_stack_is_checked(shape):
    assert pod_names(rendered(shape)) == set(STACK_PODS[shape])
    assert set(STACK_PODS[shape]) <= set(NEEDS)


@pytest.mark.parametrize("shape", sorted(STACKS))
def test_every_pod_template_is_selected_by_its_labels(shape):
    """The policies select pods by the labels their templates carry (instance: the workspace)."""
    cluster = cluster_of(shape)
    for kind, name, template in pod_templates(rendered(shape)):
        labels = template["metadata"]["labels"]
        modelled = cluster.pods[labels["app.kubernetes.io/name"]].label_map
        assert modelled.items() <= labels.items(), f"{kind} {name}"


@pytest.mark.parametrize("shape", sorted(STACKS))
def test_every_policy_is_valid_against_the_kubernetes_schema(shape):
    for policy in cluster_of(shape).policies:
        kubernetes_validate.validate(policy, "1.30.0", strict=True)


# ----- per pod ------------------------------------------------------------------


@pytest.mark.parametrize("shape, name", CASES)
def test_pod_is_isolated_for_egress(shape, name):
    cluster, me = source(shape, name)
    assert cluster.egress_policies(me), f"{name} has unrestricted egress"


@pytest.mark.parametrize("shape, name", CASES)
def test_pod_reaches_exactly_its_peers_in_the_namespace(shape, name):
    cluster, me = source(shape, name)
    needed = {(peer, port) for peer, port in NEEDS[name].peers if peer in cluster.pods}
    assert cluster.reachable_peers(me) == needed


@pytest.mark.parametrize("shape, name", CASES)
def test_pod_never_reaches_the_cloud_metadata_service(shape, name):
    cluster, me = source(shape, name)
    for address in METADATA:
        for protocol, port in PROBES:
            assert not cluster.allows(me, address, protocol, port), f"{name} -> {address}:{port}/{protocol}"


@pytest.mark.parametrize("shape, name", CASES)
def test_pod_reaches_other_namespaces_only_for_dns_at_kube_dns(shape, name):
    cluster, me = source(shape, name)
    for other in foreign_pods(cluster):
        for protocol, port in [*PROBES, ("TCP", 8080), ("TCP", 5432), ("TCP", 9153)]:
            assert not cluster.allows(me, other, protocol, port), f"{name} -> {other.namespace} {other.labels} :{port}/{protocol}"
    for protocol in ("UDP", "TCP"):
        assert cluster.allows(me, KUBE_DNS, protocol, 53) is NEEDS[name].dns, f"{name} -> kube-dns:53/{protocol}"
    for port in (80, 443, 8080, 9153):
        assert not cluster.allows(me, KUBE_DNS, "TCP", port), f"{name} -> kube-dns:{port}"


@pytest.mark.parametrize("shape, name", CASES)
def test_pod_reaches_private_ranges_only_at_named_addresses(shape, name):
    cluster, me = source(shape, name)
    for address in PRIVATE + [a for a in NOT_NAMED if a not in NAMED[shape]]:
        for protocol, port in PROBES:
            assert not cluster.allows(me, address, protocol, port), f"{name} -> {address}:{port}/{protocol}"
    for address in NAMED[shape]:
        for protocol, port in (("TCP", 9000), ("TCP", 443)):
            assert cluster.allows(me, address, protocol, port) is NEEDS[name].outside, f"{name} -> {address}:{port}"


@pytest.mark.parametrize("shape, name", CASES)
def test_pod_reaches_the_outside_only_when_it_must(shape, name):
    cluster, me = source(shape, name)
    for address in PUBLIC:
        for port in (443, 80, 8443):
            assert cluster.allows(me, address, "TCP", port) is NEEDS[name].outside, f"{name} -> {address}:{port}"


# ----- pods the program does not make --------------------------------------------


def test_other_pods_in_the_namespace_reach_nothing():
    """cert-manager's HTTP-01 solver, a debug pod: the default deny holds them."""
    rendering = render({**STACKS["acme"][1], "certManagerIssuer": "letsencrypt", "ingressClassName": "nginx"},
                       stack="acme", secrets=STACKS["acme"][2])
    cluster = Cluster.of(rendering)
    strangers = [
        pod(cluster.namespace, "10.42.0.200", **{"acme.cert-manager.io/http01-solver": "true"}),
        pod(cluster.namespace, "10.42.0.201", run="debug"),
    ]
    for stranger in strangers:
        assert cluster.egress_policies(stranger)
        assert not cluster.reachable_peers(stranger)
        for destination in [KUBE_DNS, *METADATA, *PRIVATE, *PUBLIC]:
            for protocol, port in PROBES:
                assert not cluster.allows(stranger, destination, protocol, port), (stranger.labels, destination, port)


# ----- how the policies are made -----------------------------------------------


def test_dns_peer_needs_both_the_namespace_and_the_pod_label():
    (rule,) = network.egress_policies({}, ["cvat-ui"], [])["allow-dns"]["egress"]
    assert rule["to"] == [{
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
    }]
    assert rule["ports"] == [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]


def test_outside_is_the_public_internet_of_both_families():
    blocks = [peer["ipBlock"] for peer in network.outside_cluster()]
    assert blocks == [
        {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16"]},
        {"cidr": "::/0", "except": ["fc00::/7", "fe80::/10"]},
    ]


@pytest.mark.parametrize(
    "entry, block",
    [
        ("10.20.0.5", {"cidr": "10.20.0.5/32"}),
        ("192.168.7.0/24", {"cidr": "192.168.7.0/24"}),
        ("fd12:3456::/48", {"cidr": "fd12:3456::/48"}),
        # A named range never opens the metadata address.
        ("169.254.0.0/16", {"cidr": "169.254.0.0/16", "except": ["169.254.169.254/32"]}),
        ("fd00::/8", {"cidr": "fd00::/8", "except": ["fd00:ec2::254/128"]}),
        ("169.254.169.254", None),
    ],
)
def test_named_addresses_become_ip_blocks_without_the_metadata_address(entry, block):
    assert network.named_block(entry) == (None if block is None else {"ipBlock": block})


def test_a_named_link_local_range_still_keeps_the_metadata_address_closed():
    rendering = render({**STACKS["private-endpoint"][1], "egressAllow": ["169.254.0.0/16"]}, stack="lab",
                       secrets=STACKS["private-endpoint"][2])
    cluster = Cluster.of(rendering)
    backend = cluster.pods["cvat-backend"]
    assert cluster.allows(backend, "169.254.20.10", "TCP", 443)  # named: allowed, as smokescreen allows it
    for address in METADATA:
        assert not cluster.allows(backend, address, "TCP", 80)


def test_the_default_deny_is_made_after_every_egress_policy():
    """On an upgrade, no pod is denied before the policy that allows its traffic exists."""
    rendering = rendered("dev")
    policies = {r.manifest()["metadata"]["name"]: r for r in rendering.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")}
    deny = policies[network.DEFAULT_DENY_EGRESS]
    egress = [r.urn for name, r in policies.items() if "Egress" in r.manifest()["spec"]["policyTypes"] and r is not deny]
    assert egress and set(egress) <= set(deny.depends_on)


def test_peer_ports_are_the_components_ports():
    assert cvat.POSTGRES_PORT == database.PORT and cvat.POSTGRES_POD == "postgres"
    assert cvat.MINIO_PORT == minio.API_PORT
