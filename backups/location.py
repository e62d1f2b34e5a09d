"""Where a workspace's backups are, and how to reach them: from the Pulumi stack, or from the options.

Explicit options win: `--endpoint --region --bucket --prefix`, with the keys in
`--access-key`/`--secret-key` or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY. What they
leave out comes from the stack (`pulumi stack output` and `pulumi config`, read once
each). An error names the options still missing.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional
from urllib.parse import urlsplit

from botocore.utils import is_valid_endpoint_url, is_valid_ipv6_endpoint_url

from backups import layout
from backups.display import joined, redact_url
from backups.errors import BackupsError, UsageError
from backups.tools import installed, json_object, last_line
from components.config import DEFAULTS, MINIO_DEFAULT_REGION, storage_location
from components.endpoint import s3_client

SCALEWAY_HOST = re.compile(r"^s3\.([a-z0-9-]+)\.scw\.cloud$")
PREFIX_HINT = "give the workspace's key prefix, e.g. acme/database/ or acme/ (stack output backupPrefix)"
ENDPOINT_EXAMPLES = "e.g. http://localhost:9000 or https://s3.fr-par.scw.cloud"
# The options that say where the backups are without a stack, by the Location field they set.
WHERE_OPTIONS = {"endpoint_url": "--endpoint", "bucket": "--bucket", "prefix": "--prefix"}
# The keys: Location field, option, environment variable, the stack's config key.
KEY_SOURCES = (
    ("access_key", "--access-key", "AWS_ACCESS_KEY_ID", "storageAccessKey"),
    ("secret_key", "--secret-key", "AWS_SECRET_ACCESS_KEY", "storageSecretKey"),
)

_CLIENTS: dict[tuple[str, str, str, str], Any] = {}
_CLIENTS_LOCK = threading.Lock()


@dataclass(frozen=True)
class Location:
    """Where a workspace's backups are, and how to reach them.

    `prefix` is the database prefix (stack output backupPrefix, `<key>/database/`);
    the other parts of the layout are beside it under `root` (`<key>/`).
    """

    endpoint_url: str
    region: str
    bucket: str
    prefix: str
    access_key: str
    secret_key: str

    def client(self) -> Any:
        """One client per endpoint and keys for the whole run (building one takes a third of a second)."""
        settings = (self.endpoint_url, self.region, self.access_key, self.secret_key)
        with _CLIENTS_LOCK:
            if settings not in _CLIENTS:
                _CLIENTS[settings] = s3_client(*settings)
            return _CLIENTS[settings]

    @property
    def root(self) -> str:
        """The workspace's root, `<key>/`."""
        return layout.root_of(self.prefix)

    @property
    def manifests(self) -> str:
        """Where the manifests are, `<key>/backups/`."""
        return layout.manifests_prefix(self.root)

    @property
    def incoming(self) -> str:
        """Where the uploads in progress are, `<key>/database/.incoming/`."""
        return layout.incoming_prefix(self.root)

    @property
    def data_repository(self) -> str:
        """The restic repository, `<key>/data`."""
        return layout.data_repository(self.root)

    @property
    def password_key(self) -> str:
        """The restic repository's password, `<key>/data-password`."""
        return layout.password_key(self.root)

    def url(self, key: str = "") -> str:
        """`s3://<bucket>/<key>`, as the operator would name the object."""
        return f"s3://{self.bucket}/{key}"


def normalized_prefix(prefix: str) -> str:
    """`--prefix` as the database prefix `<key>/database/`; an empty one is a usage error."""
    normalized = layout.database_prefix(prefix)
    if not normalized:
        raise UsageError(f"--prefix is empty: {PREFIX_HINT}")
    return normalized


def endpoint_problem(url: str, what: str = "--endpoint") -> Optional[str]:
    """Why `url` cannot be an S3 endpoint, or None; `what` names where it came from. Never prints credentials."""
    shown = f"{what} {redact_url(url)!r}"
    if "@" in url:
        return f"{shown} must not hold credentials (user:password@): pass --access-key/--secret-key"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        return f"{shown} is not a URL ({error}): {ENDPOINT_EXAMPLES}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{shown} needs a scheme and a host, {ENDPOINT_EXAMPLES}"
    if port == 0:
        return f"{shown}: port 0 is not a port, {ENDPOINT_EXAMPLES}"
    if not (is_valid_endpoint_url(url) or is_valid_ipv6_endpoint_url(url)):
        return (f"{shown}: {parts.hostname!r} is not a valid host name (letters, digits, hyphens and dots; "
                f"an IP address; or an IPv6 address in brackets), {ENDPOINT_EXAMPLES}")
    if parts.query or parts.fragment:
        return f"{shown} must not have a query or a fragment, {ENDPOINT_EXAMPLES}"
    return None


def region_for_endpoint(url: str) -> str:
    """The region an endpoint implies: Scaleway's from `s3.<region>.scw.cloud`, else MinIO's."""
    match = SCALEWAY_HOST.match(urlsplit(url).hostname or "")
    return match.group(1) if match else MINIO_DEFAULT_REGION


class StackUnavailable(BackupsError):
    """The stack cannot be read: the Pulumi CLI is not installed, or it failed (no stack selected, not logged in)."""


def run_pulumi(command: list[str]) -> str:
    """Runs the Pulumi CLI; its output, or StackUnavailable."""
    if not installed(command[0]):
        raise StackUnavailable("the Pulumi CLI is not installed")
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise StackUnavailable(f"`{' '.join(command[:3])}` failed: {last_line(result.stderr)}")
    return result.stdout


class Stack:
    """The Pulumi stack's outputs and config, read once each through `run` (the Pulumi CLI)."""

    def __init__(self, name: Optional[str], run: Callable[[list[str]], str]):
        self.name, self.run = name, run
        self._outputs: Optional[dict] = None
        self._config: dict[bool, dict] = {}

    def _suffix(self) -> list[str]:
        return ["--stack", self.name] if self.name else []

    def outputs(self) -> dict:
        """`pulumi stack output --json`."""
        if self._outputs is None:
            self._outputs = json_object(self.run(["pulumi", "stack", "output", "--json", *self._suffix()]), "pulumi stack output")
        return self._outputs

    def config(self, secrets: bool = False) -> dict:
        """`pulumi config --json`, with the secrets shown when asked for."""
        if secrets not in self._config:
            command = ["pulumi", "config", "--json", *(["--show-secrets"] if secrets else []), *self._suffix()]
            self._config[secrets] = json_object(self.run(command), "pulumi config")
        return self._config[secrets]

    def value(self, key: str, secrets: bool = False) -> Any:
        """The value of `labeling:<key>`, or its default."""
        entry = self.config(secrets).get(f"labeling:{key}")
        if entry is None:
            return DEFAULTS.get(key, "")
        value = entry.get("value", "") if isinstance(entry, dict) else entry
        return "" if value is None else value


def location_from_stack(stack: Stack, endpoint_given: bool = False, given: Iterable[str] = ()) -> dict[str, str]:
    """Endpoint, region, bucket, prefix and keys of a stack; `given` names the Location fields passed as options."""
    outputs = stack.outputs()
    if str(stack.value("minioInCluster", secrets=True)).lower() == "true" and not endpoint_given:
        namespace = outputs.get("namespace") or "<namespace>"
        raise BackupsError(
            f"this stack's MinIO runs inside the cluster: forward it (kubectl -n {namespace} port-forward "
            "svc/minio 9000:9000) and pass --endpoint http://localhost:9000 with the keys of the Secret minio-root"
        )
    wanted = {"bucket": "backupBucket", "prefix": "backupPrefix"}
    missing = [field for field, output in wanted.items() if field not in given and output not in outputs]
    if missing:
        names = joined([wanted[field] for field in missing])
        raise BackupsError(f"the stack has no {names} output{'s' if len(missing) > 1 else ''}: run `pulumi up` first, "
                           f"or pass {joined([WHERE_OPTIONS[field] for field in missing])}")
    # Worked out from the raw values as the program does, by the same function.
    _, region, url = storage_location(*(stack.value(key, secrets=True) for key in ("storageProvider", "storageRegion", "storageEndpoint")))
    return {
        "endpoint_url": url,
        "region": region,
        "bucket": outputs.get("backupBucket", ""),
        "prefix": outputs.get("backupPrefix", ""),
        "access_key": stack.value("storageAccessKey", secrets=True),
        "secret_key": stack.value("storageSecretKey", secrets=True),
    }


def check_options(args: argparse.Namespace) -> None:
    """Refuses, before the stack or the server is asked, options whose value can never work (exit 2)."""
    hints = {
        "endpoint": ENDPOINT_EXAMPLES,
        "region": "leave it out to derive it from the endpoint",
        "bucket": "give the backup bucket (stack output backupBucket)",
        "prefix": PREFIX_HINT,
    }
    for name, hint in hints.items():
        value = getattr(args, name, None)
        if value is not None and not value.strip():
            raise UsageError(f"--{name} is empty: {hint}")
    if args.endpoint and (problem := endpoint_problem(args.endpoint.strip().rstrip("/"))):
        raise UsageError(problem)
    if args.prefix is not None:
        normalized_prefix(args.prefix)


def explicit_settings(args: argparse.Namespace) -> dict[str, Optional[str]]:
    """What the options (and the keys' environment variables) say, None where they say nothing."""
    return {
        "endpoint_url": (args.endpoint or "").strip().rstrip("/"),
        "region": args.region,
        "bucket": args.bucket,
        "prefix": args.prefix,
        "access_key": args.access_key or os.environ.get("AWS_ACCESS_KEY_ID"),
        "secret_key": args.secret_key or os.environ.get("AWS_SECRET_ACCESS_KEY"),
    }


def resolve_location(args: argparse.Namespace, run: Callable[[list[str]], str] = run_pulumi, stack: Optional[Stack] = None) -> Location:
    """Explicit options win; what they leave out comes from the stack."""
    check_options(args)
    explicit = explicit_settings(args)
    stack_asked = not all(explicit[field] for field in WHERE_OPTIONS)
    if stack_asked:
        settings = settings_with_stack(args, explicit, stack or Stack(args.stack, run))
    else:
        settings = {**explicit, "region": explicit["region"] or region_for_endpoint(explicit["endpoint_url"] or "")}
    check_keys(settings, stack_asked)
    return Location(**{**settings, "prefix": layout.database_prefix(settings["prefix"])})


def settings_with_stack(args: argparse.Namespace, explicit: dict[str, Optional[str]], stack: Stack) -> dict[str, Any]:
    """The options, completed from the stack; an unreadable stack names the options still missing."""
    endpoint = explicit["endpoint_url"]
    given = [field for field in WHERE_OPTIONS if explicit[field]]
    try:
        from_stack = location_from_stack(stack, endpoint_given=bool(endpoint), given=given)
    except StackUnavailable as error:
        verb = "pass" if "not installed" in str(error) else "select a stack with --stack, or pass"
        raise BackupsError(f"{error}: {still_missing(explicit, verb)}") from error
    settings = {key: explicit[key] or from_stack[key] for key in explicit}
    if endpoint and not args.region:
        settings["region"] = region_for_endpoint(endpoint)
    if not endpoint:
        if not settings["endpoint_url"]:
            raise BackupsError("the stack has no storageEndpoint: pass --endpoint")
        if problem := endpoint_problem(settings["endpoint_url"], "the stack's storageEndpoint"):
            raise BackupsError(f"{problem}; or pass --endpoint")
    if not args.prefix and not str(settings["prefix"] or "").strip().strip("/"):
        raise BackupsError(f"the stack's backupPrefix output is empty: pass --prefix ({PREFIX_HINT})")
    return settings


def still_missing(explicit: dict[str, Optional[str]], verb: str) -> str:
    """What a run without the stack still needs: `pass --bucket and --prefix instead`, and the keys when they are missing too."""
    options = joined([option for field, option in WHERE_OPTIONS.items() if not explicit[field]])
    keys = [source for source in KEY_SOURCES if not explicit[source[0]]]
    text = f"{verb} {options} instead"
    if keys:
        text += f", with {joined([source[1] for source in keys])} (or {joined([source[2] for source in keys])})"
    return text


def check_keys(settings: dict[str, Any], stack_asked: bool) -> None:
    """Refuses a location without both keys, naming the missing one and where it may come from."""
    missing = [source for source in KEY_SOURCES if not settings[source[0]]]
    if not missing:
        return
    what = "keys" if len(missing) == 2 else ("access key" if missing[0][0] == "access_key" else "secret key")
    from_stack = ""
    if stack_asked:
        config_keys = [source[3] for source in missing]
        from_stack = f" (the stack's {joined(config_keys)} {'are' if len(missing) == 2 else 'is'} empty)"
    raise BackupsError(f"no S3 {what}{from_stack}: pass {joined([source[1] for source in missing])}, "
                       f"or set {joined([source[2] for source in missing])}")
