"""The request body of POST /apps/api/v1/sms: its fields, their rules and their error texts.

Loading never stops at the first problem: it returns every rule that failed, and the service
answers with the one that comes first in ``errors.PRECEDENCE`` (some rules in between need
the tenant's data, which only the service has).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, TypeVar

from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load

from sms import errors, phone
from sms.domain import CHAT_TYPE, MAX_ID

CHAT_TYPES = frozenset({"Messaging (SMS)", "Messaging (API)", "SMS"})
MESSAGE_MAX_CHARS = 1600
TICKET_ID_MAX_CHARS = 255
_DIGITS = re.compile(r"[0-9]+")
_T = TypeVar("_T")


@dataclass(frozen=True)
class OutboundSmsRequest:
    chat_type: str
    end_user_number: str
    outbound_number: str
    message: str
    ticket_id: str | None = None
    agent_id: int | None = None
    agent_email: str | None = None
    chat_subtype: str | None = None


@dataclass(frozen=True)
class Loaded:
    """What loading made of a body: the fields that passed, the texts of the rules that failed."""

    values: dict[str, Any]
    failures: tuple[str, ...]

    def request(self) -> OutboundSmsRequest:
        return OutboundSmsRequest(**self.values)


class ChatType(fields.Field[str]):
    default_error_messages = {
        "required": errors.CHAT_TYPE_REQUIRED,
        "null": errors.CHAT_TYPE_REQUIRED,
        "invalid": errors.CHAT_TYPE_INVALID,
    }

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if value == "":
            raise self.make_error("required")
        if not isinstance(value, str) or value not in CHAT_TYPES:
            raise self.make_error("invalid")
        return CHAT_TYPE


class PhoneNumber(fields.Field[str]):
    """A phone number judged against the tenant's allowed regions, loaded as E.164."""

    default_error_messages = {"foreign": errors.NUMBER_FOREIGN}

    def __init__(self, required_text: str, invalid_text: str) -> None:
        super().__init__(
            required=True,
            error_messages={
                "required": required_text,
                "null": required_text,
                "invalid": invalid_text,
            },
        )

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        allowed: Collection[str] = getattr(self.parent, "allowed_regions", phone.DEFAULT_REGION)
        judgement = phone.judge(value, allowed)
        if judgement.verdict is phone.Verdict.MISSING:
            raise self.make_error("required")
        if judgement.verdict is phone.Verdict.INVALID:
            raise self.make_error("invalid")
        if judgement.verdict is phone.Verdict.FOREIGN:
            raise self.make_error("foreign")
        assert judgement.e164 is not None
        return judgement.e164


class MessageText(fields.Field[str]):
    default_error_messages = {
        "required": errors.MESSAGE_REQUIRED,
        "null": errors.MESSAGE_REQUIRED,
        "too_long": errors.MESSAGE_TOO_LONG,
    }

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = value.strip() if isinstance(value, str) else ""
        if not text:
            raise self.make_error("required")
        if len(text) > MESSAGE_MAX_CHARS:
            raise self.make_error("too_long")
        return text


class TicketId(fields.Field[str | None]):
    default_error_messages = {"invalid": errors.TICKET_ID_INVALID}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str | None:
        if not isinstance(value, str) or len(value) > TICKET_ID_MAX_CHARS:
            raise self.make_error("invalid")
        return value or None


class AgentId(fields.Field[int]):
    """An agent id: a JSON integer, or a string of decimal digits."""

    default_error_messages = {"invalid": errors.AGENT_INVALID}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and _DIGITS.fullmatch(value):
            digits = value.lstrip("0") or "0"
            # Longer than any stored id can be: well-formed, but it names no agent. (Cut
            # short before int(), which refuses strings of thousands of digits.)
            return int(digits) if len(digits) <= len(str(MAX_ID)) else MAX_ID + 1
        raise self.make_error("invalid")


class AgentEmail(fields.Field[str]):
    default_error_messages = {"invalid": errors.AGENT_INVALID}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if not isinstance(value, str):
            raise self.make_error("invalid")
        return value.strip()


def _optional(field: fields.Field[_T]) -> fields.Field[_T]:
    field.allow_none = True
    field.load_default = None
    return field


def _one_of(first: Any, second: Any, same: Any = lambda a, b: a == b) -> Any:
    """The value named by one or both spellings of a field, or the rule's failure if they differ."""
    if first is not None and second is not None and not same(first, second):
        raise ValidationError(errors.AGENT_INVALID)
    return first if first is not None else second


class OutboundSmsSchema(Schema):
    """SPEC section 3. Unknown fields are ignored."""

    class Meta:
        unknown = EXCLUDE

    chat_type = ChatType(required=True)
    end_user_number = PhoneNumber(errors.END_USER_NUMBER_REQUIRED, errors.END_USER_NUMBER_INVALID)
    outbound_number = PhoneNumber(errors.OUTBOUND_NUMBER_REQUIRED, errors.OUTBOUND_NUMBER_INVALID)
    message = MessageText(required=True)
    ticket_id = _optional(TicketId())
    agent_id = _optional(AgentId())
    agent_id_camel = _optional(AgentId(data_key="agentId"))
    agent_email = _optional(AgentEmail())
    agent_email_camel = _optional(AgentEmail(data_key="agentEmail"))
    chat_subtype = fields.Raw(load_default=None, allow_none=True)

    def __init__(self, allowed_regions: Collection[str]) -> None:
        super().__init__()
        self.allowed_regions = frozenset(allowed_regions)

    @post_load
    def _merge_spellings(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        data["agent_id"] = _one_of(data.pop("agent_id", None), data.pop("agent_id_camel", None))
        data["agent_email"] = _one_of(
            data.pop("agent_email", None),
            data.pop("agent_email_camel", None),
            same=lambda a, b: a.casefold() == b.casefold(),
        )
        if not isinstance(data.get("chat_subtype"), str):
            data["chat_subtype"] = None
        return data


class AgentSchema(Schema):
    """The agent a PATCH of a chat names (SPEC 10.2), judged as rows 15 and 16 of section 4."""

    class Meta:
        unknown = EXCLUDE

    agent_id = _optional(AgentId())
    agent_id_camel = _optional(AgentId(data_key="agentId"))
    agent_email = _optional(AgentEmail())
    agent_email_camel = _optional(AgentEmail(data_key="agentEmail"))

    @post_load
    def _merge_spellings(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return {
            "agent_id": _one_of(data.get("agent_id"), data.get("agent_id_camel")),
            "agent_email": _one_of(
                data.get("agent_email"),
                data.get("agent_email_camel"),
                same=lambda a, b: a.casefold() == b.casefold(),
            ),
        }


_AGENT_SCHEMA = AgentSchema()
AGENT_FIELDS = ("agent_id", "agentId", "agent_email", "agentEmail")


def load_agent(body: dict[str, Any]) -> tuple[int | None, str | None]:
    """The agent a body names by id and by email (either may be None); rule 15's
    BadRequest where a field has the wrong type or two fields disagree."""
    try:
        values = _AGENT_SCHEMA.load(body)
    except ValidationError as exc:
        raise errors.BadRequest(errors.AGENT_INVALID) from exc
    return values["agent_id"], values["agent_email"]


def _texts(messages: Any) -> list[str]:
    if isinstance(messages, str):
        return [messages]
    if isinstance(messages, dict):
        return [text for value in messages.values() for text in _texts(value)]
    return [text for value in messages for text in _texts(value)]


@functools.lru_cache(maxsize=64)
def _schema(allowed_regions: frozenset[str]) -> OutboundSmsSchema:
    """One schema per set of allowed regions: making one costs more than loading a body, and
    loading keeps no state in it."""
    return OutboundSmsSchema(allowed_regions)


def load(body: dict[str, Any], allowed_regions: Collection[str]) -> Loaded:
    """Load a JSON object; never raises for bad input, reports it in ``failures``."""
    try:
        values = _schema(frozenset(allowed_regions)).load(body)
    except ValidationError as exc:
        valid = exc.valid_data if isinstance(exc.valid_data, dict) else {}
        return Loaded(values=dict(valid), failures=tuple(_texts(exc.messages)))
    return Loaded(values=values, failures=())
