"""events: what the tenant's systems were told (SPEC 10.7), shown with each endpoint's
deliveries, and delivered again on an operator's word.

A replay sets the chosen endpoints' deliveries of the chosen events back to be attempted
(the attempts so far stay recorded) and announces the events to the dispatcher through the
function's transport, in batches of at most 500 ids, as the function announces them. With
no transport (the Firestore emulator with no Pub/Sub emulator) the command delivers them
itself, as the dispatcher would. The events keep their ids: a receiver sees the same
webhook-id again.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from typing import Any

from sms import deadline, errors, render
from sms.admin import service, webhooks
from sms.admin.checks import Invalid, subdomain
from sms.admin.commands import Actions, command, group, iso
from sms.admin.store import COMMAND_SECONDS, ConfigStore, Missing, Unfit
from sms.clock import utc_now
from sms.config import Settings
from sms.events import model
from sms.events.dispatch import Round
from sms.events.feed import parse_time
from sms.events.model import Endpoint, HookState, StoredEvent
from sms.repository.events import EventLog

# The most events one announcement names (sms.jobs.MAX_EVENTS: what sms_events accepts).
BATCH = 500


def _time(option: str, value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        return parse_time(value, option)
    except errors.BadRequest as exc:
        raise Invalid(
            f"{option} {value!r} is not a time as the API writes them, "
            "e.g. 2021-10-04T17:20:51.000Z (UTC)"
        ) from exc


def _event_id(value: str) -> str:
    if not model.EVENT_ID.fullmatch(value):
        raise Invalid(f"{value!r} is not an event id (evt_ and 32 hexadecimal digits)")
    return value


def _log(store: ConfigStore) -> EventLog:
    """The function's own record of events, on the command's client."""
    from sms.repository import FirestoreStore  # noqa: PLC0415 Firestore's client, when used

    return FirestoreStore(store.client, Settings(project=store.client.project)).events


# ---- events show ----------------------------------------------------------------------------


def _delivery(
    event: StoredEvent,
    endpoint_id: str,
    endpoint: Endpoint | None,
    attempts: list[HookState],
) -> dict[str, Any]:
    """Where the event's delivery to one endpoint stands, and each attempt's outcome."""
    record = event.deliveries.get(endpoint_id)
    shown: dict[str, Any] = {"endpoint": endpoint_id, "url": endpoint.url if endpoint else None}
    if endpoint is None:
        shown["removed"] = True
    if record is not None and (record.attempts > 0 or record.state != model.FAILING):
        shown["state"] = record.state
    elif endpoint is not None and endpoint.takes(event.type):  # not tried yet
        shown["state"] = "pending"
    else:
        shown["state"] = "not_taken"
        if endpoint is not None and not endpoint.enabled:
            shown["why"] = "the endpoint is disabled"
        elif endpoint is not None:
            shown["why"] = f"the endpoint does not take {event.type} events"
    if record is not None:
        shown.update(
            attempts=record.attempts,
            last_attempt_at=iso(record.last_attempt_at),
            last_status=record.last_status,
            last_error=record.last_error,
            claimed_until=iso(record.claimed_until),
            replayed_at=iso(record.replayed_at),
        )
    shown["attempt_log"] = [
        {
            "attempt": attempt.attempts,
            "at": iso(attempt.last_attempt_at),
            "outcome": attempt.state,
            "status": attempt.last_status,
            "error": attempt.last_error,
        }
        for attempt in attempts
    ]
    return shown


def events_show(store: ConfigStore, args: argparse.Namespace) -> Any:
    tenant_id = subdomain(args.subdomain)
    event_id = _event_id(args.event_id)
    log = _log(store)
    store.require_tenant(tenant_id)
    budget = deadline.current(COMMAND_SECONDS)
    with service.answered(store, COMMAND_SECONDS):
        found = budget.retry(lambda: log.read(tenant_id, [event_id]))
        if not found:
            raise Missing(f"event {event_id} does not exist (events are kept 30 days)")
        [event] = found
        endpoints = {e.id: e for e in budget.retry(lambda: log.endpoints(tenant_id))}
        attempts = budget.retry(lambda: log.attempts(tenant_id, event_id))
    by_endpoint: dict[str, list[HookState]] = {}
    for endpoint_id, attempt in attempts:
        by_endpoint.setdefault(endpoint_id, []).append(attempt)
    named = sorted({*endpoints, *event.deliveries, *by_endpoint})
    return {
        "tenant": tenant_id,
        "event": json.loads(event.body),
        "dispatched": event.dispatched,
        "deliveries": [
            _delivery(event, e, endpoints.get(e), by_endpoint.get(e, [])) for e in named
        ],
    }


# ---- events replay --------------------------------------------------------------------------


def _targets(
    tenant_id: str, endpoints: list[Endpoint], only: str | None, kind: str | None
) -> list[Endpoint]:
    """The endpoints a replay delivers to: the one named, or every enabled one."""
    if only is None:
        enabled = [endpoint for endpoint in endpoints if endpoint.enabled]
        if not enabled:
            raise Unfit(f"tenant {tenant_id!r} has no enabled webhook endpoint to deliver to")
        return enabled
    named = [endpoint for endpoint in endpoints if endpoint.id == only]
    if not named:
        raise Missing(f"webhook endpoint {only} does not exist")
    [endpoint] = named
    if not endpoint.enabled:
        raise Unfit(f"webhook endpoint {only} is disabled: enable it first (webhooks enable)")
    if kind is not None and not endpoint.takes(kind):
        raise Unfit(f"webhook endpoint {only} does not take {kind} events")
    return [endpoint]


class _Replay:
    """One replay: the events chosen, batch by batch, set back and announced."""

    def __init__(
        self,
        log: EventLog,
        tenant_id: str,
        query: tuple[dt.datetime | None, dt.datetime | None, str | None],
        targets: list[Endpoint],
    ) -> None:
        self._log = log
        self._tenant_id = tenant_id
        self._query = query
        self._targets = targets
        self._at = utc_now()

    def next_batch(
        self, after: tuple[dt.datetime, str] | None
    ) -> tuple[list[StoredEvent], list[tuple[StoredEvent, list[str]]]]:
        """The next batch of events, and those set back with the endpoints each goes to."""
        since, until, kind = self._query
        budget = deadline.current(COMMAND_SECONDS)
        while True:
            found = budget.retry(
                lambda: self._log.between(self._tenant_id, since, until, kind, BATCH, after=after)
            )
            chosen = [
                (event, [t.id for t in self._targets if t.takes(event.type)]) for event in found
            ]
            chosen = [(event, endpoints) for event, endpoints in chosen if endpoints]
            if not chosen:
                return found, []
            resets = [(event.id, endpoints) for event, endpoints in chosen]
            try:
                budget.retry(lambda: self._log.replay(self._tenant_id, resets, self._at))  # noqa: B023
            except errors.LostRace:
                budget.pause()  # an event of the batch expired meanwhile: read it again
                continue
            return found, chosen


def events_replay(store: ConfigStore, args: argparse.Namespace) -> Any:
    tenant_id = subdomain(args.subdomain)
    since, until = _time("--since", args.since), _time("--until", args.until)
    if since is not None and until is not None and since > until:
        raise Invalid(f"--since {args.since} is after --until {args.until}")
    kind = webhooks.event_type(args.type) if args.type is not None else None
    only = webhooks.endpoint_id(args.endpoint) if args.endpoint is not None else None
    built = service.app(store, args.settings)
    log: EventLog = built.store.events
    transport = service.transport(built)
    with service.answered(store, COMMAND_SECONDS):
        with deadline.bounded(COMMAND_SECONDS) as budget:
            store.require_tenant(tenant_id)
            endpoints = budget.retry(lambda: log.endpoints(tenant_id))
        targets = _targets(tenant_id, endpoints, only, kind)
        replay = _Replay(log, tenant_id, (since, until, kind), targets)
        replayed: list[dict[str, Any]] = []
        announced = True
        rounds: list[Round] = []
        after = None
        while True:
            with deadline.bounded(COMMAND_SECONDS):
                found, chosen = replay.next_batch(after)
            ids = [event.id for event, _ in chosen]
            if ids and transport is not None:
                announced = service.announce(transport, {tenant_id: ids}) and announced
            elif ids:
                with service.quiet():  # its own deadline: attempts take up to 15 s each
                    rounds.append(built.dispatcher.deliver(tenant_id, ids))
            replayed += [
                {
                    "id": event.id,
                    "type": event.type,
                    "timestamp": render.timestamp(event.at),
                    "endpoints": endpoint_ids,
                }
                for event, endpoint_ids in chosen
            ]
            if len(found) < BATCH:
                break
            after = (found[-1].at, found[-1].id)
    report: dict[str, Any] = {
        "tenant": tenant_id,
        "endpoints": [endpoint.id for endpoint in targets],
        "replayed": replayed,
    }
    if transport is not None:
        report["announced_through"] = transport.name
        if replayed and not announced:
            report["unfinished"] = (
                f"the events are set to be delivered again, but {transport.name} did not take "
                f"them within {service.ANNOUNCE_SECONDS:g} s: the sweeper's next run announces "
                "them"
            )
        return report
    outcome = {
        "delivered": sum(r.delivered for r in rounds),
        "failed": sum(r.failed for r in rounds),
        "gone": sum(r.gone for r in rounds),
        "given_up": sum(r.given_up for r in rounds),
        "busy": sum(r.busy for r in rounds),
    }
    report["delivered_in_process"] = outcome
    if outcome["failed"] or outcome["busy"]:
        report["unfinished"] = (
            f"{outcome['failed']} attempts failed and {outcome['busy']} were under way elsewhere "
            "(no transport to retry them: see events show, or replay again)"
        )
    return report


def add_commands(groups: Actions) -> None:
    actions = group(groups, "events", "Events: what the tenant's systems were told, and when.")
    command(
        actions, "show", events_show,
        "Show an event as delivered, and each endpoint's deliveries and attempts.",
        "subdomain", "event_id",
    )  # fmt: skip
    sub = command(
        actions, "replay", events_replay,
        "Deliver events again, with their original ids, to the endpoints that take them.",
        "subdomain",
    )  # fmt: skip
    time_help = "a time as the API writes them, e.g. 2021-10-04T17:20:51.000Z"
    sub.add_argument("--since", metavar="TIME", help=f"events at or after it ({time_help})")
    sub.add_argument("--until", metavar="TIME", help="events at or before it")
    sub.add_argument("--type", metavar="TYPE", help="only events of this type")
    sub.add_argument("--endpoint", metavar="ID", help="only to this endpoint (see webhooks list)")
    sub.set_defaults(before=service.read_settings, own_deadlines=True)
