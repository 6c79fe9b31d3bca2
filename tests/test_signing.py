"""Standard Webhooks signatures, checked with the standardwebhooks package (SPEC 10.7)."""

from __future__ import annotations

import base64
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from sms.events import signing

BODY = b'{"id": "evt_1", "type": "chat.created", "data": {"caf\xc3\xa9": 1}}'


def secret_of(size: int) -> str:
    return signing.SECRET_PREFIX + base64.b64encode(bytes(range(size))).decode()


def test_the_example_of_the_standard_verifies_byte_for_byte() -> None:
    # The worked example of the Standard Webhooks reference implementations.
    assert (
        signing.signature(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            b'{"test": 2432232314}',
        )
        == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


def test_a_delivery_verifies_with_each_of_its_secrets() -> None:
    secrets = [signing.new_secret(), secret_of(24), secret_of(64)]
    now = int(time.time())
    headers = signing.headers(secrets, "evt_1", now, BODY)

    assert list(headers) == ["webhook-id", "webhook-timestamp", "webhook-signature", "Content-Type"]
    assert headers["webhook-id"] == "evt_1"
    assert headers["webhook-timestamp"] == str(now)
    assert headers["Content-Type"] == "application/json"
    assert len(headers["webhook-signature"].split(" ")) == 3
    for secret in secrets:
        Webhook(secret).verify(BODY, headers, json_parse=False)


@pytest.mark.parametrize("part", ["body", "id", "timestamp", "secret"])
def test_anything_changed_fails_verification(part: str) -> None:
    secret = signing.new_secret()
    now = int(time.time())
    headers = signing.headers([secret], "evt_1", now, BODY)
    body = BODY
    if part == "body":
        body = BODY.replace(b"chat.created", b"chat.createe")
    elif part == "id":
        headers["webhook-id"] = "evt_2"
    elif part == "timestamp":
        headers["webhook-timestamp"] = str(now - 1)
    else:
        secret = signing.new_secret()

    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, headers, json_parse=False)


def test_new_secrets_are_32_random_bytes_behind_the_prefix() -> None:
    made = {signing.new_secret() for _ in range(20)}

    assert len(made) == 20
    for secret in made:
        assert secret.startswith("whsec_")
        assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
        assert signing.is_secret(secret)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (secret_of(24), True),
        (secret_of(64), True),
        (secret_of(23), False),
        (secret_of(65), False),
        (secret_of(32).removeprefix("whsec_"), False),  # no prefix
        ("whsec_" + base64.urlsafe_b64encode(b"\xfb" * 32).decode(), False),  # not standard
        (secret_of(32).rstrip("="), False),  # padding missing
        (secret_of(32) + "\n", False),
        ("whsec_é" + secret_of(32)[7:], False),
        ("", False),
        (None, False),
        (b"whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", False),
    ],
)
def test_is_secret(value: object, expected: bool) -> None:
    assert signing.is_secret(value) is expected


def test_signing_needs_a_secret() -> None:
    with pytest.raises(ValueError, match="at least one secret"):
        signing.signatures([], "evt_1", 1, BODY)
    with pytest.raises(ValueError, match="not a webhook secret") as raised:
        signing.signature("whsec_short", "evt_1", 1, BODY)
    assert "short" not in str(raised.value)  # a secret is never repeated in a message
