"""Twilio, through the official ``twilio`` package: the only module that imports it.

Sending is a create on Twilio's Messages resource; finding a message is a list of that
resource filtered by To, From and the day, matched on the body and the time. Twilio's
failures become the project's carrier errors here, at the border, and Twilio's webhooks are
checked with the package's own ``RequestValidator``.

Only the validator is imported with the module: the REST client (and requests, aiohttp...)
costs about 100 ms to import, which a function sending with the log carrier, or starting
cold, need not pay. They are imported when a TwilioCarrier is made.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import functools
import re
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from twilio.request_validator import RequestValidator

from sms import errors, logs
from sms.carriers import Outgoing, Receipt
from sms.config import Settings
from sms.domain import DELIVERED, FAILED, SENT, UNDELIVERED

STATUS_PATH = "/apps/api/v1/sms/status"
OPTED_OUT = 21610  # Twilio: "Attempt to send to unsubscribed recipient"
BAD_CREDENTIALS = 20003  # Twilio: "Authenticate": the account SID or auth token is wrong
# Twilio's message ids: two capital letters (SM, MM...), then 32 hexadecimal digits. The log
# carrier's ids (LM...) have the same form. Only such an id names a document (carrier_ids/).
MESSAGE_SID = re.compile(r"[A-Z]{2}[0-9a-fA-F]{32}")

# Twilio's message statuses in the service's words; others (receiving, received,
# partially_delivered, canceled) say nothing about an outbound message's delivery.
STATUSES = {
    "queued": SENT,
    "accepted": SENT,
    "scheduled": SENT,
    "sending": SENT,
    "sent": SENT,
    "delivered": DELIVERED,
    "read": DELIVERED,
    "undelivered": UNDELIVERED,
    "failed": FAILED,
}
# Twilio's clock and this instance's may differ by this much; its dates have whole seconds.
_CLOCK_SKEW = dt.timedelta(seconds=5)
_PAGE_SIZE = 50
_MAX_RECORDS = 200  # what the day's list is read for, at most: four pages


TWILIO_API = "https://api.twilio.com"


@functools.cache
def _timed_http_client() -> type[Any]:
    """Twilio's HTTP client, with a timeout set per call (its resource methods take none), and
    its requests to Twilio's API sent to another base where one is configured (a stand-in)."""
    from twilio.http.http_client import TwilioHttpClient  # noqa: PLC0415 see the module's doc

    class TimedHttpClient(TwilioHttpClient):  # type: ignore[misc]
        def __init__(self, api_base_url: str) -> None:
            super().__init__(timeout=10.0)
            self._base = api_base_url.rstrip("/")
            self._call_timeout: contextvars.ContextVar[float] = contextvars.ContextVar(
                "twilio_timeout", default=10.0
            )

        @contextlib.contextmanager
        def bounded(self, seconds: float) -> Iterator[None]:
            token = self._call_timeout.set(seconds)
            try:
                yield
            finally:
                self._call_timeout.reset(token)

        def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            kwargs["timeout"] = self._call_timeout.get()
            if url.startswith(TWILIO_API + "/"):
                url = self._base + url[len(TWILIO_API) :]
            return super().request(method, url, *args, **kwargs)

    return TimedHttpClient


class TwilioCarrier:
    name = "twilio"

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        api_base_url: str = TWILIO_API,
        status_callback: str | None = None,
        messaging_service_sid: str | None = None,
    ) -> None:
        from twilio.rest import Client  # noqa: PLC0415 see the module's doc

        # Every request of the Messages resource, and the next pages of a list, are made
        # against this base: Twilio's own, or a stand-in for it.
        self._http = _timed_http_client()(api_base_url)
        # Where its calls go, as a failure to reach it names it.
        self.host = urllib.parse.urlsplit(api_base_url).netloc or api_base_url
        self._client = Client(account_sid, auth_token, http_client=self._http)
        self._status_callback = status_callback
        self._messaging_service_sid = messaging_service_sid

    @classmethod
    def from_settings(cls, settings: Settings) -> TwilioCarrier:
        if not settings.twilio_account_sid or not settings.twilio_auth_token:
            raise ValueError("SMS_CARRIER=twilio needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN")
        callback = settings.public_base_url and settings.public_base_url + STATUS_PATH
        return cls(
            settings.twilio_account_sid,
            settings.twilio_auth_token,
            api_base_url=settings.twilio_api_base_url,
            status_callback=callback or None,
            messaging_service_sid=settings.twilio_messaging_service_sid,
        )

    def send(self, sms: Outgoing, timeout: float) -> Receipt:
        """Create the message at Twilio; the carrier's errors as the project's."""
        with self._http.bounded(timeout), _border(self.host):
            created = self._client.messages.create(
                to=sms.to_number,
                from_=sms.from_number,
                body=sms.text,
                **_given(
                    status_callback=self._status_callback,
                    messaging_service_sid=self._messaging_service_sid,
                ),
            )
        return Receipt(created.sid, STATUSES.get(created.status or "", SENT), _code(created))

    def find(self, sms: Outgoing, timeout: float) -> list[Receipt]:
        """Twilio's records that may be this message, oldest first.

        First the messages between the two numbers sent since the day it was stored; then,
        as a message Twilio has not sent yet has no date sent, the most recent ones whatever
        their date. Either way, a record matches on the body and the time it was created.
        """
        day = dt.datetime.combine(sms.since.date(), dt.time(), tzinfo=dt.timezone.utc)
        messages = self._client.messages
        with self._http.bounded(timeout), _border(self.host):
            since_day = messages.list(
                to=sms.to_number,
                from_=sms.from_number,
                date_sent_after=day,
                page_size=_PAGE_SIZE,
                limit=_MAX_RECORDS,
            )
            found = _matches(since_day, sms)
            if not found:
                recent = messages.list(
                    to=sms.to_number, from_=sms.from_number, page_size=_PAGE_SIZE, limit=_PAGE_SIZE
                )
                found = _matches(recent, sms)
        return [Receipt(r.sid, STATUSES.get(r.status or "", SENT), _code(r)) for r in found]


def _matches(records: Sequence[Any], sms: Outgoing) -> list[Any]:
    """The records of this text created while it can have been handed over (give or take the
    clocks' skew), oldest first."""
    earliest = sms.since.replace(microsecond=0) - _CLOCK_SKEW
    latest = (sms.until or dt.datetime.now(dt.timezone.utc)) + _CLOCK_SKEW
    found = [
        record
        for record in records
        if record.body == sms.text
        and isinstance(record.date_created, dt.datetime)
        and earliest <= record.date_created <= latest
    ]
    return sorted(found, key=lambda record: record.date_created)


def _given(**options: str | None) -> dict[str, str]:
    """The optional arguments that have a value (the package's default stands for the rest)."""
    return {name: value for name, value in options.items() if value}


def _code(record: Any) -> str | None:
    return str(record.error_code) if record.error_code else None


@contextlib.contextmanager
def _border(host: str) -> Iterator[None]:
    """Twilio's failures as the project's carrier errors (``host``: where the calls go).

    A refusal of the account's credentials (20003) fails every call, whatever the message:
    it is logged as the ERROR it is, naming what to check, besides refusing the message."""
    import requests  # noqa: PLC0415 imported by then: the carrier's client uses it
    from twilio.base.exceptions import (  # noqa: PLC0415
        TwilioException,
        TwilioRestException,
        TwilioServiceException,
    )

    try:
        yield
    except (TwilioRestException, TwilioServiceException) as exc:
        if exc.status >= 500:
            raise errors.CarrierOutcomeUnknown(f"Twilio answered {exc.status}", False) from exc
        code = exc.code if isinstance(exc.code, int) else None
        if code == BAD_CREDENTIALS:
            logs.event(
                "ERROR",
                f"Twilio refused the account's credentials ({BAD_CREDENTIALS}): check "
                "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN",
                carrier="twilio",
                carrier_host=host,
                carrier_error=str(code),
            )
            logs.note(carrier_problem="credentials refused")
        raise errors.CarrierRefused(
            str(code) if code else None, opted_out=code == OPTED_OUT
        ) from exc
    except requests.exceptions.RequestException as exc:
        if _never_connected(exc):
            raise errors.CarrierUnreachable(f"{type(exc).__name__} reaching {host}") from exc
        in_flight = isinstance(exc, requests.exceptions.Timeout)
        raise errors.CarrierOutcomeUnknown(type(exc).__name__, in_flight) from exc
    except TwilioException as exc:
        # An answer the package could not read: whatever Twilio did is unknown.
        raise errors.CarrierOutcomeUnknown(f"unreadable answer: {exc}", False) from exc


def _never_connected(exc: Any) -> bool:
    """Whether the request failed before it could reach Twilio (so nothing was sent)."""
    import requests  # noqa: PLC0415
    from urllib3.exceptions import ConnectTimeoutError, NewConnectionError  # noqa: PLC0415

    if isinstance(
        exc,
        requests.exceptions.ConnectTimeout
        | requests.exceptions.SSLError
        | requests.exceptions.ProxyError
        | requests.exceptions.InvalidURL,
    ):
        return True
    reason = getattr(exc.args[0] if exc.args else None, "reason", None)
    return isinstance(reason, NewConnectionError | ConnectTimeoutError)


# ---- webhooks ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StatusReport:
    """A status callback: which message, and its status in the service's words."""

    carrier_id: str
    status: str | None  # None: a Twilio status that says nothing about delivery
    error_code: str | None


class _Form:
    """Form parameters as RequestValidator reads them (every value of a repeated name)."""

    def __init__(self, params: Mapping[str, Sequence[str]]) -> None:
        self._params = params

    def __iter__(self) -> Iterator[str]:
        return iter(self._params)

    def getlist(self, name: str) -> list[str]:
        return list(self._params[name])


@dataclass(frozen=True)
class SignatureCheck:
    """Whether Twilio signed a webhook request, and if not, why (for the log, never the
    answer): ``urls`` are those the signature was checked against."""

    signed: bool
    reason: str | None = None
    urls: tuple[str, ...] = ()


class TwilioWebhooks:
    """Twilio's requests to this function: their signatures, and what they report."""

    def __init__(self, auth_token: str | None, public_base_url: str | None) -> None:
        self._validator = RequestValidator(auth_token) if auth_token else None
        self._base = public_base_url

    @classmethod
    def from_settings(cls, settings: Settings) -> TwilioWebhooks:
        return cls(settings.twilio_auth_token, settings.public_base_url)

    def check(
        self, path: str, query: str, params: Mapping[str, Sequence[str]], signature: str | None
    ) -> SignatureCheck:
        """Whether Twilio signed this request (the URL it was sent to and its parameters, with
        the account's auth token), and if not, why: webhooks not configured, no signature,
        or one that matches none of the URLs checked (a URL other than the one Twilio called,
        SMS_PUBLIC_BASE_URL's usual mistake, or another auth token)."""
        if self._validator is None or self._base is None:
            unset = [
                name
                for name, value in (
                    ("TWILIO_AUTH_TOKEN", self._validator),
                    ("SMS_PUBLIC_BASE_URL", self._base),
                )
                if value is None
            ]
            return SignatureCheck(
                False, f"webhooks are not configured: no {' and no '.join(unset)}"
            )
        # The URL Twilio was given for this webhook (SPEC: the path without a trailing slash),
        # or the URL exactly as requested: Twilio signs the URL it calls.
        suffix = f"?{query}" if query else ""
        urls = tuple(
            dict.fromkeys((self._base + path.rstrip("/") + suffix, self._base + path + suffix))
        )
        if not signature:
            return SignatureCheck(False, "no X-Twilio-Signature", urls)
        form = _Form(params)
        if any(self._validator.validate(url, form, signature) for url in urls):
            return SignatureCheck(True, urls=urls)
        return SignatureCheck(
            False,
            "X-Twilio-Signature matches none of the URLs checked: Twilio called another URL "
            "than SMS_PUBLIC_BASE_URL makes, or signed with another TWILIO_AUTH_TOKEN",
            urls,
        )

    @staticmethod
    def status_report(params: Mapping[str, Sequence[str]]) -> StatusReport:
        """What a status callback says; BadRequest where it names no message or status."""
        sid = _first(params, "MessageSid")
        status = _first(params, "MessageStatus")
        if not sid:
            raise errors.BadRequest(errors.MESSAGE_SID_REQUIRED)
        if not status:
            raise errors.BadRequest(errors.MESSAGE_STATUS_REQUIRED)
        code = _first(params, "ErrorCode")
        return StatusReport(_judged_sid(sid), STATUSES.get(status.lower()), code if code else None)


@dataclass(frozen=True)
class IncomingSms:
    """An incoming-message webhook: Twilio's id for it, its numbers as sent, and its text."""

    carrier_id: str
    from_number: str
    to_number: str
    text: str


def incoming_sms(params: Mapping[str, Sequence[str]]) -> IncomingSms:
    """What an incoming-message webhook says; BadRequest where a field it needs is missing."""
    required = {
        "MessageSid": errors.MESSAGE_SID_REQUIRED,
        "From": errors.FROM_REQUIRED,
        "To": errors.TO_REQUIRED,
    }
    fields = {name: _first(params, name) for name in required}
    for name, value in fields.items():
        if not value:
            raise errors.BadRequest(required[name])
    body = params.get("Body") or ("",)
    return IncomingSms(_judged_sid(fields["MessageSid"]), fields["From"], fields["To"], body[0])


def _judged_sid(sid: str) -> str:
    """A MessageSid of Twilio's form; 400 for any other, before it can name a document
    (Firestore refuses some names, and a "/" would name a nested one)."""
    if not MESSAGE_SID.fullmatch(sid):
        raise errors.BadRequest(errors.MESSAGE_SID_INVALID)
    return sid


def _first(params: Mapping[str, Sequence[str]], name: str) -> str:
    found = params.get(name) or ()
    return found[0].strip() if found else ""
