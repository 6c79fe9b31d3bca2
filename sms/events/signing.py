"""Standard Webhooks 1.0 signatures (standardwebhooks.com) and endpoint secrets.

A secret is "whsec_" followed by the standard base64 of 24 to 64 random bytes; those bytes
key an HMAC-SHA256 over "{webhook-id}.{webhook-timestamp}.{body}". Every secret of an
endpoint that has not yet expired signs each delivery, so a receiver that knows any one of
them verifies it, which is what lets a secret be rotated without a gap.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence
from secrets import token_bytes

SECRET_PREFIX = "whsec_"  # noqa: S105 the prefix of every secret, not a secret
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64
NEW_SECRET_BYTES = 32


def new_secret() -> str:
    """A fresh endpoint secret: "whsec_" + base64 of 32 random bytes."""
    key = token_bytes(NEW_SECRET_BYTES)
    return SECRET_PREFIX + base64.b64encode(key).decode("ascii")


def _key(value: object) -> bytes | None:
    """The HMAC key a secret stands for, or None when ``value`` is not a secret."""
    if not isinstance(value, str) or not value.startswith(SECRET_PREFIX):
        return None
    try:
        key = base64.b64decode(value.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):  # bad base64, or characters that are not ASCII
        return None
    return key if MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES else None


def is_secret(value: object) -> bool:
    """Whether ``value`` is "whsec_" + standard base64 of 24 to 64 bytes."""
    return _key(value) is not None


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The "v1,..." signature of one delivery under one secret (ValueError if not a secret)."""
    key = _key(secret)
    if key is None:
        raise ValueError("not a webhook secret (whsec_ + base64 of 24 to 64 bytes)")
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signatures(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The webhook-signature header: one "v1,..." per secret, separated by spaces."""
    if not secrets:
        raise ValueError("a delivery needs at least one secret to sign it")
    return " ".join(signature(secret, msg_id, timestamp, body) for secret in secrets)


def headers(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The Standard Webhooks headers of one delivery attempt of ``body``."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signatures(secrets, msg_id, timestamp, body),
        "Content-Type": "application/json",
    }
