"""Fixtures: the real Firestore emulator, tenants configured as operators do, the function.

The emulator named by FIRESTORE_EMULATOR_HOST is used when set (as .ci/run does); otherwise
one is started for the test run and its whole process group is killed afterwards.

Tests of time (idle expiry, the sweeper's wait, a key's lease) move a clock instead of
waiting: ``clock`` is handed to the function in-process through the composition root
(``clocked_client``, ``clocked_send``; ``clocked_server`` and ``clocked_twilio_server`` on a
loopback port, for tests that speak HTTP to a URL).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import flask
import functions_framework
import pytest
import werkzeug.exceptions
import werkzeug.routing
import werkzeug.serving
from google.cloud import firestore
from hypothesis import HealthCheck, settings
from twilio_standin import TwilioStandIn

from sms import bootstrap, web
from sms.api import Api
from sms.clock import Clock, utc_now
from sms.config import Settings
from sms.devtools.emulator import Emulator, free_port
from sms.devtools.seed import DEMO_AGENT, TenantSeed
from sms.devtools.server import serving

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "demo-sms-tests"
SMS_PATH = "/apps/api/v1/sms"

# The share of their examples the property tests try: all of them unless CI's later passes
# (another carrier, another Python) ask for fewer, since the first pass has tried them all.
EXAMPLES_SHARE = float(os.environ.get("SMS_TEST_EXAMPLES_SHARE", "1"))


def examples(count: int) -> int:
    """How many examples a property test that asks for ``count`` tries in this pass."""
    return max(10, round(count * EXAMPLES_SHARE))


# The property tests' settings: no per-example deadline (they call real servers), checks that
# a slow emulator or large inputs would trip turned off, and nothing kept between runs.
_FUZZ = settings(
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
    database=None,
)


def fuzz(max_examples: int) -> settings:
    """Settings for a property test of ``max_examples`` (this pass's share of them)."""
    return settings(_FUZZ, max_examples=examples(max_examples))


# The keys of the chat document and its parts, in the order of SPEC section 5.
CHAT_KEYS = [
    "id", "lang", "chat_type", "status", "created_at", "queued_at", "assigned_at", "ends_at",
    "wait_duration", "chat_duration", "rating", "has_feedback", "out_ticket_id",
    "out_ticket_url", "verified", "disconnected_by", "fail_reason", "selected_menu",
    "menu_path", "agent_info", "end_user", "photos", "videos", "transfers", "participants",
    "offer_type", "offer_events", "answer_type", "outbound_number",
]  # fmt: skip
PARTICIPANT_KEYS = [
    "id", "type", "status", "chat_id", "user_id", "end_user_id", "chat_duration",
    "connected_at", "ended_at", "fail_reason",
]  # fmt: skip
AGENT_INFO_KEYS = ["id", "agent_number", "email", "name", "first_name", "last_name", "avatar_url"]

SEED_BODY: dict[str, Any] = {
    "chat_type": "Messaging (SMS)",
    "end_user_number": "+1 415-555-0100",
    "outbound_number": "+1 628-555-0199",
    "message": "lorem ipsum",
    "ticket_id": "5006x00000XXxxxXXX",
}


def basic(username: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


class Tenant(TenantSeed):
    @property
    def headers(self) -> dict[str, str]:
        return basic(self.id, self.token)


@pytest.fixture(autouse=True)
def _restore_environment() -> Iterator[None]:
    """Whatever a test does to os.environ is undone after it."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def emulator_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    host = os.environ.get("FIRESTORE_EMULATOR_HOST")
    started = None
    if not host:
        log = tmp_path_factory.mktemp("emulator") / "emulator.log"
        started = Emulator.start(log_path=log)
        host = started.host_port
    os.environ["FIRESTORE_EMULATOR_HOST"] = host
    os.environ["GOOGLE_CLOUD_PROJECT"] = PROJECT
    # Tests change tenants and credentials and expect the next request to see it: functions
    # they start keep nothing (tests of the cache turn it on themselves).
    os.environ.setdefault("SMS_CONFIG_CACHE_SECONDS", "0")
    with _carrier_for_every_test():
        yield host
    if started is not None:
        started.stop()


@contextlib.contextmanager
def _carrier_for_every_test() -> Iterator[None]:
    """With SMS_TEST_CARRIER=twilio, every function the tests run sends through Twilio (a
    stand-in of the session), unless a test configures its carrier itself: the whole suite
    then shows that sending changes nothing else."""
    if os.environ.get("SMS_TEST_CARRIER", "log") != "twilio":
        yield
        return
    with TwilioStandIn() as session_standin:
        os.environ.update(
            SMS_CARRIER="twilio",
            TWILIO_ACCOUNT_SID=session_standin.account_sid,
            TWILIO_AUTH_TOKEN=session_standin.auth_token,
            TWILIO_API_BASE_URL=session_standin.url,
        )
        yield


@pytest.fixture(scope="session")
def db(emulator_host: str) -> firestore.Client:
    return firestore.Client(project=PROJECT)


@pytest.fixture
def make_tenant(db: firestore.Client) -> Callable[..., Tenant]:
    """Configure a fresh tenant (its own subdomain) through the section 7 documents."""

    def make(**overrides: Any) -> Tenant:
        tenant = Tenant(id=f"t{uuid.uuid4().hex[:16]}", **overrides)
        tenant.write(db)
        return tenant

    return make


@pytest.fixture
def tenant(make_tenant: Callable[..., Tenant]) -> Tenant:
    """A tenant with SMS on, the seed's outbound number and the seed's agent 1."""
    return make_tenant(agents={1: dict(DEMO_AGENT)})


@pytest.fixture(scope="session")
def app_client(emulator_host: str) -> Any:
    return functions_framework.create_app(
        target="sms_api", source=str(ROOT / "main.py")
    ).test_client()


def sender(client: Any, tenant: Tenant) -> Callable[..., Any]:
    """POST a body to the endpoint through `client` as `tenant` (or as another tenant given
    with `as_`); the seed's body, with `changes`, when no body is given."""

    def post(body: Any = None, as_: Tenant | None = None, **changes: Any) -> Any:
        if body is None:
            body = {**SEED_BODY, **changes}
        who = as_ or tenant
        return client.post(SMS_PATH, json=body, headers=who.headers)

    return post


@pytest.fixture
def send(app_client: Any, tenant: Tenant) -> Callable[..., Any]:
    """POST a body to the endpoint as `tenant` (or as another tenant given with `as_`)."""
    return sender(app_client, tenant)


# ---- the function on a clock the test moves ---------------------------------------------


class MovableClock:
    """A clock for the composition root (sms.clock.Clock) that stands still until the test
    moves it: a test of expiry or grace moves it past the moment instead of waiting for it."""

    def __init__(self, now: dt.datetime | None = None) -> None:
        self.now = now or utc_now()

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> dt.datetime:
        """Move on by ``seconds`` (back, if negative), to the millisecond; the new now."""
        self.now += dt.timedelta(milliseconds=round(seconds * 1000))
        return self.now


def in_process(settings: Settings, clock: Clock, **collaborators: Any) -> flask.Flask:
    """The sms_api target on an app built with ``clock`` (and any other collaborator of
    bootstrap.build), mounted as functions-framework mounts it: every path, every method."""
    api = Api(bootstrap.build(settings, clock=clock, **collaborators))
    app = flask.Flask("sms_api")
    app.url_map.add(werkzeug.routing.Rule("/", defaults={"path": ""}, endpoint="run"))
    app.url_map.add(werkzeug.routing.Rule("/<path:path>", endpoint="run"))
    app.view_functions["run"] = lambda path: api.handle(flask.request)
    # What the framework answers by itself (a path no rule matches, such as one holding a
    # newline), as main.py's error handler answers it under functions-framework.
    app.register_error_handler(
        werkzeug.exceptions.HTTPException,
        lambda error: web.framework_answer(error.code or 500, error.name),
    )
    return app


@contextlib.contextmanager
def served_in_thread(port: int, app: flask.Flask) -> Iterator[str]:
    """``app`` served by threads of the test's own process on a loopback port: its URL."""
    server = werkzeug.serving.make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="in-process", daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


@pytest.fixture
def clock() -> MovableClock:
    """A clock the test moves; the clocked fixtures' function runs on it."""
    return MovableClock()


@pytest.fixture
def clocked_client(emulator_host: str, clock: MovableClock) -> Any:
    """The function in-process on the test's clock, with the carrier Settings.from_env() says
    (as `app_client` has): a Flask test client."""
    return in_process(Settings.from_env(), clock).test_client()


@pytest.fixture
def clocked_send(clocked_client: Any, tenant: Tenant) -> Callable[..., Any]:
    """`send`, to the function on the test's clock."""
    return sender(clocked_client, tenant)


@pytest.fixture
def clocked_server(emulator_host: str, clock: MovableClock) -> Iterator[str]:
    """The function of `clocked_client`, served on a loopback port: its URL."""
    with served_in_thread(free_port(), in_process(Settings.from_env(), clock)) as url:
        yield url


def count_documents(db: firestore.Client, tenant_id: str) -> int:
    """Every document stored under a tenant, at any depth (its configuration included)."""

    def walk(collections: Any) -> int:
        total = 0
        for collection in collections:
            for doc in collection.list_documents():
                if doc.get().exists:
                    total += 1
                total += walk(doc.collections())
        return total

    return 1 + walk(db.collection("tenants").document(tenant_id).collections())


@pytest.fixture(scope="session")
def server(emulator_host: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The function as the local run serves it (sms.serving: functions-framework's app and
    gunicorn settings, with the hardened worker of a self-hosted function), on a loopback port."""
    env = {**os.environ, "FIRESTORE_EMULATOR_HOST": emulator_host, "GOOGLE_CLOUD_PROJECT": PROJECT}
    with (
        open(tmp_path_factory.mktemp("server") / "server.log", "wb") as log,
        serving(free_port(), env, log) as url,
    ):
        yield url


# ---- Twilio: the function with SMS_CARRIER=twilio, against a stand-in for Twilio's API --------

# How old a message must be before the sweeper takes it, for the tests' servers and sweeps:
# the least the functions take (SPEC 8). Tests move a clock past it rather than wait.
SWEEP_AFTER_SECONDS = 15


@pytest.fixture(scope="session")
def standin() -> Iterator[TwilioStandIn]:
    """A stand-in for Twilio's Messages API that the tests run themselves."""
    with TwilioStandIn() as running:
        yield running


def twilio_env(standin: TwilioStandIn, public_port: int, **extra: str) -> dict[str, str]:
    """The environment of a function that sends through the stand-in and is reached by it
    (its webhooks) at 127.0.0.1:public_port."""
    return {
        **os.environ,
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "SMS_CARRIER": "twilio",
        "TWILIO_ACCOUNT_SID": standin.account_sid,
        "TWILIO_AUTH_TOKEN": standin.auth_token,
        "TWILIO_API_BASE_URL": standin.url,
        "SMS_PUBLIC_BASE_URL": f"http://127.0.0.1:{public_port}",
        "SMS_SWEEP_AFTER_SECONDS": str(SWEEP_AFTER_SECONDS),
        **extra,
    }


@pytest.fixture(scope="session")
def twilio_server(
    emulator_host: str, standin: TwilioStandIn, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The function served by functions-framework with SMS_CARRIER=twilio."""
    port = free_port()
    with (
        open(tmp_path_factory.mktemp("twilio-server") / "server.log", "wb") as log,
        serving(port, twilio_env(standin, port), log) as url,
    ):
        yield url


@pytest.fixture
def clocked_twilio_server(
    emulator_host: str, standin: TwilioStandIn, clock: MovableClock
) -> Iterator[str]:
    """The function with SMS_CARRIER=twilio, as `twilio_server` is, but in-process on the
    test's clock and reached by the stand-in (its webhooks) at its own URL."""
    port = free_port()
    settings = Settings.from_env(twilio_env(standin, port))
    with served_in_thread(port, in_process(settings, clock)) as url:
        yield url
