"""Delivering events to the tenant's webhook endpoints (SPEC 10.7): the sms_events use case.

The transport pushes a reference (a tenant and event ids); the dispatcher reads the events,
with each endpoint's delivery so far, and the tenant's endpoints. For each endpoint that
takes an event and has not had it yet, it claims the attempt (a write with a precondition on
the event, so that two dispatchers never post one event to one endpoint at once), signs the
event with every unexpired secret of the endpoint, posts it through the egress, and records
the outcome per endpoint and attempt. Endpoints are independent: they are attempted in
parallel, one that fails is retried alone, and one that succeeded never gets it again.

What is still failing makes the answer a failure, so the transport delivers the reference
again later: its retry policy is the schedule, and nothing here schedules retries. After
three days an endpoint's delivery is given up (the event stays listed and replayable); a
410 disables the endpoint.

No HTTP server and no Firestore here: the use case is handed a store, an egress and a clock.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from sms import deadline, errors, logs
from sms.clock import Clock
from sms.events import model, signing
from sms.events.egress import TIMEOUT_SECONDS, Attempt, Egress
from sms.events.model import Endpoint, HookState, StoredEvent

# An attempt takes at most ATTEMPT_SECONDS (the egress's bound), and recording its outcome
# at most RECORD_SECONDS more. A round starts no attempt it could not finish and record
# before its deadline: what is left waits for the next round.
ATTEMPT_SECONDS = TIMEOUT_SECONDS
RECORD_SECONDS = 5.0
# An attempt claimed by a dispatcher is its own until this long after the claim, so that a
# dispatcher that died leaves it to the next one soon after. That is for an endpoint's first
# attempt of a round; each one queued behind it for the same endpoint is claimed
# ATTEMPT_SECONDS longer than the one before (never past the round's deadline).
CLAIM_SECONDS = ATTEMPT_SECONDS + RECORD_SECONDS
PARALLEL_ATTEMPTS = 8


class DispatchStore(Protocol):
    def read_events(self, tenant_id: str, event_ids: list[str]) -> list[StoredEvent]: ...

    def webhook_endpoints(self, tenant_id: str) -> list[Endpoint]: ...

    def claim_deliveries(
        self, tenant_id: str, claims: list[tuple[StoredEvent, dict[str, dt.datetime]]]
    ) -> None: ...

    def record_deliveries(
        self, tenant_id: str, outcomes: list[tuple[str, str, HookState]], disable: list[str]
    ) -> None: ...


@dataclass(frozen=True)
class Round:
    """What one delivery round did: attempts by outcome, and whether anything is left."""

    delivered: int = 0
    failed: int = 0
    gone: int = 0
    given_up: int = 0
    busy: int = 0  # attempts another dispatcher holds right now

    @property
    def done(self) -> bool:
        """Nothing is left to retry (so the transport may forget the reference)."""
        return self.failed == 0 and self.busy == 0


class Dispatcher:
    def __init__(
        self,
        store: DispatchStore,
        egress: Egress,
        clock: Clock,
        deadline_seconds: float,
    ) -> None:
        self._store = store
        self._egress = egress
        self._clock = clock
        self._deadline_seconds = deadline_seconds
        self._pool = ThreadPoolExecutor(PARALLEL_ATTEMPTS, thread_name_prefix="webhook")

    def deliver(self, tenant_id: str, event_ids: Sequence[str]) -> Round:
        """One delivery round of the events named, to every endpoint that takes them."""
        budget = deadline.current(self._deadline_seconds)
        while True:
            stored = budget.retry(lambda: self._store.read_events(tenant_id, list(event_ids)))
            endpoints = budget.retry(lambda: self._store.webhook_endpoints(tenant_id))
            now = self._clock()
            plan = _plan(stored, endpoints, now, self._deadline_seconds)
            if not plan.claims:
                break
            try:
                budget.retry(lambda: self._store.claim_deliveries(tenant_id, plan.claims))  # noqa: B023
                break
            except errors.LostRace:
                budget.pause()  # another dispatcher took some of them first: read again
        # Each endpoint gets its events in order, one after the other; endpoints in parallel.
        queues: dict[str, list[StoredEvent]] = {}
        for event, endpoint_ids in plan.attempts:
            for endpoint_id in endpoint_ids:
                queues.setdefault(endpoint_id, []).append(event)
        by_id = {endpoint.id: endpoint for endpoint in endpoints}
        rounds = self._pool.map(
            lambda job: self._in_order(by_id[job[0]], job[1], budget), queues.items()
        )
        results = [result for endpoint_results in rounds for result in endpoint_results]
        outcomes = plan.given_up + [(e.id, endpoint_id, s) for e, endpoint_id, s in results]
        disable = sorted({endpoint_id for _, endpoint_id, s in results if s.gone})
        if outcomes or disable:
            budget.retry(lambda: self._store.record_deliveries(tenant_id, outcomes, disable))
        states = [state for _, _, state in results]
        summary = Round(
            delivered=sum(state.state == model.DELIVERED for state in states),
            failed=sum(state.state == model.FAILING for state in states),
            gone=len(disable),
            given_up=len(plan.given_up),
            busy=plan.busy,
        )
        logs.note(tenant=tenant_id, **{k: v for k, v in dataclasses.asdict(summary).items() if v})
        return summary

    def _in_order(
        self, endpoint: Endpoint, queued: list[StoredEvent], budget: deadline.Deadline
    ) -> list[tuple[StoredEvent, str, HookState]]:
        """Post an endpoint its events in order, until one fails or the round has no time
        left for another attempt: the rest wait for the next round (an endpoint hears of a
        session's changes in the order they were made)."""
        results = []
        failed = False
        for event in queued:
            before = event.deliveries.get(endpoint.id, HookState())
            if failed or budget.remaining() < ATTEMPT_SECONDS + RECORD_SECONDS:
                results.append(
                    (event, endpoint.id, dataclasses.replace(before, claimed_until=None))
                )
                continue
            state = self._attempt(event, endpoint, before)
            results.append((event, endpoint.id, state))
            failed = state.state != model.DELIVERED
        return results

    def _attempt(self, event: StoredEvent, endpoint: Endpoint, before: HookState) -> HookState:
        """Post one event to one endpoint, signed with each of its unexpired secrets."""
        at = self._clock()
        secrets = [s.secret for s in endpoint.secrets if s.signs_at(at)]
        body = event.body.encode("utf-8")
        try:
            headers = signing.headers(secrets, event.id, int(time.time()), body)
            result = self._egress.post(endpoint.url, body, headers)
        except ValueError as exc:  # no usable secret: nothing can be signed
            result = Attempt(ok=False, status=None, error=f"not sent: {exc}", gone=False, seconds=0)
        state = model.DELIVERED if result.ok else model.GONE if result.gone else model.FAILING
        logs.event(
            "INFO" if result.ok else "WARNING",
            f"webhook {endpoint.id} {state}: event {event.id} ({event.type}), attempt "
            f"{before.attempts + 1}" + (f": {result.error}" if result.error else ""),
            tenant=event.tenant,
            event_id=event.id,
            endpoint_id=endpoint.id,
            outcome=f"webhook_{state}",
            status=result.status,
        )
        return HookState(
            state=state,
            attempts=before.attempts + 1,
            last_attempt_at=at,
            last_status=result.status,
            last_error=result.error,
            replayed_at=before.replayed_at,
        )


@dataclass
class _Plan:
    claims: list[tuple[StoredEvent, dict[str, dt.datetime]]]
    attempts: list[tuple[StoredEvent, list[str]]]
    given_up: list[tuple[str, str, HookState]]
    busy: int


def _plan(
    stored: list[StoredEvent], endpoints: list[Endpoint], now: dt.datetime, deadline_seconds: float
) -> _Plan:
    """Which endpoints to attempt for each event now, and which to give up or leave be; each
    attempt claimed for as long as it can take behind those queued before it."""
    queued: dict[str, int] = {}  # endpoint id: attempts planned so far
    plan = _Plan([], [], [], 0)
    for event in stored:
        chosen: dict[str, dt.datetime] = {}
        for endpoint in endpoints:
            if not endpoint.takes(event.type):
                continue
            state = event.deliveries.get(endpoint.id)
            if state is not None and state.state in model.DONE:
                continue
            if state is not None and state.claimed_until is not None and state.claimed_until > now:
                plan.busy += 1
                continue
            retried_from = (state.replayed_at if state is not None else None) or event.at
            if now - retried_from > model.RETRIED:
                gave_up = dataclasses.replace(state or HookState(), state=model.GIVEN_UP)
                plan.given_up.append((event.id, endpoint.id, gave_up))
                continue
            ahead = queued.get(endpoint.id, 0)
            queued[endpoint.id] = ahead + 1
            lasts = min(CLAIM_SECONDS + ahead * ATTEMPT_SECONDS, deadline_seconds + RECORD_SECONDS)
            chosen[endpoint.id] = now + dt.timedelta(seconds=lasts)
        if chosen or not event.dispatched:
            plan.claims.append((event, chosen))
        if chosen:
            plan.attempts.append((event, list(chosen)))
    return plan
