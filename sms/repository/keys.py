"""Idempotency-Key records (SPEC 10.1): claimed with a precondition, completed with the answer."""

from __future__ import annotations

import dataclasses
from typing import Any

from google.cloud import firestore

from sms.domain import Claim, KeyCompletion, MessageRef, StoredKey
from sms.repository import documents
from sms.repository.base import StoreBase


class Keys(StoreBase):
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
            message=_message_ref(data.get("message")),
            version=snap.update_time,
        )

    def claim_key(self, claim: Claim, record: StoredKey, replaces: StoredKey | None) -> Claim:
        """Hold the key: create its record, or replace ``replaces`` if it is unchanged."""

        def write(batch: firestore.WriteBatch) -> None:
            ref = self._key_ref(claim.tenant_id, claim.key_id)
            if replaces is None:
                batch.create(ref, documents.stored(record))
            else:
                batch.update(ref, documents.stored(record), option=self._at(replaces.version))

        # One write with its precondition: no transaction is needed to hold the key.
        [result] = self._batch(write)
        return dataclasses.replace(claim, version=result.update_time)

    def _complete_key(self, writes: Any, completion: KeyCompletion) -> None:
        """Into a transaction or a batch: the answer recorded for a claimed key."""
        claim = completion.claim
        writes.update(
            self._key_ref(claim.tenant_id, claim.key_id),
            {
                "status": completion.status,
                "body": completion.body,
                "message": dataclasses.asdict(completion.message) if completion.message else None,
            },
            option=self._at(claim.version),
        )

    def finish_key(self, completion: KeyCompletion) -> None:
        """Record an answer that wrote nothing else (an error)."""
        self._batch(lambda batch: self._complete_key(batch, completion))

    def release_key(self, claim: Claim) -> None:
        """Give the key up, so that a retry runs afresh."""
        ref = self._key_ref(claim.tenant_id, claim.key_id)
        self._batch(lambda batch: batch.delete(ref, option=self._at(claim.version)))


def _message_ref(data: Any) -> MessageRef | None:
    if not isinstance(data, dict):
        return None
    return MessageRef(chat_id=data["chat_id"], message_id=data["message_id"])
