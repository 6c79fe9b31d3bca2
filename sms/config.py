"""Settings read from the environment once, into one typed object with defaults."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache

CARRIERS = ("log", "twilio")
# The least SMS_SWEEP_AFTER_SECONDS may be (SPEC 8): a hand-over can be in flight for up to a
# request's 10 s, and a sweeper that took the message sooner could send it a second time.
MIN_SWEEP_AFTER_SECONDS = 15.0


def _positive_float(
    env: dict[str, str], name: str, default: float, allow_zero: bool = False
) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if value < 0 or (value == 0 and not allow_zero) or value != value:  # noqa: PLR0124 NaN
        raise ValueError(f"{name} must be {'0 or more' if allow_zero else 'positive'}, got {raw!r}")
    return value


def _url(env: dict[str, str], name: str, default: str | None = None) -> str | None:
    raw = env.get(name) or default
    if raw is None:
        return None
    if not raw.startswith(("https://", "http://")) or any(c.isspace() for c in raw):
        raise ValueError(f"{name} must be an http(s) URL, got {raw!r}")
    return raw.rstrip("/")


def _positive_int(env: dict[str, str], name: str, default: int) -> int:
    value = _positive_float(env, name, default)
    if value != int(value):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class Settings:
    """How this instance runs. Tenants configure themselves in Firestore (SPEC section 7)."""

    project: str | None = None
    database: str = "(default)"
    id_block_size: int = 50
    request_deadline_seconds: float = 8.0
    rpc_timeout_seconds: float = 5.0
    # Sending (SPEC 8 and 10.3).
    carrier: str = "log"
    twilio_account_sid: str | None = field(default=None, repr=False)
    twilio_auth_token: str | None = field(default=None, repr=False)
    twilio_messaging_service_sid: str | None = None
    twilio_api_base_url: str = "https://api.twilio.com"
    public_base_url: str | None = None
    sweep_after_seconds: float = 60.0
    # How long an instance may keep what authentication read (tenant and credential); 0: not
    # at all. At most 10 s, the time SPEC 7 gives a change to take effect.
    config_cache_seconds: float = 5.0
    # Events (SPEC 10.7): the Pub/Sub topic that carries them to sms_events, whether they are
    # published at all (not with the Firestore emulator and no Pub/Sub emulator), and the
    # hosts webhooks may reach though they are not public (local runs and tests).
    events_topic: str = "sms-events"
    publish_events: bool = True
    webhooks_allow_hosts: str | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        return cls(
            project=env.get("GOOGLE_CLOUD_PROJECT") or env.get("GCLOUD_PROJECT") or None,
            database=env.get("FIRESTORE_DATABASE") or "(default)",
            id_block_size=_positive_int(env, "SMS_ID_BLOCK_SIZE", cls.id_block_size),
            # A request answers within 10 s (SPEC 10.3), and its send is over well before
            # the sweeper may take the message (SMS_SWEEP_AFTER_SECONDS, at least 15).
            request_deadline_seconds=_at_most(
                "SMS_REQUEST_DEADLINE_SECONDS",
                _positive_float(env, "SMS_REQUEST_DEADLINE_SECONDS", cls.request_deadline_seconds),
                10.0,
            ),
            rpc_timeout_seconds=_positive_float(
                env, "SMS_FIRESTORE_TIMEOUT_SECONDS", cls.rpc_timeout_seconds
            ),
            carrier=_carrier(env.get("SMS_CARRIER") or cls.carrier),
            twilio_account_sid=env.get("TWILIO_ACCOUNT_SID") or None,
            twilio_auth_token=env.get("TWILIO_AUTH_TOKEN") or None,
            twilio_messaging_service_sid=env.get("TWILIO_MESSAGING_SERVICE_SID") or None,
            twilio_api_base_url=_url(env, "TWILIO_API_BASE_URL", cls.twilio_api_base_url)
            or cls.twilio_api_base_url,
            public_base_url=_url(env, "SMS_PUBLIC_BASE_URL"),
            sweep_after_seconds=_seconds_at_least(
                env, "SMS_SWEEP_AFTER_SECONDS", cls.sweep_after_seconds, MIN_SWEEP_AFTER_SECONDS
            ),
            config_cache_seconds=_at_most(
                "SMS_CONFIG_CACHE_SECONDS",
                _positive_float(
                    env, "SMS_CONFIG_CACHE_SECONDS", cls.config_cache_seconds, allow_zero=True
                ),
                10.0,
            ),
            events_topic=_topic(env.get("SMS_EVENTS_TOPIC") or cls.events_topic),
            publish_events=bool(env.get("PUBSUB_EMULATOR_HOST"))
            or not env.get("FIRESTORE_EMULATOR_HOST"),
            webhooks_allow_hosts=env.get("SMS_WEBHOOKS_ALLOW_HOSTS") or None,
        )


def _at_most(name: str, value: float, maximum: float) -> float:
    if value > maximum:
        raise ValueError(f"{name} must be at most {maximum:g}, got {value:g}")
    return value


def _seconds_at_least(env: dict[str, str], name: str, default: float, minimum: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not minimum <= value < math.inf:  # too small, not a number, or infinite
        raise ValueError(f"{name} must be a number of seconds, at least {minimum:g}, got {raw!r}")
    return value


# A Pub/Sub topic id: 3 to 255 of these, starting with a letter, not starting with "goog".
_TOPIC = re.compile(r"(?!goog)[A-Za-z][A-Za-z0-9._~+%-]{2,254}")


def _topic(name: str) -> str:
    if not _TOPIC.fullmatch(name):
        raise ValueError(f"SMS_EVENTS_TOPIC must be a Pub/Sub topic id, got {name!r}")
    return name


def _carrier(name: str) -> str:
    if name not in CARRIERS:
        raise ValueError(f"SMS_CARRIER must be one of {', '.join(CARRIERS)}, got {name!r}")
    return name


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The settings of this process, read from the environment on first use."""
    return Settings.from_env()
