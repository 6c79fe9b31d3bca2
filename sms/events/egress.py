"""The only way out to a tenant's URL: one webhook POST, guarded against request forgery.

The URL is a tenant's input, and the dispatcher runs inside Google's network, next to the
metadata server (169.254.169.254) and whatever else a private address reaches. So each attempt
resolves the host itself, refuses the attempt when any address is not public, and connects to
exactly the address it checked: a second DNS answer (DNS rebinding) never gets a say. TLS is
verified against the URL's name; redirects are not followed; there are no proxies or cookies.
The whole attempt, name lookup included, takes at most 15 seconds, and at most a few KiB of
the answer are read. Hosts listed in SMS_WEBHOOKS_ALLOW_HOSTS (local runs and tests) skip the
address check and may use http://.
"""

from __future__ import annotations

import http.client
import ipaddress
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from urllib.parse import urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolve = Callable[[str, int], list[str]]  # (host, port) -> the host's addresses, as text

TIMEOUT_SECONDS = 15.0
MAX_URL_LENGTH = 2048
MAX_ANSWER_BYTES = 8192  # the status line (and any 1xx answers before it) must fit in this
USER_AGENT = "ccai-outbound-sms-webhooks"
ALLOW_HOSTS_VARIABLE = "SMS_WEBHOOKS_ALLOW_HOSTS"

_SEND_CHUNK = 16384  # each chunk is sent within what is left of the attempt
_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?")
_HEX_OR_DIGITS = re.compile(r"(0x[0-9a-f]*|[0-9]+)")
_PORT = re.compile(r"[0-9]{1,5}")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_SET_BY_EGRESS = frozenset({"host", "content-length", "connection", "transfer-encoding"})
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


@dataclass(frozen=True)
class Attempt:
    """The outcome of one POST: ``error`` is a short reason for the operator, never a secret."""

    ok: bool  # the endpoint answered 2xx
    status: int | None  # the HTTP status, None when there was no answer
    error: str | None  # why the attempt failed; None when ok
    gone: bool  # the endpoint answered 410 Gone: disable it
    seconds: float  # how long the attempt took


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
class _Target:
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
    target = _parse(url, allow_hosts)
    return target if isinstance(target, str) else None


def _parse(url: str, allow_hosts: AllowHosts) -> _Target | str:
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
    if literal is not None and not exempt and (refusal := _refusal(literal)):
        return refusal
    if literal is None and not exempt and _is_localhost(host):
        return f"{host} is loopback"  # by definition (RFC 6761), wherever it is resolved
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Target(tls, host, port, parts.netloc, path, literal, exempt)


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


def _refusal(address: Address) -> str | None:
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


def _getaddrinfo(host: str, port: int) -> list[str]:
    """The host's addresses from the system resolver, in its order, without repeats."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    families = (socket.AF_INET, socket.AF_INET6)
    return list(dict.fromkeys(str(info[4][0]) for info in infos if info[0] in families))


class _Failed(Exception):
    """An attempt failed for the reason given."""


class _Clock:
    """What is left of one attempt's time."""

    def __init__(self, seconds: float) -> None:
        self.started = time.monotonic()
        self._ends = self.started + seconds

    def left(self) -> float:
        """The seconds left; TimeoutError when none are."""
        left = self._ends - time.monotonic()
        if left <= 0:
            raise TimeoutError
        return left

    def elapsed(self) -> float:
        return time.monotonic() - self.started


class _PinnedConnection(http.client.HTTPConnection):
    """An HTTP(S) connection to addresses already checked, never to a fresh DNS answer."""

    def __init__(
        self, target: _Target, addresses: Sequence[str], tls: ssl.SSLContext | None, clock: _Clock
    ) -> None:
        super().__init__(target.host, target.port)
        self._addresses = addresses
        self._tls = tls
        self._server_name = target.host.removesuffix(".")
        self._clock = clock

    def connect(self) -> None:
        sock = self._open()
        if self._tls is not None:
            try:
                sock.settimeout(self._clock.left())
                sock = self._tls.wrap_socket(sock, server_hostname=self._server_name)
            except BaseException:
                sock.close()
                raise
        self.sock = sock

    def _open(self) -> socket.socket:
        """A TCP connection to the first checked address that accepts one."""
        failure: OSError = ConnectionError("no address")
        for address in self._addresses:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            try:
                sock = socket.socket(family, socket.SOCK_STREAM)
            except OSError as error:  # e.g. no IPv6 on this machine
                failure = error
                continue
            try:
                sock.settimeout(self._clock.left())
                sock.connect((address, self.port))
            except TimeoutError:
                sock.close()
                raise
            except OSError as error:
                sock.close()
                failure = error
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        raise failure

    def send(self, data: object) -> None:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError("only bytes are sent")
        view = memoryview(data)
        for start in range(0, len(view), _SEND_CHUNK):
            self.sock.settimeout(self._clock.left())
            self.sock.sendall(view[start : start + _SEND_CHUNK])

    def status(self) -> int:
        """The status of the final answer, reading no more than MAX_ANSWER_BYTES."""
        buffer = b""
        while True:
            line_end = buffer.find(b"\n")
            if line_end >= 0:
                status = _status(buffer[:line_end])
                if status >= 200:
                    return status
                interim_end = buffer.find(b"\r\n\r\n")  # a 1xx answer: skip it
                if interim_end >= 0:
                    buffer = buffer[interim_end + 4 :]
                    continue
            if len(buffer) >= MAX_ANSWER_BYTES:
                raise _Failed(f"no HTTP status in the first {MAX_ANSWER_BYTES} bytes")
            self.sock.settimeout(self._clock.left())
            chunk = self.sock.recv(MAX_ANSWER_BYTES - len(buffer))
            if not chunk:
                raise _Failed("connection closed without an answer")
            buffer += chunk


def _status(line: bytes) -> int:
    """The status code of an HTTP/1.x status line."""
    parts = line.rstrip(b"\r").split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not _is_status(parts[1]):
        raise _Failed("the answer is not HTTP/1.x")
    return int(parts[1])


def _is_status(code: bytes) -> bool:
    return len(code) == 3 and code.isdigit() and code[:1] != b"0"


def _request_headers(headers: Mapping[str, str]) -> list[tuple[str, str]]:
    """The caller's headers, checked; Host, Content-Length and Connection are set here."""
    checked = []
    for name, value in headers.items():
        if not _TOKEN.fullmatch(name) or name.lower() in _SET_BY_EGRESS:
            raise ValueError(f"header {name!r} cannot be set by the caller")
        if any(char in value for char in "\r\n\0"):
            raise ValueError(f"header {name!r} has a line break or NUL")
        checked.append((name, value))
    if not any(name.lower() == "user-agent" for name, _ in checked):
        checked.append(("User-Agent", USER_AGENT))
    return checked


def _describe(error: OSError) -> str:
    """A short reason for a network error."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"TLS certificate rejected: {error.verify_message}"
    if isinstance(error, ssl.SSLError):
        return f"TLS failed: {error.reason or type(error).__name__}"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, ConnectionResetError):
        return "connection reset"
    return f"connection failed: {error.strerror or type(error).__name__}"


def _answered(status: int, seconds: float) -> Attempt:
    """The outcome of an attempt that got an answer: only 2xx succeeds, 410 means gone."""
    if 200 <= status < 300:
        return Attempt(True, status, None, False, seconds)
    reason = f"redirect {status} not followed" if 300 <= status < 400 else f"HTTP {status}"
    return Attempt(False, status, reason, status == 410, seconds)


class Egress:
    """Delivers webhook POSTs to tenants' URLs, one attempt per call; safe to share by threads."""

    def __init__(
        self,
        allow_hosts: AllowHosts,
        timeout_seconds: float = TIMEOUT_SECONDS,
        resolve: Resolve | None = None,
        *,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        if timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be positive")
        self._allow_hosts = allow_hosts
        self._timeout = timeout_seconds
        self._resolve = resolve or _getaddrinfo
        self._tls = tls_context or ssl.create_default_context()

    @property
    def timeout_seconds(self) -> float:
        """The most one attempt takes, from name lookup to the answer's status."""
        return self._timeout

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Attempt:
        """POST ``body`` to ``url`` once, if every address of its host may be reached."""
        clock = _Clock(self._timeout)
        request_headers = _request_headers(headers)
        try:
            target = _parse(url, self._allow_hosts)
            if isinstance(target, str):
                raise _Failed(f"refused: {target}")
            addresses = self._addresses(target, clock)
            status = self._exchange(target, addresses, body, request_headers, clock)
        except _Failed as failure:
            reason = str(failure)
        except TimeoutError:
            reason = f"timeout after {self._timeout:g} s"
        except OSError as error:
            reason = _describe(error)
        except http.client.HTTPException as error:
            reason = f"HTTP failed: {type(error).__name__}"
        else:
            return _answered(status, clock.elapsed())
        return Attempt(False, None, reason, False, clock.elapsed())

    def _addresses(self, target: _Target, clock: _Clock) -> list[str]:
        """The addresses to connect to, each one checked (unless the host is exempt)."""
        if target.literal is not None:
            return [str(target.literal)]  # judged with the URL
        try:
            answers = self._lookup(target.host, target.port, clock)
        except TimeoutError:
            raise
        except OSError as error:
            raise _Failed(f"cannot resolve {target.host}: {error.strerror or error}") from None
        if not answers:
            raise _Failed(f"cannot resolve {target.host}: no address")
        addresses = []
        for answer in answers:
            try:
                address = ipaddress.ip_address(answer)
            except ValueError:
                raise _Failed(f"cannot resolve {target.host}: {answer!r} is no address") from None
            if not target.exempt and (refusal := _refusal(address)):
                raise _Failed(f"refused: {refusal} (an address of {target.host})")
            addresses.append(str(address))
        return addresses

    def _lookup(self, host: str, port: int, clock: _Clock) -> list[str]:
        """Resolve within what is left of the attempt (getaddrinfo has no timeout of its own)."""
        answer: Future[list[str]] = Future()

        def run() -> None:
            try:
                answer.set_result(list(self._resolve(host, port)))
            except Exception as error:
                answer.set_exception(error)

        threading.Thread(target=run, name="egress-resolve", daemon=True).start()
        return answer.result(timeout=clock.left())

    def _exchange(
        self,
        target: _Target,
        addresses: Sequence[str],
        body: bytes,
        headers: Sequence[tuple[str, str]],
        clock: _Clock,
    ) -> int:
        """Send the one POST and read the status of its answer."""
        connection = _PinnedConnection(target, addresses, self._tls if target.tls else None, clock)
        try:
            connection.connect()
            connection.putrequest("POST", target.path, skip_host=True, skip_accept_encoding=True)
            connection.putheader("Host", target.host_header)
            for name, value in headers:
                connection.putheader(name, value)
            connection.putheader("Content-Length", str(len(body)))
            connection.putheader("Connection", "close")
            connection.endheaders(body)
            return connection.status()
        finally:
            connection.close()
