"""The objects the service reasons about, free of HTTP and of Firestore."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from sms import encoding
from sms.quiet_hours import DEFAULT_TIME_ZONE, QuietHours

CHAT_TYPE = "Messaging (SMS)"
DEFAULT_LANG = "en"
DEFAULT_SESSION_TIMEOUT_SECONDS = 86400
DEFAULT_ALLOWED_REGIONS: tuple[str, ...] = ("US",)

# "queued": opened by a consumer's reply, waiting for an agent (SPEC 10.5).
ACTIVE_STATUSES = frozenset({"selecting", "assigned", "queued"})
# The largest integer Firestore stores (int64): no stored id can be larger.
MAX_ID = 2**63 - 1
# A tenant's subdomain: one DNS label. Nothing else can name a tenant document.
SUBDOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?")

# A version is whatever the store uses to detect concurrent change (Firestore: update_time).
Version = Any


@dataclass(frozen=True)
class Tenant:
    """One customer company, as configured in tenants/{subdomain} (SPEC section 7)."""

    id: str
    sms_enabled: bool = False
    outbound_sms_enabled: bool = False
    lang: str = DEFAULT_LANG
    session_timeout_seconds: int = DEFAULT_SESSION_TIMEOUT_SECONDS
    allowed_regions: tuple[str, ...] = DEFAULT_ALLOWED_REGIONS
    ticket_url_template: str | None = None
    rate_limit_per_second: int = 0  # 0: no limit (SPEC 10.6)
    # SPEC 10.8: when no message that opens a session goes out, and the zone of numbers
    # whose own zone is unknown.
    quiet_hours: QuietHours | None = None
    default_time_zone: str = DEFAULT_TIME_ZONE
    # Settings of its document that could not be used, and what was used instead.
    problems: tuple[str, ...] = ()

    def ticket_url(self, ticket_id: str | None) -> str | None:
        """The CRM link for a ticket, where the tenant configured a template."""
        if ticket_id is None or not self.ticket_url_template:
            return None
        return self.ticket_url_template.replace("{ticket_id}", quote(ticket_id, safe=""))


@dataclass(frozen=True)
class Agent:
    id: int
    agent_number: int | None = None
    email: str | None = None
    name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    avatar_url: str | None = None


@dataclass(frozen=True)
class EndUser:
    """The consumer behind one phone number of one tenant."""

    id: int
    phone_number: str
    identifier: str | None = None
    out_contact_id: str | None = None


@dataclass(frozen=True)
class Participant:
    id: int
    type: str  # "end_user" or "agent"
    connected_at: dt.datetime
    user_id: int | None = None
    end_user_id: int | None = None


@dataclass(frozen=True)
class Chat:
    """A session: what the chat document of SPEC section 5 is rendered from."""

    id: int
    lang: str
    status: str
    created_at: dt.datetime
    end_user: EndUser
    outbound_number: str
    participants: tuple[Participant, ...]
    agent: Agent | None = None
    queued_at: dt.datetime | None = None
    assigned_at: dt.datetime | None = None
    ends_at: dt.datetime | None = None
    wait_duration: int = 0  # whole seconds from queued (or created) to assigned
    chat_duration: int = 0
    out_ticket_id: str | None = None
    out_ticket_url: str | None = None
    chat_subtype: str | None = None
    fail_reason: str | None = None
    # When a message last joined it (or it was opened): its idle clock (rule 6.4), and when
    # it expires by the tenant's timeout as it was then (the sweeper looks for those).
    last_activity_at: dt.datetime | None = None
    expires_at: dt.datetime | None = None
    # Its first message, held for quiet hours (SPEC 10.8), while it is held.
    held_message_id: str | None = None
    version: Version = None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    def assigned(self, agent: Agent, participant_id: int, at: dt.datetime) -> Chat:
        """This chat with ``agent`` assigned at ``at``, joining its participants."""
        waited = int((at - (self.queued_at or self.created_at)).total_seconds())
        joining = Participant(participant_id, "agent", connected_at=at, user_id=agent.id)
        return dataclasses.replace(
            self,
            status="assigned",
            agent=agent,
            assigned_at=at,
            wait_duration=max(waited, 0),
            participants=(*self.participants, joining),
        )

    def ended(
        self, at: dt.datetime, status: str = "finished", fail_reason: str | None = None
    ) -> Chat:
        """This chat as it stands once ended at ``at`` (``"failed"`` with a reason, or not)."""
        duration = int((at - self.created_at).total_seconds())
        return dataclasses.replace(
            self,
            status=status,
            ends_at=at,
            chat_duration=max(duration, 0),
            fail_reason=fail_reason or self.fail_reason,
        )


@dataclass(frozen=True)
class ActiveSession:
    """The consumer's mark: which session is active for a phone number, and since when idle."""

    chat_id: int
    outbound_number: str
    agent_ids: tuple[int, ...]
    created_at: dt.datetime
    last_activity_at: dt.datetime
    written_by: str = ""  # the commit that wrote this mark: how a retry recognises its own write
    # The chat, as stored. Every change to an active chat rewrites or removes its mark in the
    # same commit, so a request learns the chat from the mark without reading it. (None in
    # marks written before it was kept there: the chat is then read.)
    chat: Chat | None = None
    version: Version = None

    def expires_at(self, timeout_seconds: int) -> dt.datetime:
        return self.last_activity_at + dt.timedelta(seconds=timeout_seconds)


# Message statuses (SPEC 10.3, 10.8). An outbound message is stored ``queued`` (or
# ``scheduled``, held for quiet hours, before that), handed to the carrier ``sending``,
# accepted ``sent``, and ends in one final status. A status only moves forward: its rank
# must grow, and a final status never changes.
SCHEDULED, QUEUED, SENDING, SENT = "scheduled", "queued", "sending", "sent"
DELIVERED, UNDELIVERED, FAILED = "delivered", "undelivered", "failed"
RECEIVED = "received"  # an inbound message
UNSETTLED = frozenset({QUEUED, SENDING})
FINAL = frozenset({DELIVERED, UNDELIVERED, FAILED, RECEIVED})
_RANK = {
    SCHEDULED: -1,
    QUEUED: 0,
    SENDING: 1,
    SENT: 2,
    DELIVERED: 3,
    UNDELIVERED: 3,
    FAILED: 3,
    RECEIVED: 3,
}
OUTBOUND, INBOUND = "outbound", "inbound"


@dataclass(frozen=True)
class StatusChange:
    status: str
    at: dt.datetime


@dataclass(frozen=True)
class MessageRef:
    """Where a message is: its chat and its own id (within a tenant)."""

    chat_id: int
    message_id: str


@dataclass(frozen=True)
class Message:
    """One SMS of a session, with what became of it."""

    id: str
    chat_id: int
    text: str
    from_number: str
    to_number: str
    created_at: dt.datetime
    encoding: str
    segments: int
    direction: str = OUTBOUND
    status: str = QUEUED
    agent_id: int | None = None
    carrier_id: str | None = None
    error_code: str | None = None
    history: tuple[StatusChange, ...] = ()
    # When its current sender took it (at its commit, or at a takeover): while that is
    # recent, someone may be handing it to the carrier right now.
    claimed_at: dt.datetime | None = None
    # The carrier it was handed to (by name): only that carrier settles it (SPEC 10.3).
    carrier: str | None = None
    # Held for quiet hours: when it may go (SPEC 10.8); None for a message never held.
    scheduled_for: dt.datetime | None = None
    version: Version = None

    @classmethod
    def new(
        cls,
        chat_id: int,
        text: str,
        numbers: tuple[str, str],
        at: dt.datetime,
        **fields: Any,
    ) -> Message:
        """A message stored at ``at``, from and to ``numbers``: a fresh id, and its encoding
        and segments counted."""
        encoded = encoding.encode(text)
        return cls(
            id=secrets.token_hex(10),
            chat_id=chat_id,
            text=text,
            from_number=numbers[0],
            to_number=numbers[1],
            created_at=at,
            encoding=encoded.encoding,
            segments=encoded.segments,
            **fields,
        )

    @property
    def ref(self) -> MessageRef:
        return MessageRef(self.chat_id, self.id)

    @property
    def settled(self) -> bool:
        """Whether it has an outcome: neither on its way nor held for quiet hours (SPEC 10.8:
        a held message that is due is claimed and sent like any other)."""
        return self.status not in UNSETTLED and not self.held

    @property
    def accepted(self) -> bool:
        """Whether a carrier took it (it then has the carrier's id)."""
        return self.carrier_id is not None

    @property
    def held(self) -> bool:
        """Whether it waits for the end of quiet hours (no carrier has seen it)."""
        return self.status == SCHEDULED

    def moved_to(
        self,
        status: str,
        at: dt.datetime,
        carrier_id: str | None = None,
        error_code: str | None = None,
    ) -> Message | None:
        """This message at ``status``; None where that would not move it forward.

        A carrier that reports a final status had accepted the message: ``sent`` is then
        recorded on the way, so the history shows every status reached. A held message that
        goes is ``queued`` on the way to ``sending``.
        """
        if _RANK[status] <= _RANK[self.status]:
            return None
        carrier_id = carrier_id or self.carrier_id
        steps = [status]
        if carrier_id is not None and _RANK[self.status] < _RANK[SENT] < _RANK[status]:
            steps.insert(0, SENT)
        if self.status == SCHEDULED and status == SENDING:
            steps.insert(0, QUEUED)
        return dataclasses.replace(
            self,
            status=status,
            carrier_id=carrier_id,
            error_code=error_code or self.error_code,
            history=self.history + tuple(StatusChange(step, at) for step in steps),
        )

    def claimed(self, at: dt.datetime, carrier: str) -> Message:
        """This message taken by a new sender at ``at``, to hand to ``carrier`` (``sending``
        from then on)."""
        moved = self.moved_to(SENDING, at) or self
        return dataclasses.replace(moved, claimed_at=at, carrier=carrier)

    def reached(self, since: Message) -> tuple[str, ...]:
        """The statuses this message reached since it was ``since`` (oldest first)."""
        return tuple(change.status for change in self.history[len(since.history) :])


@dataclass(frozen=True)
class OptOut:
    """A consumer who asked a tenant for no more SMS."""

    number: str
    at: dt.datetime
    source: str  # "carrier" (it refused: the consumer unsubscribed), "reply" (STOP), "admin"
    error_code: str | None = None


@dataclass(frozen=True)
class ConsumerState:
    """What the store knows about one phone number of one tenant, read without locking."""

    session: ActiveSession | None = None
    end_user: EndUser | None = None
    chat: Chat | None = None  # the chat the session points to, when there is one
    opted_out: bool = False  # the consumer asked this tenant for no more SMS


@dataclass(frozen=True)
class Lookup:
    """What validating one request needs from the store, read in one round."""

    outbound_number_enabled: bool
    agent_by_id: Agent | None
    agent_by_email: Agent | None
    consumer: ConsumerState
    opted_out: bool = False  # the consumer asked this tenant for no more SMS


@dataclass(frozen=True)
class Event:
    """A change the tenant's own systems hear of (SPEC 10.7): recorded in the commit that
    makes the change, then delivered. ``data`` is the payload, keys in the documented order."""

    id: str
    type: str
    tenant: str
    at: dt.datetime  # when the change was made
    data: dict[str, Any]


@dataclass(frozen=True)
class Finish:
    """End a session whose idle time ran out."""

    chat_id: int
    ends_at: dt.datetime
    chat_duration: int
    ended: Chat | None = None  # the chat as it ended


@dataclass(frozen=True)
class Claim:
    """This request's hold on an Idempotency-Key: only the holder may record the answer."""

    tenant_id: str
    key_id: str  # a digest of the key, safe as a document id
    fingerprint: str  # a digest of the request body
    holder: str  # names the request holding the key
    version: Version = None


@dataclass(frozen=True)
class StoredKey:
    """What is recorded for an Idempotency-Key."""

    fingerprint: str
    holder: str
    status: int | None  # None while the first request is still running
    lease_expires_at: dt.datetime
    expires_at: dt.datetime
    chat: Chat | None = None  # the answer of a 200: the chat document as answered
    error: str | None = None  # the answer of an error: its {"message"} text
    body: str | None = None  # an answer recorded as text (by an earlier version)
    # The message whose send decides the answer: the recorded 200 holds once it is sent.
    message: MessageRef | None = None
    version: Version = None

    @property
    def answered(self) -> bool:
        return self.status is not None and (
            self.chat is not None or self.error is not None or self.body is not None
        )


@dataclass(frozen=True)
class KeyCompletion:
    """The answer to record for a claimed key, in the same commit as what produced it."""

    claim: Claim
    status: int
    chat: Chat | None = None
    error: str | None = None
    message: MessageRef | None = None


@dataclass
class Plan:
    """Everything one request writes, committed atomically or not at all.

    ``session`` replaces the consumer's mark: created when ``session_version`` is None (must
    not exist), otherwise updated only if the stored mark is still at that version.
    """

    tenant_id: str
    consumer: str
    message: Message
    session: ActiveSession
    session_version: Version = None
    new_chat: Chat | None = None
    new_end_user: EndUser | None = None
    finish: Finish | None = None
    answer: Chat | None = field(default=None, repr=False)
    key: KeyCompletion | None = None
    # An inbound message is stored once per carrier id: its carrier_ids entry is created
    # with it (must not exist). A keyword reply opts the consumer out, or back in.
    index_carrier_id: bool = False
    opt_out: OptOut | None = None
    opt_in: bool = False
    # What the commit changes, as the tenant's systems hear of it (SPEC 10.7).
    events: list[Event] = field(default_factory=list)
