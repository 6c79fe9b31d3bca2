"""The benchmark's side of events (SPEC 10.7): a webhook receiver on loopback, the Pub/Sub
topics and push subscriptions, and announcements published as the endpoint publishes them.

bench.py serves sms_api (publishing and not) and sms_events itself; this module holds what
it needs around them:

  Receiver   an HTTP server on 127.0.0.1 that answers every POST 204 at once and records when
             each one arrived (time.perf_counter(), the clock the load generator reads when
             an answer comes): webhook deliveries by their webhook-id, and Pub/Sub pushes (the
             path /push) by their message id;
  add_endpoint  the tenant's webhook endpoint (every event type), at the receiver;
  subscribe  a topic pushed to a URL with the tests' retry policy (1 to 2 s);
  Announcer  publishes announcements ({"tenant", "events": [ids]}, one message each, as
             sms.events.pubsub does): as fast as the client library takes them, or one at
             a time as the endpoint does;
  push_body  a push request as the emulator makes one, to push to sms_events directly;
  stored     the events stored for some chats and never announced, by chat.
"""

from __future__ import annotations

import base64
import datetime as dt
import http.server
import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from google.cloud import firestore, pubsub_v1
from google.cloud.firestore_v1.base_query import FieldFilter

from sms.devtools.pubsub import push_events
from sms.events import signing

# As the tests' push subscriptions (tests/eventing.py); deployed: 10 s to 10 minutes.
RETRY_MIN_SECONDS, RETRY_MAX_SECONDS = 1.0, 2.0
PUSH_PATH = "/push"


@dataclass
class Arrival:
    at: float  # time.perf_counter() once its body was read
    key: str  # a delivery's webhook-id; a push's message id
    body: bytes


@dataclass
class Receiver:
    """Deliveries and pushes as they arrive, each answered 204 at once."""

    url: str = ""
    deliveries: list[Arrival] = field(default_factory=list)
    pushes: list[Arrival] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)
    _server: http.server.ThreadingHTTPServer | None = None

    @classmethod
    def start(cls) -> Receiver:
        receiver = cls()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                at = time.perf_counter()
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()
                if self.path == PUSH_PATH:
                    key, into = push_id(body), receiver.pushes
                else:
                    key, into = self.headers.get("webhook-id", ""), receiver.deliveries
                with receiver.arrived:
                    into.append(Arrival(at, key, body))
                    receiver.arrived.notify_all()

            def log_message(self, *args: Any) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        receiver._server = server
        receiver.url = f"http://127.0.0.1:{server.server_address[1]}"
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return receiver

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def marks(self) -> tuple[int, int]:
        """Where the deliveries and pushes received so far end."""
        with self.arrived:
            return len(self.deliveries), len(self.pushes)

    def wait_distinct(
        self, pushes: bool, since: int, wanted: int | set[str], seconds: float
    ) -> dict[str, float]:
        """The first arrival of each distinct key after index ``since``, once there are
        ``wanted`` of them (a number, or those keys) or ``seconds`` have passed."""
        ends = time.monotonic() + seconds
        found: dict[str, float] = {}
        with self.arrived:
            while True:
                for arrival in (self.pushes if pushes else self.deliveries)[since:]:
                    found.setdefault(arrival.key, arrival.at)
                since = len(self.pushes if pushes else self.deliveries)
                if isinstance(wanted, int):
                    missing = wanted - len(found)
                else:
                    missing = len(wanted - found.keys())
                left = ends - time.monotonic()
                if missing <= 0 or left <= 0:
                    return found
                self.arrived.wait(min(left, 0.5))

    def first_by_chat(self, since: int) -> dict[int, float]:
        """When the first delivery of an event of each chat arrived, after index ``since``."""
        with self.arrived:
            arrivals = self.deliveries[since:]
        first: dict[int, float] = {}
        for arrival in arrivals:
            chat_id = chat_of(json.loads(arrival.body))
            if chat_id is not None and arrival.at < first.get(chat_id, float("inf")):
                first[chat_id] = arrival.at
        return first


def push_id(body: bytes) -> str:
    try:
        return str(json.loads(body)["message"]["messageId"])
    except (ValueError, KeyError, TypeError):
        return ""


def chat_of(event: dict[str, Any]) -> int | None:
    """The chat an event of a session tells of: the chat's id, or the message's chat_id."""
    data = event.get("data") or {}
    value = data.get("chat_id") if str(event.get("type")).startswith("message.") else data.get("id")
    return value if isinstance(value, int) else None


def add_endpoint(db: firestore.Client, tenant: str, url: str) -> str:
    """A webhook endpoint of the tenant taking every event type (SPEC section 7); its id."""
    endpoint_id = "bench"
    db.document(f"tenants/{tenant}/webhook_endpoints/{endpoint_id}").set(
        {
            "url": url,
            "events": [],
            "secrets": [{"secret": signing.new_secret(), "expires_at": None}],
            "enabled": True,
        }
    )
    return endpoint_id


def subscribe(project: str, topic: str, push_url: str) -> None:
    """The topic, pushed to ``push_url`` (PUBSUB_EMULATOR_HOST must be set)."""
    push_events(
        project,
        topic,
        push_url,
        retry_min_seconds=RETRY_MIN_SECONDS,
        retry_max_seconds=RETRY_MAX_SECONDS,
    )


class Announcer:
    """Publishes announcements ({"tenant", "events"}, with the tenant as an attribute, as
    sms.events.pubsub does): many at once with the client library's default batching, or
    one at a time as the endpoint does (a batch of one, sent at once)."""

    def __init__(self, project: str) -> None:
        self._project = project
        self._batching = pubsub_v1.PublisherClient()
        self._single = pubsub_v1.PublisherClient(
            batch_settings=pubsub_v1.types.BatchSettings(max_messages=1)
        )

    def create_topic(self, topic: str) -> None:
        self._batching.create_topic(
            request={"name": self._batching.topic_path(self._project, topic)}
        )

    def publish(self, topic: str, announcements: Iterable[dict[str, Any]]) -> None:
        """Publish every announcement, and wait until the emulator has them all."""
        path = self._batching.topic_path(self._project, topic)
        futures = [
            self._batching.publish(path, json.dumps(data).encode(), tenant=data["tenant"])
            for data in announcements
        ]
        for future in futures:
            future.result(timeout=60)

    def publish_one(self, topic: str, refs: dict[str, list[str]]) -> str:
        """Publish one announcement (tenant: event ids) and wait for it; its message id."""
        [(tenant, ids)] = refs.items()
        path = self._single.topic_path(self._project, topic)
        data = json.dumps({"tenant": tenant, "events": ids}).encode()
        return str(self._single.publish(path, data, tenant=tenant).result(timeout=60))


def push_body(project: str, topic: str, message_id: str, data: dict[str, Any]) -> bytes:
    """A push request as the emulator makes one for a message of ``topic``'s subscription."""
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
    published = now.replace("+00:00", "Z")
    message = {
        "publishTime": published,
        "data": base64.b64encode(json.dumps(data).encode()).decode(),
        "publish_time": published,
        "messageId": message_id,
        "attributes": {"tenant": str(data["tenant"])},
        "message_id": message_id,
    }
    subscription = f"projects/{project}/subscriptions/{topic}-push"
    return json.dumps({"message": message, "subscription": subscription}).encode()


def stored(
    db: firestore.Client, tenant: str, since: dt.datetime, chat_ids: set[int]
) -> dict[int, list[str]]:
    """The undispatched events of those chats, recorded since ``since``, by chat, oldest
    first."""
    query = (
        db.collection("tenants")
        .document(tenant)
        .collection("events")
        .where(filter=FieldFilter("dispatched", "==", False))
        .where(filter=FieldFilter("timestamp", ">=", since))
    )
    found: dict[int, list[tuple[Any, str]]] = {}
    for snap in query.stream():
        data = snap.to_dict() or {}
        chat_id = chat_of({"type": data.get("type"), "data": json.loads(data["body"])["data"]})
        if chat_id in chat_ids:
            found.setdefault(chat_id, []).append((data["timestamp"], snap.id))
    return {chat_id: [i for _, i in sorted(events)] for chat_id, events in found.items()}
