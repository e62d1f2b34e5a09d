"""Runs the Pulumi program under mocks and records everything it registers.

`render(config)` executes `__main__.py` against a recording mock monitor and
returns every resource registration (type, name, parent, provider, options,
inputs, which inputs are secret) and the stack outputs with their secretness.
"""

from __future__ import annotations

import hashlib
import json
import logging
import runpy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

import pulumi
import yaml
from google.protobuf import json_format
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc, settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await
from pulumi.runtime import resource as _runtime_resource
from pulumi.runtime.proto import source_pb2

ROOT = Path(__file__).resolve().parents[2]
MAIN = ROOT / "__main__.py"

# Each registration's source position (a walk of the Python stack, a path turned into a URI per
# frame) is for the CLI's display; the mocks drop it, and it took a tenth of a rendering's time.
if hasattr(_runtime_resource, "_get_stack_trace"):
    _runtime_resource._get_stack_trace = source_pb2.StackTrace
SECRET_SIG = rpc._special_secret_sig
SIG_KEY = rpc._special_sig_key

GENERATED_PASSWORD = "Generated-Admin-Pass-1234"
GENERATED_MINIO_USER = "generatedminiouser01"
GENERATED_MINIO_PASSWORD = "GeneratedMinioPassword0123456789abcdefgh"
RANDOM_HEX = "0a1b2c3d"
MINIO_CLUSTER_IP = "10.96.0.42"


class Mocks(pulumi.runtime.Mocks):
    """Resource outputs the way the real providers would compute them."""

    lifecycle_supported = True
    # False: every RandomId is RANDOM_HEX. True: a hash of its name and inputs, so that
    # a replaced RandomId (new keepers) gets a new value, as the real provider gives
    # (the transition tests, tests/data/renderings/make.py).
    ids_from_inputs = False
    # Resource name -> fields of its state as the cluster or cloud would report them
    # (merged one level deep), e.g. a claim made earlier with another class.
    state_overrides: dict[str, dict] = {}

    def __init__(self):
        super().__init__()
        self.generated_secrets: set[str] = set()

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        state = dict(args.inputs)
        if args.typ == "random:index/randomPassword:RandomPassword":
            if "admin" in args.name:
                state["result"] = GENERATED_PASSWORD
            elif "minio" in args.name:
                state["result"] = GENERATED_MINIO_PASSWORD
            else:
                state["result"] = f"Generated{args.name.title().replace('-', '')}Secret0"
            self.generated_secrets.add(state["result"])
        elif args.typ == "random:index/randomString:RandomString":
            state["result"] = GENERATED_MINIO_USER
            self.generated_secrets.add(state["result"])
        elif args.typ == "random:index/randomId:RandomId":
            state["hex"] = RANDOM_HEX
            if self.ids_from_inputs:
                identity = json.dumps([args.name, args.inputs], sort_keys=True, default=str)
                state["hex"] = hashlib.sha256(identity.encode()).hexdigest()[:8]
        elif args.typ == "kubernetes:core/v1:Service":
            state = {**state, "spec": {**state.get("spec", {}), "clusterIP": MINIO_CLUSTER_IP if "minio" in args.name else "10.96.0.20"}}
        elif args.typ == "pulumi-python:dynamic/labeling:BucketLifecycleRules":
            state["supported"] = self.lifecycle_supported
        elif args.typ == "pulumi-python:dynamic/labeling:DatasetInventory":
            state["datasets"] = {
                bucket: {"images": 3, "videos": 1, "ignored": 2, "bytes": 4096, "imageBytes": 3000, "videoBytes": 1000, "truncated": False}
                for bucket in args.inputs["buckets"]
            }
        for key, value in self.state_overrides.get(args.name, {}).items():
            state[key] = {**state.get(key, {}), **value} if isinstance(value, dict) else value
        return [f"{args.name}-id", state]

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}


@dataclass
class Registration:
    """One RegisterResource request of the program."""

    type: str
    name: str
    urn: str
    parent: str
    provider: str
    custom: bool
    inputs: dict
    secret_paths: set[str]
    retain_on_delete: bool
    depends_on: list[str]
    custom_timeouts: Any
    additional_secret_outputs: list[str]
    ignore_changes: list[str] = field(default_factory=list)
    import_id: str = ""
    delete_before_replace: Optional[bool] = None
    """The resource option, when the program set it (None: the provider decides)."""
    replace_on_changes: list[str] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)

    @property
    def is_provider(self) -> bool:
        return self.type.startswith("pulumi:providers:")

    @property
    def is_kubernetes(self) -> bool:
        return self.type.startswith("kubernetes:") and self.custom

    def manifest(self) -> dict:
        """The Kubernetes object as the provider would send it to the API server."""
        return self.inputs


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """A mock monitor that keeps every registration request."""

    def __init__(self, mocks: pulumi.runtime.Mocks):
        super().__init__(mocks)
        self.registrations: list[Registration] = []

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            raw = json_format.MessageToDict(request.object)
            self.registrations.append(
                Registration(
                    type=request.type,
                    name=request.name,
                    urn=response.urn,
                    parent=request.parent,
                    provider=request.provider,
                    custom=request.custom,
                    inputs=_unwrap_secrets(rpc.deserialize_properties(request.object)),
                    secret_paths=set(_secret_paths(raw, "")),
                    retain_on_delete=bool(request.retainOnDelete),
                    depends_on=list(request.dependencies),
                    custom_timeouts=request.customTimeouts,
                    additional_secret_outputs=list(request.additionalSecretOutputs),
                    ignore_changes=list(request.ignoreChanges),
                    import_id=request.importId,
                    delete_before_replace=request.deleteBeforeReplace if request.deleteBeforeReplaceDefined else None,
                    replace_on_changes=list(request.replaceOnChanges),
                    aliases=[json_format.MessageToJson(alias) for alias in request.aliases] + list(request.aliasURNs),
                )
            )
        return response


@dataclass
class Rendering:
    """What one run of the program registered and exported."""

    registrations: list[Registration]
    outputs: dict[str, Any]
    secret_outputs: set[str]
    warnings: list[str] = field(default_factory=list)
    generated_secrets: set[str] = field(default_factory=set)

    def of_type(self, type_: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == type_]

    def one(self, type_: str, name_contains: str = "") -> Registration:
        found = [r for r in self.of_type(type_) if name_contains in r.name]
        assert len(found) == 1, f"expected one {type_} named *{name_contains}*, found {[r.name for r in found]}"
        return found[0]

    def by_urn(self, urn: str) -> Optional[Registration]:
        return next((r for r in self.registrations if r.urn == urn), None)

    def kubernetes_objects(self) -> list[Registration]:
        return [r for r in self.registrations if r.is_kubernetes]

    def kubernetes_object(self, kind: str, name: str) -> dict:
        for registration in self.kubernetes_objects():
            manifest = registration.manifest()
            if manifest.get("kind") == kind and manifest.get("metadata", {}).get("name") == name:
                return manifest
        raise AssertionError(f"no {kind} named {name}")


def encode_config(config: dict[str, Any]) -> dict[str, str]:
    """Stack config values as the engine hands them to the program."""
    encoded = {}
    for key, value in config.items():
        full_key = key if ":" in key else f"labeling:{key}"
        if isinstance(value, bool):
            encoded[full_key] = "true" if value else "false"
        elif isinstance(value, (list, dict)):
            encoded[full_key] = json.dumps(value)
        else:
            encoded[full_key] = str(value)
    return encoded


def render(config: dict[str, Any], stack: str = "dev", secrets: Iterable[str] = (), preflight: bool = False,
           main: Path = MAIN) -> Rendering:
    """Runs __main__.py under mocks with this stack config (keys without namespace).

    The dataset bucket preflight talks to the real endpoint: it is skipped
    unless `preflight` is set (for stacks pointing at the test server).
    `main` may be another checkout's program (tests/data/renderings/make.py renders
    earlier releases with it; that checkout must come first on sys.path).
    """
    monitor, exported, warnings, error = _run(config, stack, secrets, preflight, main)
    if error is not None:
        raise error
    outputs, secret = {}, set()
    for key, value in exported.items():
        output = pulumi.Output.from_input(value)
        outputs[key] = _sync_await(output.future())
        if _sync_await(output.is_secret()):
            secret.add(key)
    return Rendering(monitor.registrations, outputs, secret, warnings, monitor.mocks.generated_secrets)


def render_failure(
    config: dict[str, Any], stack: str = "dev", secrets: Iterable[str] = (), preflight: bool = False
) -> tuple[Exception, list[Registration]]:
    """Runs the program expecting it to fail; returns the error and what was registered before it."""
    monitor, _, _, error = _run(config, stack, secrets, preflight)
    assert error is not None, "the program ran without error"
    return error, monitor.registrations


def loaded_config(config: dict[str, Any], stack: str = "dev", secrets: Iterable[str] = ()) -> Any:
    """The program's `load_config()` on this stack config, without the rest of the program: for
    tests of what the config accepts (a rendering takes a few hundred times longer)."""
    from components.config import load_config

    _start_stack(config, stack, secrets, warnings=[])
    return load_config()


def _start_stack(config: dict[str, Any], stack: str, secrets: Iterable[str], warnings: list[str]) -> RecordingMonitor:
    """A fresh mocked Pulumi runtime for this stack and config; its warnings go into `warnings`."""
    mocks = Mocks()
    monitor = RecordingMonitor(mocks)
    settings.ROOT.set(None)
    pulumi.runtime.set_mocks(
        mocks, project="labeling", stack=stack, preview=False, monitor=monitor, logger=_warning_logger(warnings)
    )
    pulumi.runtime.set_all_config(encode_config(config), [f"labeling:{key}" for key in secrets])
    return monitor


def _run(config: dict[str, Any], stack: str, secrets: Iterable[str], preflight: bool = False, main: Path = MAIN):
    import importlib.util

    # The preflight checks: components/preflight.py, or components/datasets.py in earlier releases
    # (which lack some of the checks: patch those that exist).
    checks = importlib.import_module("components.preflight" if importlib.util.find_spec("components.preflight") else "components.datasets")
    real_check = getattr(checks, "check_dataset_buckets", None)
    real_backup_check = getattr(checks, "check_backup_bucket", None)
    warnings: list[str] = []
    monitor = _start_stack(config, stack, secrets, warnings)
    exported: dict[str, Any] = {}

    def program():
        runpy.run_path(str(main), run_name="__main__")
        exported.update(settings.get_root_resource().outputs)

    if not preflight:
        if real_check is not None:
            checks.check_dataset_buckets = lambda config: None
        if real_backup_check is not None:
            checks.check_backup_bucket = lambda config: False
    try:
        _sync_await(run_pulumi_func(program))
    except Exception as error:  # the program's own error, handed to the caller
        return monitor, exported, warnings, error
    finally:
        if real_check is not None:
            checks.check_dataset_buckets = real_check
        if real_backup_check is not None:
            checks.check_backup_bucket = real_backup_check
    return monitor, exported, warnings, None


class _WarningCollector(logging.Handler):
    """Collects the messages the program logs at warning level."""

    def __init__(self, into: list[str]):
        super().__init__(level=logging.WARNING)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record.getMessage())


def _warning_logger(into: list[str]) -> logging.Logger:
    logger = logging.getLogger(f"labeling-tests-{id(into)}")
    logger.propagate = False
    logger.setLevel(logging.WARNING)
    logger.addHandler(_WarningCollector(into))
    return logger


def load_benchmark(name: str) -> Any:
    """A script of benchmarks/ as a module (registered, so that dataclasses find it)."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_stack_file(path: Path) -> dict[str, Any]:
    """The `labeling:` keys of a Pulumi.<stack>.yaml file, without the namespace."""
    data = yaml.safe_load(path.read_text())
    return {key.split(":", 1)[1]: value for key, value in data["config"].items() if key.startswith("labeling:")}


def _secret_paths(value: Any, path: str) -> Iterable[str]:
    if isinstance(value, dict):
        if value.get(SIG_KEY) == SECRET_SIG:
            yield path
            return
        for key, item in value.items():
            yield from _secret_paths(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _secret_paths(item, f"{path}[{index}]")


def _unwrap_secrets(value: Any) -> Any:
    if isinstance(value, dict):
        if value.get(SIG_KEY) == SECRET_SIG:
            return _unwrap_secrets(value.get("value"))
        return {key: _unwrap_secrets(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_unwrap_secrets(item) for item in value]
    return value
