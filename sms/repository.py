"""Firestore: the only module that talks to it. Documents in, domain objects out.

Layout (tenants/{t} and the first four subcollections are the operators' contract, SPEC
section 7; the rest is internal)::

    tenants/{t}                                   Tenant
    tenants/{t}/outbound_numbers/{E.164}          numbers that may send
    tenants/{t}/agents/{id}                       Agent
    tenants/{t}/api_credentials/{id}              token_sha256, enabled
    tenants/{t}/active_sessions/{E.164}           the consumer's mark (ActiveSession)
    tenants/{t}/end_users/{E.164}                 EndUser
    tenants/{t}/chats/{id}                        Chat
    tenants/{t}/chats/{id}/messages/{auto id}     Message
    tenants/{t}/counters/{kind}                   last_id: the highest id reserved so far
    tenants/{t}/idempotency_keys/{sha256 of key}  StoredKey (expires_at: TTL field)

Concurrent requests never read-then-write a shared document inside a transaction: the
consumer's mark and a new end user are read without locks, then written with preconditions
(create = must not exist; update = must still be at the version read). A request that lost
the race gets ``Conflict`` and decides again; it never waits on a lock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hmac
from collections.abc import Iterable, Iterator
from typing import Any

from google.api_core import exceptions as gexc
from google.api_core import gapic_v1
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from sms import deadline, errors
from sms.config import Settings
from sms.domain import (
    DEFAULT_ALLOWED_REGIONS,
    DEFAULT_LANG,
    DEFAULT_SESSION_TIMEOUT_SECONDS,
    MAX_ID,
    ActiveSession,
    Agent,
    Chat,
    Claim,
    ConsumerState,
    EndUser,
    KeyCompletion,
    Lookup,
    Message,
    Participant,
    Plan,
    StoredKey,
    Tenant,
)
from sms.ids import IdBlocks

# Precondition failures of a commit: another request wrote the document first.
_LOST_RACE = (gexc.AlreadyExists, gexc.FailedPrecondition, gexc.NotFound)
# Failures that may pass: the call can be tried again (after a fresh read, for a commit).
_TRANSIENT = (
    gexc.Aborted,
    gexc.Cancelled,
    gexc.DeadlineExceeded,
    gexc.InternalServerError,
    gexc.ResourceExhausted,
    gexc.ServiceUnavailable,
    gexc.Unknown,
    gexc.RetryError,
)
# Longer strings are not asked for in a query: Firestore refuses values of about 1500 bytes
# and more there. (No email address is that long; a stored one still matches by the scan.)
_MAX_QUERY_VALUE_BYTES = 1024


@contextlib.contextmanager
def _failures(commit: bool = False) -> Iterator[None]:
    """Firestore's failures as the service knows them: a lost race, or an outage that may pass.

    Anything else (a bug, a misconfiguration such as a missing permission) goes up as it is,
    to be logged with its traceback: retrying it until the deadline would only hide it.
    """
    try:
        yield
    except _LOST_RACE as exc:
        if not commit:
            raise
        raise errors.LostRace(str(exc)) from exc
    except _TRANSIENT as exc:
        raise errors.BackendUnavailable(f"{type(exc).__name__}: {exc}") from exc
    except ValueError as exc:
        # The transaction API wraps failures in ValueError: "failed to commit in N attempts"
        # (caused by Aborted), or "cannot be rolled back" when beginning the transaction
        # failed (in the context of that failure). Judge them by what lies underneath.
        origin = exc.__cause__ or exc.__context__
        if isinstance(origin, _TRANSIENT):
            raise errors.BackendUnavailable(f"{type(origin).__name__}: {origin}") from exc
        if commit and isinstance(origin, _LOST_RACE):
            raise errors.LostRace(str(origin)) from exc
        raise


# ---- documents -> domain ---------------------------------------------------------------


def _stored(record: Any) -> dict[str, Any]:
    """A record's fields as a document, but for the version the store keeps by itself."""
    return {k: v for k, v in dataclasses.asdict(record).items() if k != "version"}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def tenant_from(tenant_id: str, data: dict[str, Any]) -> Tenant:
    """A tenant document read leniently: a field of the wrong type falls back to its default."""
    timeout = _int(data.get("session_timeout_seconds"))
    regions = data.get("allowed_regions")
    if isinstance(regions, list) and all(isinstance(r, str) for r in regions):
        allowed = tuple(r.upper() for r in regions)
    else:
        allowed = DEFAULT_ALLOWED_REGIONS
    return Tenant(
        id=tenant_id,
        sms_enabled=data.get("sms_enabled") is True,
        outbound_sms_enabled=data.get("outbound_sms_enabled") is True,
        lang=_str(data.get("lang")) or DEFAULT_LANG,
        session_timeout_seconds=timeout
        if timeout and timeout > 0
        else DEFAULT_SESSION_TIMEOUT_SECONDS,
        allowed_regions=allowed,
        ticket_url_template=_str(data.get("ticket_url_template")),
    )


def agent_from(agent_id: int, data: dict[str, Any]) -> Agent:
    return Agent(
        id=agent_id,
        agent_number=_int(data.get("agent_number")),
        email=_str(data.get("email")),
        name=_str(data.get("name")),
        first_name=_str(data.get("first_name")),
        last_name=_str(data.get("last_name")),
        avatar_url=_str(data.get("avatar_url")),
    )


def _agent_from_snapshot(snap: Any) -> Agent | None:
    """The agent a document describes; None when its id is not one an agent can have."""
    digits = snap.id.isascii() and snap.id.isdigit()
    if not snap.exists or not digits or int(snap.id) > MAX_ID:
        return None
    return agent_from(int(snap.id), snap.to_dict() or {})


def end_user_from(data: dict[str, Any]) -> EndUser:
    return EndUser(
        id=data["id"],
        phone_number=data["phone_number"],
        identifier=_str(data.get("identifier")),
        out_contact_id=_str(data.get("out_contact_id")),
    )


def _chat_doc(chat: Chat) -> dict[str, Any]:
    return {
        "id": chat.id,
        "lang": chat.lang,
        "chat_type": "Messaging (SMS)",
        "chat_subtype": chat.chat_subtype,
        "status": chat.status,
        "created_at": chat.created_at,
        "assigned_at": chat.assigned_at,
        "ends_at": chat.ends_at,
        "chat_duration": chat.chat_duration,
        "out_ticket_id": chat.out_ticket_id,
        "out_ticket_url": chat.out_ticket_url,
        "fail_reason": chat.fail_reason,
        "outbound_number": chat.outbound_number,
        "end_user_number": chat.end_user.phone_number,
        "end_user": _stored(chat.end_user),
        "agent": _stored(chat.agent) if chat.agent else None,
        "participants": [
            {
                "id": p.id,
                "type": p.type,
                "user_id": p.user_id,
                "end_user_id": p.end_user_id,
                "connected_at": p.connected_at,
            }
            for p in chat.participants
        ],
    }


def chat_from(data: dict[str, Any], version: Any = None) -> Chat:
    agent = data.get("agent")
    return Chat(
        id=data["id"],
        lang=data["lang"],
        status=data["status"],
        created_at=data["created_at"],
        end_user=end_user_from(data["end_user"]),
        outbound_number=data["outbound_number"],
        participants=tuple(
            Participant(
                id=p["id"],
                type=p["type"],
                connected_at=p["connected_at"],
                user_id=p.get("user_id"),
                end_user_id=p.get("end_user_id"),
            )
            for p in data["participants"]
        ),
        agent=agent_from(agent["id"], agent) if agent else None,
        assigned_at=data.get("assigned_at"),
        ends_at=data.get("ends_at"),
        chat_duration=data.get("chat_duration") or 0,
        out_ticket_id=data.get("out_ticket_id"),
        out_ticket_url=data.get("out_ticket_url"),
        chat_subtype=data.get("chat_subtype"),
        fail_reason=data.get("fail_reason"),
        version=version,
    )


def _session_doc(session: ActiveSession) -> dict[str, Any]:
    return {
        "chat_id": session.chat_id,
        "outbound_number": session.outbound_number,
        "agent_ids": list(session.agent_ids),
        "created_at": session.created_at,
        "last_activity_at": session.last_activity_at,
        "written_by": session.written_by,
    }


def session_from(data: dict[str, Any], version: Any) -> ActiveSession:
    return ActiveSession(
        chat_id=data["chat_id"],
        outbound_number=data["outbound_number"],
        agent_ids=tuple(data.get("agent_ids") or ()),
        created_at=data["created_at"],
        last_activity_at=data["last_activity_at"],
        written_by=data.get("written_by") or "",
        version=version,
    )


def _message_doc(message: Message) -> dict[str, Any]:
    return {
        "chat_id": message.chat_id,
        "direction": "outbound",
        "text": message.text,
        "from": message.from_number,
        "to": message.to_number,
        "status": message.status,
        "status_history": [{"status": message.status, "at": message.created_at}],
        "agent_id": message.agent_id,
        "created_at": message.created_at,
    }


# ---- the store ------------------------------------------------------------------------


class _CallTimeout:
    """Timeout for the generated Firestore methods: what remains of the request's deadline.

    Used as a method default (see ``_bound_calls``), it applies to every call the client
    makes, including BeginTransaction, Commit and Rollback, which the transaction API gives
    no way to time out.
    """

    def __init__(self, cap: float) -> None:
        self._cap = cap

    def __call__(self, func: Any) -> Any:
        @functools.wraps(func)
        def call(*args: Any, **kwargs: Any) -> Any:
            kwargs["timeout"] = deadline.call_timeout(self._cap)
            return func(*args, **kwargs)

        return call


def _bound_calls(client: firestore.Client, cap: float) -> None:
    """Make every Firestore call of ``client`` one try, timed out by the request's deadline.

    The generated defaults retry for 60 to 300 seconds; a request must answer within seconds,
    so retrying is left to the service, which knows the deadline and what is safe to retry.
    """
    transport = client._firestore_api._transport  # noqa: SLF001 no public hook for defaults
    for method in transport._wrapped_methods.values():  # noqa: SLF001
        if isinstance(method, gapic_v1.method._GapicCallable):  # noqa: SLF001
            method._retry = None  # noqa: SLF001
            method._timeout = _CallTimeout(cap)  # noqa: SLF001


class FirestoreStore:
    """The service's store, on one Firestore database."""

    def __init__(self, client: firestore.Client, settings: Settings) -> None:
        self._db = client
        self._ids = IdBlocks(self._reserve_ids, settings.id_block_size)

    @classmethod
    def from_settings(cls, settings: Settings) -> FirestoreStore:
        client = firestore.Client(project=settings.project, database=settings.database)
        _bound_calls(client, settings.rpc_timeout_seconds)
        return cls(client, settings)

    def _tenant(self, tenant_id: str) -> firestore.DocumentReference:
        ref: firestore.DocumentReference = self._db.collection("tenants").document(tenant_id)
        return ref

    def _get_all(self, refs: Iterable[firestore.DocumentReference]) -> dict[str, Any]:
        """Snapshots by path, read in one round trip."""
        with _failures():
            return {snap.reference.path: snap for snap in self._db.get_all(list(refs))}

    def _transact(self, write: Any) -> Any:
        """Run a transaction body once; lost races and transient failures as domain errors."""
        with _failures(commit=True):
            return firestore.transactional(write)(self._db.transaction(max_attempts=1))

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
                return tenant_from(tenant_id, tenant_snap.to_dict() or {})
        return None

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
        refs = [number_ref, *self._consumer_refs(tenant_id, consumer)]
        if agent_ref is not None:
            refs.append(agent_ref)
        snaps = self._get_all(refs)
        number = snaps[number_ref.path]
        number_enabled = number.exists and (number.to_dict() or {}).get("sms_enabled") is not False
        return Lookup(
            outbound_number_enabled=number_enabled,
            agent_by_id=_agent_from_snapshot(snaps[agent_ref.path]) if agent_ref else None,
            agent_by_email=self._agent_by_email(tenant_id, agent_email) if agent_email else None,
            consumer=self._consumer_from(tenant_id, consumer, snaps),
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
                    agent = _agent_from_snapshot(snap)
                    if agent is not None and (agent.email or "").casefold() == wanted:
                        return agent
        return None

    def _session_ref(self, tenant_id: str, consumer: str) -> firestore.DocumentReference:
        ref: firestore.DocumentReference = (
            self._tenant(tenant_id).collection("active_sessions").document(consumer)
        )
        return ref

    def _consumer_refs(self, tenant_id: str, consumer: str) -> list[firestore.DocumentReference]:
        end_user = self._tenant(tenant_id).collection("end_users").document(consumer)
        return [self._session_ref(tenant_id, consumer), end_user]

    def _consumer_from(self, tenant_id: str, consumer: str, snaps: dict[str, Any]) -> ConsumerState:
        session_ref, end_user_ref = self._consumer_refs(tenant_id, consumer)
        session_snap, end_user_snap = snaps[session_ref.path], snaps[end_user_ref.path]
        session = (
            session_from(session_snap.to_dict(), session_snap.update_time)
            if session_snap.exists
            else None
        )
        end_user = end_user_from(end_user_snap.to_dict()) if end_user_snap.exists else None
        chat = self._chat(tenant_id, session.chat_id) if session is not None else None
        return ConsumerState(session=session, end_user=end_user, chat=chat)

    def consumer_state(self, tenant_id: str, consumer: str) -> ConsumerState:
        snaps = self._get_all(self._consumer_refs(tenant_id, consumer))
        return self._consumer_from(tenant_id, consumer, snaps)

    def _chat_ref(self, tenant_id: str, chat_id: int) -> firestore.DocumentReference:
        ref: firestore.DocumentReference = (
            self._tenant(tenant_id).collection("chats").document(str(chat_id))
        )
        return ref

    def _chat(self, tenant_id: str, chat_id: int) -> Chat | None:
        [snap] = self._get_all([self._chat_ref(tenant_id, chat_id)]).values()
        return chat_from(snap.to_dict(), snap.update_time) if snap.exists else None

    def chat_and_session(
        self, tenant_id: str, chat_id: int
    ) -> tuple[Chat | None, ActiveSession | None]:
        """A chat, and its consumer's mark where the chat is still marked active."""
        chat = self._chat(tenant_id, chat_id)
        if chat is None or not chat.active:
            return chat, None
        session_ref = self._session_ref(tenant_id, chat.end_user.phone_number)
        [snap] = self._get_all([session_ref]).values()
        session = session_from(snap.to_dict(), snap.update_time) if snap.exists else None
        return chat, session

    # -- ids

    def take_ids(self, tenant_id: str, kind: str, count: int) -> list[int]:
        return self._ids.take(tenant_id, kind, count)

    def _reserve_ids(self, tenant_id: str, kind: str, count: int) -> int:
        """Reserve ``count`` fresh ids of a kind; the first of them.

        The transaction does not read the counter: it adds ``count`` with a server-side
        increment and learns the new total from the commit. Reading it first would lock it,
        and instances reserving at once would wait on each other and abort.
        """
        counter = self._tenant(tenant_id).collection("counters").document(kind)
        transaction = self._db.transaction(max_attempts=1)

        def reserve(transaction: firestore.Transaction) -> None:
            transaction.set(counter, {"last_id": firestore.Increment(count)}, merge=True)

        with _failures():
            firestore.transactional(reserve)(transaction)
        assert transaction.write_results is not None
        last = int(transaction.write_results[0].transform_results[0].integer_value)
        return last - count + 1

    # -- writes

    def commit(self, plan: Plan) -> None:
        """Write everything the plan says in one transaction, or nothing.

        The transaction reads nothing: the documents other requests also write are guarded
        by preconditions, so a lost race fails the commit at once instead of waiting on a lock.
        """
        tenant = self._tenant(plan.tenant_id)
        session_ref, end_user_ref = self._consumer_refs(plan.tenant_id, plan.consumer)
        chats = tenant.collection("chats")

        def write(transaction: firestore.Transaction) -> None:
            if plan.new_end_user is not None:
                transaction.create(end_user_ref, _stored(plan.new_end_user))
            if plan.finish is not None:
                transaction.update(
                    chats.document(str(plan.finish.chat_id)),
                    {
                        "status": "finished",
                        "ends_at": plan.finish.ends_at,
                        "chat_duration": plan.finish.chat_duration,
                    },
                )
            if plan.new_chat is not None:
                transaction.create(chats.document(str(plan.new_chat.id)), _chat_doc(plan.new_chat))
            messages = chats.document(str(plan.message.chat_id)).collection("messages")
            transaction.create(messages.document(), _message_doc(plan.message))
            if plan.session_version is None:
                transaction.create(session_ref, _session_doc(plan.session))
            else:
                transaction.update(
                    session_ref, _session_doc(plan.session), option=self._at(plan.session_version)
                )
            if plan.key is not None:
                self._complete_key(transaction, plan.key)

        self._transact(write)

    def end_chat(self, tenant_id: str, ended: Chat, session: ActiveSession | None) -> None:
        """Record a chat as ended and free its consumer, if the chat is still as it was read."""

        def write(transaction: firestore.Transaction) -> None:
            transaction.update(
                self._chat_ref(tenant_id, ended.id),
                {
                    "status": ended.status,
                    "ends_at": ended.ends_at,
                    "chat_duration": ended.chat_duration,
                },
                option=self._at(ended.version),
            )
            if session is not None:
                session_ref = self._session_ref(tenant_id, ended.end_user.phone_number)
                transaction.delete(session_ref, option=self._at(session.version))

        self._transact(write)

    def _at(self, version: Any) -> Any:
        """The precondition: the document is still at ``version``."""
        return self._db.write_option(last_update_time=version)

    # -- idempotency keys

    def _key_ref(self, tenant_id: str, key_id: str) -> firestore.DocumentReference:
        ref: firestore.DocumentReference = (
            self._tenant(tenant_id).collection("idempotency_keys").document(key_id)
        )
        return ref

    def read_key(self, tenant_id: str, key_id: str) -> StoredKey | None:
        [snap] = self._get_all([self._key_ref(tenant_id, key_id)]).values()
        if not snap.exists:
            return None
        data = snap.to_dict()
        return StoredKey(
            fingerprint=data["fingerprint"],
            holder=data.get("holder") or "",
            status=data.get("status"),
            body=data.get("body"),
            lease_expires_at=data["lease_expires_at"],
            expires_at=data["expires_at"],
            version=snap.update_time,
        )

    def claim_key(self, claim: Claim, record: StoredKey, replaces: StoredKey | None) -> Claim:
        """Hold the key: create its record, or replace ``replaces`` if it is unchanged."""

        def write(transaction: firestore.Transaction) -> None:
            ref = self._key_ref(claim.tenant_id, claim.key_id)
            if replaces is None:
                transaction.create(ref, _stored(record))
            else:
                transaction.update(ref, _stored(record), option=self._at(replaces.version))

        transaction = self._db.transaction(max_attempts=1)
        with _failures(commit=True):
            firestore.transactional(write)(transaction)
        assert transaction.write_results is not None
        return dataclasses.replace(claim, version=transaction.write_results[0].update_time)

    def _complete_key(self, transaction: firestore.Transaction, completion: KeyCompletion) -> None:
        claim = completion.claim
        transaction.update(
            self._key_ref(claim.tenant_id, claim.key_id),
            {"status": completion.status, "body": completion.body},
            option=self._at(claim.version),
        )

    def finish_key(self, completion: KeyCompletion) -> None:
        """Record an answer that wrote nothing else (an error)."""
        self._transact(lambda transaction: self._complete_key(transaction, completion))

    def release_key(self, claim: Claim) -> None:
        """Give the key up, so that a retry runs afresh."""
        ref = self._key_ref(claim.tenant_id, claim.key_id)
        self._transact(lambda transaction: transaction.delete(ref, option=self._at(claim.version)))
