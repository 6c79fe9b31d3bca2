"""Sessions: what one request reads of a consumer, its atomic commit, chats, ending them, ids."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from sms.domain import (
    ACTIVE_STATUSES,
    MAX_ID,
    ActiveSession,
    Agent,
    Chat,
    ConsumerState,
    Event,
    Lookup,
    Message,
    Plan,
    Tenant,
)
from sms.ids import IdBlocks
from sms.repository import documents
from sms.repository.database import Database
from sms.repository.events import EventLog
from sms.repository.keys import Keys

# Longer strings are not asked for in a query: Database refuses values of about 1500 bytes
# and more there. (No email address is that long; a stored one still matches by the scan.)
_MAX_QUERY_VALUE_BYTES = 1024


class Sessions:
    """Tenants' consumers, their sessions and chats, and ids (a commit may complete a key)."""

    def __init__(self, db: Database, keys: Keys, events: EventLog, id_block_size: int) -> None:
        self._db = db
        self._keys = keys
        self._events = events
        self._ids = IdBlocks(self._reserve_ids, id_block_size)

    # -- reads for one request

    def look_up(
        self,
        tenant_id: str,
        outbound_number: str,
        consumer: str,
        agent_id: int | None,
        agent_email: str | None,
    ) -> Lookup:
        """What validating an outbound request needs, read in one round (and, for an agent
        named by an email no document spells so, a query)."""
        number_ref = self._db.of_tenant(tenant_id, "outbound_numbers", outbound_number)
        agent_ref = self._agent_ref(tenant_id, agent_id)
        refs = [number_ref, *self._consumer_refs(tenant_id, consumer)]
        if agent_ref is not None:
            refs.append(agent_ref)
        snaps = self._db.get_all(refs)
        number = snaps[number_ref.path]
        number_enabled = number.exists and (number.to_dict() or {}).get("sms_enabled") is not False
        state = self._consumer_from(tenant_id, consumer, snaps)
        return Lookup(
            outbound_number_enabled=number_enabled,
            agent_by_id=documents.agent_from_snapshot(snaps[agent_ref.path]) if agent_ref else None,
            agent_by_email=self._agent_by_email(tenant_id, agent_email) if agent_email else None,
            consumer=state,
            opted_out=state.opted_out,
        )

    def agents(
        self, tenant_id: str, agent_id: int | None, agent_email: str | None
    ) -> tuple[Agent | None, Agent | None]:
        """The agent named by id and the one named by email, where each names one."""
        agent_ref = self._agent_ref(tenant_id, agent_id)
        by_id = documents.agent_from_snapshot(self._db.get(agent_ref)) if agent_ref else None
        by_email = self._agent_by_email(tenant_id, agent_email) if agent_email else None
        return by_id, by_email

    def _agent_ref(self, tenant_id: str, agent_id: int | None) -> Any:
        storable = agent_id is not None and 0 <= agent_id <= MAX_ID
        return self._db.of_tenant(tenant_id, "agents", str(agent_id)) if storable else None

    def _agent_by_email(self, tenant_id: str, email: str) -> Agent | None:
        """The agent with this email, compared without regard to case.

        Firestore compares strings exactly, so the two usual spellings are asked for first;
        only when neither is stored does it fall back to reading the tenant's agents.
        """
        wanted = email.casefold()
        agents = self._db.tenant(tenant_id).collection("agents")
        spellings = sorted(
            spelling
            for spelling in {email, email.lower()}
            if len(spelling.encode("utf-8")) <= _MAX_QUERY_VALUE_BYTES
        )
        searches = [agents]
        if spellings:
            searches.insert(0, agents.where(filter=FieldFilter("email", "in", spellings)).limit(10))
        for search in searches:
            for snap in self._db.stream(search):
                agent = documents.agent_from_snapshot(snap)
                if agent is not None and (agent.email or "").casefold() == wanted:
                    return agent
        return None

    def _consumer_refs(self, tenant_id: str, consumer: str) -> list[firestore.DocumentReference]:
        return [
            self._db.session(tenant_id, consumer),
            self._db.end_user(tenant_id, consumer),
            self._db.opt_out(tenant_id, consumer),
        ]

    def _consumer_from(self, tenant_id: str, consumer: str, snaps: dict[str, Any]) -> ConsumerState:
        session_ref, end_user_ref, opt_out_ref = self._consumer_refs(tenant_id, consumer)
        session_snap, end_user_snap = snaps[session_ref.path], snaps[end_user_ref.path]
        session = (
            documents.session_from(session_snap.to_dict(), session_snap.update_time)
            if session_snap.exists
            else None
        )
        end_user = (
            documents.end_user_from(end_user_snap.to_dict()) if end_user_snap.exists else None
        )
        chat = None
        if session is not None:
            chat = session.chat or self.read_chat(tenant_id, session.chat_id)
        opted_out = snaps[opt_out_ref.path].exists
        return ConsumerState(session=session, end_user=end_user, chat=chat, opted_out=opted_out)

    def tenant_and_consumer(
        self, tenant_id: str, consumer: str
    ) -> tuple[Tenant | None, ConsumerState]:
        """A tenant's settings and what it knows of one consumer, read at once."""
        tenant_ref = self._db.tenant(tenant_id)
        snaps = self._db.get_all([tenant_ref, *self._consumer_refs(tenant_id, consumer)])
        tenant_snap = snaps[tenant_ref.path]
        if not tenant_snap.exists:
            return None, ConsumerState()
        tenant = documents.tenant_from(tenant_id, tenant_snap.to_dict() or {})
        return tenant, self._consumer_from(tenant_id, consumer, snaps)

    def consumer_state(self, tenant_id: str, consumer: str) -> ConsumerState:
        snaps = self._db.get_all(self._consumer_refs(tenant_id, consumer))
        return self._consumer_from(tenant_id, consumer, snaps)

    def read_chat(self, tenant_id: str, chat_id: int) -> Chat | None:
        snap = self._db.get(self._db.chat(tenant_id, chat_id))
        return documents.chat_from(snap.to_dict(), snap.update_time) if snap.exists else None

    def chat_and_session(
        self, tenant_id: str, chat_id: int
    ) -> tuple[Chat | None, ActiveSession | None]:
        """A chat, and its consumer's mark where the chat is still marked active."""
        chat = self.read_chat(tenant_id, chat_id)
        if chat is None or not chat.active:
            return chat, None
        snap = self._db.get(self._db.session(tenant_id, chat.end_user.phone_number))
        session = documents.session_from(snap.to_dict(), snap.update_time) if snap.exists else None
        return chat, session

    # -- ids

    def take_ids(self, tenant_id: str, kind: str, count: int) -> list[int]:
        return self._ids.take(tenant_id, kind, count)

    def _reserve_ids(self, tenant_id: str, counts: dict[str, int]) -> dict[str, int]:
        """Reserve fresh ids of each kind, ``counts[kind]`` of them; the first of each.

        The transaction does not read the counters: it adds to them with server-side
        increments and learns the new totals from the commit. Reading them first would lock
        them, and instances reserving at once would wait on each other and abort.
        """
        kinds = sorted(counts)
        results = self._db.transact(
            lambda transaction: self._write_reservations(transaction, tenant_id, counts, kinds)
        )
        return _firsts(results, counts, kinds)

    def _write_reservations(
        self, writes: Any, tenant_id: str, counts: dict[str, int], kinds: list[str]
    ) -> None:
        for kind in kinds:
            counter = self._db.of_tenant(tenant_id, "counters", kind)
            writes.set(counter, {"last_id": firestore.Increment(counts[kind])}, merge=True)

    # -- writes

    def commit(self, plan: Plan) -> Any:
        """Write everything the plan says in one transaction, or nothing; the message's version.

        The transaction reads nothing: the documents other requests also write are guarded
        by preconditions, so a lost race fails the commit at once instead of waiting on a lock.
        """
        session_ref, end_user_ref, _ = self._consumer_refs(plan.tenant_id, plan.consumer)
        # Ids running low: their next blocks are reserved by this commit (results 1 to n).
        prefetch = self._ids.to_prefetch(plan.tenant_id)
        kinds = sorted(prefetch)
        db = self._db

        def write(transaction: firestore.Transaction) -> None:
            message_ref = db.message(plan.tenant_id, plan.message.ref)
            transaction.create(message_ref, documents.message_doc(plan.message))  # result 0
            self._write_reservations(transaction, plan.tenant_id, prefetch, kinds)
            if plan.new_end_user is not None:
                transaction.create(end_user_ref, documents.stored(plan.new_end_user))
            if plan.finish is not None:
                transaction.update(
                    db.chat(plan.tenant_id, plan.finish.chat_id),
                    {
                        "status": "finished",
                        "ends_at": plan.finish.ends_at,
                        "chat_duration": plan.finish.chat_duration,
                    },
                )
            if plan.new_chat is not None:
                chat_ref = db.chat(plan.tenant_id, plan.new_chat.id)
                transaction.create(chat_ref, documents.chat_doc(plan.new_chat))
            else:  # the message joins the active chat: its idle clock starts again
                chat_ref = db.chat(plan.tenant_id, plan.session.chat_id)
                joined = plan.session.chat
                transaction.update(
                    chat_ref,
                    {
                        "last_activity_at": plan.session.last_activity_at,
                        "expires_at": joined.expires_at if joined is not None else None,
                    },
                )
            if plan.session_version is None:
                transaction.create(session_ref, documents.session_doc(plan.session))
            else:
                option = db.at(plan.session_version)
                transaction.update(session_ref, documents.session_doc(plan.session), option=option)
            if plan.key is not None:
                self._keys.complete_key(transaction, plan.key)
            if plan.index_carrier_id and plan.message.carrier_id is not None:
                transaction.create(
                    db.carrier_id(plan.message.carrier_id),
                    {"tenant": plan.tenant_id, **dataclasses.asdict(plan.message.ref)},
                )
            opt_out_ref = db.opt_out(plan.tenant_id, plan.consumer)
            if plan.opt_out is not None:
                transaction.set(opt_out_ref, documents.stored(plan.opt_out))
            elif plan.opt_in:
                transaction.delete(opt_out_ref)
            for event in plan.events:
                self._events.write(transaction, event)

        try:
            results = db.transact(write)
        except BaseException:
            self._ids.prefetched(plan.tenant_id, prefetch, None)
            raise
        self._ids.prefetched(plan.tenant_id, prefetch, _firsts(results[1:], prefetch, kinds))
        return results[0].update_time

    def end_chat(
        self,
        tenant_id: str,
        ended: Chat,
        session: ActiveSession | None,
        events: Sequence[Event] = (),
        cancelled: Message | None = None,
    ) -> None:
        """Record a chat as ended and free its consumer, with the events of it (and its held
        message ``cancelled``), if the chat (and the message) is still as it was read."""

        def write(transaction: firestore.Transaction) -> None:
            self.write_end(transaction, tenant_id, ended, session)
            if cancelled is not None:
                documents.write_state(transaction, self._db, tenant_id, cancelled)
            for event in events:
                self._events.write(transaction, event)

        self._db.transact(write)

    def assign_chat(
        self,
        tenant_id: str,
        assigned: Chat,
        session: ActiveSession | None,
        events: Sequence[Event] = (),
    ) -> None:
        """Record an agent's assignment to a chat (and to its consumer's mark), with its
        events, if the chat and the mark are still as they were read."""
        chat_doc = documents.chat_doc(assigned)
        fields = (
            "status",
            "agent",
            "assigned_at",
            "wait_duration",
            "participants",
            "last_activity_at",
            "expires_at",
        )

        def write(transaction: firestore.Transaction) -> None:
            transaction.update(
                self._db.chat(tenant_id, assigned.id),
                {name: chat_doc[name] for name in fields},
                option=self._db.at(assigned.version),
            )
            if session is not None:
                mark = dataclasses.replace(
                    session,
                    agent_ids=(
                        *session.agent_ids,
                        *([assigned.agent.id] if assigned.agent else []),
                    ),
                    last_activity_at=assigned.last_activity_at or session.last_activity_at,
                    chat=dataclasses.replace(assigned, version=None),
                )
                transaction.update(
                    self._db.session(tenant_id, assigned.end_user.phone_number),
                    documents.session_doc(mark),
                    option=self._db.at(session.version),
                )
            for event in events:
                self._events.write(transaction, event)

        self._db.transact(write)

    def chats_page(
        self,
        tenant_id: str,
        statuses: tuple[str, ...],
        end_user_number: str | None,
        page_size: int,
        after: tuple[dt.datetime, int] | None,
    ) -> list[Chat]:
        """Up to ``page_size`` of the tenant's chats, newest first (created_at, then id), of
        those statuses (all, where none are named) and that number, after ``after``."""
        query = self._db.tenant(tenant_id).collection("chats")
        if statuses:
            query = query.where(filter=FieldFilter("status", "in", list(statuses)))
        if end_user_number is not None:
            query = query.where(filter=FieldFilter("end_user_number", "==", end_user_number))
        query = query.order_by("created_at", direction="DESCENDING").order_by(
            "id", direction="DESCENDING"
        )
        if after is not None:
            query = query.start_after({"created_at": after[0], "id": after[1]})
        return [
            documents.chat_from(snap.to_dict(), snap.update_time)
            for snap in self._db.stream(query.limit(page_size))
        ]

    def expired_chats(self, before: dt.datetime, batch_size: int) -> list[tuple[str, Chat]]:
        """Active chats of any tenant whose idle clock ran out before ``before`` (by the
        tenant's timeout when their last message joined): (tenant, chat), oldest first."""
        query = (
            self._db.client.collection_group("chats")
            .where(filter=FieldFilter("status", "in", sorted(ACTIVE_STATUSES)))
            .where(filter=FieldFilter("expires_at", "<=", before))
            .order_by("expires_at")
            .limit(batch_size)
        )
        # tenants/{tenant}/chats/{chat}
        return [
            (snap.reference.parent.parent.id, documents.chat_from(snap.to_dict(), snap.update_time))
            for snap in self._db.stream(query)
        ]

    def postpone_expiry(self, tenant_id: str, chat: Chat, expires_at: dt.datetime) -> None:
        """A chat whose tenant's timeout grew since: when it expires now (if unchanged)."""
        ref = self._db.chat(tenant_id, chat.id)
        self._db.batch(
            lambda batch: batch.update(
                ref, {"expires_at": expires_at}, option=self._db.at(chat.version)
            )
        )

    def write_end(
        self, writes: Any, tenant_id: str, ended: Chat, session: ActiveSession | None
    ) -> None:
        """Into a transaction or batch: the chat ended as ``ended`` says, the consumer freed."""
        writes.update(
            self._db.chat(tenant_id, ended.id),
            {
                "status": ended.status,
                "ends_at": ended.ends_at,
                "chat_duration": ended.chat_duration,
                "fail_reason": ended.fail_reason,
            },
            option=self._db.at(ended.version),
        )
        if session is not None:
            session_ref = self._db.session(tenant_id, ended.end_user.phone_number)
            writes.delete(session_ref, option=self._db.at(session.version))


def _firsts(results: list[Any], counts: dict[str, int], kinds: list[str]) -> dict[str, int]:
    """The first id of each range reserved, from the results of the counters' increments."""
    return {
        kind: int(result.transform_results[0].integer_value) - counts[kind] + 1
        for kind, result in zip(kinds, results, strict=False)
    }
