"""Idempotency-Key records (SPEC 10.1): claimed with a precondition, completed with the answer."""

from __future__ import annotations

import dataclasses
from typing import Any

from google.cloud import firestore

from sms.domain import Claim, KeyCompletion, StoredKey
from sms.repository import documents
from sms.repository.database import Database


class Keys:
    def __init__(self, db: Database) -> None:
        self._db = db

    def _ref(self, tenant_id: str, key_id: str) -> firestore.DocumentReference:
        return self._db.of_tenant(tenant_id, "idempotency_keys", key_id)

    def read_key(self, tenant_id: str, key_id: str) -> StoredKey | None:
        snap = self._db.get(self._ref(tenant_id, key_id))
        return documents.key_from(snap.to_dict(), snap.update_time) if snap.exists else None

    def claim_key(self, claim: Claim, record: StoredKey, replaces: StoredKey | None) -> Claim:
        """Hold the key: create its record, or replace ``replaces`` if it is unchanged."""

        def write(batch: firestore.WriteBatch) -> None:
            ref = self._ref(claim.tenant_id, claim.key_id)
            if replaces is None:
                batch.create(ref, documents.stored(record))
            else:
                batch.update(ref, documents.stored(record), option=self._db.at(replaces.version))

        # One write with its precondition: no transaction is needed to hold the key.
        [result] = self._db.batch(write)
        return dataclasses.replace(claim, version=result.update_time)

    def complete_key(self, writes: Any, completion: KeyCompletion) -> None:
        """Into a transaction or a batch: the answer recorded for a claimed key."""
        claim = completion.claim
        writes.update(
            self._ref(claim.tenant_id, claim.key_id),
            documents.key_answer_doc(completion),
            option=self._db.at(claim.version),
        )

    def finish_key(self, completion: KeyCompletion) -> None:
        """Record an answer that wrote nothing else (an error)."""
        self._db.batch(lambda batch: self.complete_key(batch, completion))

    def release_key(self, claim: Claim) -> None:
        """Give the key up, so that a retry runs afresh."""
        ref = self._ref(claim.tenant_id, claim.key_id)
        self._db.batch(lambda batch: batch.delete(ref, option=self._db.at(claim.version)))
