"""Firestore: the only package that talks to it. Documents in, domain objects out.

Layout (tenants/{t} and the first four subcollections are the operators' contract, SPEC
section 7; the rest is internal)::

    tenants/{t}                                   Tenant
    tenants/{t}/outbound_numbers/{E.164}          numbers that may send
    tenants/{t}/agents/{id}                       Agent
    tenants/{t}/api_credentials/{id}              token_sha256, enabled
    tenants/{t}/active_sessions/{E.164}           the consumer's mark (ActiveSession)
    tenants/{t}/end_users/{E.164}                 EndUser
    tenants/{t}/chats/{id}                        Chat
    tenants/{t}/chats/{id}/messages/{id}          Message, with its status history
    tenants/{t}/opt_outs/{E.164}                  OptOut: this consumer gets no more SMS
    tenants/{t}/counters/{kind}                   last_id: the highest id reserved so far
    tenants/{t}/idempotency_keys/{sha256 of key}  StoredKey (expires_at: TTL field)
    carrier_ids/{carrier's message id}            tenant, chat_id, message_id of that message
    numbers/{E.164}                               tenant: which tenant owns the number
    request_counts/{tenant}@{second}              count: requests of that second (TTL)

Concurrent requests never read-then-write a shared document inside a transaction: the
consumer's mark and a new end user are read without locks, then written with preconditions
(create = must not exist; update = must still be at the version read). A request that lost
the race gets ``LostRace`` and decides again; it never waits on a lock.

One part per aggregate, each on the same ``Database`` (database.py: the client, its calls
bounded, documents by name): ``tenants`` (sign-ins, request counts, number owners),
``sessions`` (a request's reads and commit, chats, ids), ``messages`` (statuses after the
commit, carrier ids, the sweeper's query, transcripts), ``keys`` (Idempotency-Key records);
``documents`` turns documents into domain objects and back. ``FirestoreStore`` holds the parts
and answers for each of them, so that a use case is handed one store.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from google.cloud import firestore

from sms.config import Settings
from sms.domain import (
    ActiveSession,
    Agent,
    Chat,
    Claim,
    ConsumerState,
    Event,
    KeyCompletion,
    Lookup,
    Message,
    MessageRef,
    OptOut,
    Plan,
    StoredKey,
    Tenant,
)
from sms.events.model import Endpoint, HookState, StoredEvent
from sms.repository.database import Database
from sms.repository.events import EventLog
from sms.repository.keys import Keys
from sms.repository.messages import Messages
from sms.repository.sessions import Sessions
from sms.repository.tenants import SignIn, Tenants

__all__ = ["FirestoreStore"]


class FirestoreStore:
    """The service's store, on one Firestore database: the parts, and one door to each."""

    def __init__(self, client: firestore.Client, settings: Settings) -> None:
        self.db = Database(client, settings.rpc_timeout_seconds, settings.database)
        self.tenants = Tenants(self.db)
        self.keys = Keys(self.db)
        self.events = EventLog(self.db)
        self.sessions = Sessions(self.db, self.keys, self.events, settings.id_block_size)
        self.messages = Messages(self.db, self.sessions, self.events)

    @classmethod
    def from_settings(cls, settings: Settings) -> FirestoreStore:
        """The store on a client of its own for the settings' project and database."""
        client = firestore.Client(project=settings.project, database=settings.database)
        return cls(client, settings)

    # -- tenants

    def authenticate(self, tenant_id: str, token_sha256: str) -> Tenant | None:
        return self.tenants.authenticate(tenant_id, token_sha256)

    def sign_in(self, tenant_id: str, token_sha256: str) -> SignIn:
        return self.tenants.sign_in(tenant_id, token_sha256)

    def count_request(self, tenant_id: str) -> int:
        return self.tenants.count_request(tenant_id)

    def reply_route(self, number: str, carrier_id: str) -> tuple[str | None, bool]:
        return self.tenants.reply_route(number, carrier_id)

    # -- sessions

    def look_up(
        self,
        tenant_id: str,
        outbound_number: str,
        consumer: str,
        agent_id: int | None,
        agent_email: str | None,
    ) -> Lookup:
        return self.sessions.look_up(tenant_id, outbound_number, consumer, agent_id, agent_email)

    def agents(
        self, tenant_id: str, agent_id: int | None, agent_email: str | None
    ) -> tuple[Agent | None, Agent | None]:
        return self.sessions.agents(tenant_id, agent_id, agent_email)

    def tenant_and_consumer(
        self, tenant_id: str, consumer: str
    ) -> tuple[Tenant | None, ConsumerState]:
        return self.sessions.tenant_and_consumer(tenant_id, consumer)

    def consumer_state(self, tenant_id: str, consumer: str) -> ConsumerState:
        return self.sessions.consumer_state(tenant_id, consumer)

    def read_chat(self, tenant_id: str, chat_id: int) -> Chat | None:
        return self.sessions.read_chat(tenant_id, chat_id)

    def chat_and_session(
        self, tenant_id: str, chat_id: int
    ) -> tuple[Chat | None, ActiveSession | None]:
        return self.sessions.chat_and_session(tenant_id, chat_id)

    def take_ids(self, tenant_id: str, kind: str, count: int) -> list[int]:
        return self.sessions.take_ids(tenant_id, kind, count)

    def commit(self, plan: Plan) -> Any:
        return self.sessions.commit(plan)

    def end_chat(
        self,
        tenant_id: str,
        ended: Chat,
        session: ActiveSession | None,
        events: Sequence[Event] = (),
        cancelled: Message | None = None,
    ) -> None:
        self.sessions.end_chat(tenant_id, ended, session, events, cancelled)

    def assign_chat(
        self,
        tenant_id: str,
        assigned: Chat,
        session: ActiveSession | None,
        events: Sequence[Event] = (),
    ) -> None:
        self.sessions.assign_chat(tenant_id, assigned, session, events)

    def chats_page(
        self,
        tenant_id: str,
        statuses: tuple[str, ...],
        end_user_number: str | None,
        page_size: int,
        after: tuple[dt.datetime, int] | None,
    ) -> list[Chat]:
        return self.sessions.chats_page(tenant_id, statuses, end_user_number, page_size, after)

    def expired_chats(self, before: dt.datetime, batch_size: int) -> list[tuple[str, Chat]]:
        return self.sessions.expired_chats(before, batch_size)

    def postpone_expiry(self, tenant_id: str, chat: Chat, expires_at: dt.datetime) -> None:
        self.sessions.postpone_expiry(tenant_id, chat, expires_at)

    def due_held(self, now: dt.datetime, batch_size: int) -> list[tuple[str, Message]]:
        return self.messages.due_held(now, batch_size)

    # -- messages

    def read_message(self, tenant_id: str, ref: MessageRef) -> Message | None:
        return self.messages.read_message(tenant_id, ref)

    def save_message(
        self, tenant_id: str, message: Message, events: Sequence[Event] = ()
    ) -> Message:
        return self.messages.save_message(tenant_id, message, events)

    def fail_message(
        self,
        tenant_id: str,
        message: Message,
        ended: Chat | None,
        mark: ActiveSession | None,
        opt_out: OptOut | None,
        *,
        events: Sequence[Event] = (),
    ) -> None:
        self.messages.fail_message(tenant_id, message, ended, mark, opt_out, events=events)

    def carrier_id_owner(self, carrier_id: str) -> tuple[str, MessageRef] | None:
        return self.messages.carrier_id_owner(carrier_id)

    def message_by_carrier_id(self, carrier_id: str) -> tuple[str, Message] | None:
        return self.messages.message_by_carrier_id(carrier_id)

    def unsettled_messages(
        self, claimed_before: dt.datetime, batch_size: int
    ) -> list[tuple[str, Message]]:
        return self.messages.unsettled_messages(claimed_before, batch_size)

    def messages_page(
        self,
        tenant_id: str,
        chat_id: int,
        page_size: int,
        after: tuple[dt.datetime, str] | None,
    ) -> list[Message]:
        return self.messages.messages_page(tenant_id, chat_id, page_size, after)

    # -- Idempotency-Key records

    def read_key(self, tenant_id: str, key_id: str) -> StoredKey | None:
        return self.keys.read_key(tenant_id, key_id)

    def claim_key(self, claim: Claim, record: StoredKey, replaces: StoredKey | None) -> Claim:
        return self.keys.claim_key(claim, record, replaces)

    def finish_key(self, completion: KeyCompletion) -> None:
        self.keys.finish_key(completion)

    def release_key(self, claim: Claim) -> None:
        self.keys.release_key(claim)

    # -- events

    def events_page(
        self,
        tenant_id: str,
        since: dt.datetime | None,
        kind: str | None,
        page_size: int,
        after: tuple[dt.datetime, str] | None,
    ) -> list[StoredEvent]:
        return self.events.page(tenant_id, since, kind, page_size, after)

    def read_events(self, tenant_id: str, event_ids: list[str]) -> list[StoredEvent]:
        return self.events.read(tenant_id, event_ids)

    def webhook_endpoints(self, tenant_id: str) -> list[Endpoint]:
        return self.events.endpoints(tenant_id)

    def claim_deliveries(
        self, tenant_id: str, claims: list[tuple[StoredEvent, dict[str, dt.datetime]]]
    ) -> None:
        self.events.claim(tenant_id, claims)

    def record_deliveries(
        self, tenant_id: str, outcomes: list[tuple[str, str, HookState]], disable: list[str]
    ) -> None:
        self.events.record(tenant_id, outcomes, disable)

    def undispatched_events(self, before: dt.datetime, batch_size: int) -> list[tuple[str, str]]:
        return self.events.undispatched(before, batch_size)
