"""CloudStorages: the bootstrap Job that prepares CVAT for annotators.

A Job (backend image, ``assets/cloud_storages.py``) logs in as the admin once
CVAT is ready, makes sure an organization for the workspace exists, registers
each dataset bucket in it as a cloud storage, so annotators find them under
"Create task → Cloud Storage", and creates or extends the projects of the
label schemas (``components/label_schema.py``). The Job runs when there are
buckets, projects or both; it runs again when the buckets, the endpoint, the
keys or the schemas change; its name comes from a random id renewed with them,
so nothing derived from the keys shows. The storages carry a revision of their
own (renewed with the buckets, endpoint and keys only): a change of the schemas
alone re-sends no keys.
"""

from __future__ import annotations

from typing import NotRequired, Optional, Sequence, TypedDict

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components import jobs, kube
from components.endpoint import S3Endpoint

SCRIPT = "cloud_storages.py"
BACKEND_UID = 1000
# CVAT's organization slugs: at most 16 letters, digits, '-' or '_'.
SLUG_LENGTH = 16
# CVAT's Organization.name is at most 64 characters (organizations/models.py).
NAME_LENGTH = 64
# The Job is bounded by its own deadline; Pulumi waits a little longer, so that what a
# stuck Job reports is the Job's own DeadlineExceeded, not Pulumi's timeout.
JOB_DEADLINE_SECONDS = kube.AWAIT_TIMEOUT_SECONDS
JOB_AWAIT_SECONDS = JOB_DEADLINE_SECONDS + 120


def organization_slug(workspace: str) -> str:
    """The CVAT organization slug of a workspace."""
    return workspace[:SLUG_LENGTH].rstrip("-") or "workspace"


def organization_name(workspace: str, description: str) -> str:
    """The CVAT organization name: the description (whitespace collapsed) cut to 64 characters."""
    name = " ".join(description.split()) or f"Workspace {workspace}"
    return name[:NAME_LENGTH].rstrip()


class CloudStoragesArgs(TypedDict):
    """Inputs of :class:`CloudStorages`."""

    namespace: pulumi.Input[str]
    workspace: str
    description: str
    backend_image: str
    backend_url: str
    endpoint: S3Endpoint
    s3_credentials_secret: pulumi.Input[str]
    admin_credentials_secret: pulumi.Input[str]
    # May be empty when there are projects: the Job then needs no S3 keys.
    buckets: Sequence[str]
    resources: dict
    cvat_ready: Sequence[pulumi.Resource]
    # label_schema.projects_json(projects): the projects the Job creates or extends ("[]" or absent: none).
    projects_json: NotRequired[str]
    # The workspace is paused: the Job is held until it resumes (components/jobs.py).
    paused: NotRequired[bool]


class CloudStorages(pulumi.ComponentResource):
    """The bootstrap Job: the organization, the dataset buckets as cloud storages, the projects."""

    organization: str

    def __init__(self, name: str, args: CloudStoragesArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("labeling:index:CloudStorages", name, None, opts)
        endpoint = args["endpoint"]
        labels = kube.labels(args["workspace"], "cvat-cloud-storages")
        slug = organization_slug(args["workspace"])
        scripts = k8s.core.v1.ConfigMap(
            f"{name}-scripts",
            metadata={"name": "cvat-cloud-storages", "namespace": args["namespace"], "labels": labels},
            data={SCRIPT: kube.asset(SCRIPT)},
            opts=pulumi.ResourceOptions(parent=self),
        )
        buckets = list(args["buckets"])
        projects = args.get("projects_json") or "[]"
        paused = bool(args.get("paused", False))
        storage_keepers: dict = {}
        if buckets:
            storage_keepers = {
                "buckets": " ".join(buckets),
                "endpoint": endpoint.url,
                "region": endpoint.region,
                "access_key": pulumi.Output.secret(endpoint.access_key),
                "secret_key": pulumi.Output.secret(endpoint.secret_key),
            }
        keepers: dict = {"script": kube.content_hash(kube.asset(SCRIPT)), **storage_keepers}
        if projects != "[]":
            # The schemas themselves: any change (a label, an attribute, a value, a color) re-runs the Job.
            keepers["projects"] = projects
        # Names the Job: renewed with anything it does (a new run).
        revision = random.RandomId(
            f"{name}-revision",
            byte_length=4,
            keepers=keepers,
            opts=pulumi.ResourceOptions(parent=self),
        )
        # The storages' own revision, which the script compares with the one each registered
        # storage records: a change of the schemas alone re-sends no keys.
        storages_revision = random.RandomId(
            f"{name}-storages-revision",
            byte_length=4,
            keepers=storage_keepers,
            opts=pulumi.ResourceOptions(parent=self),
        ) if buckets else None

        env = [
            {"name": "CVAT_URL", "value": args["backend_url"]},
            {"name": "ORGANIZATION_SLUG", "value": slug},
            {"name": "ORGANIZATION_NAME", "value": organization_name(args["workspace"], args["description"])},
        ]
        if buckets:
            env += [
                {"name": "BUCKETS", "value": " ".join(buckets)},
                {"name": "S3_ENDPOINT_URL", "value": endpoint.url},
                {"name": "S3_REGION", "value": endpoint.region},
                {"name": "CREDENTIALS_REVISION", "value": storages_revision.hex},
            ]
        # Not secret: label names and values; plain JSON the script reads.
        env.append({"name": "PROJECTS", "value": projects})
        env += [
            kube.secret_env("ADMIN_USERNAME", args["admin_credentials_secret"], "username"),
            kube.secret_env("ADMIN_PASSWORD", args["admin_credentials_secret"], "password"),
        ]
        if buckets:
            env += [
                kube.secret_env("AWS_ACCESS_KEY_ID", args["s3_credentials_secret"], "accessKeyId"),
                kube.secret_env("AWS_SECRET_ACCESS_KEY", args["s3_credentials_secret"], "secretAccessKey"),
            ]
        container = {
            "name": "register",
            "image": args["backend_image"],
            "command": ["python3", f"/scripts/{SCRIPT}"],
            "env": env,
            "resources": args["resources"],
            "securityContext": kube.container_security_context(),
            "volumeMounts": [{"name": "scripts", "mountPath": "/scripts", "readOnly": True}],
        }
        k8s.batch.v1.Job(
            f"{name}-job",
            metadata={
                "name": revision.hex.apply(lambda hex_: f"cvat-cloud-storages-{hex_}"),
                "namespace": args["namespace"],
                "labels": labels,
                "annotations": jobs.annotations(paused, JOB_AWAIT_SECONDS),
            },
            spec=jobs.spec({
                "backoffLimit": 3,
                "activeDeadlineSeconds": JOB_DEADLINE_SECONDS,
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "restartPolicy": "Never",
                        "automountServiceAccountToken": False,
                        "securityContext": kube.pod_security_context(BACKEND_UID, fs_group=BACKEND_UID),
                        "containers": [container],
                        "volumes": [{"name": "scripts", "configMap": {"name": scripts.metadata["name"]}}],
                    },
                },
            }, paused),
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=list(args["cvat_ready"]),
                # Wins over the annotation (pulumi-kubernetes metadata.TimeoutDuration); kept equal to it.
                custom_timeouts=pulumi.CustomTimeouts(create=f"{JOB_AWAIT_SECONDS}s", update=f"{JOB_AWAIT_SECONDS}s"),
                # Runs once per revision (its name); held while the workspace is paused.
                ignore_changes=jobs.ignored(paused),
            ),
        )
        self.organization = slug
        self.register_outputs({"organization": slug})
