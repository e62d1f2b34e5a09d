"""ClusterBinding: a workspace stays on the cluster it was made on.

The Kubernetes provider is told the cluster's identity (`cluster_identifier`,
from `kubeContext`). A changed identity makes the engine replace the provider
and so every resource of the workspace: create all of it anew, empty, on the
other cluster (or fail on AlreadyExists when the context is a new name for the
same cluster), then delete the old one with its volumes (pulumi-kubernetes
provider/provider.go DiffConfig; pulumi step_generator.go). Without
`cluster_identifier` the same change is silent when no kubeconfig file is
parsed: the stack goes on against the other cluster, and a later `destroy`
acts there.

This dynamic resource records the `kubeContext` the workspace was made with,
and its namespace (a new namespace would also make every volume anew).
The provider waits for it, so a changed `kubeContext` stops `pulumi preview`
and `pulumi up` before any other step, with a message that says how to move a
workspace (docs/operations/restore.md, "Moving a workspace to another cluster"). Setting a
`kubeContext` on a stack that had none (the development stack, or a stack
made before the key was required) records it and changes nothing else.
The module path and class names are part of the stack state.
"""

from __future__ import annotations

from typing import Optional

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, Resource, ResourceProvider, UpdateResult


class ClusterMoveRefused(Exception):
    """kubeContext changed on a workspace that exists."""


def refusal(old: str, new: str) -> str:
    return (
        f"kubeContext changed from {old!r} to {new!r}: a workspace does not move between clusters "
        "(every resource would be made anew, empty, and the old ones deleted with their volumes). "
        "Nothing was changed. To move the workspace, take a backup, create a new stack with the "
        "new kubeContext and restoreFrom, then destroy this one (docs/operations/restore.md: Moving a workspace to "
        f"another cluster). If {new!r} is only a new name for the same cluster, set kubeContext "
        f"back to {old!r} (or add a context of that name to your kubeconfig)."
    )


def namespace_refusal(old: str, new: str) -> str:
    return (
        f"namespace changed from {old!r} to {new!r}: a workspace does not move between namespaces "
        "(its volumes would be made anew, empty, and the old ones deleted). Nothing was changed. "
        f"Set namespace back to {old!r}; to have the workspace in another namespace, restore a backup "
        "into a new stack (docs/operations/restore.md: Moving a workspace to another cluster)."
    )


class ClusterBindingProvider(ResourceProvider):
    """Dynamic provider: records kubeContext and the namespace; refuses to change them."""

    def create(self, props: dict) -> CreateResult:
        return CreateResult(id_="cluster-binding", outs=props)

    def read(self, id_: str, props: dict) -> ReadResult:
        return ReadResult(id_=id_, outs=props)

    def diff(self, id_: str, olds: dict, news: dict) -> DiffResult:
        old, new = olds.get("kube_context") or "", news.get("kube_context") or ""
        if old and new != old:
            raise ClusterMoveRefused(refusal(old, new))
        old_namespace, new_namespace = olds.get("namespace") or "", news.get("namespace") or ""
        if old_namespace and new_namespace != old_namespace:
            raise ClusterMoveRefused(namespace_refusal(old_namespace, new_namespace))
        changed = [key for key in ("kube_context", "namespace") if (olds.get(key) or "") != (news.get(key) or "")]
        return DiffResult(changes=bool(changed), replaces=[], stables=[], delete_before_replace=False)

    def update(self, id_: str, olds: dict, news: dict) -> UpdateResult:
        return UpdateResult(outs=news)

    def delete(self, id_: str, props: dict) -> None:
        """Nothing outside the stack's state."""


class ClusterBinding(Resource, module="labeling", name="ClusterBinding"):
    """The kubeContext and namespace a workspace was made with."""

    kube_context: pulumi.Output[str]
    namespace: pulumi.Output[str]

    def __init__(self, name: str, kube_context: str, namespace: str, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(ClusterBindingProvider(), name, {"kube_context": kube_context, "namespace": namespace}, opts)
