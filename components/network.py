"""Egress NetworkPolicies: who each pod of a workspace may call, and nothing else.

Pure functions: :mod:`components.cvat` says which pods call which (its table of
:class:`Egress`), this module turns that into NetworkPolicy specs. The rules:

- once any policy selects a pod for Egress, only the union of what the policies
  selecting it allow is permitted: `default-deny-egress` selects every pod of the
  namespace, so a pod no table row names (cert-manager's solver, a debug pod)
  reaches nothing;
- DNS goes to kube-dns only: pods labelled `k8s-app: kube-dns` in `kube-system`,
  UDP and TCP 53 (not port 53 of any address);
- in-cluster peers are named by `podSelector` (policies see the pod behind a
  Service's ClusterIP, which kube-proxy or the CNI translates first);
- "outside the cluster" is 0.0.0.0/0 and ::/0 less the private, shared (CGNAT) and
  link-local ranges: the program cannot know the cluster's pod, service and node
  ranges, so every private range stays closed unless named. Named are exactly
  the addresses CVAT's SSRF guard is told to allow (`egressAllow`, a private
  endpoint IP, the in-cluster MinIO's ClusterIP); the cloud metadata address is
  cut out of any named range that covers it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import pulumi

NAME_LABEL = "app.kubernetes.io/name"
DNS_PORT = 53
# kube-dns (CoreDNS on most distributions keeps the label) in kube-system.
KUBE_DNS_NAMESPACE = "kube-system"
KUBE_DNS_LABELS = {"k8s-app": "kube-dns"}
# Never reachable from outside the cluster's own range: private, shared address space
# (CGNAT, Alibaba's metadata at 100.100.100.200), link-local (cloud metadata, node-local DNS).
CLOSED_IPV4 = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16")
CLOSED_IPV6 = ("fc00::/7", "fe80::/10")
# The cloud metadata service (instance credentials): AWS, GCP, Azure, Scaleway, OpenStack; AWS's IPv6 one.
METADATA_ADDRESSES = (ipaddress.ip_network("169.254.169.254/32"), ipaddress.ip_network("fd00:ec2::254/128"))

DEFAULT_DENY_EGRESS = "default-deny-egress"
ALLOW_DNS = "allow-dns"


@dataclass(frozen=True)
class Peer:
    """Pods of the workspace (by app.kubernetes.io/name) on one TCP port."""

    name: str
    port: int


@dataclass(frozen=True)
class Egress:
    """What some pods of the workspace may call besides kube-dns."""

    pods: Sequence[str]
    peers: Sequence[Peer] = ()
    outside: bool = False
    """Outside the cluster (every port), plus the named private addresses."""
    dns: bool = True


def pods(names: Sequence[str]) -> dict[str, Any]:
    """Selects the workspace's pods with these names (the namespace is the workspace's own)."""
    return {"matchExpressions": [{"key": NAME_LABEL, "operator": "In", "values": sorted(set(names))}]}


def kube_dns_rule() -> dict[str, Any]:
    """To kube-dns's pods only: both selectors in one peer (pods labelled so *in* kube-system)."""
    return {
        "to": [{
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": KUBE_DNS_NAMESPACE}},
            "podSelector": {"matchLabels": dict(KUBE_DNS_LABELS)},
        }],
        "ports": [{"protocol": "UDP", "port": DNS_PORT}, {"protocol": "TCP", "port": DNS_PORT}],
    }


def outside_cluster() -> list[dict[str, Any]]:
    """Every public address, IPv4 and IPv6."""
    return [
        {"ipBlock": {"cidr": "0.0.0.0/0", "except": list(CLOSED_IPV4)}},
        {"ipBlock": {"cidr": "::/0", "except": list(CLOSED_IPV6)}},
    ]


def named_block(entry: str) -> Optional[dict[str, Any]]:
    """The ipBlock of an address or range CVAT's SSRF guard allows, less the metadata address.

    None for the metadata address itself: it is never reachable, whatever is allowed.
    """
    network = ipaddress.ip_network(entry, strict=False)
    if network in METADATA_ADDRESSES:
        return None
    block: dict[str, Any] = {"cidr": str(network)}
    cut = [str(m) for m in METADATA_ADDRESSES if m.version == network.version and m.subnet_of(network)]
    if cut:
        block["except"] = cut
    return {"ipBlock": block}


def outside_and_named(allowed: Sequence[pulumi.Input[str]]) -> pulumi.Output[list[dict[str, Any]]]:
    """Peers of the "outside the cluster" rule: the public addresses and the named ones."""

    def peers(entries: list[str]) -> list[dict[str, Any]]:
        named = [named_block(entry) for entry in dict.fromkeys(entries) if entry]
        return outside_cluster() + [block for block in named if block is not None]

    return pulumi.Output.all(*allowed).apply(peers)


def egress_policies(table: dict[str, Egress], dns_only: Sequence[str],
                    allowed: Sequence[pulumi.Input[str]]) -> dict[str, dict[str, Any]]:
    """Policy name -> spec: one `egress-from-<key>` per row, `allow-dns`, and the default deny.

    `dns_only`: pods that call no one but may resolve names. `allowed`: the addresses
    and ranges of CVAT's SSRF guard (plain or Outputs, e.g. a ClusterIP).
    """
    policies: dict[str, dict[str, Any]] = {}
    resolving = list(dns_only)
    for key, egress in table.items():
        rules = [
            {"to": [{"podSelector": pods([peer.name])}], "ports": [{"protocol": "TCP", "port": peer.port}]}
            for peer in egress.peers
        ]
        if egress.outside:
            rules.append({"to": outside_and_named(allowed)})
        if egress.dns:
            resolving += egress.pods
        if rules:
            policies[f"egress-from-{key}"] = {"podSelector": pods(egress.pods), "policyTypes": ["Egress"], "egress": rules}
    policies[ALLOW_DNS] = {"podSelector": pods(resolving), "policyTypes": ["Egress"], "egress": [kube_dns_rule()]}
    # Every pod of the namespace: what no policy above allows is denied (kept last, see Cvat).
    policies[DEFAULT_DENY_EGRESS] = {"podSelector": {}, "policyTypes": ["Egress"]}
    return policies
