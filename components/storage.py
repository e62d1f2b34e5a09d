"""ObjectStorage: the workspace's buckets.

- The **backup bucket** receives the database backups. It is created by the
  program, kept when the stack is destroyed (``retain_on_delete``), and has a
  lifecycle rule that cleans up after interrupted backups only: it expires the
  temporary uploads under ``<workspace prefix>database/.incoming/`` after a day
  and aborts unfinished multipart uploads there after a day. It never expires
  backups: only the backup job's retention deletes them, and it keeps the
  newest good ones whatever their age, so a long stretch of failed backups
  never empties the bucket. The rule's ID is ``labeling-<workspace key>-backups``,
  unique per project and stack like the prefix (look-alike stacks sharing a
  bucket never touch each other's rule).
  A configured bucket that already exists (kept by an earlier ``pulumi
  destroy``) is adopted with the ``import`` option when ``adopt_backup_bucket``
  says so (see ``preflight.check_backup_bucket``); its other rules are kept.
- The **dataset buckets** belong to the user: they are only referenced, never
  created, changed or deleted on an external server.
- A Secret holds the S3 credentials for the pods that need them.

With an in-cluster MinIO the program cannot reach the server, so a Job inside
the cluster creates the buckets and sets the same rule instead (the dataset
buckets are created there empty, for the user to fill).
"""

from __future__ import annotations

from typing import Any, NotRequired, Optional, Sequence, TypedDict

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pulumi_random as random

from components import jobs, kube
from components.endpoint import AWS_CLI_IMAGE, S3Endpoint
from components.lifecycle import BucketLifecycleRules

BUCKETS_SCRIPT = "ensure-buckets.sh"
CREDENTIALS_SECRET_NAME = "s3-credentials"
# Where backups are uploaded before they are verified and made visible, below the
# workspace prefix (docs/backups.md: `<key>/database/.incoming/<stamp>.dump`).
INCOMING_PREFIX = "database/.incoming/"
# The lifecycle rule expires what is left there, and aborts unfinished multipart
# uploads there, after this many days: no backup run takes that long.
INCOMING_EXPIRATION_DAYS = 1
ABORT_MULTIPART_DAYS = 1
# Keys of the credentials Secret, the same for the generated in-cluster MinIO Secret.
ACCESS_KEY_KEY = "accessKeyId"
SECRET_KEY_KEY = "secretAccessKey"
# The bucket Job's deadline, and Pulumi's wait for it (components/jobs.py).
JOB_DEADLINE = jobs.PREPARATION
JOB_DEADLINE_SECONDS = JOB_DEADLINE.seconds
JOB_AWAIT_SECONDS = JOB_DEADLINE.await_seconds
# The AWS CLI image needs no user of its own (HOME is /tmp): any non-root one.
AWS_CLI_UID = 1000
JOB_RESOURCES = {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}}


class ObjectStorageArgs(TypedDict):
    """Inputs of :class:`ObjectStorage`."""

    endpoint: S3Endpoint
    namespace: pulumi.Input[str]
    workspace: str
    backup_bucket: str
    """Configured name, or "" to generate one starting with `backup_bucket_prefix`."""
    backup_bucket_prefix: str
    workspace_prefix: str
    """Key prefix of everything this workspace keeps in the backup bucket: the workspace
    key and '/' (config.workspace_key, unique per project and stack). The lifecycle
    rule's ID is made from it too."""
    retention_days: NotRequired[int]
    """Not used here: the backup job's retention is the only thing that deletes backups."""
    dataset_buckets: Sequence[str]
    credentials_secret_name: Optional[pulumi.Input[str]]
    """An existing Secret with the S3 keys (in-cluster MinIO), or None to create one."""
    server: Optional[pulumi.Resource]
    """The in-cluster server to wait for, if any."""
    paused: NotRequired[bool]
    """The workspace is paused: the in-cluster bucket Job is held until it resumes (components/jobs.py)."""
    adopt_backup_bucket: NotRequired[bool]
    """The configured backup bucket exists and is usable: import it instead of creating it
    (the answer of preflight.check_backup_bucket). Default False."""


class ObjectStorage(pulumi.ComponentResource):
    """The backup bucket (created, retained) and the dataset buckets (referenced)."""

    backup_bucket: pulumi.Output[str]
    ready: list[pulumi.Resource]
    """What must exist before anything writes to the backup bucket."""
    workspace_prefix: str
    dataset_buckets: list[str]
    credentials_secret_name: pulumi.Output[str]

    def __init__(self, name: str, args: ObjectStorageArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("labeling:index:ObjectStorage", name, None, opts)
        self._resource_name = name
        self._args = args
        bucket_name = self._backup_bucket_name()
        secret_name = self._credentials_secret()
        if args["endpoint"].reachable_from_program:
            bucket = self._backup_bucket(bucket_name)
            self.backup_bucket = bucket.bucket
            self.ready: list[pulumi.Resource] = [bucket]
        else:
            job = self._ensure_buckets_in_cluster(bucket_name, secret_name)
            self.backup_bucket = pulumi.Output.from_input(bucket_name)
            self.ready = [job]

        self.workspace_prefix = args["workspace_prefix"]
        self.dataset_buckets = list(args["dataset_buckets"])
        self.credentials_secret_name = secret_name
        self.register_outputs(
            {
                "backup_bucket": self.backup_bucket,
                "workspace_prefix": self.workspace_prefix,
                "dataset_buckets": self.dataset_buckets,
                "credentials_secret_name": self.credentials_secret_name,
            }
        )

    def _backup_bucket_name(self) -> pulumi.Input[str]:
        """The configured name, or the prefix and a random suffix kept in the state."""
        if self._args["backup_bucket"]:
            return self._args["backup_bucket"]
        # Bucket names are global on Scaleway: a random suffix, kept in the state, avoids clashes.
        suffix = random.RandomId(
            f"{self._resource_name}-backup-bucket-suffix", byte_length=4, opts=pulumi.ResourceOptions(parent=self)
        )
        return pulumi.Output.concat(self._args["backup_bucket_prefix"], "-", suffix.hex)

    def _credentials_secret(self) -> pulumi.Output[str]:
        """The name of the Secret with the S3 keys: the in-cluster MinIO's, or one made here."""
        args = self._args
        if args["credentials_secret_name"] is not None:
            return pulumi.Output.from_input(args["credentials_secret_name"])
        secret = k8s.core.v1.Secret(
            f"{self._resource_name}-credentials",
            metadata={
                "name": CREDENTIALS_SECRET_NAME,
                "namespace": args["namespace"],
                "labels": kube.labels(args["workspace"], "object-storage"),
            },
            type="Opaque",
            string_data={
                ACCESS_KEY_KEY: pulumi.Output.secret(args["endpoint"].access_key),
                SECRET_KEY_KEY: pulumi.Output.secret(args["endpoint"].secret_key),
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
        return secret.metadata["name"]

    def _backup_bucket(self, bucket_name: pulumi.Input[str]) -> aws.s3.Bucket:
        """The backup bucket on a server the program reaches, and its clean-up rule."""
        args = self._args
        bucket = aws.s3.Bucket(
            f"{self._resource_name}-backups",
            bucket=bucket_name,
            force_destroy=False,
            # Backups outlive the workspace: `pulumi destroy` leaves the bucket.
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True, import_=_adopted_bucket(args)),
        )
        rules = BucketLifecycleRules(
            f"{self._resource_name}-backup-lifecycle",
            endpoint=args["endpoint"],
            bucket=bucket.bucket,
            rule_id_prefix=lifecycle_rule_id_prefix(args["workspace_prefix"]),
            prefix=incoming_prefix(args["workspace_prefix"]),
            expiration_days=INCOMING_EXPIRATION_DAYS,
            abort_multipart_days=ABORT_MULTIPART_DAYS,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[bucket]),
        )
        rules.supported.apply(_warn_if_unsupported)
        return bucket

    def _ensure_buckets_in_cluster(self, bucket_name: pulumi.Input[str], secret_name: pulumi.Input[str]) -> k8s.batch.v1.Job:
        """A Job inside the cluster creates the buckets and sets the backup bucket's rule."""
        args = self._args
        paused = bool(args.get("paused", False))
        labels = kube.labels(args["workspace"], "ensure-buckets")
        scripts = jobs.scripts_configmap(
            f"{self._resource_name}-bucket-scripts",
            {"name": "bucket-scripts", "namespace": args["namespace"], "labels": labels},
            [BUCKETS_SCRIPT, kube.S3_HELPERS], parent=self,
        )
        container = _ensure_buckets_container(args, bucket_name, secret_name)
        template = jobs.script_pod(
            labels, [container],
            [jobs.scripts_volume(scripts.metadata["name"], executable=True), {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
            kube.pod_security_context(AWS_CLI_UID),
        )
        return jobs.one_shot_job(
            f"{self._resource_name}-ensure-buckets",
            {"name": f"ensure-buckets-{_buckets_revision(args)}", "namespace": args["namespace"], "labels": labels},
            template, backoff_limit=3, deadline=JOB_DEADLINE,
            # Runs once per name (a hash of what it does); the in-cluster MinIO's region or
            # image does not run it again; held while the workspace is paused (components/jobs.py).
            options=jobs.JobOptions(parent=self, held=paused, depends_on=[args["server"]] if args["server"] is not None else []),
        )


def _buckets_revision(args: ObjectStorageArgs) -> str:
    """Names the bucket Job: Jobs are immutable, a new name (a hash of what it does) runs it again."""
    workspace_prefix = args["workspace_prefix"]
    return kube.content_hash(
        kube.asset(BUCKETS_SCRIPT),
        AWS_CLI_IMAGE,
        args["backup_bucket"],
        lifecycle_rule_id_prefix(workspace_prefix),
        incoming_prefix(workspace_prefix),
        INCOMING_EXPIRATION_DAYS,
        sorted(args["dataset_buckets"]),
    )


def _ensure_buckets_container(args: ObjectStorageArgs, bucket_name: pulumi.Input[str],
                              secret_name: pulumi.Input[str]) -> dict[str, Any]:
    """The AWS CLI running ensure-buckets.sh: every bucket, and the backup bucket's rule."""
    plain_env = {
        **args["endpoint"].cli_environment(),
        "BUCKETS": pulumi.Output.all(bucket_name, *args["dataset_buckets"]).apply(" ".join),
        "LIFECYCLE_BUCKET": bucket_name,
        "LIFECYCLE_PREFIX": incoming_prefix(args["workspace_prefix"]),
        "LIFECYCLE_RULE_ID": lifecycle_rule_id_prefix(args["workspace_prefix"]),
        "LIFECYCLE_EXPIRATION_DAYS": str(INCOMING_EXPIRATION_DAYS),
        "HOME": "/tmp",
    }
    return {
        "name": "ensure-buckets",
        "image": AWS_CLI_IMAGE,
        "command": ["/bin/sh", f"{jobs.SCRIPTS_DIR}/{BUCKETS_SCRIPT}"],
        "env": [{"name": key, "value": value} for key, value in plain_env.items()]
        + [
            kube.secret_env("AWS_ACCESS_KEY_ID", secret_name, ACCESS_KEY_KEY),
            kube.secret_env("AWS_SECRET_ACCESS_KEY", secret_name, SECRET_KEY_KEY),
        ],
        "resources": JOB_RESOURCES,
        "securityContext": kube.container_security_context(),
        "volumeMounts": [jobs.scripts_mount(), {"name": "tmp", "mountPath": "/tmp"}],
    }


def lifecycle_rule_id_prefix(workspace_prefix: str) -> str:
    """``labeling-<workspace key>``: the start of the backup bucket rule's ID (lifecycle.rule_id adds ``-backups``).

    Unique per project and stack, like the workspace key. For a stack whose name is
    a DNS label the key is the name, so the ID is the one earlier versions gave the
    rule (``labeling-<stack>``) and the rule is updated in place.
    """
    key = workspace_prefix[:-1]
    if not workspace_prefix.endswith("/") or not key or "/" in key:
        raise ValueError(f"workspace prefix {workspace_prefix!r} is not '<workspace key>/'")
    return f"labeling-{key}"


def incoming_prefix(workspace_prefix: str) -> str:
    """Where the workspace's backups are uploaded before they are made visible (the rule's only target)."""
    return f"{workspace_prefix}{INCOMING_PREFIX}"


def _adopted_bucket(args: ObjectStorageArgs) -> Optional[str]:
    """The ID to import the backup bucket with, or None to create it.

    Only a configured name can be adopted (a generated one is new by construction).
    Passing the import ID on every `pulumi up` is safe: the Pulumi engine imports only
    when the resource is not yet in the state with that ID, and otherwise treats it
    like any other resource (pulumi/pulumi pkg/resource/deploy/step_generator.go,
    at 1b59498: ``isImport := goal.Custom && goal.ID != "" && (old == nil ||
    old.External || oldImportID != goal.ID)``, oldImportID being the state's
    ImportID, or its ID when it has none; for a bucket both are the name). An
    imported bucket's inputs {bucket, force_destroy=False} need no replacement:
    ``bucket`` is the imported name and ``force_destroy`` lives only in the
    provider's state (an update at most), so the engine's refusal to replace an
    imported resource that still has an ID ("previously-imported resources that
    still specify an ID may not be replaced") never triggers. A later change of
    backupBucket to another existing bucket imports that one and drops the old one
    from the state without deleting it (retain_on_delete).
    """
    if args.get("adopt_backup_bucket") and args["backup_bucket"]:
        return args["backup_bucket"]
    return None


def _warn_if_unsupported(supported: Optional[bool]) -> None:
    if supported is False:
        pulumi.log.warn(
            "The object storage server does not implement lifecycle rules: uploads that a failed "
            "backup leaves under .incoming/ stay until someone deletes them."
        )
