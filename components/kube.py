"""Conventions shared by the workspace's Kubernetes objects.

Labels, the hardened security contexts every pod and container gets, and the
scripts under ``assets/`` that pods run (shipped through ConfigMaps).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Optional

ASSETS = Path(__file__).parent / "assets"
# Sourced by every pod script that uses the AWS CLI; ship it beside them.
S3_HELPERS = "s3-cli.sh"
PART_OF = "labeling-workspace"
WORKSPACE_LABEL = "labeling.dev/workspace"
# Generous enough for a first image pull on a slow link.
AWAIT_TIMEOUT_SECONDS = 900
# How long `pulumi up` waits for an object to be ready (pulumi-kubernetes metadata.TimeoutDuration).
TIMEOUT_ANNOTATION = "pulumi.com/timeoutSeconds"
# `pulumi up` does not wait for the object at all.
SKIP_AWAIT_ANNOTATION = "pulumi.com/skipAwait"
# The `django` user of CVAT's backend image: runs the server, workers and CVAT's Jobs, and owns
# CVAT's data volume (the database's backups and restores read and write it as this user).
CVAT_UID = 1000


def labels(workspace: str, component: str) -> dict[str, str]:
    """The labels of every object of one component of a workspace."""
    return {
        "app.kubernetes.io/name": component,
        "app.kubernetes.io/instance": workspace,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": "pulumi",
        WORKSPACE_LABEL: workspace,
    }


def selector(workspace: str, component: str) -> dict[str, str]:
    """The stable subset of :func:`labels` that selects a component's pods."""
    return {"app.kubernetes.io/name": component, "app.kubernetes.io/instance": workspace}


def pod_security_context(uid: int, gid: Optional[int] = None, fs_group: Optional[int] = None) -> dict[str, Any]:
    """A non-root pod with the runtime's default seccomp profile."""
    gid = uid if gid is None else gid
    context: dict[str, Any] = {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": gid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if fs_group is not None:
        context["fsGroup"] = fs_group
        context["fsGroupChangePolicy"] = "OnRootMismatch"
    return context


def container_security_context(read_only_root: bool = True) -> dict[str, Any]:
    """No privilege escalation, no capabilities, read-only root where the image allows."""
    return {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": read_only_root,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def awaited(seconds: int = AWAIT_TIMEOUT_SECONDS) -> dict[str, str]:
    """The annotation that bounds `pulumi up`'s wait for a workload to be ready."""
    return {TIMEOUT_ANNOTATION: str(seconds)}


def claim_spec(size: str, storage_class_name: str, access_mode: str = "ReadWriteOnce") -> dict[str, Any]:
    """A volume claim's spec; an empty class leaves the choice to the cluster's default class."""
    spec: dict[str, Any] = {"accessModes": [access_mode], "resources": {"requests": {"storage": size}}}
    if storage_class_name:
        spec["storageClassName"] = storage_class_name
    return spec


def secret_env(var: str, secret: Any, key: str) -> dict[str, Any]:
    """An environment variable read from a key of a Secret (never a plain value)."""
    return {"name": var, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def asset(name: str) -> str:
    """The text of a script under components/assets/."""
    return (ASSETS / name).read_text()


def content_hash(*parts: Any, length: int = 8) -> str:
    """A short, stable hash of plain values (for names of Jobs that must re-run on change)."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
    return digest[:length]
