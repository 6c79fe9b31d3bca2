"""Authentication, sessions and chats: the reads of one request and its atomic commit."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hmac
import time
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from sms.domain import MAX_ID, ActiveSession, Agent, Chat, ConsumerState, Lookup, Plan, Tenant
from sms.ids import IdBlocks
from sms.repository import documents
from sms.repository.base import _failures
from sms.repository.keys import Keys

# Longer strings are not asked for in a query: Firestore refuses values of about 1500 bytes
# and more there. (No email address is that long; a stored one still matches by the scan.)
_MAX_QUERY_VALUE_BYTES = 1024


class Sessions(Keys):
    """Tenants, their consumers' sessions, chats and ids (a commit may complete a key)."""

    _ids: IdBlocks

    # -- authentication

    def authenticate(self, tenant_id: str, token_sha256: str) -> Tenant | None:
        """The tenant, if one of its enabled credentials has this token hash."""
        tenant_ref = self._tenant(tenant_id)
        query = tenant_ref.collection("api_credentials").where(
            filter=FieldFilter("token_sha256", "==", token_sha256)
        )
        with _failures():
            # Both reads, whatever the first finds: an unknown tenant must not answer sooner.
            tenant_snap = tenant_ref.get()
            credentials = list(query.limit(10).stream())
        if not tenant_snap.exists:
            return None
        for credential in credentials:
            data = credential.to_dict() or {}
            stored = data.get("token_sha256")
            if (
                data.get("enabled") is True
                and isinstance(stored, str)
                and hmac.compare_digest(stored, token_sha256)
            ):
                return documents.tenant_from(tenant_id, tenant_snap.to_dict() or {})
        return None

    def count_request(self, tenant_id: str) -> int:
        """Count one request in its tenant's current second; the count so far (SPEC 10.6).

        A server-side increment of request_counts/{tenant}@{second}: it reads nothing, so
        counts made at once by any number of instances never wait on or abort each other.
        It lives outside the tenant's documents (a refused request writes nothing there),
        and expires (TTL on expires_at) a minute later.
        """
        now = time.time()
        second = int(now)
        ref = self._db.collection("request_counts").document(f"{tenant_id}@{second}")
        expires = dt.datetime.fromtimestamp(second + 60, dt.timezone.utc)
        batch = self._db.batch()
        batch.set(ref, {"count": firestore.Increment(1), "expires_at": expires}, merge=True)
        with _failures(commit=True):
            [result] = batch.commit()
        return int(result.transform_results[0].integer_value)

    # -- reads for one request

    def look_up(
        self,
        tenant_id: str,
        outbound_number: str,
        consumer: str,
        agent_id: int | None,
        agent_email: str | None,
    ) -> Lookup:
        tenant = self._tenant(tenant_id)
        number_ref = tenant.collection("outbound_numbers").document(outbound_number)
        agents = tenant.collection("agents")
        storable = agent_id is not None and 0 <= agent_id <= MAX_ID
        agent_ref = agents.document(str(agent_id)) if storable else None
        opt_out_ref = self._opt_out_ref(tenant_id, consumer)
        refs = [number_ref, opt_out_ref, *self._consumer_refs(tenant_id, consumer)]
        if agent_ref is not None:
            refs.append(agent_ref)
        snaps = self._get_all(refs)
        number = snaps[number_ref.path]
        number_enabled = number.exists and (number.to_dict() or {}).get("sms_enabled") is not False
        return Lookup(
            outbound_number_enabled=number_enabled,
            agent_by_id=documents.agent_from_snapshot(snaps[agent_ref.path]) if agent_ref else None,
            agent_by_email=self._agent_by_email(tenant_id, agent_email) if agent_email else None,
            consumer=self._consumer_from(tenant_id, consumer, snaps),
            opted_out=snaps[opt_out_ref.path].exists,
        )

    def _agent_by_email(self, tenant_id: str, email: str) -> Agent | None:
        """The agent with this email, compared without regard to case.

        Firestore compares strings exactly, so the two usual spellings are asked for first;
        only when neither is stored does it fall back to reading the tenant's agents.
        """
        wanted = email.casefold()
        agents = self._tenant(tenant_id).collection("agents")
        spellings = sorted(
            spelling
            for spelling in {email, email.lower()}
            if len(spelling.encode("utf-8")) <= _MAX_QUERY_VALUE_BYTES
        )
        searches = [agents.stream()]
        if spellings:
            exact = agents.where(filter=FieldFilter("email", "in", spellings)).limit(10)
            searches.insert(0, exact.stream())
        with _failures():
            for snaps in searches:
                for snap in snaps:
                    agent = documents.agent_from_snapshot(snap)
                    if agent is not None and (agent.email or "").casefold() == wanted:
                        return agent
        return None

    def _consumer_refs(self, tenant_id: str, consumer: str) -> list[firestore.DocumentReference]:
        end_user = self._tenant(tenant_id).collection("end_users").document(consumer)
        return [self._session_ref(tenant_id, consumer), end_user]

    def _consumer_from(self, tenant_id: str, consumer: str, snaps: dict[str, Any]) -> ConsumerState:
        session_ref, end_user_ref = self._consumer_refs(tenant_id, consumer)
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
            chat = session.chat or self._chat(tenant_id, session.chat_id)
        return ConsumerState(session=session, end_user=end_user, chat=chat)

    def reply_route(self, number: str, carrier_id: str) -> tuple[str | None, bool]:
        """The tenant that owns a number (numbers/{E.164}), and whether a message with this
        carrier id is stored already."""
        owner_ref, seen_ref = (
            self._db.collection("numbers").document(number),
            self._carrier_ref(carrier_id),
        )
        snaps = self._get_all([owner_ref, seen_ref])
        owner = snaps[owner_ref.path].to_dict() if snaps[owner_ref.path].exists else None
        tenant = owner.get("tenant") if owner else None
        return (tenant if isinstance(tenant, str) else None), snaps[seen_ref.path].exists

    def tenant_and_consumer(
        self, tenant_id: str, consumer: str
    ) -> tuple[Tenant | None, ConsumerState]:
        """A tenant's settings and what it knows of one consumer, read at once."""
        tenant_ref = self._tenant(tenant_id)
        snaps = self._get_all([tenant_ref, *self._consumer_refs(tenant_id, consumer)])
        tenant_snap = snaps[tenant_ref.path]
        if not tenant_snap.exists:
            return None, ConsumerState()
        tenant = documents.tenant_from(tenant_id, tenant_snap.to_dict() or {})
        return tenant, self._consumer_from(tenant_id, consumer, snaps)

    def consumer_state(self, tenant_id: str, consumer: str) -> ConsumerState:
        snaps = self._get_all(self._consumer_refs(tenant_id, consumer))
        return self._consumer_from(tenant_id, consumer, snaps)

    def read_chat(self, tenant_id: str, chat_id: int) -> Chat | None:
        return self._chat(tenant_id, chat_id)

    def _chat(self, tenant_id: str, chat_id: int) -> Chat | None:
        [snap] = self._get_all([self._chat_ref(tenant_id, chat_id)]).values()
        return documents.chat_from(snap.to_dict(), snap.update_time) if snap.exists else None

    def chat_and_session(
        self, tenant_id: str, chat_id: int
    ) -> tuple[Chat | None, ActiveSession | None]:
        """A chat, and its consumer's mark where the chat is still marked active."""
        chat = self._chat(tenant_id, chat_id)
        if chat is None or not chat.active:
            return chat, None
        session_ref = self._session_ref(tenant_id, chat.end_user.phone_number)
        [snap] = self._get_all([session_ref]).values()
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
        results = self._transact(
            lambda transaction: self._write_reservations(transaction, tenant_id, counts, kinds)
        )
        return _firsts(results, counts, kinds)

    def _write_reservations(
        self, writes: Any, tenant_id: str, counts: dict[str, int], kinds: list[str]
    ) -> None:
        for kind in kinds:
            counter = self._tenant(tenant_id).collection("counters").document(kind)
            writes.set(counter, {"last_id": firestore.Increment(counts[kind])}, merge=True)

    # -- writes

    def commit(self, plan: Plan) -> Any:
        """Write everything the plan says in one transaction, or nothing; the message's version.

        The transaction reads nothing: the documents other requests also write are guarded
        by preconditions, so a lost race fails the commit at once instead of waiting on a lock.
        """
        session_ref, end_user_ref = self._consumer_refs(plan.tenant_id, plan.consumer)
        # Ids running low: their next blocks are reserved by this commit (results 1 to n).
        prefetch = self._ids.to_prefetch(plan.tenant_id)
        kinds = sorted(prefetch)

        def write(transaction: firestore.Transaction) -> None:
            message_ref = self._message_ref(plan.tenant_id, plan.message.ref)
            transaction.create(message_ref, documents.message_doc(plan.message))  # result 0
            self._write_reservations(transaction, plan.tenant_id, prefetch, kinds)
            if plan.new_end_user is not None:
                transaction.create(end_user_ref, documents.stored(plan.new_end_user))
            if plan.finish is not None:
                transaction.update(
                    self._chat_ref(plan.tenant_id, plan.finish.chat_id),
                    {
                        "status": "finished",
                        "ends_at": plan.finish.ends_at,
                        "chat_duration": plan.finish.chat_duration,
                    },
                )
            if plan.new_chat is not None:
                chat_ref = self._chat_ref(plan.tenant_id, plan.new_chat.id)
                transaction.create(chat_ref, documents.chat_doc(plan.new_chat))
            else:  # the message joins the active chat: its idle clock starts again
                chat_ref = self._chat_ref(plan.tenant_id, plan.session.chat_id)
                transaction.update(chat_ref, {"last_activity_at": plan.session.last_activity_at})
            if plan.session_version is None:
                transaction.create(session_ref, documents.session_doc(plan.session))
            else:
                option = self._at(plan.session_version)
                transaction.update(session_ref, documents.session_doc(plan.session), option=option)
            if plan.key is not None:
                self._complete_key(transaction, plan.key)
            if plan.index_carrier_id and plan.message.carrier_id is not None:
                transaction.create(
                    self._carrier_ref(plan.message.carrier_id),
                    {"tenant": plan.tenant_id, **dataclasses.asdict(plan.message.ref)},
                )
            opt_out_ref = self._opt_out_ref(plan.tenant_id, plan.consumer)
            if plan.opt_out is not None:
                transaction.set(opt_out_ref, documents.stored(plan.opt_out))
            elif plan.opt_in:
                transaction.delete(opt_out_ref)

        try:
            results = self._transact(write)
        except BaseException:
            self._ids.prefetched(plan.tenant_id, prefetch, None)
            raise
        self._ids.prefetched(plan.tenant_id, prefetch, _firsts(results[1:], prefetch, kinds))
        return results[0].update_time

    def end_chat(self, tenant_id: str, ended: Chat, session: ActiveSession | None) -> None:
        """Record a chat as ended and free its consumer, if the chat is still as it was read."""
        self._transact(lambda transaction: self._write_end(transaction, tenant_id, ended, session))

    def _write_end(
        self, writes: Any, tenant_id: str, ended: Chat, session: ActiveSession | None
    ) -> None:
        """Into a transaction or batch: the chat ended as ``ended`` says, the consumer freed."""
        writes.update(
            self._chat_ref(tenant_id, ended.id),
            {
                "status": ended.status,
                "ends_at": ended.ends_at,
                "chat_duration": ended.chat_duration,
                "fail_reason": ended.fail_reason,
            },
            option=self._at(ended.version),
        )
        if session is not None:
            session_ref = self._session_ref(tenant_id, ended.end_user.phone_number)
            writes.delete(session_ref, option=self._at(session.version))


def _firsts(results: list[Any], counts: dict[str, int], kinds: list[str]) -> dict[str, int]:
    """The first id of each range reserved, from the results of the counters' increments."""
    return {
        kind: int(result.transform_results[0].integer_value) - counts[kind] + 1
        for kind, result in zip(kinds, results, strict=False)
    }
