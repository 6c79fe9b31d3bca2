"""The HTTP surface (SPEC sections 1 and 2): routing, methods, bodies of any shape or size,
and authentication that never says why it failed.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from conftest import SEED_BODY, SMS_PATH, basic, count_documents
from sms import credentials

NOT_OBJECT = {"message": "request body must be a JSON object"}
UNAUTHORIZED = {"message": "Unauthorized"}
TOO_LARGE = {"message": "request body is too large"}
LIMIT = 64 * 1024


def post_raw(
    app_client: Any, tenant: Any, data: bytes, path: str = SMS_PATH, **headers: str
) -> Any:
    return app_client.post(path, data=data, headers={**tenant.headers, **headers})


def seed_json_of_size(size: int) -> bytes:
    """The seed body, padded with an unknown field to exactly `size` bytes."""
    empty = json.dumps({**SEED_BODY, "pad": ""}).encode()
    data = json.dumps({**SEED_BODY, "pad": "x" * (size - len(empty))}).encode()
    assert len(data) == size
    return data


# ---- routing ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/apps/api/v1",
        "/apps/api/v1/smsx",
        "/apps/api/v2/sms",
        "/sms",
        "/favicon.ico",
        "/robots.txt",
    ],
)
def test_other_paths_return_404_not_found_as_json(app_client: Any, tenant: Any, path: str) -> None:
    response = app_client.post(path, json=SEED_BODY, headers=tenant.headers)
    assert response.status_code == 404
    assert response.get_json() == {"message": "Not Found"}
    assert response.mimetype == "application/json"


def test_get_on_another_path_returns_404_too(app_client: Any) -> None:
    response = app_client.get("/apps/api/v1/chat")
    assert (response.status_code, response.get_json()) == (404, {"message": "Not Found"})


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_on_the_sms_path_return_405_with_allow_post(
    app_client: Any, tenant: Any, method: str
) -> None:
    response = app_client.open(SMS_PATH, method=method, json=SEED_BODY, headers=tenant.headers)
    assert response.status_code == 405
    assert response.get_json() == {"message": "Method Not Allowed"}
    assert response.mimetype == "application/json"
    assert "POST" in [m.strip() for m in response.headers["Allow"].split(",")]


def test_trailing_slash_on_the_sms_path_is_accepted(app_client: Any, tenant: Any) -> None:
    response = app_client.post(SMS_PATH + "/", json=SEED_BODY, headers=tenant.headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["outbound_number"] == "+16285550199"


# ---- Content-Type -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
        "application/json",
    ],
)
def test_body_is_parsed_as_json_whatever_the_content_type(
    app_client: Any, tenant: Any, content_type: str | None
) -> None:
    headers = dict(tenant.headers)
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = app_client.post(SMS_PATH, data=json.dumps(SEED_BODY), headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    assert response.get_json()["chat_type"] == "Messaging (SMS)"


# ---- malformed bodies -------------------------------------------------------------------


def with_raw_message(raw: bytes) -> bytes:
    """The seed body with these exact bytes as the JSON value of `message`."""
    return json.dumps({**SEED_BODY, "message": "@@"}).encode().replace(b'"@@"', raw)


MALFORMED = {
    "not-json": b"chat_type=Messaging+(SMS)&message=hi",
    "truncated-object": json.dumps(SEED_BODY).encode()[:-1],
    "array": json.dumps([SEED_BODY]).encode(),
    "string": b'"lorem ipsum"',
    "number": b"42",
    "true": b"true",
    "null": b"null",
    "empty": b"",
    "whitespace": b"  \n ",
    "nan": b'{"chat_type": "SMS", "message": NaN}',
    "bare-nan": b"NaN",
    "infinity": b'{"message": Infinity}',
    "minus-infinity": b'{"message": -Infinity}',
    "nested-unclosed-65000": b"[" * 65000,
    "nested-closed-32000": b"[" * 32000 + b"]" * 32000,
    "nested-in-a-field": with_raw_message(b"[" * 30000 + b"]" * 30000),
    "invalid-utf8": with_raw_message(b'"\xff\xfe"'),
    "latin1-bytes": with_raw_message(b'"caf\xe9"'),
    "lone-surrogate": with_raw_message(b'"\\ud800"'),
    "lone-low-surrogate": with_raw_message(b'"x\\udc00y"'),
    "trailing-garbage": json.dumps(SEED_BODY).encode() + b" {}",
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_body_returns_400_not_a_json_object(
    app_client: Any, tenant: Any, db: Any, data: bytes
) -> None:
    assert len(data) <= LIMIT
    before = count_documents(db, tenant.id)
    response = post_raw(app_client, tenant, data, **{"Content-Type": "application/json"})
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json() == NOT_OBJECT
    assert response.mimetype == "application/json"
    assert count_documents(db, tenant.id) == before


def test_valid_surrogate_pair_escape_is_accepted(app_client: Any, tenant: Any) -> None:
    data = json.dumps({**SEED_BODY, "message": "hi \U0001f600"}, ensure_ascii=True).encode()
    assert b"\\ud83d\\ude00" in data
    response = post_raw(app_client, tenant, data)
    assert response.status_code == 200, response.get_data(as_text=True)


# ---- size limit -------------------------------------------------------------------------


def test_body_over_64_kib_returns_413(app_client: Any, tenant: Any, db: Any) -> None:
    before = count_documents(db, tenant.id)
    response = post_raw(app_client, tenant, seed_json_of_size(LIMIT + 1))
    assert response.status_code == 413
    assert response.get_json() == TOO_LARGE
    assert response.mimetype == "application/json"
    assert count_documents(db, tenant.id) == before


def test_body_of_exactly_64_kib_is_not_refused_for_size(app_client: Any, tenant: Any) -> None:
    response = post_raw(app_client, tenant, seed_json_of_size(LIMIT))
    assert response.status_code == 200, response.get_data(as_text=True)


def test_much_larger_body_returns_413(app_client: Any, tenant: Any) -> None:
    response = post_raw(app_client, tenant, b"[" * (10 * LIMIT))
    assert (response.status_code, response.get_json()) == (413, TOO_LARGE)


def test_chunked_body_over_64_kib_returns_413_from_the_real_server(
    server: str, tenant: Any
) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(70):
            yield b" " * 1024

    response = requests.post(server + SMS_PATH, data=chunks(), headers=tenant.headers, timeout=30)
    assert response.status_code == 413
    assert response.json() == TOO_LARGE


def test_chunked_body_within_the_limit_is_accepted_by_the_real_server(
    server: str, tenant: Any
) -> None:
    data = json.dumps(SEED_BODY).encode()

    def chunks() -> Iterator[bytes]:
        yield data[:10]
        yield data[10:]

    response = requests.post(server + SMS_PATH, data=chunks(), headers=tenant.headers, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/json")


# ---- authentication ---------------------------------------------------------------------


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _disabled_credential(tenant: Any, other: Any, db: Any) -> dict[str, str]:
    ref = (
        db.collection("tenants")
        .document(tenant.id)
        .collection("api_credentials")
        .document("default")
    )
    ref.update({"enabled": False})
    return basic(tenant.id, tenant.token)


def _hash_under_a_tenant_without_a_document(tenant: Any, other: Any, db: Any) -> dict[str, str]:
    ghost = "tghost" + tenant.id[1:9]
    db.collection("tenants").document(ghost).collection("api_credentials").document("default").set(
        {"name": "x", "token_sha256": credentials.hash_token(tenant.token), "enabled": True}
    )
    return basic(ghost, tenant.token)


AUTH_FAILURES: dict[str, Callable[[Any, Any, Any], dict[str, str]]] = {
    "missing-header": lambda t, o, db: {},
    "empty-header": lambda t, o, db: {"Authorization": ""},
    "bearer-scheme": lambda t, o, db: {"Authorization": f"Bearer {t.token}"},
    "scheme-only": lambda t, o, db: {"Authorization": "Basic"},
    "bad-base64": lambda t, o, db: {"Authorization": "Basic !!!not-base64!!!"},
    "base64-of-invalid-utf8": lambda t, o, db: {
        "Authorization": "Basic " + base64.b64encode(b"\xff:\xfe").decode()
    },
    "no-colon": lambda t, o, db: {"Authorization": "Basic " + _b64(t.id + t.token)},
    "empty-password": lambda t, o, db: basic(t.id, ""),
    "empty-username": lambda t, o, db: basic("", t.token),
    "wrong-token": lambda t, o, db: basic(t.id, "not-the-token"),
    "token-with-extra-char": lambda t, o, db: basic(t.id, t.token + "x"),
    "hash-as-password": lambda t, o, db: basic(t.id, credentials.hash_token(t.token)),
    "unknown-tenant": lambda t, o, db: basic("tnosuchtenant0000", t.token),
    "path-like-tenant": lambda t, o, db: basic(f"{t.id}/api_credentials/default", t.token),
    "disabled-credential": _disabled_credential,
    "another-tenants-token": lambda t, o, db: basic(t.id, o.token),
    "own-token-under-another-tenant-name": lambda t, o, db: basic(o.id, t.token),
    "hash-stored-under-a-tenant-without-document": _hash_under_a_tenant_without_a_document,
}


@pytest.fixture
def other(make_tenant: Callable[..., Any]) -> Any:
    return make_tenant()


def _unauthorized_answer(app_client: Any, headers: dict[str, str]) -> Any:
    return app_client.post(SMS_PATH, json=SEED_BODY, headers=headers)


@pytest.mark.parametrize("case", AUTH_FAILURES.values(), ids=AUTH_FAILURES.keys())
def test_bad_credentials_return_401_unauthorized_with_basic_challenge(
    app_client: Any, tenant: Any, other: Any, db: Any, case: Callable[..., dict[str, str]]
) -> None:
    headers = case(tenant, other, db)
    before = count_documents(db, tenant.id)
    response = _unauthorized_answer(app_client, headers)
    assert response.status_code == 401
    assert response.get_json() == UNAUTHORIZED
    assert response.headers["WWW-Authenticate"] == 'Basic realm="sms"'
    assert response.mimetype == "application/json"
    assert count_documents(db, tenant.id) == before


def test_every_authentication_failure_gives_the_identical_answer(
    app_client: Any, make_tenant: Callable[..., Any], db: Any
) -> None:
    answers = {}
    for name, case in AUTH_FAILURES.items():
        tenant, other = make_tenant(), make_tenant()
        response = _unauthorized_answer(app_client, case(tenant, other, db))
        answers[name] = (
            response.status_code,
            response.get_data(),
            tuple(sorted(response.headers.items())),
        )
    distinct = set(answers.values())
    assert len(distinct) == 1, answers


def test_credentials_are_checked_before_the_body(app_client: Any, tenant: Any) -> None:
    response = app_client.post(SMS_PATH, data=b"not json", headers=basic(tenant.id, "wrong"))
    assert (response.status_code, response.get_json()) == (401, UNAUTHORIZED)


def test_the_right_token_of_the_right_tenant_is_accepted(app_client: Any, tenant: Any) -> None:
    response = app_client.post(SMS_PATH, json=SEED_BODY, headers=tenant.headers)
    assert response.status_code == 200, response.get_data(as_text=True)


def test_a_second_enabled_credential_of_the_tenant_is_accepted(
    app_client: Any, tenant: Any, db: Any
) -> None:
    token = credentials.new_token()
    db.collection("tenants").document(tenant.id).collection("api_credentials").document(
        "second"
    ).set(
        {
            "name": "second",
            "token_sha256": hashlib.sha256(token.encode()).hexdigest(),
            "enabled": True,
        }
    )
    response = app_client.post(SMS_PATH, json=SEED_BODY, headers=basic(tenant.id, token))
    assert response.status_code == 200, response.get_data(as_text=True)


def _all_documents(db: Any, tenant_id: str) -> Iterator[dict[str, Any]]:
    root = db.collection("tenants").document(tenant_id)

    def walk(ref: Any) -> Iterator[dict[str, Any]]:
        snap = ref.get()
        if snap.exists:
            yield snap.to_dict()
        for collection in ref.collections():
            for doc in collection.list_documents():
                yield from walk(doc)

    yield from walk(root)


def test_token_is_stored_only_as_its_sha256(app_client: Any, tenant: Any, db: Any) -> None:
    assert app_client.post(SMS_PATH, json=SEED_BODY, headers=tenant.headers).status_code == 200
    credential = (
        db.collection("tenants")
        .document(tenant.id)
        .collection("api_credentials")
        .document("default")
        .get()
    )
    assert credential.to_dict()["token_sha256"] == hashlib.sha256(tenant.token.encode()).hexdigest()
    documents = list(_all_documents(db, tenant.id))
    assert len(documents) > 3
    for document in documents:
        assert tenant.token not in repr(document)
