"""Events (SPEC 10.7): written by the commit of the change they tell of, listed, and their
deliveries to each webhook endpoint recorded.

    tenants/{t}/events/{evt_...}                 type, timestamp, body (the JSON delivered),
                                                 dispatched, deliveries.{endpoint}, expires_at
    tenants/{t}/webhook_endpoints/{id}           the tenant's endpoints (SPEC section 7)
    tenants/{t}/webhook_attempts/{evt}.{ep}.{n}  one attempt's outcome, for the operator

An event's deliveries live on the event itself, one field per endpoint: the dispatcher reads
events and their deliveries in one call, claims its attempts with a precondition on the
event's version (so that two dispatchers never post the same event to the same endpoint at
once), and records the outcomes in one write.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.field_path import FieldPath

from sms.domain import Event
from sms.events import model
from sms.events.model import Endpoint, HookState, Secret, StoredEvent
from sms.repository.database import Database

# How long an operator can read an attempt's outcome.
ATTEMPTS_KEPT = dt.timedelta(days=30)


class EventLog:
    def __init__(self, db: Database) -> None:
        self._db = db

    def _ref(self, tenant_id: str, event_id: str) -> firestore.DocumentReference:
        return self._db.of_tenant(tenant_id, "events", event_id)

    def _events(self, tenant_id: str) -> Any:
        return self._db.tenant(tenant_id).collection("events")

    def write(self, writes: Any, event: Event) -> None:
        """Into a transaction or batch: the event, as the commit of its change records it."""
        writes.create(self._ref(event.tenant, event.id), event_document(event))

    # -- reading

    def page(
        self,
        tenant_id: str,
        since: dt.datetime | None,
        kind: str | None,
        page_size: int,
        after: tuple[dt.datetime, str] | None,
    ) -> list[StoredEvent]:
        """Up to ``page_size`` of the tenant's events, oldest first, from ``since`` (and of
        type ``kind``), from just after ``after``."""
        events = self._events(tenant_id)
        query = events
        if kind is not None:
            query = query.where(filter=FieldFilter("type", "==", kind))
        if since is not None:
            query = query.where(filter=FieldFilter("timestamp", ">=", since))
        query = query.order_by("timestamp").order_by("__name__")
        if after is not None:
            at, event_id = after
            query = query.start_after({"timestamp": at, "__name__": events.document(event_id)})
        return [_stored(tenant_id, snap) for snap in self._db.stream(query.limit(page_size))]

    def between(
        self,
        tenant_id: str,
        since: dt.datetime | None,
        until: dt.datetime | None,
        kind: str | None,
        at_most: int,
        *,
        after: tuple[dt.datetime, str] | None = None,
    ) -> list[StoredEvent]:
        """The tenant's events from ``since`` up to ``until`` (both included), oldest first,
        from just after ``after`` (the time and id of the last one of the previous batch)."""
        events = self._events(tenant_id)
        query = events
        if kind is not None:
            query = query.where(filter=FieldFilter("type", "==", kind))
        if since is not None:
            query = query.where(filter=FieldFilter("timestamp", ">=", since))
        if until is not None:
            query = query.where(filter=FieldFilter("timestamp", "<=", until))
        query = query.order_by("timestamp").order_by("__name__")
        if after is not None:
            at, event_id = after
            query = query.start_after({"timestamp": at, "__name__": events.document(event_id)})
        return [_stored(tenant_id, snap) for snap in self._db.stream(query.limit(at_most))]

    def read(self, tenant_id: str, event_ids: list[str]) -> list[StoredEvent]:
        """The events named (those that exist), in the order named."""
        refs = [self._ref(tenant_id, event_id) for event_id in event_ids]
        snaps = self._db.get_all(refs)
        return [_stored(tenant_id, snaps[ref.path]) for ref in refs if snaps[ref.path].exists]

    def attempts(self, tenant_id: str, event_id: str) -> list[tuple[str, HookState]]:
        """The recorded attempts of one event, by endpoint then attempt: (endpoint id, the
        delivery as that attempt left it)."""
        query = (
            self._db.tenant(tenant_id)
            .collection("webhook_attempts")
            .where(filter=FieldFilter("event_id", "==", event_id))
        )
        found = []
        for snap in self._db.stream(query):
            data = snap.to_dict() or {}
            state = HookState(
                state=data.get("outcome") or model.FAILING,
                attempts=int(data.get("attempt") or 0),
                last_attempt_at=data.get("at"),
                last_status=data.get("status"),
                last_error=data.get("error"),
            )
            found.append((str(data.get("endpoint_id")), state))
        return sorted(found, key=lambda found: (found[0], found[1].attempts))

    def endpoints(self, tenant_id: str) -> list[Endpoint]:
        collection = self._db.tenant(tenant_id).collection("webhook_endpoints")
        return [_endpoint(snap) for snap in self._db.stream(collection)]

    def undispatched(self, before: dt.datetime, batch_size: int) -> list[tuple[str, str]]:
        """Events of any tenant that no dispatcher has taken yet, made before ``before``:
        (tenant, event id), oldest first."""
        query = (
            self._db.client.collection_group("events")
            .where(filter=FieldFilter("dispatched", "==", False))
            .where(filter=FieldFilter("timestamp", "<=", before))
            .order_by("timestamp")
            .limit(batch_size)
        )
        # tenants/{tenant}/events/{event}
        return [(snap.reference.parent.parent.id, snap.id) for snap in self._db.stream(query)]

    # -- the dispatcher's writes

    def claim(
        self, tenant_id: str, claims: list[tuple[StoredEvent, dict[str, dt.datetime]]]
    ) -> None:
        """Mark the events dispatched and claim attempts (endpoint: until when) on each, if
        each event is still at the version read; LostRace otherwise."""

        def write(batch: firestore.WriteBatch) -> None:
            for stored, endpoints in claims:
                fields: dict[Any, Any] = {"dispatched": True}
                for endpoint_id, until in endpoints.items():
                    fields[self._field(endpoint_id, "claimed_until")] = until
                batch.update(
                    self._ref(tenant_id, stored.id), fields, option=self._db.at(stored.version)
                )

        self._db.batch(write)

    def record(
        self,
        tenant_id: str,
        outcomes: list[tuple[str, str, HookState]],
        disable: list[str],
    ) -> None:
        """In one write: each (event, endpoint) delivery as it now stands, an attempt record
        for each one attempted, and the endpoints that answered 410 disabled."""

        def write(batch: firestore.WriteBatch) -> None:
            by_event: dict[str, dict[Any, Any]] = {}
            for event_id, endpoint_id, state in outcomes:
                by_event.setdefault(event_id, {})[self._field(endpoint_id)] = _state_doc(state)
                if state.last_attempt_at is not None and state.state != model.GIVEN_UP:
                    attempt = self._db.of_tenant(
                        tenant_id,
                        "webhook_attempts",
                        f"{event_id}.{endpoint_id}.{state.attempts}",
                    )
                    batch.set(attempt, _attempt_doc(event_id, endpoint_id, state))
            for event_id, fields in by_event.items():
                batch.update(self._ref(tenant_id, event_id), fields)
            for endpoint_id in disable:
                endpoint = self._db.of_tenant(tenant_id, "webhook_endpoints", endpoint_id)
                batch.update(endpoint, {"enabled": False})

        self._db.batch(write)

    def replay(self, tenant_id: str, resets: list[tuple[str, list[str]]], at: dt.datetime) -> None:
        """Deliver events again (an operator's replay), in one write: for each (event,
        endpoints), those endpoints' deliveries are to be attempted again, retried for
        another ``model.RETRIED`` from ``at`` (the attempts so far stay counted and
        recorded), and the event is to be announced again (the sweeper announces it if the
        caller's announcement does not get through). LostRace if an event is gone."""

        def write(batch: firestore.WriteBatch) -> None:
            for event_id, endpoint_ids in resets:
                fields: dict[Any, Any] = {"dispatched": False}
                for endpoint_id in endpoint_ids:
                    fields[self._field(endpoint_id, "state")] = model.FAILING
                    fields[self._field(endpoint_id, "claimed_until")] = None
                    fields[self._field(endpoint_id, "replayed_at")] = at
                batch.update(self._ref(tenant_id, event_id), fields)

        self._db.batch(write)

    def _field(self, endpoint_id: str, name: str | None = None) -> str:
        parts = ["deliveries", endpoint_id, *([name] if name else [])]
        path: str = FieldPath(*parts).to_api_repr()
        return path


def event_document(event: Event) -> dict[str, Any]:
    """The document of an event, as the commit of its change creates it."""
    return {
        "type": event.type,
        "timestamp": event.at,
        "body": model.body(event),
        "dispatched": False,
        "deliveries": {},
        "expires_at": event.at + model.KEPT,
    }


def _stored(tenant_id: str, snap: Any) -> StoredEvent:
    data = snap.to_dict() or {}
    deliveries = data.get("deliveries") or {}
    return StoredEvent(
        id=snap.id,
        type=data["type"],
        tenant=tenant_id,
        at=data["timestamp"],
        body=data["body"],
        dispatched=data.get("dispatched") is True,
        deliveries={
            endpoint_id: _state(state)
            for endpoint_id, state in deliveries.items()
            if isinstance(state, dict)
        },
        version=snap.update_time,
    )


def _state(data: dict[str, Any]) -> HookState:
    return HookState(
        state=data.get("state") or model.FAILING,
        attempts=int(data.get("attempts") or 0),
        claimed_until=data.get("claimed_until"),
        last_attempt_at=data.get("last_attempt_at"),
        last_status=data.get("last_status"),
        last_error=data.get("last_error"),
        replayed_at=data.get("replayed_at"),
    )


def _state_doc(state: HookState) -> dict[str, Any]:
    return {
        "state": state.state,
        "attempts": state.attempts,
        "claimed_until": None,
        "last_attempt_at": state.last_attempt_at,
        "last_status": state.last_status,
        "last_error": state.last_error,
        "replayed_at": state.replayed_at,
    }


def _attempt_doc(event_id: str, endpoint_id: str, state: HookState) -> dict[str, Any]:
    assert state.last_attempt_at is not None
    return {
        "event_id": event_id,
        "endpoint_id": endpoint_id,
        "attempt": state.attempts,
        "at": state.last_attempt_at,
        "outcome": state.state,
        "status": state.last_status,
        "error": state.last_error,
        "expires_at": state.last_attempt_at + ATTEMPTS_KEPT,
    }


def _endpoint(snap: Any) -> Endpoint:
    """An endpoint as its document says, read leniently: what cannot be used is left out."""
    data = snap.to_dict() or {}
    types = data.get("events")
    secrets = []
    for entry in data.get("secrets") or ():
        if isinstance(entry, dict) and isinstance(entry.get("secret"), str):
            expires = entry.get("expires_at")
            until = expires if isinstance(expires, dt.datetime) else None
            secrets.append(Secret(entry["secret"], until))
    url = data.get("url")
    return Endpoint(
        id=snap.id,
        url=url if isinstance(url, str) else "",
        types=tuple(t for t in types if isinstance(t, str)) if isinstance(types, list) else (),
        secrets=tuple(secrets),
        enabled=data.get("enabled") is not False,
    )
