"""Fixtures for events (SPEC 10.7): the official Pub/Sub emulator, sms_api and sms_events
served with a topic of their own and a push subscription between them (as the deploy and
the local run make them), an in-process sweep that announces to such a stack's topic, and
webhook receivers the tests run on loopback. Every delivery a receiver gets is checked,
after each test, against openapi.yaml's `webhooks` (its body and its headers).

Loaded as a plugin (pyproject's addopts: -p eventing). PUBSUB_EMULATOR_HOST, when CI sets
it, is taken out of the environment here, before any fixture runs: the functions the other
tests start publish nothing, and only the servers of these fixtures use the emulator.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import http.server
import json
import os
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from google.cloud import firestore
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers

from sms import bootstrap
from sms.clock import Clock
from sms.config import Settings
from sms.devtools.emulator import Emulator, free_port
from sms.devtools.pubsub import push_events
from sms.devtools.server import Server, running
from sms.events import signing
from sms.sweeper import Swept

PUBSUB_FROM_ENVIRONMENT = os.environ.pop("PUBSUB_EMULATOR_HOST", None)
PROJECT = "demo-sms-tests"
DOCUMENT = Path(__file__).resolve().parent.parent / "openapi.yaml"
# The tests' push subscriptions retry within seconds (deployed: 10 s to 10 minutes).
RETRY_MIN_SECONDS, RETRY_MAX_SECONDS = 1.0, 2.0


@pytest.fixture(scope="session")
def pubsub_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The Pub/Sub emulator CI started, or one started for this test run."""
    if PUBSUB_FROM_ENVIRONMENT:
        yield PUBSUB_FROM_ENVIRONMENT
        return
    log = tmp_path_factory.mktemp("pubsub") / "pubsub.log"
    emulator = Emulator.start(log_path=log, kind="pubsub")
    try:
        yield emulator.host_port
    finally:
        emulator.stop()


@dataclass
class EventStack:
    """sms_api and sms_events served on one topic, pushed from one to the other."""

    api: str  # the sms_api server's URL
    events: Server
    topic: str
    env: dict[str, str]
    log: Path

    def lines(self) -> list[dict[str, Any]]:
        """The servers' log lines so far (JSON lines only)."""
        text = self.log.read_text(encoding="utf-8", errors="replace")
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def event_env(emulator_host: str, pubsub_host: str, topic: str) -> dict[str, str]:
    """The environment of functions that publish events to ``topic`` and may post to
    webhooks on loopback."""
    return {
        **os.environ,
        "FIRESTORE_EMULATOR_HOST": emulator_host,
        "PUBSUB_EMULATOR_HOST": pubsub_host,
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "SMS_EVENTS_TOPIC": topic,
        "SMS_WEBHOOKS_ALLOW_HOSTS": "127.0.0.1",
    }


@contextlib.contextmanager
def pubsub_environment(pubsub_host: str) -> Iterator[None]:
    """PUBSUB_EMULATOR_HOST set in this process while the block runs (the Pub/Sub clients
    read it from the environment when they are made)."""
    previous = os.environ.get("PUBSUB_EMULATOR_HOST")
    os.environ["PUBSUB_EMULATOR_HOST"] = pubsub_host
    try:
        yield
    finally:
        if previous is None:
            del os.environ["PUBSUB_EMULATOR_HOST"]
        else:
            os.environ["PUBSUB_EMULATOR_HOST"] = previous


@contextlib.contextmanager
def serving_events(
    emulator_host: str,
    pubsub_host: str,
    log: Path,
    topic: str | None = None,
    *,
    extra_env: dict[str, str] | None = None,
    api_port: int | None = None,
) -> Iterator[EventStack]:
    """sms_events and sms_api on a topic of their own (made with a push subscription), both
    with ``extra_env`` added to their environment; sms_api on ``api_port`` if given (a URL
    in ``extra_env``, such as SMS_PUBLIC_BASE_URL, may name it)."""
    topic = topic or f"events-{uuid.uuid4().hex[:10]}"
    env = {**event_env(emulator_host, pubsub_host, topic), **(extra_env or {})}
    with (
        open(log, "ab") as out,
        running(free_port(), env, out, target="sms_events") as events,
    ):
        with pubsub_environment(pubsub_host):
            push_events(
                PROJECT,
                topic,
                events.url + "/",
                retry_min_seconds=RETRY_MIN_SECONDS,
                retry_max_seconds=RETRY_MAX_SECONDS,
            )
        with running(api_port or free_port(), env, out) as api:
            yield EventStack(api.url, events, topic, env, log)


def sweep(stack: EventStack, clock: Clock) -> Swept:
    """One sweep, in-process, with the stack's settings (it announces to the stack's topic),
    on ``clock`` (a test moves it past what the sweep should find due).

    A sweep goes over every tenant of its database, other tests' too: a test that sweeps
    serves its stack on a database of its own (FIRESTORE_DATABASE in ``extra_env``)."""
    with pubsub_environment(stack.env["PUBSUB_EMULATOR_HOST"]):
        return bootstrap.build(Settings.from_env(stack.env), clock=clock).sweeper.run()


@pytest.fixture(scope="session")
def event_stack(
    emulator_host: str, pubsub_host: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EventStack]:
    """One stack for the tests that only need events to flow (each has its own tenant)."""
    log = tmp_path_factory.mktemp("events") / "servers.log"
    with serving_events(emulator_host, pubsub_host, log) as stack:
        yield stack


# ---- webhook receivers ----------------------------------------------------------------------


@dataclass
class Delivery:
    """One request a receiver got."""

    headers: dict[str, str]  # names in lower case
    body: bytes
    at: float  # time.monotonic() when it arrived

    @property
    def event(self) -> dict[str, Any]:
        event: dict[str, Any] = json.loads(self.body)
        return event

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


@dataclass
class Receiver:
    """A webhook endpoint on loopback: records every request; answers as told.

    ``answers`` holds what to answer next, in order: an int status, ("hang", seconds), or
    ("redirect", url); once empty, every request is answered ``default``.
    """

    url: str
    deliveries: list[Delivery] = field(default_factory=list)
    answers: queue.SimpleQueue[Any] = field(default_factory=queue.SimpleQueue)
    default: int = 204
    arrived: threading.Condition = field(default_factory=threading.Condition)
    checked: int = 0  # how many of the deliveries were checked against openapi.yaml
    closed: bool = False

    def answer(self, *answers: Any) -> None:
        for one in answers:
            self.answers.put(one)

    def wait_for(self, count: int, seconds: float = 15.0) -> list[Delivery]:
        """The first ``count`` deliveries, waiting for them at most ``seconds``."""
        ends = time.monotonic() + seconds
        with self.arrived:
            while len(self.deliveries) < count:
                left = ends - time.monotonic()
                if left <= 0:
                    break
                self.arrived.wait(left)
            return list(self.deliveries)

    def events(self) -> list[dict[str, Any]]:
        return [delivery.event for delivery in self.deliveries]

    def types(self) -> list[str]:
        return [event["type"] for event in self.events()]


@contextlib.contextmanager
def receiving(host: str = "127.0.0.1") -> Iterator[Receiver]:
    """A receiver served until the block ends."""
    receiver: Receiver | None = None

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            assert receiver is not None
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            headers = {name.lower(): value for name, value in self.headers.items()}
            with receiver.arrived:
                receiver.deliveries.append(Delivery(headers, body, time.monotonic()))
                receiver.arrived.notify_all()
            try:
                answer = receiver.answers.get_nowait()
            except queue.Empty:
                answer = receiver.default
            if isinstance(answer, tuple) and answer[0] == "hang":
                time.sleep(answer[1])
                answer = receiver.default
            if isinstance(answer, tuple) and answer[0] == "redirect":
                self.send_response(302)
                self.send_header("Location", answer[1])
            else:
                self.send_response(answer)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer((host, 0), Handler)
    server.daemon_threads = True
    receiver = Receiver(f"http://{host}:{server.server_address[1]}/hooks")
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    _receivers.append(receiver)
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        receiver.closed = True


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as running_receiver:
        yield running_receiver


# ---- every delivery as openapi.yaml's `webhooks` document it ------------------------------

_receivers: list[Receiver] = []  # receivers opened and not yet checked since they closed


@functools.cache
def _document() -> OpenAPI:
    return OpenAPI.from_file_path(str(DOCUMENT))


@dataclass
class _WebhookRequest:
    """A delivery as openapi-core reads a webhook's request (its WebhookRequest protocol)."""

    name: str  # the webhook: the event's type
    body: bytes
    content_type: str
    parameters: RequestParameters
    method: str = "post"


def undocumented(delivery: Delivery) -> list[str]:
    """What openapi.yaml finds wrong with a delivery (nothing: it is as documented): its body
    against the request body schema of ``webhooks.<its type>.post``, its headers against that
    operation's header parameters, validated by openapi-core."""
    request = _WebhookRequest(
        name=str(delivery.event.get("type")),
        body=delivery.body,
        content_type=delivery.headers.get("content-type", ""),
        parameters=RequestParameters(header=Headers(delivery.headers)),
    )
    errors = _document().iter_webhook_request_errors(request)
    return [f"{error!r}: {error.__cause__!r}" for error in errors]


@pytest.fixture(autouse=True)
def _deliveries_are_as_documented() -> Iterator[None]:
    """After each test, every delivery its receivers got (those of wider fixtures too) is
    checked against openapi.yaml's ``webhooks``."""
    yield
    problems = []
    for receiver in list(_receivers):
        with receiver.arrived:
            fresh = receiver.deliveries[receiver.checked :]
            receiver.checked = len(receiver.deliveries)
        for delivery in fresh:
            if found := undocumented(delivery):
                problems.append((delivery.body[:200], found))
        if receiver.closed:
            _receivers.remove(receiver)
    assert problems == [], "deliveries that openapi.yaml's webhooks do not describe"


def add_endpoint(
    db: firestore.Client,
    tenant_id: str,
    url: str,
    *,
    events: list[str] | None = None,
    secrets: list[str] | None = None,
    endpoint_id: str | None = None,
) -> tuple[str, list[str]]:
    """A webhook endpoint of the tenant, written as SPEC section 7 describes it; its id and
    secrets."""
    endpoint_id = endpoint_id or uuid.uuid4().hex[:12]
    secrets = secrets or [signing.new_secret()]
    db.document(f"tenants/{tenant_id}/webhook_endpoints/{endpoint_id}").set(
        {
            "url": url,
            "events": events or [],
            "secrets": [{"secret": secret, "expires_at": None} for secret in secrets],
            "enabled": True,
        }
    )
    return endpoint_id, secrets


def basic(tenant_id: str, token: str) -> dict[str, str]:
    encoded = base64.b64encode(f"{tenant_id}:{token}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


def listed_events(api: str, headers: dict[str, str], **query: str) -> list[dict[str, Any]]:
    """Every event GET /apps/api/v1/events lists for the tenant, all pages."""
    found: list[dict[str, Any]] = []
    params: dict[str, str] = dict(query)
    while True:
        answer = requests.get(
            api + "/apps/api/v1/events", params=params, headers=headers, timeout=10
        )
        assert answer.status_code == 200, answer.text
        page = answer.json()
        found += page["events"]
        if page["next_page_token"] is None:
            return found
        params["page_token"] = page["next_page_token"]
