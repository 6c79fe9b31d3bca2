"""Webhook egress (SPEC 10.7 "What webhooks may reach"): one guarded POST per attempt.

Receivers are HTTP servers on loopback addresses; names reach them through an injected
resolver. Every test runs under a guard that lets sockets connect to loopback only, so a
refusal that failed would show up as a blocked connection, never as traffic leaving the
machine.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from standardwebhooks.webhooks import Webhook

from sms.events import signing
from sms.events.egress import AllowHosts, Attempt, Egress, why_undeliverable

BODY = b'{"id": "evt_1", "type": "chat.created", "timestamp": "x", "tenant": "t", "data": {}}'
SECRETS = [signing.new_secret(), signing.new_secret()]
SYSTEM_TLS = ssl.create_default_context()  # what Egress uses by default, loaded once for speed


def signed_headers() -> dict[str, str]:
    return signing.headers(SECRETS, "evt_1", int(time.time()), BODY)


# --- the loopback guard ---------------------------------------------------------------------


@dataclass
class Connects:
    """Every connect() the test made; those not to a loopback address were blocked."""

    seen: list[tuple[str, int]] = field(default_factory=list)
    blocked: list[tuple[str, int]] = field(default_factory=list)
    expected_blocked: list[tuple[str, int]] = field(default_factory=list)


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: egress must connect to addresses only


@pytest.fixture(autouse=True)
def connects(monkeypatch: pytest.MonkeyPatch) -> Iterator[Connects]:
    record = Connects()
    real_connect = socket.socket.connect

    def guarded(sock: socket.socket, address: Any) -> None:
        host, port = str(address[0]), int(address[1])
        record.seen.append((host, port))
        if not is_loopback(host):
            record.blocked.append((host, port))
            raise ConnectionRefusedError("the tests reach loopback addresses only")
        real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    yield record
    assert record.blocked == record.expected_blocked


# --- receivers and resolvers ----------------------------------------------------------------


@dataclass
class Received:
    method: str
    path: str
    headers: Message
    body: bytes
    address: str  # the local address the request arrived at


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64  # parallel attempts are not held up in a full backlog


class Receiver:
    """An HTTP server on a loopback address that records what it gets and answers as told."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
        behaviour: str = "answer",  # answer | hang | drip | raw | close
        raw: bytes = b"",
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.requests: list[Received] = []
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                here = self.connection.getsockname()[0]
                receiver.requests.append(
                    Received(self.command, self.path, self.headers, body, here)
                )
                if behaviour == "answer":
                    self.send_response(status)
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                elif behaviour == "hang":
                    receiver.release.wait(10)
                elif behaviour == "drip":  # 2 s at most, so that a regression fails fast
                    for _ in range(40):
                        if receiver.release.wait(0.05):
                            break
                        self.wfile.write(b"H")
                        self.wfile.flush()
                elif behaviour == "raw":
                    self.wfile.write(raw)
                self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = _Server((host, port), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.host = host
        self.port: int = self.server.server_address[1]
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()

    def url(self, host: str | None = None, scheme: str = "http", path: str = "/hook") -> str:
        return f"{scheme}://{host or self.host}:{self.port}{path}"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[Callable[..., Receiver]]:
    started: list[Receiver] = []

    def start(*args: Any, **kwargs: Any) -> Receiver:
        receiver = Receiver(*args, **kwargs)
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.close()


class Resolver:
    """Answers names from a table; a list of answers is used one per call, the last repeated."""

    def __init__(self, table: dict[str, list[list[str]]]) -> None:
        self.table = table
        self.calls: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> list[str]:
        answers = self.table[host]
        self.calls.append((host, port))
        return answers[min(len(self.calls) - 1, len(answers) - 1)]


def egress(
    allow: str = "", table: dict[str, list[list[str]]] | None = None, **kwargs: Any
) -> tuple[Egress, Resolver]:
    resolver = Resolver(table or {})
    kwargs.setdefault("tls_context", SYSTEM_TLS)
    return Egress(AllowHosts.parse(allow), resolve=resolver, **kwargs), resolver


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- answers --------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 204])
def test_a_2xx_is_delivered_once_signed_and_with_the_host_as_written(
    receivers: Callable[..., Receiver], connects: Connects, status: int
) -> None:
    receiver = receivers(status=status)
    out, resolver = egress("hooks.test", {"hooks.test": [["127.0.0.1"]]})

    attempt = out.post(receiver.url("Hooks.Test", path="/in?x=1"), BODY, signed_headers())

    assert attempt == Attempt(True, status, None, False, attempt.seconds)
    assert 0 < attempt.seconds < 2
    assert resolver.calls == [("hooks.test", receiver.port)]
    assert connects.seen == [("127.0.0.1", receiver.port)]
    [got] = receiver.requests
    assert (got.method, got.path, got.body) == ("POST", "/in?x=1", BODY)
    assert got.headers["Host"] == f"Hooks.Test:{receiver.port}"
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["Content-Length"] == str(len(BODY))
    assert "Cookie" not in got.headers
    received = dict(got.headers.items())
    for secret in SECRETS:
        Webhook(secret).verify(got.body, received, json_parse=False)


@pytest.mark.parametrize(
    ("status", "gone"), [(500, False), (503, False), (404, False), (410, True)]
)
def test_other_answers_fail_and_410_means_gone(
    receivers: Callable[..., Receiver], status: int, gone: bool
) -> None:
    receiver = receivers(status=status)
    out, _ = egress("127.0.0.1")

    attempt = out.post(receiver.url(), BODY, signed_headers())

    assert attempt == Attempt(False, status, f"HTTP {status}", gone, attempt.seconds)
    assert len(receiver.requests) == 1  # one POST, no retry within the attempt
    assert "whsec_" not in (attempt.error or "")


def test_a_redirect_is_not_followed(receivers: Callable[..., Receiver]) -> None:
    target = receivers()
    redirecting = receivers(status=302, headers={"Location": target.url()})
    out, _ = egress("127.0.0.1")

    attempt = out.post(redirecting.url(), BODY, signed_headers())

    assert attempt == Attempt(False, 302, "redirect 302 not followed", False, attempt.seconds)
    assert len(redirecting.requests) == 1
    assert target.requests == []


def test_interim_1xx_answers_are_skipped(receivers: Callable[..., Receiver]) -> None:
    raw = b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 202 Accepted\r\n\r\n"
    receiver = receivers(behaviour="raw", raw=raw)

    attempt = egress("127.0.0.1")[0].post(receiver.url(), BODY, signed_headers())

    assert (attempt.ok, attempt.status) == (True, 202)


@pytest.mark.parametrize(
    ("behaviour", "raw", "error"),
    [
        ("raw", b"SSH-2.0-OpenSSH\r\n", "the answer is not HTTP/1.x"),
        ("raw", b"HTTP/1.1 2000 OK\r\n\r\n", "the answer is not HTTP/1.x"),
        ("raw", b"HTTP/1.1 200" + b" OK" * 4000, "no HTTP status in the first 8192 bytes"),
        ("close", b"", "connection closed without an answer"),
    ],
)
def test_an_answer_that_is_not_http_fails(
    receivers: Callable[..., Receiver], behaviour: str, raw: bytes, error: str
) -> None:
    receiver = receivers(behaviour=behaviour, raw=raw)

    attempt = egress("127.0.0.1")[0].post(receiver.url(), BODY, signed_headers())

    assert attempt == Attempt(False, None, error, False, attempt.seconds)


def test_a_closed_port_is_a_refused_connection() -> None:
    attempt = egress("127.0.0.1")[0].post(f"http://127.0.0.1:{free_port()}/", BODY, {})

    assert attempt == Attempt(False, None, "connection refused", False, attempt.seconds)


# --- time -----------------------------------------------------------------------------------


def test_the_default_attempt_takes_at_most_15_seconds() -> None:
    assert Egress(AllowHosts()).timeout_seconds == 15.0


def test_a_hanging_endpoint_times_out_at_the_attempts_limit(
    receivers: Callable[..., Receiver],
) -> None:
    receiver = receivers(behaviour="hang")
    out, _ = egress("127.0.0.1", timeout_seconds=1)

    attempt = out.post(receiver.url(), BODY, signed_headers())

    assert attempt == Attempt(False, None, "timeout after 1 s", False, attempt.seconds)
    assert 0.95 <= attempt.seconds < 1.5
    assert len(receiver.requests) == 1


def test_an_answer_trickling_in_cannot_stretch_the_attempt(
    receivers: Callable[..., Receiver],
) -> None:
    # One byte every 50 ms, never a whole status line: each read succeeds, the total is bounded.
    receiver = receivers(behaviour="drip")
    out, _ = egress("127.0.0.1", timeout_seconds=0.5)

    attempt = out.post(receiver.url(), BODY, signed_headers())

    assert attempt.error == "timeout after 0.5 s"
    assert 0.45 <= attempt.seconds < 0.9


def test_a_tls_handshake_that_never_completes_counts_against_the_attempt() -> None:
    with socket.socket() as listener:  # connections complete in its backlog, unanswered
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        out, _ = egress("127.0.0.1", timeout_seconds=0.3)

        attempt = out.post(f"https://127.0.0.1:{port}/hook", BODY, signed_headers())

    assert attempt.error == "timeout after 0.3 s"
    assert 0.28 <= attempt.seconds < 0.7


def test_a_hanging_name_lookup_counts_against_the_attempt() -> None:
    released = threading.Event()

    def resolve(host: str, port: int) -> list[str]:
        released.wait(5)
        return ["127.0.0.1"]

    out = Egress(AllowHosts.parse("hooks.test"), timeout_seconds=0.3, resolve=resolve)
    try:
        attempt = out.post("http://hooks.test/", BODY, {})
    finally:
        released.set()

    assert attempt.error == "timeout after 0.3 s"
    assert 0.28 <= attempt.seconds < 0.7


# --- what may be reached --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("127.0.0.1", "127.0.0.1 is loopback"),
        ("127.9.9.9", "127.9.9.9 is loopback"),
        ("[::1]", "::1 is loopback"),
        ("10.0.0.1", "10.0.0.1 is private"),
        ("192.168.1.1", "192.168.1.1 is private"),
        ("172.16.0.1", "172.16.0.1 is private"),
        ("172.31.255.254", "172.31.255.254 is private"),
        ("[fc00::1]", "fc00::1 is private"),
        ("[fd12:3456::1]", "fd12:3456::1 is private"),
        ("169.254.169.254", "169.254.169.254 is link-local"),
        ("[fe80::1]", "fe80::1 is link-local"),
        ("224.0.0.1", "224.0.0.1 is multicast"),
        ("[ff02::1]", "ff02::1 is multicast"),
        ("0.0.0.0", "0.0.0.0 is unspecified"),
        ("[::]", ":: is unspecified"),
        ("[::ffff:10.0.0.1]", "::ffff:a00:1 (IPv4 10.0.0.1) is private"),
        ("[::ffff:127.0.0.1]", "::ffff:7f00:1 (IPv4 127.0.0.1) is loopback"),
        ("[64:ff9b::a9fe:a9fe]", "64:ff9b::a9fe:a9fe (IPv4 169.254.169.254) is link-local"),
        ("[2002:c0a8:101::]", "2002:c0a8:101:: (IPv4 192.168.1.1) is private"),
        ("100.64.0.1", "100.64.0.1 is not public"),
        ("240.0.0.1", "240.0.0.1 is reserved"),
    ],
)
def test_an_address_that_is_not_public_is_never_connected_to(
    connects: Connects, host: str, reason: str
) -> None:
    url = f"https://{host}/hook"
    out, resolver = egress()

    attempt = out.post(url, BODY, signed_headers())

    assert attempt == Attempt(False, None, f"refused: {reason}", False, attempt.seconds)
    assert why_undeliverable(url, AllowHosts()) == reason
    assert connects.seen == []
    assert resolver.calls == []


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (["127.0.0.1"], "127.0.0.1 is loopback"),
        (["::1"], "::1 is loopback"),
        (["169.254.169.254"], "169.254.169.254 is link-local"),
        (["::ffff:192.168.0.1"], "::ffff:c0a8:1 (IPv4 192.168.0.1) is private"),
        (["8.8.8.8", "10.1.2.3"], "10.1.2.3 is private"),
        (["10.1.2.3", "8.8.8.8"], "10.1.2.3 is private"),
        (["2001:4860:4860::8888", "fd00::5"], "fd00::5 is private"),
    ],
)
def test_a_name_with_any_address_that_is_not_public_is_refused(
    receivers: Callable[..., Receiver], connects: Connects, answer: list[str], reason: str
) -> None:
    receiver = receivers()
    out, resolver = egress(table={"hooks.example": [answer]})

    attempt = out.post(receiver.url("hooks.example", scheme="https"), BODY, signed_headers())

    assert attempt.error == f"refused: {reason} (an address of hooks.example)"
    assert resolver.calls == [("hooks.example", receiver.port)]
    assert connects.seen == []
    assert receiver.requests == []


def test_a_public_name_is_connected_to_at_the_addresses_checked(connects: Connects) -> None:
    # The guard stands in for the internet: it records the connects and lets none through.
    tried = [("8.8.8.8", 443), ("2001:4860:4860::8888", 443)]
    connects.expected_blocked = tried
    out, resolver = egress(table={"hooks.example": [["8.8.8.8", "2001:4860:4860::8888"]]})

    attempt = out.post("https://hooks.example/hook", BODY, signed_headers())

    assert attempt.error == "connection refused"
    assert resolver.calls == [("hooks.example", 443)]
    assert connects.seen == tried


def test_http_is_refused_unless_the_host_is_exempt(
    receivers: Callable[..., Receiver], connects: Connects
) -> None:
    receiver = receivers()
    out, resolver = egress(table={"hooks.example": [["8.8.8.8"]]})

    for url in ["http://hooks.example/hook", "http://8.8.8.8/hook", receiver.url()]:
        attempt = out.post(url, BODY, signed_headers())
        assert attempt.error == (
            "refused: http:// is allowed only for hosts in SMS_WEBHOOKS_ALLOW_HOSTS; use https://"
        )
    assert resolver.calls == []
    assert connects.seen == []
    assert receiver.requests == []


@pytest.mark.parametrize(
    ("allow", "host", "delivered"),
    [
        ("127.0.0.1", "127.0.0.1", True),
        ("127.0.0.1:{port}", "127.0.0.1", True),
        ("localhost:1,127.0.0.1:{port}", "127.0.0.1", True),
        ("127.0.0.1:{other}", "127.0.0.1", False),
        ("localhost", "127.0.0.1", False),
        ("127.0.0.1", "localhost", False),
        ("localhost", "localhost", True),
        ("LocalHost", "LOCALHOST", True),
        ("127.0.0.2", "127.0.0.1", False),
        ("hooks.test", "hooks.test", True),
        ("hooks.test", "other.test", False),
        ("hooks.test:{port}", "hooks.test", True),
        ("", "127.0.0.1", False),
    ],
)
def test_a_host_is_exempt_exactly_as_written(
    receivers: Callable[..., Receiver], connects: Connects, allow: str, host: str, delivered: bool
) -> None:
    receiver = receivers()
    allow = allow.format(port=receiver.port, other=receiver.port + 1)
    names = {name: [["127.0.0.1"]] for name in ("localhost", "hooks.test", "other.test")}
    out, _ = egress(allow, names)

    attempt = out.post(receiver.url(host), BODY, signed_headers())

    assert attempt.ok is delivered
    assert len(receiver.requests) == int(delivered)
    if not delivered:
        assert attempt.error is not None
        assert attempt.error.startswith("refused: http:// is allowed only")
        assert connects.seen == []


def test_an_entry_with_a_port_does_not_exempt_the_default_port(connects: Connects) -> None:
    out, resolver = egress("hooks.test:8099", {"hooks.test": [["127.0.0.1"]]})

    attempt = out.post("http://hooks.test/hook", BODY, signed_headers())

    assert attempt.error is not None
    assert attempt.error.startswith("refused: http://")
    assert (resolver.calls, connects.seen) == ([], [])


def test_an_exempt_name_resolved_by_the_system(receivers: Callable[..., Receiver]) -> None:
    receiver = receivers()
    out = Egress(AllowHosts.parse("localhost"))

    attempt = out.post(receiver.url("localhost"), BODY, signed_headers())

    assert attempt.ok, attempt
    assert len(receiver.requests) == 1


# --- DNS rebinding --------------------------------------------------------------------------


def test_rebinding_to_loopback_after_the_check_reaches_nothing(
    receivers: Callable[..., Receiver], connects: Connects
) -> None:
    # The first answer is public and checked; a second lookup (there must be none) would
    # point at the receiver. The next attempt's own answer is loopback, and is refused.
    receiver = receivers()
    out, resolver = egress(table={"rebind.example": [["8.8.8.8"], ["127.0.0.1"]]})
    url = receiver.url("rebind.example", scheme="https")
    connects.expected_blocked = [("8.8.8.8", receiver.port)]

    first = out.post(url, BODY, signed_headers())
    assert first.error == "connection refused"
    assert len(resolver.calls) == 1
    assert connects.seen == [("8.8.8.8", receiver.port)]

    second = out.post(url, BODY, signed_headers())
    assert second.error == "refused: 127.0.0.1 is loopback (an address of rebind.example)"
    assert len(resolver.calls) == 2
    assert connects.seen == [("8.8.8.8", receiver.port)]
    assert receiver.requests == []


def receivers_on_one_port(start: Callable[..., Receiver], hosts: list[str]) -> list[Receiver]:
    for _ in range(20):
        first = start(hosts[0])
        try:
            return [first, *(start(host, first.port) for host in hosts[1:])]
        except OSError:
            continue  # that port was taken on another address: pick another
    raise AssertionError("no port free on every address")


def test_each_attempt_resolves_once_and_uses_that_answer(
    receivers: Callable[..., Receiver], connects: Connects
) -> None:
    first, second = receivers_on_one_port(receivers, ["127.0.0.2", "127.0.0.3"])
    answers = [["127.0.0.2"], ["127.0.0.3"]]
    out, resolver = egress("hooks.test", {"hooks.test": answers})
    url = f"http://hooks.test:{first.port}/hook"

    assert out.post(url, BODY, signed_headers()).ok
    assert len(resolver.calls) == 1
    assert [(r.address, r.headers["Host"]) for r in first.requests] == [
        ("127.0.0.2", f"hooks.test:{first.port}")
    ]
    assert second.requests == []

    assert out.post(url, BODY, signed_headers()).ok
    assert len(resolver.calls) == 2
    assert [(r.address, r.headers["Host"]) for r in second.requests] == [
        ("127.0.0.3", f"hooks.test:{first.port}")
    ]
    assert len(first.requests) == 1
    assert connects.seen == [("127.0.0.2", first.port), ("127.0.0.3", first.port)]


# --- TLS ------------------------------------------------------------------------------------


@dataclass
class Tls:
    server: ssl.SSLContext
    client: ssl.SSLContext  # trusts only the test's own authority


@pytest.fixture
def tls(tmp_path: Path) -> Tls:
    """A certificate for hooks.test from an authority made for the test."""
    now = datetime.now(timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "egress test authority")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hooks.test")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("hooks.test")]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    chain = tmp_path / "hooks.test.pem"
    chain.write_bytes(
        leaf.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(chain)
    client = ssl.create_default_context(cadata=ca.public_bytes(serialization.Encoding.PEM).decode())
    return Tls(server, client)


def test_https_is_verified_against_the_urls_name(
    receivers: Callable[..., Receiver], tls: Tls
) -> None:
    receiver = receivers(tls=tls.server)
    names = {"hooks.test": [["127.0.0.1"]], "other.test": [["127.0.0.1"]]}
    out, _ = egress("hooks.test,other.test", names, tls_context=tls.client)

    good = out.post(receiver.url("hooks.test", scheme="https"), BODY, signed_headers())
    assert good.ok, good
    [got] = receiver.requests
    assert got.headers["Host"] == f"hooks.test:{receiver.port}"

    wrong_name = out.post(receiver.url("other.test", scheme="https"), BODY, signed_headers())
    assert wrong_name.error is not None
    assert wrong_name.error.startswith("TLS certificate rejected: Hostname mismatch")

    untrusted = Egress(AllowHosts.parse("hooks.test"), resolve=Resolver(names))  # the default
    attempt = untrusted.post(receiver.url("hooks.test", scheme="https"), BODY, signed_headers())
    assert attempt.error is not None
    assert attempt.error.startswith("TLS certificate rejected:")
    assert len(receiver.requests) == 1


# --- in parallel ----------------------------------------------------------------------------


def test_one_egress_posts_to_several_endpoints_at_once(
    receivers: Callable[..., Receiver],
) -> None:
    by_status = {status: receivers(status=status) for status in (200, 410, 500)}
    out, _ = egress("127.0.0.1")
    jobs = [status for status in by_status for _ in range(10)]

    with ThreadPoolExecutor(max_workers=15) as pool:
        attempts = list(
            pool.map(lambda s: out.post(by_status[s].url(), BODY, signed_headers()), jobs)
        )

    assert [a.status for a in attempts] == jobs
    assert [a.gone for a in attempts] == [s == 410 for s in jobs]
    assert all(len(receiver.requests) == 10 for receiver in by_status.values())


# --- the caller's headers -------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{"Host": "elsewhere.example"}, {"content-length": "1"}, {"X-A": "a\r\nX-B: b"}, {"A B": "c"}],
)
def test_headers_that_would_change_the_request_are_a_programming_error(
    connects: Connects, headers: dict[str, str]
) -> None:
    with pytest.raises(ValueError, match="header"):
        egress("127.0.0.1")[0].post("http://127.0.0.1:9/", BODY, headers)
    assert connects.seen == []


# --- URLs that can never be delivered to ----------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/in?tenant=acme",
        "https://HOOKS.example.com:8443/",
        "https://hooks.example.com",
        "https://8.8.8.8/",
        "https://[2001:4860:4860::8888]:8443/in",
        "https://xn--bcher-kva.example/",
    ],
)
def test_a_url_that_may_be_delivered_to(url: str) -> None:
    assert why_undeliverable(url, AllowHosts()) is None


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://hooks.example.com/", "http:// is allowed only for hosts in"),
        ("ftp://hooks.example.com/", "the URL must start with https://"),
        ("hooks.example.com/in", "the URL must start with https://"),
        ("https:///in", "the URL has no host"),
        ("https://:443/in", "the URL has no host"),
        ("https://user:pass@hooks.example.com/", "must not carry a user name or password"),
        ("https://token@hooks.example.com/", "must not carry a user name or password"),
        ("https://hooks.example.com/#top", "must not have a fragment"),
        ("https://hooks.example.com/#", "must not have a fragment"),
        ("https://hooks.example.com:0/", "the port must be from 1 to 65535"),
        ("https://hooks.example.com:65536/", "cannot be parsed"),
        ("https://hooks.example.com:https/", "cannot be parsed"),
        ("https://[::1/", "cannot be parsed"),
        ("https://hooks.example.com/" + "a" * 2048, "longer than 2048 characters"),
        ("https://hooks.example.com/a b", "a space or a control character"),
        ("https://hooks.example.com/\ta", "a space or a control character"),
        ("https://hooks.example.com/a\r\nX-Injected: 1", "a space or a control character"),
        ("https://hooks.example.com/\x00", "a space or a control character"),
        ("https://hooks.example.com/\x7f", "a space or a control character"),
        ("https://bücher.example/", "not ASCII"),
        ("https://hooks.example.com/\u3000", "not ASCII"),
        ("https://hooks!.example.com/", "not a valid name"),
        ("https://hooks.example.com\\.evil.example/", "not a valid name"),
        ("https://[fe80::1%25eth0]/", "not an IPv6 address"),
        ("https://2130706433/", "looks like an IPv4 address"),
        ("https://127.1/", "looks like an IPv4 address"),
        ("https://0x7f.0.0.1/", "looks like an IPv4 address"),
        ("https://010.0.0.1/", "looks like an IPv4 address"),
        ("https://10.0.0.1/", "10.0.0.1 is private"),
        ("https://localhost:8443/", "localhost is loopback"),
        ("https://hooks.localhost./", "hooks.localhost. is loopback"),
        ("https://169.254.169.254/computeMetadata/v1/", "169.254.169.254 is link-local"),
        ("http://10.0.0.1/", "http:// is allowed only for hosts in"),
    ],
)
def test_why_a_url_can_never_be_delivered_to(url: str, reason: str) -> None:
    why = why_undeliverable(url, AllowHosts())

    assert why is not None
    assert reason in why
    assert egress()[0].post(url, BODY, {}).error == f"refused: {why}"


def test_an_exempt_url_may_use_http_and_any_address() -> None:
    allow = AllowHosts.parse("127.0.0.1:8099,[::1],localhost,10.0.0.1")

    assert why_undeliverable("http://127.0.0.1:8099/in", allow) is None
    assert why_undeliverable("http://[::1]:9000/in", allow) is None
    assert why_undeliverable("http://localhost/in", allow) is None
    assert why_undeliverable("http://10.0.0.1/in", allow) is None
    assert why_undeliverable("http://127.0.0.1:8098/in", allow) is not None
    assert why_undeliverable("https://127.0.0.1:8098/in", allow) == "127.0.0.1 is loopback"


# --- SMS_WEBHOOKS_ALLOW_HOSTS ---------------------------------------------------------------


def test_allow_hosts_are_read_as_written() -> None:
    allow = AllowHosts.parse(" 127.0.0.1:8099 , LocalHost,[::1]:80, hooks.test,")

    assert allow.entries == frozenset(
        {("127.0.0.1", 8099), ("localhost", None), ("::1", 80), ("hooks.test", None)}
    )
    assert allow.exempts("127.0.0.1", 8099)
    assert not allow.exempts("127.0.0.1", 8098)
    assert allow.exempts("LOCALHOST", 1)
    assert allow.exempts("::1", 80)
    assert not allow.exempts("::1", 81)
    assert AllowHosts.parse(None) == AllowHosts.parse("") == AllowHosts()


@pytest.mark.parametrize(
    "text",
    [
        "http://127.0.0.1",
        "127.0.0.1:",
        "127.0.0.1:0",
        "127.0.0.1:65536",
        "127.0.0.1:80:81",
        "127.0.0.1/hook",
        "::1",
        "[::1",
        "[::1]x",
        "[not-v6]",
        "local host",
        "localhost, user@host",
    ],
)
def test_a_malformed_allow_hosts_entry_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="SMS_WEBHOOKS_ALLOW_HOSTS"):
        AllowHosts.parse(text)
