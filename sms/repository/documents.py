"""Documents <-> domain objects: what is stored, field by field."""

from __future__ import annotations

import dataclasses
from typing import Any

from sms import tenants
from sms.domain import (
    MAX_ID,
    OUTBOUND,
    ActiveSession,
    Agent,
    Chat,
    EndUser,
    KeyCompletion,
    Message,
    MessageRef,
    Participant,
    StatusChange,
    StoredKey,
    Tenant,
)


def stored(record: Any) -> dict[str, Any]:
    """A record's fields as a document, but for the version the store keeps by itself."""
    return {k: v for k, v in dataclasses.asdict(record).items() if k != "version"}


def str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def tenant_from(tenant_id: str, data: dict[str, Any]) -> Tenant:
    """A tenant document, each field judged (sms.tenants)."""
    return tenants.judge(tenant_id, data)


def agent_from(agent_id: int, data: dict[str, Any]) -> Agent:
    return Agent(
        id=agent_id,
        agent_number=int_or_none(data.get("agent_number")),
        email=str_or_none(data.get("email")),
        name=str_or_none(data.get("name")),
        first_name=str_or_none(data.get("first_name")),
        last_name=str_or_none(data.get("last_name")),
        avatar_url=str_or_none(data.get("avatar_url")),
    )


def agent_from_snapshot(snap: Any) -> Agent | None:
    """The agent a document describes; None when its id is not one an agent can have."""
    digits = snap.id.isascii() and snap.id.isdigit()
    if not snap.exists or not digits or int(snap.id) > MAX_ID:
        return None
    return agent_from(int(snap.id), snap.to_dict() or {})


def end_user_from(data: dict[str, Any]) -> EndUser:
    return EndUser(
        id=data["id"],
        phone_number=data["phone_number"],
        identifier=str_or_none(data.get("identifier")),
        out_contact_id=str_or_none(data.get("out_contact_id")),
    )


def chat_doc(chat: Chat) -> dict[str, Any]:
    return {
        "id": chat.id,
        "lang": chat.lang,
        "chat_type": "Messaging (SMS)",
        "chat_subtype": chat.chat_subtype,
        "status": chat.status,
        "created_at": chat.created_at,
        "queued_at": chat.queued_at,
        "assigned_at": chat.assigned_at,
        "ends_at": chat.ends_at,
        "wait_duration": chat.wait_duration,
        "chat_duration": chat.chat_duration,
        "out_ticket_id": chat.out_ticket_id,
        "out_ticket_url": chat.out_ticket_url,
        "fail_reason": chat.fail_reason,
        "last_activity_at": chat.last_activity_at,
        "expires_at": chat.expires_at,
        "held_message_id": chat.held_message_id,
        "outbound_number": chat.outbound_number,
        "end_user_number": chat.end_user.phone_number,
        "end_user": stored(chat.end_user),
        "agent": stored(chat.agent) if chat.agent else None,
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
        queued_at=data.get("queued_at"),
        assigned_at=data.get("assigned_at"),
        ends_at=data.get("ends_at"),
        wait_duration=data.get("wait_duration") or 0,
        chat_duration=data.get("chat_duration") or 0,
        out_ticket_id=data.get("out_ticket_id"),
        out_ticket_url=data.get("out_ticket_url"),
        chat_subtype=data.get("chat_subtype"),
        fail_reason=data.get("fail_reason"),
        last_activity_at=data.get("last_activity_at"),
        expires_at=data.get("expires_at"),
        held_message_id=str_or_none(data.get("held_message_id")),
        version=version,
    )


def session_doc(session: ActiveSession) -> dict[str, Any]:
    return {
        "chat_id": session.chat_id,
        "outbound_number": session.outbound_number,
        "agent_ids": list(session.agent_ids),
        "created_at": session.created_at,
        "last_activity_at": session.last_activity_at,
        "written_by": session.written_by,
        "chat": chat_doc(session.chat) if session.chat is not None else None,
    }


def session_from(data: dict[str, Any], version: Any) -> ActiveSession:
    return ActiveSession(
        chat_id=data["chat_id"],
        outbound_number=data["outbound_number"],
        agent_ids=tuple(data.get("agent_ids") or ()),
        created_at=data["created_at"],
        last_activity_at=data["last_activity_at"],
        written_by=data.get("written_by") or "",
        chat=chat_from(data["chat"]) if data.get("chat") else None,
        version=version,
    )


def message_doc(message: Message) -> dict[str, Any]:
    return {
        "chat_id": message.chat_id,
        "direction": message.direction,
        "text": message.text,
        "from": message.from_number,
        "to": message.to_number,
        "agent_id": message.agent_id,
        "encoding": message.encoding,
        "segments": message.segments,
        "status": message.status,
        "carrier_id": message.carrier_id,
        "error_code": message.error_code,
        "created_at": message.created_at,
        "status_history": [{"status": c.status, "at": c.at} for c in message.history],
        "claimed_at": message.claimed_at,
        "carrier": message.carrier,
        "scheduled_for": message.scheduled_for,
    }


def message_from(message_id: str, data: dict[str, Any], version: Any = None) -> Message:
    return Message(
        id=message_id,
        chat_id=data["chat_id"],
        direction=data.get("direction") or OUTBOUND,
        text=data["text"],
        from_number=data["from"],
        to_number=data["to"],
        agent_id=data.get("agent_id"),
        encoding=data["encoding"],
        segments=data["segments"],
        status=data["status"],
        carrier_id=data.get("carrier_id"),
        error_code=data.get("error_code"),
        created_at=data["created_at"],
        history=tuple(StatusChange(c["status"], c["at"]) for c in data.get("status_history") or ()),
        claimed_at=data.get("claimed_at"),
        carrier=str_or_none(data.get("carrier")),
        scheduled_for=data.get("scheduled_for"),
        version=version,
    )


def key_answer_doc(completion: KeyCompletion) -> dict[str, Any]:
    """The fields that record a claimed key's answer."""
    message = completion.message
    return {
        "status": completion.status,
        "chat": chat_doc(completion.chat) if completion.chat is not None else None,
        "error": completion.error,
        "message": dataclasses.asdict(message) if message is not None else None,
    }


def key_from(data: dict[str, Any], version: Any) -> StoredKey:
    chat, message = data.get("chat"), data.get("message")
    return StoredKey(
        fingerprint=data["fingerprint"],
        holder=data.get("holder") or "",
        status=data.get("status"),
        lease_expires_at=data["lease_expires_at"],
        expires_at=data["expires_at"],
        chat=chat_from(chat) if isinstance(chat, dict) else None,
        error=str_or_none(data.get("error")),
        body=str_or_none(data.get("body")),
        message=MessageRef(message["chat_id"], message["message_id"])
        if isinstance(message, dict)
        else None,
        version=version,
    )


# What a message's later writes change: its state, never its text, numbers or times.
_STATE_FIELDS = (
    "status",
    "carrier_id",
    "error_code",
    "status_history",
    "claimed_at",
    "carrier",
    "scheduled_for",
)


def write_state(writes: Any, db: Any, tenant_id: str, message: Message) -> None:
    """Into a transaction or batch: the message's state, if it is still at its version."""
    state = message_doc(message)
    writes.update(
        db.message(tenant_id, message.ref),
        {name: state[name] for name in _STATE_FIELDS},
        option=db.at(message.version),
    )
