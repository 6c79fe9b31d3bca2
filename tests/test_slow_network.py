"""SPEC 8 and 10.3: a send that reaches Twilio late is still sent once.

The function sends through a proxy on loopback that holds every request 4.5 s before it
forwards it to the stand-in for Twilio: a slow network between the function and Twilio.
Sweepers run in processes of their own (the sms_sweeper target) over and over while the sends
are in flight, and once more after they settled: one with the function's environment (its
calls to Twilio are as slow), one that reaches the stand-in at once (as a sweeper elsewhere
would, on a fast network). All run with the least SMS_SWEEP_AFTER_SECONDS the functions take
(15 s): no sweeper may take a message whose hand-over can still land.

With 3 s, as in the incident, the second sweeper sent every message a second time, and the
first took each message from the request sending it, which could then not store Twilio's
answer: both are what this test looks for.
"""

from __future__ import annotations

import http.client
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import pytest
import requests
from twilio_standin import TwilioStandIn

from conftest import ROOT, SEED_BODY, SMS_PATH, Tenant, twilio_env
from sms.devtools.emulator import free_port
from sms.devtools.seed import DEMO_AGENT
from sms.devtools.server import running, serving

DELAY_SECONDS = 4.5  # how late each request reaches the stand-in
CONSUMERS = 10  # sends in flight at once: each a chance for a sweeper to send one twice
# Headers of one connection, or that the proxy sets itself: neither forwarded nor relayed.
_OWN_HEADERS = {"connection", "keep-alive", "transfer-encoding", "host", "content-length"}


class DelayingProxy:
    """An HTTP proxy on 127.0.0.1 that holds each request ``delay`` seconds after it arrived,
    then forwards it to ``upstream`` and relays the answer (each on a thread of its own). A
    client that gave up waiting meanwhile does not stop the request: it arrives late."""

    def __init__(self, upstream: str, delay: float) -> None:
        self.delay = delay
        self._upstream = urllib.parse.urlsplit(upstream)
        self._arrived: list[str] = []  # the To of each request, as it arrived
        self._forwarded: list[str] = []  # ... and as it was passed on
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def held(self, to: Collection[str]) -> tuple[int, int]:
        """Of the requests for these numbers (a create's To, a list's To): how many arrived,
        and how many were passed on."""
        with self._lock:
            arrived = sum(number in to for number in self._arrived)
            return arrived, sum(number in to for number in self._forwarded)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def _forward(self, handler: BaseHTTPRequestHandler) -> None:
        arrived_at = time.monotonic()
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        query = urllib.parse.urlsplit(handler.path).query
        fields = urllib.parse.parse_qs(body.decode("utf-8", "replace") or query)
        to = fields.get("To", [""])[0]
        with self._lock:
            self._arrived.append(to)
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in _OWN_HEADERS}
        time.sleep(max(0.0, arrived_at + self.delay - time.monotonic()))
        upstream = http.client.HTTPConnection(
            self._upstream.hostname or "127.0.0.1", self._upstream.port, timeout=30
        )
        try:
            upstream.request(handler.command, handler.path, body=body or None, headers=headers)
            with self._lock:
                self._forwarded.append(to)
            answer = upstream.getresponse()
            data = answer.read()
        finally:
            upstream.close()
        try:
            handler.send_response(answer.status, answer.reason)
            for name, value in answer.getheaders():
                if name.lower() not in _OWN_HEADERS:
                    handler.send_header(name, value)
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting: what it sent reached Twilio all the same

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        forward = self._forward

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                forward(self)

            def do_POST(self) -> None:
                forward(self)

            def log_message(self, format: str, *args: Any) -> None:
                """Keep the test output quiet."""

        return Handler


@pytest.fixture
def proxy(standin: TwilioStandIn) -> Iterator[DelayingProxy]:
    """The delaying proxy in front of the stand-in (emptied before and after)."""
    standin.reset()
    with DelayingProxy(standin.url, DELAY_SECONDS) as running_proxy:
        yield running_proxy
    standin.reset()


def consumer(n: int) -> str:
    return f"+1646555{200 + n:04d}"  # numbers no other module sends to


def test_a_send_that_reaches_twilio_late_is_sent_once_while_sweepers_run(
    proxy: DelayingProxy,
    standin: TwilioStandIn,
    make_tenant: Callable[..., Tenant],
    tmp_path: Path,
) -> None:
    tenant = make_tenant(agents={1: dict(DEMO_AGENT)})
    numbers = [consumer(n) for n in range(CONSUMERS)]
    port = free_port()
    env = twilio_env(standin, port, TWILIO_API_BASE_URL=proxy.url)
    # The sweepers: as slow to reach Twilio as the function, and straight to Twilio.
    sweepers_env = [env, twilio_env(standin, port)]

    def send(to: str) -> requests.Response:
        body = {**SEED_BODY, "end_user_number": to, "message": f"Your code is {to[-4:]}"}
        return requests.post(url + SMS_PATH, json=body, headers=tenant.headers, timeout=30)

    def sweep() -> list[list[dict[str, Any]]]:
        """A sweep by each sweeper: what each settled of the tenant's messages."""
        reports = []
        for sweeper in sweepers:
            answer = requests.post(sweeper.url, timeout=60)
            assert answer.status_code == 200, answer.text
            reports.append([s for s in answer.json()["settled"] if s["tenant"] == tenant.id])
        return reports

    def transcript(answer: requests.Response) -> list[dict[str, Any]]:
        chat = f"{url}/apps/api/v1/chats/{answer.json()['id']}"
        read = requests.get(chat + "/messages", headers=tenant.headers, timeout=30)
        return list(read.json()["messages"])

    rounds: list[tuple[list[list[dict[str, Any]]], tuple[int, int]]] = []  # sweeps, held
    with ExitStack() as stack:
        log = stack.enter_context(open(tmp_path / "function.log", "wb"))
        sweepers_log = stack.enter_context(open(tmp_path / "sweepers.log", "wb"))
        # A thread of the function for each send, so that all are in flight at once.
        url = stack.enter_context(serving(port, {**env, "THREADS": str(CONSUMERS)}, log))
        sweepers = [
            stack.enter_context(running(free_port(), each, sweepers_log, target="sms_sweeper"))
            for each in sweepers_env
        ]
        with ThreadPoolExecutor(CONSUMERS) as pool:
            sending = [pool.submit(send, to) for to in numbers]
            while not all(future.done() for future in sending):
                rounds.append((sweep(), proxy.held(numbers)))
                time.sleep(0.25)  # the next round, a moment later in the sends' flight
            answers = [future.result() for future in sending]
        after = sweep()
        stored = [transcript(answer) for answer in answers]

    sent = {to: standin.sent_to(to) for to in numbers}
    assert {to: len(sms) for to, sms in sent.items()} == dict.fromkeys(numbers, 1)  # once each
    assert [a.status_code for a in answers] == [200] * CONSUMERS, [a.text for a in answers]
    for to, [message] in zip(numbers, stored, strict=True):
        assert (message["status"], message["carrier_id"]) == ("sent", sent[to][0]["sid"])
    # Sweeps ran while every message was stored and handed over but none had reached Twilio,
    # and on until every send had answered; not one took a message of the tenant's.
    assert (CONSUMERS, 0) in [held for _, held in rounds], rounds
    assert [reports for reports, _ in rounds] == [[[], []]] * len(rounds)
    assert after == [[], []]
    # Each request stored Twilio's answer itself: nothing was left for a sweeper to settle.
    assert "could not be stored" not in (tmp_path / "function.log").read_text()


def test_the_incidents_setting_is_refused_at_start_by_the_function_and_the_sweep(
    standin: TwilioStandIn, tmp_path: Path
) -> None:
    port = free_port()
    env = twilio_env(standin, port, SMS_SWEEP_AFTER_SECONDS="3")
    refused = "SMS_SWEEP_AFTER_SECONDS must be a number of seconds, at least 15, got '3'"

    with open(tmp_path / "server.log", "wb") as log, pytest.raises(RuntimeError, match="exited"):
        serving(port, env, log).__enter__()
    swept = subprocess.run(
        [sys.executable, "-m", "sms.admin", "sweep"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert f"the function cannot start: {refused}" in (tmp_path / "server.log").read_text()
    assert (swept.returncode, swept.stdout) == (2, "")
    assert refused in swept.stderr
