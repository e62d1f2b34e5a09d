"""BucketLifecycleRules: the backup bucket's clean-up rule, managed with boto3.

The rule removes what an interrupted backup leaves behind, and nothing else:
it expires the objects under a temporary upload prefix (``.../.incoming/``,
see docs/backups.md) and aborts unfinished multipart uploads. It never
expires backups: deleting old backups is the backup job's retention, which
keeps the newest good ones however old they are. A prefix that is not a
temporary upload prefix is refused.

pulumi-aws's ``BucketLifecycleConfiguration`` waits for an AWS-only response
header and hangs, then fails, on MinIO, Ceph and other S3-compatible servers.
This dynamic resource puts the rule with boto3 instead, which works on
Scaleway and MinIO alike. It owns only its own rule (by ID) and leaves any
other rule on the bucket alone.

On delete it removes its rule, only while the rule on the server still has the
prefix this resource put there: a rule of the same ID that another workspace
has written since (look-alike stacks shared rule IDs before IDs came from the
workspace key) is left alone. A delete that cannot reach the endpoint, or whose
keys the endpoint refuses, does not stop `pulumi destroy`: the rule only ever
expires temporary uploads, so it is left on the bucket with a warning that
names the bucket, the rule and why (see remove_rules_or_leave).
A delete gives up after DELETE_DEADLINE_SECONDS.

The provider is pickled by reference: the dynamic provider host imports
``components.lifecycle`` from the project directory. The module path and class
name are therefore part of every stack's state; keep them.
"""

from __future__ import annotations

import sys
import threading
from typing import Any, Optional

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, Resource, ResourceProvider, UpdateResult

from components.endpoint import CONNECTION_SECRETS, S3Endpoint, client_from_inputs

# Servers that lack the lifecycle API answer with one of these.
_NOT_IMPLEMENTED_CODES = {"NotImplemented", "NotImplementedError", "501"}
_NO_CONFIG_CODES = {"NoSuchLifecycleConfiguration", "NoSuchLifecycle"}
# A rule is identified by its bucket and ID. The endpoint URL is not part of
# that: the same server under another URL must be updated in place, because a
# replacement would create the rule, then delete it as the "old" one.
_REPLACE_KEYS = ("bucket", "rule_id_prefix")
# A change of prefix or days is an update of the same rule (same ID): an existing
# stack's rule, which expired the workspace's whole prefix, is rewritten in place.
_UPDATE_KEYS = ("endpoint_url", "region", "access_key", "secret_key", "prefix", "expiration_days", "abort_multipart_days")
# The end of every prefix whose objects the rule may expire: uploads in progress or abandoned.
TEMPORARY_PREFIX_END = "/.incoming/"
# The longest a delete waits for the endpoint before it leaves the rule behind. The
# client of client_from_inputs has a 10 s connect and a 60 s read timeout and makes 4
# attempts (endpoint.client_config passes retries={"max_attempts": 3}, which botocore
# reads as 3 retries: total_max_attempts 4), with a backoff well under a second: a
# refused connection or a DNS failure fails at once, a blackholed endpoint after about
# 40 s (4 connect timeouts), but a stalled one (connects, never answers) would hold
# the destroy 4 x 60 s.
DELETE_DEADLINE_SECONDS = 45.0
# Answers that mean the keys kept in the stack's state are not (or no longer) good for
# this bucket's lifecycle rules: rotated, revoked, expired, or without the permission.
_KEYS_REFUSED_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "AccessDenied", "403"}


class LifecycleRuleError(ValueError):
    """The rule would expire more than temporary uploads."""


def check_prefix(prefix: str) -> str:
    """The prefix, when it is a temporary upload prefix (``<...>/.incoming/``); else LifecycleRuleError."""
    if not isinstance(prefix, str) or not prefix.endswith(TEMPORARY_PREFIX_END) or prefix.startswith("/"):
        raise LifecycleRuleError(
            f"lifecycle prefix {prefix!r} is not a temporary upload prefix (ending in {TEMPORARY_PREFIX_END!r}): "
            "the backup bucket's rule never expires anything else"
        )
    return prefix


def rule_id(rule_id_prefix: str) -> str:
    """The ID of the rule this resource keeps on the bucket."""
    return f"{rule_id_prefix}-backups"


def desired_rule(rule_id_prefix: str, prefix: str, expiration_days: int, abort_multipart_days: int) -> dict:
    """The lifecycle rule this resource keeps on the bucket.

    One rule with both actions, filtered on the temporary upload prefix (one
    prefix per filter, as Scaleway requires): MinIO refuses a rule whose only
    action is AbortIncompleteMultipartUpload (minio internal/bucket/lifecycle/
    rule.go, Rule.Validate: errXMLNotWellFormed without Expiration, Transition or
    a noncurrent-version action), so the abort cannot be a rule of its own on
    the workspace's whole prefix. MinIO ignores the abort action and removes
    stale multipart uploads by itself (after 24 hours by default).
    """
    return {
        "ID": rule_id(rule_id_prefix),
        "Filter": {"Prefix": check_prefix(prefix)},
        "Status": "Enabled",
        "Expiration": {"Days": int(expiration_days)},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": int(abort_multipart_days)},
    }


def _error_code(error: Exception) -> str:
    response = getattr(error, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return "501" if status == 501 and not code else code


def _current_rules(client: Any, bucket: str) -> Optional[list[dict]]:
    """The bucket's rules; [] when it has none; None when the server lacks the API."""
    from botocore.exceptions import ClientError

    try:
        return client.get_bucket_lifecycle_configuration(Bucket=bucket).get("Rules", [])
    except ClientError as error:
        code = _error_code(error)
        if code in _NO_CONFIG_CODES:
            return []
        if code in _NOT_IMPLEMENTED_CODES:
            return None
        raise


def apply_rules(props: dict) -> bool:
    """Puts this resource's rules on the bucket, keeping the others.

    Returns False when the server does not implement lifecycle rules.
    """
    from botocore.exceptions import ClientError

    client = client_from_inputs(props)
    current = _current_rules(client, props["bucket"])
    if current is None:
        return False
    ours = rule_id(props["rule_id_prefix"])
    rules = [rule for rule in current if rule.get("ID") != ours]
    rules.append(desired_rule(props["rule_id_prefix"], props["prefix"], props["expiration_days"], props["abort_multipart_days"]))
    try:
        client.put_bucket_lifecycle_configuration(Bucket=props["bucket"], LifecycleConfiguration={"Rules": rules})
    except ClientError as error:
        if _error_code(error) in _NOT_IMPLEMENTED_CODES:
            return False
        raise
    return True


def _rule_prefix(rule: dict) -> Optional[str]:
    """The prefix a rule applies to (Filter.Prefix, or the legacy top-level Prefix)."""
    return rule.get("Filter", {}).get("Prefix", rule.get("Prefix"))


def remove_rules(props: dict) -> None:
    """Removes this resource's rule from the bucket, keeping the others.

    The rule is this resource's while its prefix is the one in ``props``: a rule
    of the same ID with another prefix was written by another workspace (or by
    hand) and stays.
    """
    from botocore.exceptions import ClientError

    client = client_from_inputs(props)
    try:
        current = _current_rules(client, props["bucket"])
    except ClientError as error:
        if _error_code(error) == "NoSuchBucket":
            return
        raise
    if not current:
        return
    ours = rule_id(props["rule_id_prefix"])
    others = [rule for rule in current if rule.get("ID") != ours or _rule_prefix(rule) != props["prefix"]]
    if len(others) == len(current):
        return
    if others:
        client.put_bucket_lifecycle_configuration(Bucket=props["bucket"], LifecycleConfiguration={"Rules": others})
    else:
        client.delete_bucket_lifecycle(Bucket=props["bucket"])


def warn(message: str) -> None:
    """Shows a warning to the user running `pulumi up/destroy`, from inside the dynamic provider host.

    ``pulumi.log.warn`` has no engine to talk to in the provider host: the host
    (pulumi/dynamic/__main__.py L46-55 of the installed SDK 3.272) configures
    ``Settings(project, stack, organization)`` without an engine address before
    every call, and never reads the engine address the CLI passes it as an
    argument (pulumi/pulumi pkg/resource/plugin/provider_plugin.go L289;
    sdk/python/dist/pulumi-resource-pulumi-python L33, L49: ``-m pulumi.dynamic $@``;
    main() at __main__.py L267 ignores sys.argv). With no engine, ``pulumi.log.warn``
    only prints ``"warning: " + msg`` to stderr (pulumi/log.py L94-98). The engine
    does show a dynamic provider's stderr: it hides the stderr of other resource
    plugins, but not of ``pulumi-resource-pulumi-python`` (sdk/go/common/resource/
    plugin/plugin.go L324, L793-796) and relays each line as an info#err
    diagnostic (plugin.go L349-357), not a warning; a diagnostic without a URN
    is listed under the stack's row (pkg/backend/display/progress.go L1323-1327).
    So stderr is what reaches the user: this writes the line pulumi.log.warn would,
    directly, so that its route does not hang on ambient settings (under unit-test
    mocks pulumi.log.warn goes to the mock engine instead); on one line, since
    each stderr line is its own diagnostic; flushed (the host runs `python -u`,
    tests may not). (pulumi/pulumi source cited at commit 1b5949891b3c, as in
    reference/pulumi-replacements.md.)
    """
    print("warning: " + " ".join(message.split()), file=sys.stderr, flush=True)


def _unreachable_reason(error: BaseException) -> Optional[str]:
    """Why the endpoint could not be reached, when that is what ``error`` says; None otherwise.

    botocore's ConnectionError covers connection refused and DNS failures
    (EndpointConnectionError), connect timeouts, proxy and TLS failures;
    HTTPClientError covers read timeouts and connections closed without an answer.
    """
    from botocore.exceptions import ConnectionError as BotocoreConnectionError
    from botocore.exceptions import HTTPClientError

    if isinstance(error, (BotocoreConnectionError, HTTPClientError)):
        return f"the endpoint cannot be reached ({type(error).__name__}: {error})"
    return None


def _keys_refused_reason(error: BaseException) -> Optional[str]:
    """Why the endpoint refused the request, when the cause is the keys; None otherwise."""
    from botocore.exceptions import ClientError

    if not isinstance(error, ClientError):
        return None
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    code = _error_code(error) or ("403" if status == 403 else "")
    if code in _KEYS_REFUSED_CODES:
        # The code only: a server's message may quote the request it refused.
        return f"the endpoint refused the S3 keys kept in the stack's state ({code})"
    return None


def remove_rules_or_leave(props: dict) -> bool:
    """remove_rules, within DELETE_DEADLINE_SECONDS; True when done.

    When the endpoint cannot be reached, does not answer in time, or refuses
    the keys, the rule is left on the bucket with a warning, and False is
    returned: `pulumi destroy` goes on. Leaving it is harmless: it only expires
    temporary uploads (check_prefix) and aborts unfinished multipart uploads,
    and the bucket outlives the workspace anyway. Refused keys are included on
    purpose: a workspace's keys are often rotated or revoked at the end of its
    life, and the only other way out of a half-destroyed stack would be
    `pulumi state delete`, which leaves the rule behind just the same, with
    more work and no warning.

    Every other error still fails the delete: the server answered (a 5xx after
    the client's retries, a request it refused as malformed), so the cause is
    transient or a bug to fix, and running `pulumi destroy` again removes the
    rule; the resource stays in the state meanwhile, so nothing is orphaned
    without notice.

    The removal runs in a daemon thread so that a stalled endpoint cannot hold
    the destroy longer than the deadline: past it, the thread is abandoned (its
    client gives up by itself within its timeouts, or the host exits first) and
    the rule may or may not have been removed.
    """
    deadline = DELETE_DEADLINE_SECONDS
    outcome: dict[str, BaseException] = {}

    def run() -> None:
        try:
            remove_rules(props)
        except BaseException as error:  # noqa: BLE001  (handed to the caller below)
            outcome["error"] = error

    worker = threading.Thread(target=run, name=f"remove-lifecycle-rule-{props.get('bucket')}", daemon=True)
    worker.start()
    worker.join(deadline)
    if worker.is_alive():
        reason = f"the endpoint did not answer within {deadline:g} s"
    elif "error" not in outcome:
        return True
    else:
        error = outcome["error"]
        reason = _unreachable_reason(error) or _keys_refused_reason(error)
        if reason is None:
            raise error
    warn(
        f"labeling:BucketLifecycleRules: lifecycle rule {rule_id(props['rule_id_prefix'])!r} was not removed "
        f"from bucket {props['bucket']!r} at {props['endpoint_url']}: {reason}. The destroy goes on and leaves "
        f"the rule on the bucket: it only expires temporary uploads under {props['prefix']!r}. Remove it by hand "
        "when the endpoint can be reached with valid keys (aws s3api get-bucket-lifecycle-configuration, then "
        "put-bucket-lifecycle-configuration without it, or delete-bucket-lifecycle if it is the only rule)."
    )
    return False


def read_rules(props: dict) -> Optional[dict]:
    """The resource's state as found on the server (for `pulumi refresh`); None when the bucket is gone."""
    from botocore.exceptions import ClientError

    client = client_from_inputs(props)
    try:
        current = _current_rules(client, props["bucket"])
    except ClientError as error:
        if _error_code(error) == "NoSuchBucket":
            return None
        raise
    if current is None:
        return {**props, "supported": False}
    rule = next((rule for rule in current if rule.get("ID") == rule_id(props["rule_id_prefix"])), {})
    return {
        **props,
        "supported": True,
        "prefix": _rule_prefix(rule) if rule else props["prefix"],
        "expiration_days": rule.get("Expiration", {}).get("Days"),
        "abort_multipart_days": rule.get("AbortIncompleteMultipartUpload", {}).get("DaysAfterInitiation"),
    }


class BucketLifecycleRulesProvider(ResourceProvider):
    """Dynamic provider: create/read/update/delete/diff of the lifecycle rules."""

    def create(self, props: dict) -> CreateResult:
        supported = apply_rules(props)
        return CreateResult(id_=f"{props['bucket']}/{props['rule_id_prefix']}", outs={**props, "supported": supported})

    def read(self, id_: str, props: dict) -> ReadResult:
        state = read_rules(props)
        # An empty id tells the engine the resource is gone.
        return ReadResult(id_=id_, outs=state) if state is not None else ReadResult(id_="", outs={})

    def diff(self, id_: str, olds: dict, news: dict) -> DiffResult:
        replaces = [key for key in _REPLACE_KEYS if olds.get(key) != news.get(key)]
        changed = [key for key in _UPDATE_KEYS if olds.get(key) != news.get(key)]
        return DiffResult(
            changes=bool(replaces or changed),
            replaces=replaces,
            stables=[key for key in _REPLACE_KEYS if key not in replaces],
            delete_before_replace=False,
        )

    def update(self, id_: str, olds: dict, news: dict) -> UpdateResult:
        supported = apply_rules(news)
        return UpdateResult(outs={**news, "supported": supported})

    def delete(self, id_: str, props: dict) -> None:
        """Removes the rule; an endpoint that cannot be reached or refuses the keys leaves it, with a warning."""
        remove_rules_or_leave(props)


class BucketLifecycleRules(Resource, module="labeling", name="BucketLifecycleRules"):
    """The clean-up rule of temporary uploads on a bucket of an S3-compatible server, kept with boto3.

    ``prefix`` is the temporary upload prefix (``<workspace prefix>database/.incoming/``);
    its objects expire after ``expiration_days``, and unfinished multipart uploads
    under it are aborted after ``abort_multipart_days``.

    Outputs ``supported``: False when the server does not implement lifecycle
    rules (then abandoned temporary uploads stay until someone deletes them).
    """

    supported: pulumi.Output[bool]

    def __init__(
        self,
        name: str,
        *,
        endpoint: S3Endpoint,
        bucket: pulumi.Input[str],
        rule_id_prefix: str,
        prefix: pulumi.Input[str],
        expiration_days: pulumi.Input[int] = 1,
        abort_multipart_days: int = 1,
        opts: Optional[pulumi.ResourceOptions] = None,
    ):
        if isinstance(prefix, str):
            check_prefix(prefix)  # at `pulumi preview` already, not only when the provider runs
        props = {
            **endpoint.connection_inputs(),
            "bucket": bucket,
            "rule_id_prefix": rule_id_prefix,
            "prefix": prefix,
            "expiration_days": expiration_days,
            "abort_multipart_days": abort_multipart_days,
            "supported": None,
        }
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=CONNECTION_SECRETS))
        super().__init__(BucketLifecycleRulesProvider(), name, props, opts)
