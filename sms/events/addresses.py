"""What webhooks may reach (SPEC 10.7): URLs and addresses judged, before anything connects.

A URL is an https:// URL whose host, as resolved at each attempt, is a public address; a host
written in the URL exactly as listed in SMS_WEBHOOKS_ALLOW_HOSTS is exempt (and may use
http://). This module judges the URL as written (``parse_url``, ``why_undeliverable``) and
each resolved address (``refusal``); sms.events.egress resolves and connects.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH = 2048
ALLOW_HOSTS_VARIABLE = "SMS_WEBHOOKS_ALLOW_HOSTS"
_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?")
_HEX_OR_DIGITS = re.compile(r"(0x[0-9a-f]*|[0-9]+)")
_PORT = re.compile(r"[0-9]{1,5}")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


@dataclass(frozen=True)
class AllowHosts:
    """Hosts, as written in a URL, that webhooks may reach though not public (local runs)."""

    entries: frozenset[tuple[str, int | None]] = frozenset()  # (host, port or None = any)

    @classmethod
    def parse(cls, text: str | None) -> AllowHosts:
        """Read SMS_WEBHOOKS_ALLOW_HOSTS: "host" or "host:port" entries, comma-separated."""
        items = (item.strip() for item in (text or "").split(","))
        return cls(frozenset(_parse_entry(item) for item in items if item))

    def exempts(self, host: str, port: int) -> bool:
        """Whether a URL's host (as written, without brackets) and port are listed."""
        host = host.lower()
        return (host, None) in self.entries or (host, port) in self.entries


def _parse_entry(item: str) -> tuple[str, int | None]:
    text = item.lower()
    if text.startswith("["):
        host, bracket, port = text[1:].partition("]")
        valid = bool(bracket) and _is_ipv6(host) and (not port or port.startswith(":"))
        port = port[1:]
    else:
        host, colon, port = text.partition(":")
        valid = _is_name(host) and (not colon or bool(port))
    if not valid or (port and not (_PORT.fullmatch(port) and 1 <= int(port) <= 65535)):
        raise ValueError(
            f"{ALLOW_HOSTS_VARIABLE}: {item!r} is not a host or host:port as written in a URL"
            " (e.g. 127.0.0.1, 127.0.0.1:8099, localhost, [::1]:8099)"
        )
    return host, int(port) if port else None


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return "%" not in text


def _is_name(host: str) -> bool:
    """Whether ``host`` (lower case) is a DNS name or a dotted IPv4 address."""
    name = host.removesuffix(".")
    return 0 < len(name) <= 253 and all(_LABEL.fullmatch(label) for label in name.split("."))


@dataclass(frozen=True)
class Target:
    """A URL that may be delivered to, taken apart."""

    tls: bool
    host: str  # lower case, without brackets: what is resolved and what TLS checks
    port: int
    host_header: str  # host[:port] exactly as written in the URL
    path: str  # path and query as written
    literal: Address | None  # the host when it is an IP address
    exempt: bool  # listed in SMS_WEBHOOKS_ALLOW_HOSTS


def why_undeliverable(url: str, allow_hosts: AllowHosts) -> str | None:
    """Why ``url`` could never be delivered to (names are not resolved here), or None."""
    target = parse_url(url, allow_hosts)
    return target if isinstance(target, str) else None


def parse_url(url: str, allow_hosts: AllowHosts) -> Target | str:
    """The URL taken apart, or the reason it can never be delivered to."""
    if problem := _text_problem(url):
        return problem
    try:
        parts = urlsplit(url)
        written_port = parts.port
    except ValueError:
        return "the URL cannot be parsed (check its host and port)"
    if parts.scheme not in ("https", "http"):
        return "the URL must start with https://"
    if "@" in parts.netloc:
        return "the URL must not carry a user name or password"
    if "#" in url:
        return "the URL must not have a fragment (#...)"
    host = parts.hostname or ""
    if not host:
        return "the URL has no host"
    if written_port == 0:
        return "the port must be from 1 to 65535"
    literal = _literal(host, bracketed=parts.netloc.startswith("["))
    if isinstance(literal, str):
        return literal
    tls = parts.scheme == "https"
    port = written_port or (443 if tls else 80)
    exempt = allow_hosts.exempts(host, port)
    if not tls and not exempt:
        return f"http:// is allowed only for hosts in {ALLOW_HOSTS_VARIABLE}; use https://"
    if literal is not None and not exempt and (refused := refusal(literal)):
        return refused
    if literal is None and not exempt and _is_localhost(host):
        return f"{host} is loopback"  # by definition (RFC 6761), wherever it is resolved
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(tls, host, port, parts.netloc, path, literal, exempt)


def _text_problem(url: str) -> str | None:
    """What is wrong with the URL as text, before it is parsed."""
    if len(url) > MAX_URL_LENGTH:
        return f"the URL is longer than {MAX_URL_LENGTH} characters"
    if not url.isascii():
        return "the URL has a character that is not ASCII (use xn-- names and percent-encoding)"
    if any(char <= " " or char == "\x7f" for char in url):
        return "the URL has a space or a control character"
    return None


def _literal(host: str, *, bracketed: bool) -> Address | str | None:
    """The address ``host`` spells, None for a name, or why it is neither."""
    if bracketed:
        return ipaddress.IPv6Address(host) if _is_ipv6(host) else "the host is not an IPv6 address"
    try:
        return ipaddress.IPv4Address(host)
    except ValueError:
        pass
    if not _is_name(host):
        return "the host is not a valid name"
    if _HEX_OR_DIGITS.fullmatch(host.removesuffix(".").rsplit(".", 1)[-1]):
        return "the host looks like an IPv4 address not written as a.b.c.d"
    return None


def _is_localhost(host: str) -> bool:
    name = host.removesuffix(".")
    return name == "localhost" or name.endswith(".localhost")


def refusal(address: Address) -> str | None:
    """Why ``address`` may not be reached, e.g. "10.0.0.1 is private"; None if it is public."""
    judged: Address = address
    if isinstance(address, ipaddress.IPv6Address):
        judged = _embedded_ipv4(address) or address
    kind = _kind(judged)
    if kind is None:
        return None
    shown = str(address) if judged is address else f"{address} (IPv4 {judged})"
    return f"{shown} is {kind}"


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address leads to: mapped, NAT64 or 6to4."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    return address.sixtofour


def _kind(address: Address) -> str | None:
    """What makes ``address`` unreachable for webhooks, or None for a public address."""
    kinds = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("site-local", isinstance(address, ipaddress.IPv6Address) and address.is_site_local),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
        ("not public", not address.is_global),
    )
    return next((kind for kind, applies in kinds if applies), None)
