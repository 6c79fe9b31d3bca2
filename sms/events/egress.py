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

from sms.events.addresses import (
    ALLOW_HOSTS_VARIABLE,
    AllowHosts,
    Target,
    parse_url,
    refusal,
    why_undeliverable,
)

# Re-exported: what the admin command line and the composition root use of this border.
__all__ = [
    "ALLOW_HOSTS_VARIABLE",
    "AllowHosts",
    "Attempt",
    "Egress",
    "why_undeliverable",
]

Resolve = Callable[[str, int], list[str]]  # (host, port) -> the host's addresses, as text

TIMEOUT_SECONDS = 15.0
MAX_ANSWER_BYTES = 8192  # the status line (and any 1xx answers before it) must fit in this
USER_AGENT = "ccai-outbound-sms-webhooks"

_SEND_CHUNK = 16384  # each chunk is sent within what is left of the attempt
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_SET_BY_EGRESS = frozenset({"host", "content-length", "connection", "transfer-encoding"})


@dataclass(frozen=True)
class Attempt:
    """The outcome of one POST: ``error`` is a short reason for the operator, never a secret."""

    ok: bool  # the endpoint answered 2xx
    status: int | None  # the HTTP status, None when there was no answer
    error: str | None  # why the attempt failed; None when ok
    gone: bool  # the endpoint answered 410 Gone: disable it
    seconds: float  # how long the attempt took


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
        self, target: Target, addresses: Sequence[str], tls: ssl.SSLContext | None, clock: _Clock
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
            target = parse_url(url, self._allow_hosts)
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

    def _addresses(self, target: Target, clock: _Clock) -> list[str]:
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
            if not target.exempt and (refused := refusal(address)):
                raise _Failed(f"refused: {refused} (an address of {target.host})")
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
        target: Target,
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
