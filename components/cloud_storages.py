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
import pulumi_random as random

from components import jobs, kube
from components.endpoint import S3Endpoint

SCRIPT = "cloud_storages.py"
# CVAT's organization slugs: at most 16 letters, digits, '-' or '_'.
SLUG_LENGTH = 16
# CVAT's Organization.name is at most 64 characters (organizations/models.py).
NAME_LENGTH = 64
# The Job's deadline, and Pulumi's wait for it (components/jobs.py).
JOB_DEADLINE = jobs.PREPARATION
JOB_DEADLINE_SECONDS = JOB_DEADLINE.seconds
JOB_AWAIT_SECONDS = JOB_DEADLINE.await_seconds


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
        self._resource_name = name
        self._args = args
        labels = kube.labels(args["workspace"], "cvat-cloud-storages")
        slug = organization_slug(args["workspace"])
        scripts = jobs.scripts_configmap(
            f"{name}-scripts", {"name": "cvat-cloud-storages", "namespace": args["namespace"], "labels": labels},
            [SCRIPT], parent=self,
        )
        revision, storages_revision = self._revisions()
        container = {
            "name": "register",
            "image": args["backend_image"],
            "command": ["python3", f"{jobs.SCRIPTS_DIR}/{SCRIPT}"],
            "env": self._environment(slug, storages_revision),
            "resources": args["resources"],
            "securityContext": kube.container_security_context(),
            "volumeMounts": [jobs.scripts_mount()],
        }
        template = jobs.script_pod(
            labels, [container], [jobs.scripts_volume(scripts.metadata["name"])],
            kube.pod_security_context(kube.CVAT_UID, fs_group=kube.CVAT_UID),
        )
        jobs.one_shot_job(
            f"{name}-job",
            {"name": revision.apply(lambda hex_: f"cvat-cloud-storages-{hex_}"), "namespace": args["namespace"], "labels": labels},
            template, backoff_limit=3, deadline=JOB_DEADLINE,
            # Runs once per revision (its name); held while the workspace is paused.
            options=jobs.JobOptions(parent=self, held=bool(args.get("paused", False)), depends_on=list(args["cvat_ready"])),
        )
        self.organization = slug
        self.register_outputs({"organization": slug})

    def _storage_keepers(self) -> dict[str, pulumi.Input[str]]:
        """What the registered storages are made of: the buckets, the endpoint and the keys."""
        endpoint = self._args["endpoint"]
        if not self._args["buckets"]:
            return {}
        return {
            "buckets": " ".join(self._args["buckets"]),
            "endpoint": endpoint.url,
            "region": endpoint.region,
            "access_key": pulumi.Output.secret(endpoint.access_key),
            "secret_key": pulumi.Output.secret(endpoint.secret_key),
        }

    def _revisions(self) -> tuple[pulumi.Output[str], Optional[pulumi.Output[str]]]:
        """(the Job's revision, the storages' revision or None without buckets).

        The Job's is renewed with anything it does (a new run); the storages' own, which the
        script compares with the one each registered storage records, with the buckets,
        endpoint and keys only: a change of the schemas alone re-sends no keys.
        """
        storage_keepers = self._storage_keepers()
        keepers: dict = {"script": kube.content_hash(kube.asset(SCRIPT)), **storage_keepers}
        projects = self._args.get("projects_json") or "[]"
        if projects != "[]":
            # The schemas themselves: any change (a label, an attribute, a value, a color) re-runs the Job.
            keepers["projects"] = projects
        child = pulumi.ResourceOptions(parent=self)
        revision = random.RandomId(f"{self._resource_name}-revision", byte_length=4, keepers=keepers, opts=child)
        if not storage_keepers:
            return revision.hex, None
        storages = random.RandomId(f"{self._resource_name}-storages-revision", byte_length=4, keepers=storage_keepers, opts=child)
        return revision.hex, storages.hex

    def _environment(self, slug: str, storages_revision: Optional[pulumi.Output[str]]) -> list[dict]:
        """The script's environment: CVAT and the organization, the buckets (when there are any), the
        projects, the admin's login and the S3 keys from their Secrets."""
        args = self._args
        endpoint = args["endpoint"]
        env = [
            {"name": "CVAT_URL", "value": args["backend_url"]},
            {"name": "ORGANIZATION_SLUG", "value": slug},
            {"name": "ORGANIZATION_NAME", "value": organization_name(args["workspace"], args["description"])},
        ]
        if storages_revision is not None:
            env += [
                {"name": "BUCKETS", "value": " ".join(args["buckets"])},
                {"name": "S3_ENDPOINT_URL", "value": endpoint.url},
                {"name": "S3_REGION", "value": endpoint.region},
                {"name": "CREDENTIALS_REVISION", "value": storages_revision},
            ]
        # Not secret: label names and values; plain JSON the script reads.
        env.append({"name": "PROJECTS", "value": args.get("projects_json") or "[]"})
        env += [
            kube.secret_env("ADMIN_USERNAME", args["admin_credentials_secret"], "username"),
            kube.secret_env("ADMIN_PASSWORD", args["admin_credentials_secret"], "password"),
        ]
        if storages_revision is not None:
            env += [
                kube.secret_env("AWS_ACCESS_KEY_ID", args["s3_credentials_secret"], "accessKeyId"),
                kube.secret_env("AWS_SECRET_ACCESS_KEY", args["s3_credentials_secret"], "secretAccessKey"),
            ]
        return env
