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

One module per aggregate: ``keys`` (Idempotency-Key records), ``sessions`` (authentication,
the request's reads and commit, chats, ids), ``messages`` (statuses after the commit, carrier
ids, the sweeper's query, transcripts); ``documents`` turns documents into domain objects and
back; ``base`` holds what they share. ``FirestoreStore`` is all of them at once.
"""

from __future__ import annotations

from google.cloud import firestore

from sms.config import Settings
from sms.ids import IdBlocks
from sms.repository.base import _bound_calls, _failures
from sms.repository.documents import tenant_from
from sms.repository.messages import Messages

__all__ = ["FirestoreStore", "_bound_calls", "_failures", "tenant_from"]


class FirestoreStore(Messages):
    """The service's store, on one Firestore database."""

    def __init__(self, client: firestore.Client, settings: Settings) -> None:
        super().__init__(client)
        self._ids = IdBlocks(self._reserve_ids, settings.id_block_size)

    @classmethod
    def from_settings(cls, settings: Settings) -> FirestoreStore:
        client = firestore.Client(project=settings.project, database=settings.database)
        return cls.on_client(client, settings)

    @classmethod
    def on_client(cls, client: firestore.Client, settings: Settings) -> FirestoreStore:
        """The store on a client of its own, whose calls it bounds by each request's deadline."""
        _bound_calls(client, settings.rpc_timeout_seconds)
        return cls(client, settings)
