"""The benchmark's reference: the Firestore calls of opening a session, and nothing else.

    functions-framework --target=trivial --source=bench/trivial.py

``open_session`` makes, on the documents it is given, exactly the calls the endpoint makes
to open a session (tests/test_calls.py counts them), with documents of the same fields and
sizes as the endpoint's:

  1. one ``get_all`` of five documents: the outbound number, the consumer's opt-out, mark
     and end user, and the agent (BatchGetDocuments);
  2. one transaction, tried once, that creates the message, the end user, the chat (with
     its participants) and the consumer's mark, which holds a copy of the chat
     (BeginTransaction, Commit);
  3. one batch that writes the message's status on the condition that it is still at the
     version the transaction wrote, and indexes the carrier's id (Commit).

The benchmark calls it in its own process (the floor: the client library alone), and the
function ``trivial`` below makes it for every request, on documents under a root no other
request touches (``bench_trivial/{uuid4}``): the reference ceiling of a served function.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import secrets
import uuid
from typing import Any

import flask
import functions_framework
from google.cloud import firestore

OUTBOUND_NUMBER = "+16285550199"
TEXT = "Your order has shipped."
AGENT = {
    "id": 1,
    "agent_number": 9,
    "email": "john.doe@foo.com",
    "name": "John Doe",
    "first_name": "John",
    "last_name": "Doe",
    "avatar_url": "https://foobar.com/johndoe",
}


def _chat(chat_id: int, consumer: str, end_user_id: int, now: dt.datetime) -> dict[str, Any]:
    """A chat document as the endpoint writes one (sms.repository.documents.chat_doc)."""
    end_user = {"id": end_user_id, "phone_number": consumer, "identifier": None}
    return {
        "id": chat_id,
        "lang": "en",
        "chat_type": "Messaging (SMS)",
        "chat_subtype": None,
        "status": "assigned",
        "created_at": now,
        "queued_at": None,
        "assigned_at": now,
        "ends_at": None,
        "chat_duration": 0,
        "out_ticket_id": None,
        "out_ticket_url": None,
        "fail_reason": None,
        "last_activity_at": now,
        "outbound_number": OUTBOUND_NUMBER,
        "end_user_number": consumer,
        "end_user": {**end_user, "out_contact_id": None},
        "agent": AGENT,
        "participants": [
            {"id": chat_id * 2, "type": "end_user", "user_id": None,
             "end_user_id": end_user_id, "connected_at": now},
            {"id": chat_id * 2 + 1, "type": "agent", "user_id": 1,
             "end_user_id": None, "connected_at": now},
        ],
    }  # fmt: skip


def open_session(
    db: firestore.Client,
    tenant: firestore.DocumentReference,
    carrier_ids: firestore.CollectionReference,
    consumer: str,
    chat_id: int,
) -> None:
    """The endpoint's calls for opening a session for ``consumer`` under ``tenant``, the
    carrier's id indexed in ``carrier_ids``."""
    now = dt.datetime.now(dt.timezone.utc)
    number = tenant.collection("outbound_numbers").document(OUTBOUND_NUMBER)
    opt_out = tenant.collection("opt_outs").document(consumer)
    mark = tenant.collection("active_sessions").document(consumer)
    end_user = tenant.collection("end_users").document(consumer)
    agent = tenant.collection("agents").document("1")
    list(db.get_all([number, opt_out, mark, end_user, agent]))

    chat_ref = tenant.collection("chats").document(str(chat_id))
    message_id = secrets.token_hex(10)
    message_ref = chat_ref.collection("messages").document(message_id)
    chat = _chat(chat_id, consumer, chat_id, now)
    history = [{"status": "queued", "at": now}, {"status": "sending", "at": now}]
    message = {
        "chat_id": chat_id, "direction": "outbound", "text": TEXT, "from": OUTBOUND_NUMBER,
        "to": consumer, "agent_id": 1, "encoding": "GSM-7", "segments": 1, "status": "sending",
        "carrier_id": None, "error_code": None, "created_at": now, "status_history": history,
        "claimed_at": now,
    }  # fmt: skip

    def write(transaction: firestore.Transaction) -> None:
        transaction.create(message_ref, message)
        transaction.create(end_user, chat["end_user"])
        transaction.create(chat_ref, chat)
        transaction.create(
            mark,
            {"chat_id": chat_id, "outbound_number": OUTBOUND_NUMBER, "agent_ids": [1],
             "created_at": now, "last_activity_at": now, "written_by": secrets.token_hex(8),
             "chat": chat},
        )  # fmt: skip

    transaction = db.transaction(max_attempts=1)
    firestore.transactional(write)(transaction)
    version = transaction.write_results[0].update_time

    carrier_id = "LM" + secrets.token_hex(16)
    sent = dt.datetime.now(dt.timezone.utc)
    batch = db.batch()
    batch.update(
        message_ref,
        {"status": "sent", "carrier_id": carrier_id, "error_code": None,
         "status_history": [*history, {"status": "sent", "at": sent}], "claimed_at": now},
        option=db.write_option(last_update_time=version),
    )  # fmt: skip
    batch.set(
        carrier_ids.document(carrier_id),
        {"tenant": tenant.id, "chat_id": chat_id, "message_id": message_id},
    )
    batch.commit()


@functools.cache
def _client() -> firestore.Client:
    """The process's client, made on first use (as the endpoint makes its own)."""
    return firestore.Client()


@functions_framework.http
def trivial(request: flask.Request) -> flask.Response:
    """Open a session's worth of documents under a root of this request's own."""
    body = request.get_json(force=True, silent=True) or {}
    db = _client()
    root = db.collection("bench_trivial").document(uuid.uuid4().hex)
    consumer = str(body.get("end_user_number") or "+14155550100")
    open_session(db, root, root.collection("carrier_ids"), consumer, 1)
    return flask.Response(json.dumps({"ok": True}), status=200, mimetype="application/json")
