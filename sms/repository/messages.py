"""Messages after their commit: their statuses, carrier ids, the sweeper's queries, transcripts.

A message changes only on the condition that it is still at the version its writer read:
two writers (a request and the sweeper, two sweepers, a status callback) can never both
move it on from the same state.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from sms.domain import SCHEDULED, UNSETTLED, ActiveSession, Chat, Event, Message, MessageRef, OptOut
from sms.repository import documents
from sms.repository.database import Database
from sms.repository.events import EventLog
from sms.repository.sessions import Sessions


class Messages:
    """Messages of every tenant, as the sender, the sweeper and the transcript see them."""

    def __init__(self, db: Database, sessions: Sessions, events: EventLog) -> None:
        self._db = db
        self._sessions = sessions
        self._events = events

    def read_message(self, tenant_id: str, ref: MessageRef) -> Message | None:
        snap = self._db.get(self._db.message(tenant_id, ref))
        return _message_from(snap) if snap.exists else None

    def save_message(
        self, tenant_id: str, message: Message, events: Sequence[Event] = ()
    ) -> Message:
        """Store the message's new state, and the events of that change, if the message is
        still at its version; it at its new one.

        A carrier id is indexed as it is stored (carrier_ids/{id}), so that the carrier's
        status reports, which name nothing else, find their message.
        """

        def write(batch: firestore.WriteBatch) -> None:
            self._write_state(batch, tenant_id, message)
            for event in events:
                self._events.write(batch, event)
            if message.carrier_id is not None:
                batch.set(
                    self._db.carrier_id(message.carrier_id),
                    {"tenant": tenant_id, **dataclasses.asdict(message.ref)},
                )

        [result, *_] = self._db.batch(write)
        return dataclasses.replace(message, version=result.update_time)

    def _write_state(self, writes: Any, tenant_id: str, message: Message) -> None:
        documents.write_state(writes, self._db, tenant_id, message)

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
        """At once: the message failed, its session ended (``ended``, freeing ``mark``), the
        consumer's opt-out remembered, and the events of it all, each only if still as it
        was read."""

        def write(batch: firestore.WriteBatch) -> None:
            self._write_state(batch, tenant_id, message)
            for event in events:
                self._events.write(batch, event)
            if ended is not None:
                self._sessions.write_end(batch, tenant_id, ended, mark)
            if opt_out is not None:
                batch.set(self._db.opt_out(tenant_id, opt_out.number), documents.stored(opt_out))

        self._db.batch(write)

    def carrier_id_owner(self, carrier_id: str) -> tuple[str, MessageRef] | None:
        """The tenant and message that a carrier's id was stored for, if any."""
        index = self._db.get(self._db.carrier_id(carrier_id))
        data = index.to_dict() if index.exists else None
        if not data:
            return None
        return data["tenant"], MessageRef(chat_id=data["chat_id"], message_id=data["message_id"])

    def message_by_carrier_id(self, carrier_id: str) -> tuple[str, Message] | None:
        """The tenant and message the carrier knows by this id, if any."""
        owner = self.carrier_id_owner(carrier_id)
        if owner is None:
            return None
        message = self.read_message(*owner)
        return (owner[0], message) if message is not None else None

    def unsettled_messages(
        self, claimed_before: dt.datetime, batch_size: int
    ) -> list[tuple[str, Message]]:
        """Messages of any tenant still queued or sending, taken last before the given time."""
        query = (
            self._db.client.collection_group("messages")
            .where(filter=FieldFilter("status", "in", sorted(UNSETTLED)))
            .where(filter=FieldFilter("claimed_at", "<=", claimed_before))
            .order_by("claimed_at")
            .limit(batch_size)
        )
        # tenants/{tenant}/chats/{chat}/messages/{message}
        return [
            (snap.reference.parent.parent.parent.parent.id, _message_from(snap))
            for snap in self._db.stream(query)
        ]

    def messages_page(
        self,
        tenant_id: str,
        chat_id: int,
        page_size: int,
        after: tuple[dt.datetime, str] | None,
    ) -> list[Message]:
        """Up to ``page_size`` messages of a chat, oldest first, from just after ``after``."""
        collection = self._db.chat(tenant_id, chat_id).collection("messages")
        query = collection.order_by("created_at").order_by("__name__")
        if after is not None:
            created_at, message_id = after
            query = query.start_after(
                {"created_at": created_at, "__name__": collection.document(message_id)}
            )
        return [_message_from(snap) for snap in self._db.stream(query.limit(page_size))]

    def due_held(self, now: dt.datetime, batch_size: int) -> list[tuple[str, Message]]:
        """Messages of any tenant held for quiet hours whose time has come, oldest first."""
        query = (
            self._db.client.collection_group("messages")
            .where(filter=FieldFilter("status", "==", SCHEDULED))
            .where(filter=FieldFilter("scheduled_for", "<=", now))
            .order_by("scheduled_for")
            .limit(batch_size)
        )
        return [
            (snap.reference.parent.parent.parent.parent.id, _message_from(snap))
            for snap in self._db.stream(query)
        ]


def _message_from(snap: Any) -> Message:
    return documents.message_from(snap.id, snap.to_dict(), snap.update_time)
