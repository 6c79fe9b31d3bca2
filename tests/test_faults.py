"""Firestore failing under load: every request answers in bounded time, nothing is half-written.

These tests own their emulator and server (they stop the emulator), apart from the session's.
"""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flask
import pytest
import requests
from google.cloud import firestore

from conftest import SEED_BODY, SMS_PATH, Tenant
from sms import bootstrap
from sms.api import Api
from sms.config import Settings
from sms.devtools.emulator import Emulator, free_port
from sms.devtools.seed import DEMO_AGENT
from sms.devtools.server import serving
from sms.repository import FirestoreStore

PROJECT = "demo-sms-faults"
ANSWER_WITHIN_SECONDS = 10
ACTIVE = "Outbound SMS failed. Consumer is already in an active SMS session."


@dataclass
class Backend:
    """An emulator on a fixed port, and a functions-framework server that uses it."""

    port: int
    log_dir: Path
    emulator: Emulator | None = None

    def start_emulator(self) -> None:
        self.emulator = Emulator.start(port=self.port, log_path=self.log_dir / "emulator.log")

    def kill_emulator(self) -> None:
        assert self.emulator is not None
        self.emulator.stop()

    def freeze(self) -> None:
        assert self.emulator is not None
        os.killpg(self.emulator.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.emulator is not None
        os.killpg(self.emulator.process.pid, signal.SIGCONT)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    backend = Backend(port=free_port(), log_dir=tmp_path_factory.mktemp("faults"))
    backend.start_emulator()
    yield backend
    if backend.emulator is not None:
        backend.thaw()
        backend.kill_emulator()


@pytest.fixture(scope="module")
def url(backend: Backend) -> Iterator[str]:
    env = {**os.environ, "FIRESTORE_EMULATOR_HOST": backend.host, "GOOGLE_CLOUD_PROJECT": PROJECT}
    with (
        open(backend.log_dir / "server.log", "wb") as log,
        serving(free_port(), env, log) as base,
    ):
        yield base


def client(backend: Backend) -> firestore.Client:
    """A client of this module's emulator (the client reads the variable when it is made)."""
    saved = os.environ.get("FIRESTORE_EMULATOR_HOST")
    os.environ["FIRESTORE_EMULATOR_HOST"] = backend.host
    try:
        return firestore.Client(project=PROJECT)
    finally:
        if saved is None:
            del os.environ["FIRESTORE_EMULATOR_HOST"]
        else:
            os.environ["FIRESTORE_EMULATOR_HOST"] = saved


def seed(backend: Backend, name: str) -> Tenant:
    tenant = Tenant(id=name, agents={1: dict(DEMO_AGENT)})
    tenant.write(client(backend))
    return tenant


_numbers = itertools.count()


def fresh_consumer() -> str:
    n = next(_numbers)
    return f"+1415{200 + n // 10000:03d}{n % 10000:04d}"


@dataclass
class Outcome:
    status: int
    seconds: float
    body: Any
    retry_after: str | None


class Load:
    """Threads sending requests until stopped: most for new consumers, some for one busy one."""

    def __init__(self, url: str, tenant: Tenant, threads: int = 6) -> None:
        self._url, self._tenant = url, tenant
        self._stop = threading.Event()
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]

    def _run(self, index: int) -> None:
        with requests.Session() as session:
            for _ in range(2000):  # bounded, whatever happens
                if self._stop.is_set():
                    return
                number = SEED_BODY["end_user_number"] if index == 0 else fresh_consumer()
                began = time.monotonic()
                try:
                    answer = session.post(
                        self._url + SMS_PATH,
                        json={**SEED_BODY, "end_user_number": number},
                        headers=self._tenant.headers,
                        timeout=30,
                    )
                    outcome = Outcome(
                        answer.status_code,
                        time.monotonic() - began,
                        answer.json(),
                        answer.headers.get("Retry-After"),
                    )
                except requests.RequestException as exc:
                    outcome = Outcome(0, time.monotonic() - began, repr(exc), None)
                with self._lock:
                    self.outcomes.append(outcome)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def since(self, count: int) -> list[Outcome]:
        with self._lock:
            return self.outcomes[count:]


def assert_every_answer_bounded_and_well_formed(outcomes: list[Outcome]) -> None:
    assert outcomes
    for outcome in outcomes:
        assert outcome.status in (200, 400, 503), outcome
        assert outcome.seconds < ANSWER_WITHIN_SECONDS, outcome
        if outcome.status == 400:
            assert outcome.body == {"message": ACTIVE}
        if outcome.status == 503:
            assert set(outcome.body) == {"message"}
            assert int(outcome.retry_after or 0) >= 1


def assert_every_stored_session_is_whole(db: firestore.Client, tenant: Tenant) -> int:
    """Each chat has its end user, its message and (while active) its consumer's mark."""
    base = db.document(f"tenants/{tenant.id}")
    chats = {int(doc.id): doc.to_dict() for doc in base.collection("chats").stream()}
    marks = {doc.id: doc.to_dict() for doc in base.collection("active_sessions").stream()}
    for chat_id, chat in chats.items():
        number = chat["end_user_number"]
        end_user = base.collection("end_users").document(number).get()
        assert end_user.exists, chat_id
        assert end_user.get("id") == chat["end_user"]["id"], chat_id
        messages = base.collection("chats").document(str(chat_id)).collection("messages")
        assert list(messages.limit(1).stream()), chat_id
        if chat["status"] in ("selecting", "assigned"):
            assert marks[number]["chat_id"] == chat_id
    for number, mark in marks.items():
        assert mark["chat_id"] in chats, number
    for kind, ids in (
        ("chats", set(chats)),
        ("participants", {p["id"] for c in chats.values() for p in c["participants"]}),
    ):
        counter = base.collection("counters").document(kind).get()
        assert not ids or counter.get("last_id") >= max(ids), kind
    return len(chats)


def test_requests_answer_within_10_s_while_firestore_hangs_and_nothing_is_half_written(
    backend: Backend, url: str
) -> None:
    tenant = seed(backend, "frozen")
    with Load(url, tenant) as load:
        time.sleep(1.5)
        before = len(load.outcomes)
        backend.freeze()
        try:
            time.sleep(12)  # longer than a request's deadline
        finally:
            backend.thaw()
        during = len(load.outcomes)
        time.sleep(5)

    outcomes = load.outcomes
    assert_every_answer_bounded_and_well_formed(outcomes)
    assert any(o.status == 503 for o in outcomes[before:during]), "the outage was not noticed"
    assert any(o.status == 200 for o in load.since(during)), "no recovery after the outage"
    db = client(backend)
    assert_every_stored_session_is_whole(db, tenant)
    accepted = {o.body["id"] for o in outcomes if o.status == 200}
    stored = {int(doc.id) for doc in db.collection(f"tenants/{tenant.id}/chats").stream()}
    assert accepted <= stored, "a session was answered 200 but not stored"


def test_requests_answer_503_while_the_emulator_is_down_and_succeed_after_it_restarts(
    backend: Backend, url: str
) -> None:
    seed(backend, "restarted")
    backend.kill_emulator()
    began = time.monotonic()
    down = requests.post(
        url + SMS_PATH, json=SEED_BODY, headers=Tenant(id="restarted").headers, timeout=30
    )
    assert down.status_code == 503
    assert time.monotonic() - began < ANSWER_WITHIN_SECONDS
    assert set(down.json()) == {"message"}
    assert int(down.headers["Retry-After"]) >= 1

    backend.start_emulator()  # empty again: the emulator keeps its data in memory
    tenant = seed(backend, "restarted")
    with Load(url, tenant) as load:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(o.status == 200 for o in load.outcomes):
            time.sleep(0.5)
        time.sleep(2)

    assert_every_answer_bounded_and_well_formed(load.outcomes)
    assert any(o.status == 200 for o in load.outcomes), "the function did not recover"
    assert assert_every_stored_session_is_whole(client(backend), tenant) >= 1


def test_a_key_whose_request_answered_503_is_free_for_its_retry(backend: Backend) -> None:
    """Firestore stops answering once the key is claimed: 503, and the retry runs afresh."""
    tenant = seed(backend, "released")
    settings = Settings(project=PROJECT, request_deadline_seconds=3, rpc_timeout_seconds=2)

    class OutageAfterClaim(FirestoreStore):
        frozen = False

        def look_up(self, *args: Any, **kwargs: Any) -> Any:
            if not self.frozen:
                OutageAfterClaim.frozen = True
                backend.freeze()
            return super().look_up(*args, **kwargs)

    api = Api(bootstrap.build(settings, store=OutageAfterClaim(client(backend), settings)))
    app = flask.Flask(__name__)
    headers = {**tenant.headers, "Idempotency-Key": "order-42"}

    def post() -> tuple[int, Any]:
        with app.test_request_context(SMS_PATH, method="POST", json=SEED_BODY, headers=headers):
            answer = api.handle(flask.request)
            return answer.status_code, answer.get_json()

    try:
        began = time.monotonic()
        first = post()
        assert time.monotonic() - began < ANSWER_WITHIN_SECONDS
    finally:
        backend.thaw()
    time.sleep(1.5)  # as Retry-After: 1 asks
    retry = post()

    assert first[0] == 503
    assert retry[0] == 200, retry
    assert retry[1]["end_user"]["id"] >= 1
