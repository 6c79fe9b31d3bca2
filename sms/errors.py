"""Every failure this package raises on purpose, and the order in which validation reports them.

One root, two kinds below it: answers, which the adapters render as they are, and failures
that are not answers, which the code that called the backend or the carrier decides about.
An adapter (HTTP, the sweeper, the event dispatcher) turns a ``Transient`` that reached it
into a 503; anything outside this tree is a bug, logged with its traceback as a 500::

    SmsError
    ├── ApiError                  an answer: HTTP status + {"message": ...}
    │   ├── BadRequest            400 a rule of SPEC section 4 failed (or another 400)
    │   ├── Unauthorized          401 credentials missing or wrong (one answer for every cause)
    │   ├── Forbidden             403 a carrier webhook without a valid signature
    │   ├── NotFound              404
    │   ├── MethodNotAllowed      405 carries the allowed methods
    │   ├── Conflict              409 an Idempotency-Key whose first request is still running
    │   ├── PayloadTooLarge       413
    │   ├── Unprocessable         422 an Idempotency-Key reused for a different request
    │   ├── TooManyRequests       429 the tenant's requests per second are spent
    │   ├── SmsNotSent            502 the carrier refused the message, or could not be reached
    │   └── ServiceUnavailable    503 the backend could not be reached in time; Retry-After
    │       └── SendPending           the session is committed, its send not yet settled
    ├── Transient                 may pass: the same call can succeed later
    │   ├── BackendUnavailable    Firestore could not be reached, or not within the deadline
    │   ├── CarrierUnreachable    the carrier could not be reached at all: nothing was sent
    │   └── CarrierOutcomeUnknown the message may or may not have gone out
    └── Refused                   the other side said no, and would say it again
        ├── LostRace              a write precondition failed: the caller reads and decides again
        └── CarrierRefused        the carrier refused the message: nothing was sent
"""

from __future__ import annotations

# The texts of SPEC section 4, in order of precedence: when several rules fail, the one
# listed first answers. The position in this tuple *is* the precedence.
BODY_NOT_OBJECT = "request body must be a JSON object"
CHAT_TYPE_REQUIRED = "chat_type needs to be provided"
CHAT_TYPE_INVALID = "valid chat type needs to be provided"
SMS_DISABLED = "SMS is not enabled"
OUTBOUND_SMS_DISABLED = "Outbound SMS is not enabled"
END_USER_NUMBER_REQUIRED = "end_user_number is required"
END_USER_NUMBER_INVALID = "end_user_number is invalid"
NUMBER_FOREIGN = "Non-US phone number not allowed"
OUTBOUND_NUMBER_REQUIRED = "outbound_number is required"
OUTBOUND_NUMBER_INVALID = "outbound_number is invalid"
OUTBOUND_NUMBER_NOT_FOUND = "outbound_number is not found"
MESSAGE_REQUIRED = "message is required"
MESSAGE_TOO_LONG = "message is too long"
OPTED_OUT = "end_user_number has opted out"  # SPEC 10.3: right after row 13
QUIET_HOURS = "end_user_number is in quiet hours"  # SPEC 10.8: right after the opt-out
TICKET_ID_INVALID = "ticket_id is invalid"
AGENT_INVALID = "agent is invalid"
AGENT_NOT_FOUND = "agent is not found"
ACTIVE_SESSION = "Outbound SMS failed. Consumer is already in an active SMS session."

# Beyond the table: Idempotency-Key (SPEC 10.1) and reading and ending chats (SPEC 10.2).
IDEMPOTENCY_KEY_INVALID = "Idempotency-Key is invalid"
IDEMPOTENCY_KEY_REUSED = "Idempotency-Key is already used for a different request"
IDEMPOTENCY_KEY_IN_PROGRESS = "A request with this Idempotency-Key is in progress"
CHAT_ALREADY_ENDED = "Chat is already ended"
CHAT_ALREADY_ASSIGNED = "Chat is already assigned"
STATUS_MUST_BE_FINISHED = 'status must be "finished"'
# Sending (SPEC 10.3), Twilio's webhooks and the transcript (SPEC 10.5).
SMS_NOT_SENT = "SMS could not be sent"
MESSAGE_SID_REQUIRED = "MessageSid is required"
MESSAGE_SID_INVALID = "MessageSid is invalid"  # not of Twilio's form
MESSAGE_STATUS_REQUIRED = "MessageStatus is required"
FROM_REQUIRED = "From is required"
TO_REQUIRED = "To is required"
FROM_INVALID = "From is invalid"
LIMIT_INVALID = "limit is invalid"
PAGE_TOKEN_INVALID = "page_token is invalid"  # noqa: S105 an error text
# The chats list (SPEC 10.2).
STATUS_INVALID = "status is invalid"
# The events feed (SPEC 10.7).
SINCE_INVALID = "since is invalid"
TYPE_INVALID = "type is invalid"

PRECEDENCE: tuple[str, ...] = (
    BODY_NOT_OBJECT,
    CHAT_TYPE_REQUIRED,
    CHAT_TYPE_INVALID,
    SMS_DISABLED,
    OUTBOUND_SMS_DISABLED,
    END_USER_NUMBER_REQUIRED,
    END_USER_NUMBER_INVALID,
    NUMBER_FOREIGN,
    OUTBOUND_NUMBER_REQUIRED,
    OUTBOUND_NUMBER_INVALID,
    OUTBOUND_NUMBER_NOT_FOUND,
    MESSAGE_REQUIRED,
    MESSAGE_TOO_LONG,
    OPTED_OUT,
    QUIET_HOURS,
    TICKET_ID_INVALID,
    AGENT_INVALID,
    AGENT_NOT_FOUND,
    ACTIVE_SESSION,
)
_RANK = {text: rank for rank, text in enumerate(PRECEDENCE)}


def rank(text: str) -> int:
    """Position of a validation text in the precedence order (lower answers first)."""
    return _RANK[text]


class SmsError(Exception):
    """The root of every failure this package raises on purpose."""


class ApiError(SmsError):
    """An answer other than success: an HTTP status and the text of {"message": ...}."""

    status = 500
    message = "Internal Server Error"
    outcome: str | None = None  # the log line's outcome, where it is not "rejected"

    def __init__(self, message: str | None = None) -> None:
        if message is not None:
            self.message = message
        super().__init__(self.message)

    def headers(self) -> dict[str, str]:
        """Extra response headers this answer requires."""
        return {}


class BadRequest(ApiError):
    status = 400


class Unauthorized(ApiError):
    status = 401
    message = "Unauthorized"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Basic realm="sms"'}


class Forbidden(ApiError):
    status = 403
    message = "Forbidden"


class NotFound(ApiError):
    status = 404
    message = "Not Found"


class MethodNotAllowed(ApiError):
    status = 405
    message = "Method Not Allowed"

    def __init__(self, allowed: tuple[str, ...]) -> None:
        super().__init__()
        self.allowed = allowed

    def headers(self) -> dict[str, str]:
        return {"Allow": ", ".join(self.allowed)}


class Conflict(ApiError):
    status = 409

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(max(self.retry_after, 1))} if self.retry_after else {}


class PayloadTooLarge(ApiError):
    status = 413
    message = "request body is too large"


class Unprocessable(ApiError):
    status = 422


class TooManyRequests(ApiError):
    status = 429
    message = "Too many requests"
    outcome = "rate_limited"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "1"}


class SmsNotSent(ApiError):
    """The carrier refused the message or could not be reached: the session has failed."""

    status = 502
    message = SMS_NOT_SENT
    outcome = "sms_not_sent"


class ServiceUnavailable(ApiError):
    status = 503
    message = "Service temporarily unavailable, please retry"
    outcome = "unavailable"

    def __init__(self, retry_after_seconds: int = 1) -> None:
        super().__init__()
        self.retry_after_seconds = retry_after_seconds

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_seconds)}


class SendPending(ServiceUnavailable):
    """The session is committed, but whether its SMS went out is not settled yet.

    A retry with the same Idempotency-Key, or the sweeper, settles it later.
    """

    outcome = "send_pending"


class Transient(SmsError):
    """A failure that may pass: the same call can succeed when tried again later."""


class Refused(SmsError):
    """The other side said no, and would say it again: trying again changes nothing."""


class LostRace(Refused):
    """A write precondition failed: a concurrent request changed the document first."""


class BackendUnavailable(Transient):
    """Firestore could not be reached, kept aborting, or not within the request's deadline."""


class CarrierRefused(Refused):
    """The carrier refused the message: nothing was sent. ``code`` is the carrier's."""

    def __init__(self, code: str | None, opted_out: bool = False) -> None:
        super().__init__(f"refused with code {code}")
        self.code = code
        self.opted_out = opted_out  # the consumer unsubscribed from this sender


class CarrierUnreachable(Transient):
    """The carrier could not be reached at all: nothing was sent."""


class CarrierOutcomeUnknown(Transient):
    """The message may have gone out (a timeout, a 5xx, a dropped connection).

    ``in_flight``: the carrier may still be working on the request (it timed out on this
    side), so only time tells whether it lands. Otherwise the carrier is done with it, and
    asking it what it holds is a reliable answer.
    """

    def __init__(self, reason: str, in_flight: bool) -> None:
        super().__init__(reason)
        self.in_flight = in_flight
