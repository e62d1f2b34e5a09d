"""Property-based: whatever the stack config holds, the program renders or stops with a ConfigError naming keys.

Two levels:
- validation only (thousands of examples): `load_config` returns, or raises a
  ConfigError whose problems name declared keys; never another exception; and
  any IP as `storageEndpoint` is refused (loopback, unspecified, the cloud
  metadata address), allowed through smokescreen (private, link-local) or left
  to it, as smokescreen classifies it;
- the value classes that once passed validation and failed later (issue 15), each with
  an oracle of its own, so that re-breaking any one check fails here: a day of week of 7,
  deep nesting and huge integers in JSON keys, passwords padded with whitespace, egress
  ranges wider than /8 or /7, endpoint hosts botocore refuses and ports outside 1-65535,
  credentials in an endpoint (never shown);
- whole renders under mocks (about a hundred): a config that fails registers
  nothing first; one that renders puts none of its values in a container's
  command or arguments (the strictly validated egressAllow entries excepted,
  which reach smokescreen's command line through SMOKESCREEN_OPTS, an env var).
"""

from __future__ import annotations

import ipaddress
import json

import pulumi
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from components.config import ConfigError, load_config
from support.harness import ROOT, Mocks, encode_config, render_failure, render
from support.stacks import SCALEWAY, SECRETS

KEYS = {key: spec for key, spec in yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["config"].items() if ":" not in key}
DEV = {"storageProvider": "minio", "minioInCluster": True, "adminEmail": "a@example.com", "hostname": "cvat.localhost"}

# Text that mixes the characters that have broken validators: other scripts' digits,
# newlines, NUL, quotes, shell metacharacters, URL pieces.
TRICKY = st.sampled_from(list("aZ09-._/:@ \n\t\x00'\"$`;|&*?٣³²é[]…%=,+~#"))
TEXT = st.text(alphabet=st.one_of(TRICKY, st.characters(codec="utf-8")), max_size=40)
NEAR_VALID = {
    "storageProvider": st.sampled_from(["scaleway", "minio", "aws", "Scaleway", ""]),
    "storageRegion": st.sampled_from(["fr-par", "nl-ams", "us-east-1", "minio", "FR-PAR", ""]),
    "storageEndpoint": st.sampled_from(["https://s3.example.com", "http://10.1.2.3:9000", "https://[…", "https://u:p@h",
                                        "ftp://x", "https://s3.example.com/path", "http://[fd00::5]:9000", "",
                                        "http://127.0.0.1:9000", "http://localhost:9000", "http://[::1]:9000",
                                        "http://169.254.169.254", "http://169.254.10.5:9000", "http://[fe80::5]:9000",
                                        "https://minio_1.storage.internal", "http://$(id)", "http://s3.example.com:0",
                                        "https://u:p@minio_1.x:0", "https://s3.example.com:65536"]),
    "backupSchedule": st.sampled_from(["0 3 * * *", "0 3 31 2 *", "³ 3 * * *", "*/5 * * * *", "@daily", "0 3 * *",
                                       "0 3 30 4 mon", "61 * * * *", "0 3 * * 7", "@every 1h", "@every 1d",
                                       "0 3 ? * *", "CRON_TZ=UTC 0 3 * * *", "0 , * * *"]),
    "adminEmail": st.sampled_from(["lead@acme.example", "a" * 64 + "@" + ".".join(["b" * 60] * 3) + ".example"]),
    "datasetCsiDriver": st.sampled_from(["ru.yandex.s3.csi", "csi." + "a" * 60 + ".io"]),
    "backupBucket": st.sampled_from(["", "acme-backups", "acme.-backups", "acme-.backups"]),
    "backupRetentionDays": st.one_of(st.integers(-5, 5000), st.sampled_from(["٣", "1_0", "7 "])),
    "cvatVersion": st.sampled_from(["v2.73.0", "v2.٧٣.0", "v2.74.0", "latest", "v2.73.0" + "9" * 60]),
    "databaseStorageSize": st.sampled_from(["10Gi", "1024Mi", "1.5Gi", "1.1Gi", "10", "ten", "0.5Gi", "8Ei",
                                            "9223372036854775808", "1" + "0" * 5000 + "Gi"]),
    "cvatDataSize": st.sampled_from(["20Gi", "2048Mi", "1Ti", "-1Gi", "20GB", "7Ei", "1." + "0" * 5000 + "Gi"]),
    "namespace": st.sampled_from(["cvat-acme", "kube-system", "default", "CVAT", "a" * 64, ""]),
    "hostname": st.sampled_from(["label.acme.example", "10.0.0.1", "cvat\n.example.com", "Label.example", "a..b"]),
    "datasetBuckets": st.lists(st.sampled_from(["acme-images", "Images", "ab", "a.b.c", "192.168.1.1", "a.-b", "a-.b"]),
                               max_size=3),
    "egressAllow": st.lists(st.sampled_from(["10.0.0.5", "10.0.0.0/24", "10.0.0.5/8", "minio.local", "fd00::/8",
                                             "10.0.0.5 --allow-range=0.0.0.0/0", "0.0.0.0/0", "::/0", "10.0.0.0/7",
                                             "::ffff:0:0/96", "10.0.0.0/8"]), max_size=3),
    "workers": st.lists(st.sampled_from(["annotation", "webhooks", "consensus", "import", "quality_reports"]), max_size=4),
    "restoreFrom": st.sampled_from(["", "latest", "acme/database/20261130T030000Z.dump", "it's.dump", "s3://Bad/x.dump"]),
    "description": st.one_of(TEXT, st.just("x" * 2000)),
}


def nested_json(depth: int, leaf: str = '"x"') -> str:
    """JSON text of lists nested `depth` deep around `leaf`."""
    return "[" * depth + leaf + "]" * depth


def huge_integer(digits: int) -> str:
    return "1" + "0" * (digits - 1)


# JSON text a list key (or `projects`) may hold that Python's json cannot read, or should not walk:
# deep nesting (RecursionError past ~1000) and integer literals over 4300 digits (ValueError).
HOSTILE_JSON = st.one_of(
    st.integers(9, 200_000).map(nested_json),
    st.integers(4301, 8000).map(lambda n: f"[{huge_integer(n)}]"),
    st.integers(4301, 8000).map(lambda n: f'[{{"name": "p", "labels": [{huge_integer(n)}]}}]'),
    st.integers(2, 3000).map(lambda n: nested_json(n, '{"name": "p", "labels": ["car"]}')),
)


def value_for(key: str) -> st.SearchStrategy:
    """A value for `key`: near-valid ones where it matters, else anything of its type or another."""
    declared = KEYS[key].get("type", "string")
    anything = {
        "string": TEXT,
        "integer": st.one_of(st.integers(-10**6, 10**6), TEXT),
        "boolean": st.one_of(st.booleans(), TEXT),
        "array": st.one_of(st.lists(TEXT, max_size=3), TEXT, st.integers(), HOSTILE_JSON),
    }[declared]
    return st.one_of(NEAR_VALID[key], anything) if key in NEAR_VALID else anything


@st.composite
def configs(draw) -> dict:
    """A valid base config (Scaleway or dev) with a few keys changed to generated values."""
    base = dict(draw(st.sampled_from([SCALEWAY, DEV])))
    for key in draw(st.lists(st.sampled_from(sorted(KEYS)), min_size=1, max_size=3, unique=True)):
        if key in ("storageSecretKey", "adminPassword"):
            continue  # secrets need --secret; covered by the table tests
        base[key] = draw(value_for(key))
    return base


def validate(config: dict):
    """load_config on this config, under the same mocks as a render, without registering anything."""
    pulumi.runtime.set_mocks(Mocks(), project="labeling", stack="acme", preview=False)
    secrets = [key for key in SECRETS if key in config]
    pulumi.runtime.set_all_config(encode_config(config), [f"labeling:{key}" for key in secrets])
    return load_config(pulumi.Config("labeling"))


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs())
def test_validation_returns_or_names_declared_keys(config):
    try:
        validate(config)
    except ConfigError as error:
        assert error.problems, "a ConfigError must name a problem"
        for key, reason in error.problems:
            assert key in KEYS, f"{key} is not a declared key ({reason})"
            assert reason and "\n" not in reason.strip("\n"), reason
        # Secrets never echoed.
        for secret in ("scaleway-secret-key-value",):
            assert secret not in str(error)


# Written out here, not taken from the program: smokescreen's private ranges (PrivateRuleRanges)
# and Go's link-local unicast (169.254/16, fe80::/10); what no pod can use: loopback (the pod
# itself), the unspecified address (connects to the pod itself) and the cloud metadata service.
SMOKESCREEN_PRIVATE = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")]
GO_LINK_LOCAL = [ipaddress.ip_network(n) for n in ("169.254.0.0/16", "fe80::/10")]
METADATA = ipaddress.ip_address("169.254.169.254")


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.ip_addresses(), st.sampled_from([ipaddress.ip_address(a) for a in (
    "127.0.0.1", "127.255.255.254", "::1", "0.0.0.0", "::", "169.254.169.254", "169.254.0.1", "fe80::1",
    "febf:ffff::1", "fec0::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:10.0.0.1", "172.31.255.255",
    "172.32.0.1", "fc00::1", "100.64.0.1")])), st.integers(1, 65535))
def test_an_endpoint_ip_is_refused_allowed_or_left_to_the_guard_as_smokescreen_sees_it(address, port):
    host = f"[{address}]" if address.version == 6 else str(address)
    config = {**SCALEWAY, "storageProvider": "minio", "storageEndpoint": f"http://{host}:{port}"}
    # Go reads an IPv4-mapped IPv6 address as the IPv4 address.
    seen = address.ipv4_mapped if address.version == 6 and address.ipv4_mapped else address
    unusable = seen.is_loopback or seen.is_unspecified or seen == METADATA
    try:
        workspace = validate(config)
    except ConfigError as error:
        assert unusable, error
        assert [key for key, _ in error.problems] == ["storageEndpoint"]
        return
    assert not unusable, f"{config['storageEndpoint']} was accepted"
    guarded = any(seen in network for network in SMOKESCREEN_PRIVATE + GO_LINK_LOCAL)
    assert list(workspace.network.egress_allow) == ([str(seen)] if guarded else [])


def command_lines(rendering) -> list[str]:
    """Every command and argument of every container the program would run."""
    parts: list[str] = []
    for registration in rendering.kubernetes_objects():
        manifest = registration.manifest()
        spec = manifest.get("spec", {})
        template = spec.get("template") or spec.get("jobTemplate", {}).get("spec", {}).get("template") or {}
        pod = template.get("spec", {})
        for container in pod.get("containers", []) + pod.get("initContainers", []):
            parts += [str(part) for part in container.get("command", []) + container.get("args", [])]
    return parts


def config_strings(config: dict) -> list[str]:
    """The config's own string values worth looking for (long enough not to match by chance)."""
    found = []
    for key, value in config.items():
        if key == "egressAllow":
            continue
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and len(item.strip()) >= 6:
                found.append(item.strip())
    return found


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs())
def test_a_render_registers_nothing_before_refusing_and_keeps_values_out_of_command_lines(config):
    stack, secrets = ("dev", []) if config.get("minioInCluster") is True else ("acme", [k for k in SECRETS if k in config])
    try:
        rendering = render(config, stack=stack, secrets=secrets)
    except ConfigError:
        error, registrations = render_failure(config, stack=stack, secrets=secrets)
        assert isinstance(error, ConfigError) and registrations == []
        return
    commands = "\n".join(command_lines(rendering))
    for value in config_strings(config):
        # Values the program itself also uses as constants (the default version, stack names) are fine.
        if value in ("v2.73.0", "cvat.localhost"):
            continue
        assert value not in commands, f"{value!r} reaches a command line"
    assert json.dumps(rendering.outputs, default=str)


# ---------------------------------------------------------------- issue 15: each class refused, by its oracle


def refusal(config: dict, secrets=None):
    """The (keys, message) load_config stops with, or None when it returns."""
    pulumi.runtime.set_mocks(Mocks(), project="labeling", stack="acme", preview=False)
    secrets = [key for key in SECRETS + ["adminPassword"] if key in config] if secrets is None else secrets
    pulumi.runtime.set_all_config(encode_config(config), [f"labeling:{key}" for key in secrets])
    try:
        load_config(pulumi.Config("labeling"))
    except ConfigError as error:
        return {key for key, _ in error.problems}, str(error)
    return None


def cron_field(low: int, high: int, names=()):
    """A valid field: `*`, values (or names), ascending ranges, steps."""
    number = st.integers(low, high).map(str)
    single = st.one_of(number, st.sampled_from(list(names))) if names else number
    span = st.tuples(st.integers(low, high), st.integers(low, high)).map(lambda t: f"{min(t)}-{max(t)}")
    part = st.one_of(st.just("*"), single, span,
                     st.tuples(st.sampled_from(["*", str(low)]), st.integers(1, 9)).map(lambda t: f"{t[0]}/{t[1]}"))
    return st.lists(part, min_size=1, max_size=3).map(",".join)


WITH_SEVEN = st.tuples(st.lists(cron_field(0, 6, ("sun", "mon", "sat")), max_size=2),
                       st.sampled_from(["7", "0-7", "5-7", "7/1", "mon-7", "6-7/2"]),
                       st.randoms()).map(lambda t: ",".join(t[2].sample(t[0] + [t[1]], len(t[0]) + 1)))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cron_field(0, 59), cron_field(0, 23), st.sampled_from(["*", "?", "1", "1-15", "*/2"]), st.sampled_from(["*", "jan-jun"]),
       WITH_SEVEN)
def test_a_day_of_week_of_7_is_refused(minute, hour, day, month, weekday):
    schedule = f"{minute} {hour} {day} {month} {weekday}"
    refused = refusal({**SCALEWAY, "backupSchedule": schedule})
    assert refused and refused[0] == {"backupSchedule"} and "day of week" in refused[1], schedule
    # The same schedule with 6 for 7 is fine: only the 7 was wrong.
    assert refusal({**SCALEWAY, "backupSchedule": f"{minute} {hour} {day} {month} {weekday.replace('7', '6')}"}) is None


LIST_KEYS = sorted(key for key, spec in KEYS.items() if spec.get("type") == "array")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(LIST_KEYS), HOSTILE_JSON)
def test_deep_nesting_and_huge_integers_are_refused_naming_the_key(key, text):
    refused = refusal({**SCALEWAY, key: text})
    assert refused and key in refused[0], (key, text[:60])
    assert len(refused[1]) < 3000


WHITESPACE = st.sampled_from([" ", "\t", "\n", "\r", "\x0b", "\x0c", "\xa0", "\u2003", "\u3000", "\x1c"])
CORE = st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Zs", "Cc", "Zl", "Zp"]), min_size=10, max_size=30).filter(
    lambda text: text == text.strip() and not text.isdigit() and "\x00" not in text)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(CORE, st.lists(WHITESPACE, max_size=2).map("".join), st.lists(WHITESPACE, max_size=2).map("".join))
def test_passwords_padded_with_whitespace_are_refused_without_echoing_them(core, before, after):
    password = before + core + after
    refused = refusal({**SCALEWAY, "adminPassword": password})
    if before or after:
        assert refused and refused[0] == {"adminPassword"} and "whitespace" in refused[1]
        assert core not in refused[1]
    else:
        assert refused is None


def effective_prefix(network) -> tuple[int, int]:
    """(version, prefix) as Go's net.IPNet.Contains sees a range: an IPv4-mapped one is IPv4."""
    mapped = ipaddress.ip_network("::ffff:0:0/96")
    if network.version == 6 and network.prefixlen >= 96 and network.subnet_of(mapped):
        return 4, network.prefixlen - 96
    return network.version, network.prefixlen


NETWORKS = st.one_of(
    st.tuples(st.ip_addresses(v=4), st.integers(0, 32)).map(lambda t: ipaddress.ip_network(f"{t[0]}/{t[1]}", strict=False)),
    st.tuples(st.ip_addresses(v=6), st.integers(0, 128)).map(lambda t: ipaddress.ip_network(f"{t[0]}/{t[1]}", strict=False)),
    st.tuples(st.ip_addresses(v=4), st.integers(96, 128)).map(
        lambda t: ipaddress.ip_network(f"::ffff:{t[0]}/{t[1]}", strict=False)),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(NETWORKS)
def test_egress_ranges_wider_than_8_or_7_are_refused(network):
    version, prefix = effective_prefix(network)
    wide = prefix < (8 if version == 4 else 7)
    refused = refusal({**SCALEWAY, "egressAllow": [str(network)]})
    if wide:
        assert refused and refused[0] == {"egressAllow"}, network
    else:
        assert refused is None, (network, refused)


HOST_CHARS = st.sampled_from(list("ab9Z-._$()~!*'+,;=%&é") + ["xn--", "a" * 64])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(HOST_CHARS, min_size=1, max_size=8).map("".join), st.one_of(st.none(), st.integers(0, 70000), st.just("")))
def test_an_endpoint_is_kept_only_when_botocore_takes_its_host_and_its_port_is_1_to_65535(host, port):
    from botocore.utils import is_valid_endpoint_url, is_valid_ipv6_endpoint_url

    endpoint = f"https://{host}" + ("" if port is None else f":{port}")
    refused = refusal({**SCALEWAY, "storageProvider": "minio", "storageEndpoint": endpoint})
    if refused is None:
        assert is_valid_endpoint_url(endpoint) or is_valid_ipv6_endpoint_url(endpoint), endpoint
        assert port is None or (port != "" and 1 <= port <= 65535), endpoint
    else:
        assert refused[0] == {"storageEndpoint"}, (endpoint, refused)


LABEL = st.from_regex(r"[a-z]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(LABEL, min_size=1, max_size=4).map(".".join), st.one_of(st.none(), st.integers(1, 65535)))
def test_valid_host_names_and_ports_are_kept(host, port):
    if host in ("localhost",):
        return
    endpoint = f"https://{host}" + ("" if port is None else f":{port}")
    assert refusal({**SCALEWAY, "storageProvider": "minio", "storageEndpoint": endpoint}) is None, endpoint


SECRET_WORD = st.from_regex(r"[A-Za-z0-9]{12,20}", fullmatch=True)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(SECRET_WORD, st.sampled_from(["https", "ftp", "http"]), st.sampled_from(["s3.example.com", "minio_1.x", "[::1", "localhost",
                                                                              "h:0", "h/path", "h?x=1", "$(id)", "h:99999"]),
       st.sampled_from(["user:", "", "us@er:", "u:p/"]))
def test_endpoint_credentials_never_reach_a_message(secret, scheme, rest, user):
    refused = refusal({**SCALEWAY, "storageProvider": "minio", "storageEndpoint": f"{scheme}://{user}{secret}@{rest}"})
    assert refused and refused[0] == {"storageEndpoint"}
    assert secret not in refused[1]
