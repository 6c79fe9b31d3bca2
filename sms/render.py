"""The chat document of SPEC section 5, with its keys in the documented order."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sms.domain import CHAT_TYPE, Agent, Chat, Message, Participant


def to_json(payload: Any) -> str:
    """The text of an answer: keys in the order they were built, non-ASCII kept as is."""
    return json.dumps(payload, ensure_ascii=False)


def timestamp(moment: dt.datetime | None) -> str | None:
    """UTC, ISO 8601 with milliseconds and Z: 2021-10-04T17:20:51.000Z."""
    if moment is None:
        return None
    utc = moment.astimezone(dt.timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _agent_info(agent: Agent | None) -> dict[str, Any] | None:
    if agent is None:
        return None
    return {
        "id": agent.id,
        "agent_number": agent.agent_number,
        "email": agent.email,
        "name": agent.name,
        "first_name": agent.first_name,
        "last_name": agent.last_name,
        "avatar_url": agent.avatar_url,
    }


def _participant(chat: Chat, participant: Participant) -> dict[str, Any]:
    # Participants leave only when their session ends, so their end is the session's.
    return {
        "id": participant.id,
        "type": participant.type,
        "status": "connected",
        "chat_id": chat.id,
        "user_id": participant.user_id,
        "end_user_id": participant.end_user_id,
        "chat_duration": None,
        "connected_at": timestamp(participant.connected_at),
        "ended_at": timestamp(chat.ends_at),
        "fail_reason": "nothing",
    }


def chat_document(chat: Chat) -> dict[str, Any]:
    """The public view of a session."""
    return {
        "id": chat.id,
        "lang": chat.lang,
        "chat_type": CHAT_TYPE,
        "status": chat.status,
        "created_at": timestamp(chat.created_at),
        "queued_at": timestamp(chat.queued_at),
        "assigned_at": timestamp(chat.assigned_at),
        "ends_at": timestamp(chat.ends_at),
        "wait_duration": chat.wait_duration,
        "chat_duration": chat.chat_duration,
        "rating": None,
        "has_feedback": False,
        "out_ticket_id": chat.out_ticket_id,
        "out_ticket_url": chat.out_ticket_url,
        "verified": False,
        "disconnected_by": "disconnected_by_unknown",
        "fail_reason": chat.fail_reason,
        "selected_menu": None,
        "menu_path": None,
        "agent_info": _agent_info(chat.agent),
        "end_user": {
            "id": chat.end_user.id,
            "identifier": chat.end_user.identifier,
            "out_contact_id": chat.end_user.out_contact_id,
        },
        "photos": [],
        "videos": [],
        "transfers": [],
        "participants": [_participant(chat, p) for p in chat.participants],
        "offer_type": None,
        "offer_events": [],
        "answer_type": "manual",
        "outbound_number": chat.outbound_number,
    }


def message_document(message: Message) -> dict[str, Any]:
    """One message of a transcript (SPEC 10.5), keys in the documented order."""
    return {
        "id": message.id,
        "chat_id": message.chat_id,
        "direction": message.direction,
        "from": message.from_number,
        "to": message.to_number,
        "text": message.text,
        "agent_id": message.agent_id,
        "encoding": message.encoding,
        "segments": message.segments,
        "status": message.status,
        "carrier_id": message.carrier_id,
        "error_code": message.error_code,
        "created_at": timestamp(message.created_at),
        "status_history": [
            {"status": change.status, "at": timestamp(change.at)} for change in message.history
        ],
        "scheduled_for": timestamp(message.scheduled_for),
    }
