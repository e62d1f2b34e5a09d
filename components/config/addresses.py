"""Rules on addresses: the S3 endpoint URL, egressAllow entries, and what CVAT's SSRF guard refuses.

What smokescreen (CVAT's SSRF guard, stripe/smokescreen eb1ac09 classifyAddr)
refuses unless allowed: its private ranges (PrivateRuleRanges), and every
address that is not global unicast (`!IsGlobalUnicast() || IsLoopback()`),
loopback and link-local included.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Optional
from urllib.parse import urlsplit

# RFC 1123 host names, as botocore checks an endpoint (botocore/utils.py is_valid_endpoint_url:
# labels of letters, digits and hyphens, not starting or ending with one; no underscore).
_HOST_LABEL_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
# egressAllow: wider ranges than these would let CVAT reach most of the internet's or the
# cluster's addresses past its SSRF guard (0.0.0.0/0 turns it off).
MIN_EGRESS_PREFIX = {4: 8, 6: 7}
_SMOKESCREEN_PRIVATE = tuple(
    ipaddress.ip_network(net) for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
)
_LINK_LOCAL = tuple(ipaddress.ip_network(net) for net in ("169.254.0.0/16", "fe80::/10"))
# The cloud metadata service (instance credentials on AWS, GCP, Azure, Scaleway, OpenStack...).
CLOUD_METADATA_ADDRESS = ipaddress.ip_address("169.254.169.254")
_LOCALHOST_NAMES = ("localhost", "localhost.")


def redact_endpoint(url: str) -> str:
    """`url` with whatever comes before an '@' in it (a user name, a password) shown as ***.

    For every message that prints an endpoint: a URL of the form
    https://user:password@host must not put its password in an error or a log.
    Everything up to the last '@' after the scheme goes, so a password holding '/',
    '?', '#' or '@' goes too.
    """
    if "@" not in url:
        return url
    scheme, separator, rest = url.partition("://")
    if not separator or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
        scheme, separator, rest = "", "", url
    return f"{scheme}{separator}***@{rest.rpartition('@')[2]}"


def endpoint_problems(url: str) -> list[str]:
    """Why `url` cannot be the S3 endpoint: every reason, none showing credentials."""
    shown = redact_endpoint(url)
    problems = []
    if "@" in url:
        # It would reach pod env, the S3 provider's inputs and the state in plain text.
        problems.append("must not hold a user name or password: give the keys as storageAccessKey and storageSecretKey")
    # The rest is judged without the user name and password (they are a problem of their own).
    reason = _endpoint_form_problem(shown.replace("***@", "", 1), shown)
    if reason:
        problems.append(reason)
    return problems


def _endpoint_form_problem(url: str, shown: str) -> Optional[str]:
    """Why `url` is not an http(s) base URL that botocore takes; `shown` is how messages name it."""
    if not url.isascii() or not url.isprintable() or " " in url:
        return f"{shown!r} is not an http(s) URL"
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
    except ValueError:
        return f"{shown!r} is not an http(s) URL"
    if parts.scheme not in ("http", "https") or not hostname:
        return f"{shown!r} is not an http(s) URL"
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return f"{shown!r} must be the server's base URL, without a path or query"
    _, port_separator, port = parts.netloc.rpartition("]")[2].partition(":")
    if port_separator and not (re.fullmatch(r"[0-9]{1,5}", port) and 1 <= int(port) <= 65535):
        return f"{shown!r} has an invalid port (1 to 65535)"
    reason = _endpoint_host_problem(hostname, bracketed=parts.netloc.startswith("["))
    if reason:
        return f"{shown!r}: {reason}"
    return _endpoint_address_problem(hostname)


def _endpoint_host_problem(hostname: str, bracketed: bool) -> Optional[str]:
    """Why an endpoint's host is neither a host name, an IPv4 address nor a bracketed IPv6 address
    (what botocore accepts: utils.py is_valid_endpoint_url, is_valid_ipv6_endpoint_url), or None."""
    if bracketed:
        return None if _ip_literal(hostname) is not None and ":" in hostname else "is not an IPv6 address"
    name = hostname[:-1] if hostname.endswith(".") else hostname
    if len(hostname) > 253 or not all(_HOST_LABEL_RE.fullmatch(label) for label in name.split(".")):
        return (
            f"{hostname[:80]!r} is not a host name: dot-separated parts of 1 to 63 letters, digits or hyphens "
            "(no underscores), not starting or ending with a hyphen"
        )
    return None


def _ip_literal(host: str) -> Optional[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """`host` as an IP address when it is one (an IPv4-mapped IPv6 as its IPv4, as Go sees it; no zone), else None."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.scope_id is not None:
            return ipaddress.IPv6Address(str(address).split("%", 1)[0])
    return address


def endpoint_allow_address(url: str) -> Optional[str]:
    """The host of `url` when it is a private or link-local IP literal, which CVAT's SSRF guard refuses
    unless allowed (so the program allows it), else None."""
    try:
        address = _ip_literal(urlsplit(url).hostname or "")
    except ValueError:
        return None
    if address is None or address == CLOUD_METADATA_ADDRESS:
        return None
    guarded = _SMOKESCREEN_PRIVATE + _LINK_LOCAL
    return str(address) if any(address in network for network in guarded) else None


def _endpoint_address_problem(hostname: str) -> Optional[str]:
    """Why the endpoint's host is no address for CVAT's pods to reach object storage at, or None."""
    address = _ip_literal(hostname)
    if hostname.lower() in _LOCALHOST_NAMES or (address is not None and address.is_loopback):
        what = "is a loopback address"
    elif address is not None and address.is_unspecified:
        what = "reaches the local host, like a loopback address"  # Linux connects 0.0.0.0 and :: to itself
    elif address == CLOUD_METADATA_ADDRESS:
        return ("169.254.169.254 is the cloud metadata service (it hands out the nodes' credentials), not object "
                "storage: it is never allowed through CVAT's SSRF guard")
    else:
        return None
    return (f"{hostname!r} {what}: inside CVAT's pods it is the pod itself, not the storage server; give an "
            "address or name the pods can reach (a Service name, the server's IP)")


def egress_entry(entry: str) -> tuple[str, Optional[str]]:
    """(canonical form, None) of an IP address or CIDR range, or ("", why it is not one)."""
    reason = (
        f"{entry!r} is not an IP address or CIDR range (e.g. 10.0.0.12 or 10.0.0.0/24); "
        "give a host name's address, not the name"
    )
    if not entry or not entry.isascii() or not re.fullmatch(r"[0-9A-Fa-f:./]+", entry):
        return "", reason
    try:
        if "/" in entry:
            network = ipaddress.ip_network(entry, strict=True)
            return (str(network.network_address) if network.num_addresses == 1 else str(network)), None
        return str(ipaddress.ip_address(entry)), None
    except ValueError as error:
        if "has host bits set" in str(error):
            return "", f"{entry!r} has host bits set: did you mean {ipaddress.ip_network(entry, strict=False)}?"
        return "", reason


def egress_range_problem(canonical: str) -> Optional[str]:
    """Why an egressAllow entry (in canonical form) is too wide to allow past CVAT's SSRF guard, or None.

    IPv4 prefixes shorter than /8 and IPv6 prefixes shorter than /7 are refused. An
    IPv4-mapped IPv6 range (::ffff:0:0/96 and inside it) counts as the IPv4 range it maps:
    Go's net.IPNet.Contains, which smokescreen uses, matches IPv4 addresses against it so.
    """
    network = ipaddress.ip_network(canonical)
    version, prefix = network.version, network.prefixlen
    if version == 6 and prefix >= 96 and network.network_address.ipv4_mapped is not None:
        version, prefix = 4, prefix - 96
    if prefix < MIN_EGRESS_PREFIX[version]:
        mapped = " as the IPv4 range it maps" if version != network.version else ""
        return (
            f"{canonical!r} is wider than /{MIN_EGRESS_PREFIX[version]} (IPv{version}{mapped}): it would let CVAT reach that "
            "much of the network past its SSRF guard (0.0.0.0/0 turns the guard off); name the addresses or "
            "ranges CVAT needs (a MinIO server, a webhook receiver)"
        )
    return None
