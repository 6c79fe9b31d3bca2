"""The rules of a consumer's session that every use case shares (SPEC 6): which session stands,
when it has expired, how a new one opens and how a message joins one.

An outbound request (sms.outbound) and a consumer's reply (sms.replies) both open sessions
and add messages to them through these functions, so that both meet the same rules. Pure
but for ``open_session``, which takes fresh ids from the store's blocks.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import secrets
from collections.abc import Callable
from typing import Any, Protocol

from sms import errors
from sms.domain import (
    ActiveSession,
    Agent,
    Chat,
    ConsumerState,
    EndUser,
    Finish,
    Message,
    Participant,
    Plan,
    Tenant,
)
from sms.events import model as events


class IdSource(Protocol):
    def take_ids(self, tenant_id: str, kind: str, count: int) -> list[int]: ...


def write_id() -> str:
    """A token naming one commit, so that a retry can recognise its own write."""
    return secrets.token_hex(8)


def standing(
    tenant: Tenant, state: ConsumerState, now: dt.datetime
) -> tuple[tuple[ActiveSession, Chat] | None, ActiveSession | None, Finish | None]:
    """The consumer's active session and its chat; or, where there is none, the mark a new
    session replaces and the session idle past its timeout that it finishes (rule 6.4)."""
    session, chat = state.session, state.chat
    if session is None:
        return None, None, None
    if chat is None or not chat.active:
        # The mark outlived its session (ended elsewhere, or removed): replace it.
        return None, session, None
    expires_at = session.expires_at(tenant.session_timeout_seconds)
    if now >= expires_at:
        ended = chat.ended(expires_at)
        finish = Finish(chat.id, ends_at=expires_at, chat_duration=ended.chat_duration, ended=ended)
        return None, session, finish
    return (session, chat), None, None


def as_of(tenant: Tenant, chat: Chat, session: ActiveSession | None, now: dt.datetime) -> Chat:
    """The chat as it stands at ``now``: a session idle past the tenant's timeout has ended."""
    if not chat.active:
        return chat
    last_activity = chat.last_activity_at
    if session is not None and session.chat_id == chat.id:
        last_activity = session.last_activity_at
    if last_activity is None:
        return chat
    expires_at = last_activity + dt.timedelta(seconds=tenant.session_timeout_seconds)
    return chat.ended(expires_at) if now >= expires_at else chat


def open_session(
    ids: IdSource,
    tenant: Tenant,
    consumer: str,
    state: ConsumerState,
    now: dt.datetime,
    *,
    outbound_number: str,
    message: Callable[[int], Message],
    agent: Agent | None = None,
    replaces: ActiveSession | None = None,
    finish: Finish | None = None,
    holding: bool = False,
    **chat_fields: Any,
) -> Plan:
    """A new session for the consumer, its first message, and its mark (replacing
    ``replaces``, finishing ``finish``). ``chat_fields`` set what differs from an outbound
    session's chat; ``holding``: its first message is held (quiet hours), and the chat
    names it, so that ending the session cancels it."""
    new_end_user = None
    end_user = state.end_user
    if end_user is None:
        [end_user_id] = ids.take_ids(tenant.id, "end_users", 1)
        end_user = new_end_user = EndUser(id=end_user_id, phone_number=consumer)
    [chat_id] = ids.take_ids(tenant.id, "chats", 1)
    participant_ids = ids.take_ids(tenant.id, "participants", 2 if agent else 1)
    participants = [
        Participant(participant_ids[0], "end_user", connected_at=now, end_user_id=end_user.id)
    ]
    if agent is not None:
        participants.append(
            Participant(participant_ids[1], "agent", connected_at=now, user_id=agent.id)
        )
    chat = Chat(
        id=chat_id,
        lang=tenant.lang,
        status="assigned" if agent else "selecting",
        created_at=now,
        end_user=end_user,
        outbound_number=outbound_number,
        participants=tuple(participants),
        agent=agent,
        assigned_at=now if agent else None,
        last_activity_at=now,
        expires_at=now + dt.timedelta(seconds=tenant.session_timeout_seconds),
    )
    first = message(chat_id)
    if holding:
        chat_fields["held_message_id"] = first.id
    chat = dataclasses.replace(chat, **chat_fields)
    session = ActiveSession(
        chat_id=chat_id,
        outbound_number=outbound_number,
        agent_ids=(agent.id,) if agent else (),
        created_at=now,
        last_activity_at=now,
        written_by=write_id(),
        chat=chat,
    )
    changes = [events.chat_event(events.CHAT_CREATED, tenant.id, chat, now)]
    if finish is not None and finish.ended is not None:
        changes.insert(0, events.chat_event(events.CHAT_ENDED, tenant.id, finish.ended, now))
    return Plan(
        tenant_id=tenant.id,
        consumer=consumer,
        message=first,
        session=session,
        session_version=replaces.version if replaces else None,
        new_chat=chat,
        new_end_user=new_end_user,
        finish=finish,
        answer=chat,
        events=changes,
    )


def joined(
    tenant: Tenant,
    consumer: str,
    active: tuple[ActiveSession, Chat],
    message: Message,
    now: dt.datetime,
) -> Plan:
    """A message joins the consumer's active session, which counts as activity."""
    session, chat = active
    expires_at = now + dt.timedelta(seconds=tenant.session_timeout_seconds)
    chat = dataclasses.replace(chat, last_activity_at=now, expires_at=expires_at, version=None)
    return Plan(
        tenant_id=tenant.id,
        consumer=consumer,
        message=message,
        session=dataclasses.replace(
            session, last_activity_at=now, written_by=write_id(), chat=chat, version=None
        ),
        session_version=session.version,
        answer=chat,
    )


def named_agent(
    agent_id: int | None,
    agent_email: str | None,
    by_id: Agent | None,
    by_email: Agent | None,
) -> Agent | None:
    """The agent a request names by id and/or email (rules 15 and 16), given what the store
    found for each name.

    Named both ways, both must name the same existing agent: where either names an agent the
    other does not, the names disagree (rule 15); where neither names one, it is not found.
    """
    if agent_id is not None and agent_email is not None:
        if by_id is None and by_email is None:
            raise errors.BadRequest(errors.AGENT_NOT_FOUND)
        if by_id is None or by_email is None or by_id.id != by_email.id:
            raise errors.BadRequest(errors.AGENT_INVALID)
        return by_id
    named = by_id or by_email
    if named is None and (agent_id is not None or agent_email is not None):
        raise errors.BadRequest(errors.AGENT_NOT_FOUND)
    return named
