"""openapi.yaml: a valid OpenAPI 3.1 document, and the served function answers as it says.

The document is checked on its own (openapi-spec-validator; its examples against its schemas;
its error texts against sms/errors.py), then against live answers: every request here goes
over real HTTP to the function served by functions-framework (the `server` fixture, with the
`log` carrier; `twilio_server`, with SMS_CARRIER=twilio against the stand-in for Twilio, for
refused sends, Twilio's signed status callbacks and the consumers' signed replies), and each
request/response pair is validated with openapi-core (a tenant limited to one request a
second gives the 429s). Answers that belong to no operation (an unknown path, a method a path
does not have) are validated against the document's `components/responses` entry for them.
"""

from __future__ import annotations

import ast
import copy
import datetime as dt
import hashlib
import itertools
import json
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import pytest
import requests
import yaml
from google.cloud import firestore
from openapi_core import Config, OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse
from openapi_core.deserializing.media_types.util import plain_loads
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import OpenAPIV31SpecValidator
from openapi_spec_validator import validate as validate_spec
from twilio_standin import Hold, Refuse, TwilioStandIn, sign

from conftest import CHAT_KEYS, PROJECT, ROOT, SEED_BODY, SMS_PATH, basic, twilio_env
from sms import chat_list, errors, idempotency, paging
from sms.devtools.emulator import free_port
from sms.devtools.seed import DEMO_AGENT
from sms.devtools.server import serving
from sms.events import signing
from sms.events.model import TYPES as EVENT_TYPES

DOCUMENT_PATH = ROOT / "openapi.yaml"
EVENTS_PATH = "/apps/api/v1/events"
SPEC: dict[str, Any] = yaml.safe_load(DOCUMENT_PATH.read_text(encoding="utf-8"))
# openapi-core reads an unknown media type as bytes; the TwiML answer is text, read as such.
OPENAPI = OpenAPI.from_file_path(
    str(DOCUMENT_PATH),
    config=Config(extra_media_type_deserializers={"text/xml": plain_loads}),
)
CHATS = "/apps/api/v1/chats"
CHAT_TEMPLATE = "/apps/api/v1/chats/{id}"
TRANSCRIPT_TEMPLATE = "/apps/api/v1/chats/{id}/messages"
STATUS_PATH = "/apps/api/v1/sms/status"
INBOUND_PATH = "/apps/api/v1/sms/inbound"
TWIML = "<Response/>"
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
REPLAYED = "Idempotent-Replayed"
FINISH = {"status": "finished"}
SMS_ON = {"sms_enabled": True, "outbound_sms_enabled": True}
LIMIT = 64 * 1024
TIMEOUT = 30
NOT_SENT = {"message": "SMS could not be sent"}

# SPEC section 10.5: a transcript message's keys, in their order.
MESSAGE_KEYS = [
    "id", "chat_id", "direction", "from", "to", "text", "agent_id", "encoding", "segments",
    "status", "carrier_id", "error_code", "created_at", "status_history", "scheduled_for",
]  # fmt: skip


# ---- reading the document ---------------------------------------------------------------


def resolve(node: Any) -> Any:
    """Follow a local `$ref` (#/...) until the node is not a reference."""
    while isinstance(node, dict) and "$ref" in node:
        target: Any = SPEC
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def schema_errors(schema: dict[str, Any], instance: Any) -> list[str]:
    """What is wrong with `instance` under a schema of the document (its $refs resolve in it)."""
    # The document itself is the root, so that "#/components/..." means what it means there;
    # its other keys are no JSON Schema keywords and are ignored.
    root = {**SPEC, "$defs": {"it": schema}, "$ref": "#/$defs/it"}
    validator = OAS31Validator(root, format_checker=OAS31Validator.FORMAT_CHECKER)
    return [error.message for error in validator.iter_errors(instance)]


def operation(path: str, method: str) -> dict[str, Any]:
    return SPEC["paths"][path][method]


def documented_response(path: str, method: str, status: int) -> dict[str, Any]:
    return resolve(operation(path, method)["responses"][str(status)])


def message_enum(response: dict[str, Any]) -> list[str]:
    """The message texts a documented error response lists."""
    schema = resolve(response["content"]["application/json"]["schema"])
    assert schema["required"] == ["message"]
    assert schema["additionalProperties"] is False
    message = schema["properties"]["message"]
    assert message["type"] == "string"
    return list(message["enum"])


def every_operation() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in SPEC["paths"].items():
        for method in HTTP_METHODS:
            if method in item:
                yield path, method, item[method]


def every_example() -> Iterator[tuple[str, dict[str, Any], Any]]:
    """(where, schema, example value) for every example of every request and response body."""
    bodies = []
    for path, method, op in every_operation():
        if "requestBody" in op:
            bodies.append((f"{method} {path} request", resolve(op["requestBody"])))
        bodies += [(f"{method} {path} {s}", resolve(r)) for s, r in op["responses"].items()]
    bodies += [(f"components {n}", r) for n, r in SPEC["components"]["responses"].items()]
    for where, body in bodies:
        for media_type, media in body.get("content", {}).items():
            for name, example in media.get("examples", {}).items():
                yield f"{where} {media_type} {name}", media["schema"], resolve(example)["value"]


# ---- calling the served function --------------------------------------------------------


def call(
    base: str,
    method: str,
    path: str,
    body: Any = None,
    *,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> requests.Response:
    """One real HTTP request; a body is sent as JSON (or `data` as given) with its type."""
    all_headers = dict(headers or {})
    if data is None and body is not None:
        data = json.dumps(body).encode()
    if data is not None:
        all_headers.setdefault("Content-Type", "application/json")
    return requests.request(method, base + path, data=data, headers=all_headers, timeout=TIMEOUT)


def request_errors(response: requests.Response) -> list[str]:
    """What the document finds wrong with the request that was sent (empty: it conforms)."""
    request = RequestsOpenAPIRequest(response.request)
    return [repr(error) for error in OPENAPI.iter_request_errors(request)]


def assert_conforms(response: requests.Response) -> None:
    """The answer is one the document gives for its request's operation, body and headers."""
    assert response.headers["Content-Type"] == "application/json"
    OPENAPI.validate_response(
        RequestsOpenAPIRequest(response.request), RequestsOpenAPIResponse(response)
    )


def assert_conforms_without_body(response: requests.Response) -> None:
    """An answer with no body (the webhook's 204) is one the document gives, and has none."""
    assert response.content == b""
    OPENAPI.validate_response(
        RequestsOpenAPIRequest(response.request), RequestsOpenAPIResponse(response)
    )


def assert_conforms_twiml(response: requests.Response) -> None:
    """The incoming-message webhook's 200: exactly the empty TwiML document, as documented."""
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].split(";")[0] == "text/xml"
    assert response.text == TWIML
    OPENAPI.validate_response(
        RequestsOpenAPIRequest(response.request), RequestsOpenAPIResponse(response)
    )


def assert_conforms_to_component(response: requests.Response, name: str) -> None:
    """The answer matches `#/components/responses/{name}`: body, type and every header."""
    documented = SPEC["components"]["responses"][name]
    assert response.headers["Content-Type"] == "application/json"
    schema = documented["content"]["application/json"]["schema"]
    assert schema_errors(schema, response.json()) == []
    for header, reference in documented.get("headers", {}).items():
        spec = resolve(reference)
        if spec.get("required"):
            assert header in response.headers, f"{header} is documented as required"
        if header in response.headers:
            assert schema_errors(spec["schema"], response.headers[header]) == []


def error_of(response: requests.Response) -> tuple[int, Any]:
    return response.status_code, response.json()


def shape(document: Any) -> Any:
    """A chat document with its ids and times replaced by placeholders, for comparison."""
    doc = copy.deepcopy(document)
    time = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
    for key in ("created_at", "queued_at", "assigned_at", "ends_at"):
        if doc[key] is not None:
            assert time.fullmatch(doc[key]), doc[key]
            doc[key] = "<time>"
    doc["id"] = "<chat id>"
    doc["end_user"]["id"] = "<end user id>"
    for participant in doc["participants"]:
        assert participant["chat_id"] == document["id"]
        participant["id"] = "<participant id>"
        participant["chat_id"] = "<chat id>"
        participant["connected_at"] = "<time>"
        if participant["type"] == "end_user":
            assert participant["end_user_id"] == document["end_user"]["id"]
            participant["end_user_id"] = "<end user id>"
    return doc


@pytest.fixture
def post(server: str, tenant: Any) -> Callable[..., requests.Response]:
    """POST to the SMS endpoint of the served function, as `tenant` (or `as_`)."""

    def send(
        body: Any = SEED_BODY,
        *,
        as_: Any = None,
        key: str | None = None,
        data: bytes | None = None,
    ) -> requests.Response:
        headers = dict((as_ or tenant).headers)
        if key is not None:
            headers["Idempotency-Key"] = key
        return call(server, "POST", SMS_PATH, body, data=data, headers=headers)

    return send


@pytest.fixture
def chat(server: str, tenant: Any) -> Callable[..., requests.Response]:
    """GET or PATCH /apps/api/v1/chats/{id} of the served function, as `tenant`."""

    def send(method: str, chat_id: Any, body: Any = None, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("headers", tenant.headers)
        return call(server, method, f"{CHATS}/{chat_id}", body, **kwargs)

    return send


@pytest.fixture
def transcript(server: str, tenant: Any) -> Callable[..., requests.Response]:
    """GET /apps/api/v1/chats/{id}/messages of the served function, as `tenant`."""

    def send(chat_id: Any, query: str = "", **kwargs: Any) -> requests.Response:
        kwargs.setdefault("headers", tenant.headers)
        path = f"{CHATS}/{chat_id}/messages" + (f"?{query}" if query else "")
        return call(kwargs.pop("base", server), "GET", path, **kwargs)

    return send


def opened(response: requests.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    assert_conforms(response)
    return response.json()


def page(response: requests.Response) -> dict[str, Any]:
    """A transcript page that conforms, its messages' keys in the documented order."""
    assert response.status_code == 200, response.text
    assert request_errors(response) == []
    assert_conforms(response)
    body = response.json()
    assert list(body) == ["messages", "next_page_token"]
    for message in body["messages"]:
        assert list(message) == MESSAGE_KEYS
    return body


def statuses(message: dict[str, Any]) -> list[str]:
    return [change["status"] for change in message["status_history"]]


def signed_post(
    base: str,
    form: dict[str, str],
    auth_token: str,
    *,
    signature: str | None = None,
    path: str = STATUS_PATH,
) -> requests.Response:
    """POST a form to a webhook (the status callback's unless `path` says otherwise), signed
    as Twilio signs it (or with `signature`)."""
    url = base + path
    headers = {"X-Twilio-Signature": signature or sign(url, form, auth_token)}
    return requests.post(url, data=form, headers=headers, timeout=TIMEOUT)


# ---- the document itself ----------------------------------------------------------------


def test_the_document_is_valid_openapi_3_1() -> None:
    assert re.fullmatch(r"3\.1\.\d+", SPEC["openapi"])
    validate_spec(SPEC, cls=OpenAPIV31SpecValidator)


def test_the_validator_refuses_a_broken_copy_of_the_document() -> None:
    broken = copy.deepcopy(SPEC)
    del broken["paths"][SMS_PATH]["post"]["responses"]["200"]["description"]
    with pytest.raises(Exception, match="description"):
        validate_spec(broken, cls=OpenAPIV31SpecValidator)


def test_it_documents_exactly_the_routes_of_the_function() -> None:
    routes = {(path, method) for path, method, _ in every_operation()}
    assert routes == {
        (SMS_PATH, "post"),
        (STATUS_PATH, "post"),
        (INBOUND_PATH, "post"),
        (CHAT_TEMPLATE, "get"),
        (CHAT_TEMPLATE, "patch"),
        (TRANSCRIPT_TEMPLATE, "get"),
        (EVENTS_PATH, "get"),
        (CHATS, "get"),
    }


def test_every_operation_but_the_webhooks_requires_http_basic() -> None:
    scheme = SPEC["components"]["securitySchemes"]["tenantBasic"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "basic")
    assert "subdomain" in scheme["description"]
    assert "token" in scheme["description"]
    assert SPEC["security"] == [{"tenantBasic": []}]
    overriding = {(path, method) for path, method, op in every_operation() if "security" in op}
    assert overriding == {(STATUS_PATH, "post"), (INBOUND_PATH, "post")}


def test_the_webhooks_require_twilios_signature_instead() -> None:
    for path in (STATUS_PATH, INBOUND_PATH):
        assert operation(path, "post")["security"] == [{"twilioSignature": []}], path
        assert operation(path, "post")["tags"] == ["Webhooks"], path
    scheme = SPEC["components"]["securitySchemes"]["twilioSignature"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == (
        "apiKey",
        "header",
        "X-Twilio-Signature",
    )
    for words in (
        "HMAC-SHA1",
        "TWILIO_AUTH_TOKEN",
        "{SMS_PUBLIC_BASE_URL}" + STATUS_PATH,
        "{SMS_PUBLIC_BASE_URL}" + INBOUND_PATH,
    ):
        assert words in scheme["description"], words
    body = resolve(operation(STATUS_PATH, "post")["requestBody"])
    assert list(body["content"]) == ["application/x-www-form-urlencoded"]
    form = resolve(body["content"]["application/x-www-form-urlencoded"]["schema"])
    assert form["required"] == ["MessageSid", "MessageStatus"]
    assert {"ErrorCode", "AccountSid", "From", "To", "SmsSid", "SmsStatus"} <= set(
        form["properties"]
    )
    assert schema_errors(form, {"MessageSid": "SM1", "MessageStatus": "sent", "Extra": "x"}) == []
    assert schema_errors(form, {"MessageSid": " ", "MessageStatus": "sent"}) != []
    assert list(documented_response(STATUS_PATH, "post", 204)) == ["description"]  # no body


def test_the_inbound_webhook_takes_twilios_form_and_answers_empty_twiml() -> None:
    body = resolve(operation(INBOUND_PATH, "post")["requestBody"])
    assert body["required"] is True
    assert list(body["content"]) == ["application/x-www-form-urlencoded"]
    form = resolve(body["content"]["application/x-www-form-urlencoded"]["schema"])
    assert form["required"] == ["MessageSid", "From", "To"]
    assert {
        "Body", "AccountSid", "SmsSid", "SmsMessageSid", "NumMedia", "NumSegments",
        "ToCountry", "ApiVersion", "SmsStatus",
    } <= set(form["properties"])  # fmt: skip
    assert form["additionalProperties"] == {"type": "string"}
    reply = {"MessageSid": "SM1", "From": "+14155550100", "To": "+16285550199"}
    assert schema_errors(form, {**reply, "Body": "STOP", "MediaUrl0": "https://x"}) == []
    assert schema_errors(form, reply) == []  # no Body: an empty text
    for missing in ("MessageSid", "From", "To"):
        assert schema_errors(form, {k: v for k, v in reply.items() if k != missing}) != []
        assert schema_errors(form, {**reply, missing: " "}) != [], missing
    ok = documented_response(INBOUND_PATH, "post", 200)
    assert list(ok["content"]) == ["text/xml"]
    twiml = ok["content"]["text/xml"]
    assert resolve(twiml["schema"])["const"] == TWIML
    assert [example["value"] for example in twiml["examples"].values()] == [TWIML]
    assert schema_errors(twiml["schema"], "<Response></Response>") != []
    description = operation(INBOUND_PATH, "post")["description"]
    for keyword in ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT",
                    "REVOKE", "START", "UNSTOP", "YES"):  # fmt: skip
        assert f"`{keyword}`" in description, keyword
    for words in ("numbers/{E.164}", "`queued`", "`received`", "`MessageSid`", "idle clock"):
        assert words in description, words


def test_the_inbound_400_table_follows_the_order_the_function_checks() -> None:
    response = documented_response(INBOUND_PATH, "post", 400)
    rows = re.findall(r"^\| [^|]+ \| `(.+)` \|$", response["description"], flags=re.MULTILINE)
    order = [errors.MESSAGE_SID_REQUIRED, errors.FROM_REQUIRED, errors.TO_REQUIRED]
    assert rows == [*order, errors.MESSAGE_SID_INVALID, errors.FROM_INVALID]
    assert message_enum(response) == rows  # the live order: test_each_inbound_400_conforms


@pytest.mark.parametrize(("where", "schema", "value"), list(every_example()))
def test_every_example_matches_its_schema(where: str, schema: Any, value: Any) -> None:
    assert schema_errors(schema, value) == [], where


def test_the_seed_examples_are_documented() -> None:
    request = resolve(operation(SMS_PATH, "post")["requestBody"])["content"]["application/json"]
    values = [resolve(example)["value"] for example in request["examples"].values()]
    assert SEED_BODY in values
    seed_agent = {k: v for k, v in SEED_BODY.items() if k != "ticket_id"}
    assert {**seed_agent, "agentId": 1} in values
    assert {**seed_agent, "agentEmail": DEMO_AGENT["email"]} in values
    ok = documented_response(SMS_PATH, "post", 200)["content"]["application/json"]["examples"]
    with_agent = resolve(ok["withAgentId"])["value"]
    assert with_agent["agent_info"] == {"id": 1, **DEMO_AGENT}
    assert (with_agent["id"], with_agent["end_user"]["id"]) == (114, 87)
    refused = documented_response(SMS_PATH, "post", 400)["content"]["application/json"]
    texts = {example["value"]["message"] for example in refused["examples"].values()}
    assert texts >= {errors.CHAT_TYPE_REQUIRED, errors.NUMBER_FOREIGN, errors.ACTIVE_SESSION}


def test_the_schema_refuses_what_spec_section_9_changed_from_the_seed() -> None:
    """The seed answers an agentEmail request with agent_info null: here an assigned chat
    always shows its agent, and the document says so."""
    chat_schema = {"$ref": "#/components/schemas/Chat"}
    ok = documented_response(SMS_PATH, "post", 200)["content"]["application/json"]["examples"]
    by_email = resolve(ok["withAgentEmail"])["value"]
    assert schema_errors(chat_schema, by_email) == []
    assert schema_errors(chat_schema, {**by_email, "agent_info": None}) != []
    selecting = resolve(ok["withoutTicketId"])["value"]
    assert schema_errors(chat_schema, {**selecting, "agent_info": by_email["agent_info"]}) != []
    assert schema_errors(chat_schema, {**selecting, "status": "finished"}) != []  # no ends_at
    assert schema_errors(chat_schema, {**selecting, "surprise": 1}) != []
    assert schema_errors(chat_schema, {k: v for k, v in selecting.items() if k != "rating"})


def test_the_chat_schema_ties_a_failed_status_to_its_reason() -> None:
    chat_schema = {"$ref": "#/components/schemas/Chat"}
    failed = resolve(SPEC["components"]["examples"]["ChatFailed"])["value"]
    assert schema_errors(chat_schema, failed) == []
    assert schema_errors(chat_schema, {**failed, "fail_reason": "unknown"}) == []
    for reason in (None, "nothing", "carrier"):
        assert schema_errors(chat_schema, {**failed, "fail_reason": reason}) != [], reason
    assert schema_errors(chat_schema, {**failed, "ends_at": None}) != []
    ended = resolve(SPEC["components"]["examples"]["ChatEnded"])["value"]
    assert schema_errors(chat_schema, {**ended, "fail_reason": "unknown"}) != []


def test_the_chat_schema_ties_a_queued_status_to_its_queue_time_and_no_agent() -> None:
    chat_schema = {"$ref": "#/components/schemas/Chat"}
    queued = resolve(SPEC["components"]["examples"]["ChatQueued"])["value"]
    assert schema_errors(chat_schema, queued) == []
    assert queued["queued_at"] == queued["created_at"]
    with_agent = resolve(SPEC["components"]["examples"]["ChatWithAgentId"])["value"]
    for wrong in (
        {"queued_at": None},
        {"assigned_at": queued["created_at"]},
        {"ends_at": queued["created_at"]},
        {"agent_info": with_agent["agent_info"]},
        {"participants": with_agent["participants"]},
        {"fail_reason": "unknown"},
    ):
        assert schema_errors(chat_schema, {**queued, **wrong}) != [], wrong
    # Ended, a queued session keeps its queued_at; a session an outbound request opened
    # (selecting) never has one.
    ended = {**queued, "status": "finished", "ends_at": "2021-10-05T09:20:00.000Z"}
    assert schema_errors(chat_schema, ended) == []
    selecting = resolve(SPEC["components"]["examples"]["ChatWithoutTicketId"])["value"]
    assert schema_errors(chat_schema, {**selecting, "queued_at": queued["queued_at"]}) != []
    status = SPEC["components"]["schemas"]["Chat"]["properties"]["status"]
    assert status["enum"] == ["selecting", "assigned", "queued", "finished", "failed"]


def test_the_message_schema_lists_the_spec_keys_in_order() -> None:
    schema = SPEC["components"]["schemas"]["Message"]
    assert list(schema["properties"]) == MESSAGE_KEYS
    assert schema["required"] == MESSAGE_KEYS
    assert schema["additionalProperties"] is False
    status = resolve(schema["properties"]["status"])
    assert status["enum"] == [
        "scheduled", "queued", "sending", "sent", "delivered", "undelivered", "failed",
        "received",
    ]  # fmt: skip
    assert resolve(schema["properties"]["encoding"])["enum"] == ["GSM-7", "UCS-2"]
    page_schema = SPEC["components"]["schemas"]["MessagePage"]
    assert list(page_schema["properties"]) == page_schema["required"]
    assert page_schema["required"] == ["messages", "next_page_token"]
    message_schema = {"$ref": "#/components/schemas/Message"}
    example = resolve(SPEC["components"]["examples"]["TranscriptDelivered"])["value"]
    [delivered] = example["messages"]
    assert schema_errors(message_schema, delivered) == []
    for wrong in (
        {"direction": "inbound"},  # an inbound message is "received", with no agent
        {"status": "received"},
        {"segments": 0},
        {"encoding": "UTF-8"},
        {"status_history": []},
        {"error_code": 21610},
    ):
        assert schema_errors(message_schema, {**delivered, **wrong}) != [], wrong
    reply = {**delivered, "direction": "inbound", "status": "received", "agent_id": None}
    assert schema_errors(message_schema, reply) != []  # its history is "received" alone
    received = [{"status": "received", "at": delivered["created_at"]}]
    reply["status_history"] = received
    assert schema_errors(message_schema, reply) == []
    for wrong in (
        {"carrier_id": None},  # a reply always has its MessageSid
        {"error_code": "30003"},
        {"status_history": [*received, *delivered["status_history"][-1:]]},
        {"status_history": [{"status": "delivered", "at": delivered["created_at"]}]},
    ):
        assert schema_errors(message_schema, {**reply, **wrong}) != [], wrong
    examples = SPEC["components"]["examples"]
    [opened_by] = examples["TranscriptOpenedByReply"]["value"]["messages"]
    _, answered = examples["TranscriptConversation"]["value"]["messages"]
    for inbound in (opened_by, answered):
        assert schema_errors(message_schema, inbound) == []
        assert (inbound["direction"], inbound["status"]) == ("inbound", "received")


def test_the_transcript_query_states_its_rules() -> None:
    parameters = {p["name"]: p for p in operation(TRANSCRIPT_TEMPLATE, "get")["parameters"]}
    assert set(parameters) == {"limit", "page_token"}
    limit = parameters["limit"]
    assert (limit["in"], limit["required"]) == ("query", False)
    schema = limit["schema"]
    assert (schema["type"], schema["minimum"], schema["maximum"], schema["default"]) == (
        "integer",
        1,
        200,
        100,
    )
    assert (parameters["page_token"]["in"], parameters["page_token"]["required"]) == (
        "query",
        False,
    )
    path_parameters = [resolve(p) for p in SPEC["paths"][TRANSCRIPT_TEMPLATE]["parameters"]]
    assert path_parameters == [SPEC["components"]["parameters"]["ChatId"]]


def test_the_chat_list_query_states_its_rules() -> None:
    listing = operation(CHATS, "get")
    parameters = {p["name"]: p for p in listing["parameters"]}
    assert list(parameters) == ["status", "end_user_number", "limit", "page_token"]
    for name, parameter in parameters.items():
        assert (parameter["in"], parameter["required"]) == ("query", False), name
    assert parameters["status"]["schema"]["enum"] == list(chat_list.STATUSES)
    limit = parameters["limit"]["schema"]
    assert (limit["type"], limit["minimum"], limit["maximum"], limit["default"]) == (
        "integer",
        1,
        200,
        chat_list.DEFAULT_PAGE,
    )
    assert "`status`, `end_user_number`, `limit`, `page_token`" in listing["description"]
    page_schema = SPEC["components"]["schemas"]["ChatPage"]
    assert (
        page_schema["required"] == list(page_schema["properties"]) == ["chats", "next_page_token"]
    )
    assert page_schema["additionalProperties"] is False
    assert page_schema["properties"]["chats"]["items"] == {"$ref": "#/components/schemas/Chat"}
    examples = _examples(documented_response(CHATS, "get", 200)["content"]["application/json"])
    queued = examples["queued"]["chats"]
    assert [chat["status"] for chat in queued] == ["queued", "queued"]
    assert [chat["created_at"] for chat in queued] == sorted(
        (chat["created_at"] for chat in queued), reverse=True
    )
    first = examples["firstOfTwoPages"]
    assert first["next_page_token"] is not None
    assert paging.cursor(first["next_page_token"], chat_list.CHAT_ID)[1] == str(
        first["chats"][-1]["id"]
    )


def test_the_chat_list_400_table_follows_the_order_the_function_checks() -> None:
    response = documented_response(CHATS, "get", 400)
    rows = re.findall(r"^\| [^|]+ \| `(.+)` \|$", response["description"], flags=re.MULTILINE)
    assert rows == [
        errors.STATUS_INVALID,
        errors.END_USER_NUMBER_INVALID,
        errors.LIMIT_INVALID,
        errors.PAGE_TOKEN_INVALID,
    ]
    assert message_enum(response) == rows  # the live order: test_each_chat_list_400_conforms...


def test_the_patch_400_table_follows_the_order_the_function_checks() -> None:
    response = documented_response(CHAT_TEMPLATE, "patch", 400)
    rows = re.findall(r"^\| [^|]+ \| `(.+)` \|$", response["description"], flags=re.MULTILINE)
    assert rows == [
        errors.STATUS_MUST_BE_FINISHED,
        errors.AGENT_INVALID,
        errors.AGENT_NOT_FOUND,
        errors.CHAT_ALREADY_ENDED,
        errors.CHAT_ALREADY_ASSIGNED,
    ]
    assert message_enum(response) == rows  # the live order: test_each_patch_400_conforms...


def test_the_patch_body_ends_the_session_or_names_an_agent_never_both() -> None:
    body = resolve(operation(CHAT_TEMPLATE, "patch")["requestBody"])
    schema = body["content"]["application/json"]["schema"]
    for accepted in (
        {"status": "finished"},
        {"status": "finished", "agentId": None, "note": 1},
        {"agentId": 1},
        {"agent_id": "0042"},
        {"agent_email": "JOHN.DOE@foo.com"},
        {"agentEmail": "john.doe@foo.com", "agent_id": 1, "note": 1},
        {"agentId": 1, "status": None, "agent_email": None},
    ):
        assert schema_errors(schema, accepted) == [], accepted
    for refused in (
        {},
        {"status": "open"},
        {"status": "finished", "agentId": 1},
        {"agentId": 1, "status": "open"},
        {"agentId": None},
        dict.fromkeys(("agent_id", "agentId", "agent_email", "agentEmail")),
        {"agentId": "one"},
        {"agentId": True},
        {"agent_email": 5},
        ["finished"],
    ):
        assert schema_errors(schema, refused) != [], refused
    for example in _examples(body["content"]["application/json"]).values():
        assert schema_errors(schema, example) == [], example


def test_the_chat_schema_takes_an_assigned_session_and_its_wait() -> None:
    chat_schema = {"$ref": "#/components/schemas/Chat"}
    assigned = resolve(SPEC["components"]["examples"]["ChatAssigned"])["value"]
    assert schema_errors(chat_schema, assigned) == []
    assert (assigned["status"], assigned["queued_at"]) == ("assigned", assigned["created_at"])

    def at(text: str) -> dt.datetime:
        return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")

    waited = at(assigned["assigned_at"]) - at(assigned["queued_at"])
    assert assigned["wait_duration"] == int(waited.total_seconds())
    end_user, agent = assigned["participants"]
    assert (agent["user_id"], agent["connected_at"]) == (1, assigned["assigned_at"])
    queued = resolve(SPEC["components"]["examples"]["ChatQueued"])["value"]
    assert end_user == queued["participants"][0]
    for wrong in (
        {"wait_duration": -1},
        {"wait_duration": 1.5},
        {"agent_info": None},
        {"assigned_at": None},
        {"participants": [end_user]},
        {"ends_at": assigned["assigned_at"]},
    ):
        assert schema_errors(chat_schema, {**assigned, **wrong}) != [], wrong


def test_the_chat_document_schema_lists_the_spec_keys_in_order() -> None:
    schema = SPEC["components"]["schemas"]["Chat"]
    assert list(schema["properties"]) == CHAT_KEYS
    assert schema["required"] == CHAT_KEYS
    assert schema["additionalProperties"] is False
    for name in ("AgentInfo", "EndUser", "EndUserParticipant", "AgentParticipant"):
        part = SPEC["components"]["schemas"][name]
        assert part["additionalProperties"] is False
        assert set(part["required"]) == set(part["properties"]), name


def test_the_request_schema_states_the_field_rules() -> None:
    schema = SPEC["components"]["schemas"]["OutboundSmsRequest"]
    fields = schema["properties"]
    assert schema["required"] == ["chat_type", "end_user_number", "outbound_number", "message"]
    assert fields["chat_type"]["enum"] == ["Messaging (SMS)", "Messaging (API)", "SMS"]
    assert fields["message"]["maxLength"] == 1600
    assert fields["ticket_id"]["maxLength"] == 255
    assert fields["agent_id"] == fields["agentId"]
    assert fields["agent_email"] == fields["agentEmail"]
    agent_id = resolve(fields["agentId"])
    for accepted in (1, "1", "0042", None):  # null names no agent
        assert schema_errors(agent_id, accepted) == [], accepted
    for refused in ("one", "1.5", True, [1]):
        assert schema_errors(agent_id, refused) != [], refused


# Which texts each documented error answer lists, and where they come from in the code.
ERROR_TEXTS: dict[tuple[str, str, int], set[str]] = {
    (SMS_PATH, "post", 400): {*errors.PRECEDENCE, errors.IDEMPOTENCY_KEY_INVALID},
    (SMS_PATH, "post", 401): {errors.Unauthorized.message},
    (SMS_PATH, "post", 409): {errors.IDEMPOTENCY_KEY_IN_PROGRESS},
    (SMS_PATH, "post", 413): {errors.PayloadTooLarge.message},
    (SMS_PATH, "post", 422): {errors.IDEMPOTENCY_KEY_REUSED},
    (SMS_PATH, "post", 429): {errors.TooManyRequests.message},
    (SMS_PATH, "post", 502): {errors.SMS_NOT_SENT},
    (SMS_PATH, "post", 503): {errors.ServiceUnavailable.message},
    (STATUS_PATH, "post", 400): {
        errors.MESSAGE_SID_REQUIRED,
        errors.MESSAGE_STATUS_REQUIRED,
        errors.MESSAGE_SID_INVALID,
    },
    (STATUS_PATH, "post", 403): {errors.Forbidden.message},
    (STATUS_PATH, "post", 413): {errors.PayloadTooLarge.message},
    (STATUS_PATH, "post", 503): {errors.ServiceUnavailable.message},
    (INBOUND_PATH, "post", 400): {
        errors.MESSAGE_SID_REQUIRED,
        errors.FROM_REQUIRED,
        errors.TO_REQUIRED,
        errors.MESSAGE_SID_INVALID,
        errors.FROM_INVALID,
    },
    (INBOUND_PATH, "post", 403): {errors.Forbidden.message},
    (INBOUND_PATH, "post", 404): {errors.NotFound.message},
    (INBOUND_PATH, "post", 413): {errors.PayloadTooLarge.message},
    (INBOUND_PATH, "post", 503): {errors.ServiceUnavailable.message},
    (CHATS, "get", 400): {
        errors.STATUS_INVALID,
        errors.END_USER_NUMBER_INVALID,
        errors.LIMIT_INVALID,
        errors.PAGE_TOKEN_INVALID,
    },
    (CHATS, "get", 401): {errors.Unauthorized.message},
    (CHATS, "get", 413): {errors.PayloadTooLarge.message},
    (CHATS, "get", 429): {errors.TooManyRequests.message},
    (CHATS, "get", 503): {errors.ServiceUnavailable.message},
    (CHAT_TEMPLATE, "get", 401): {errors.Unauthorized.message},
    (CHAT_TEMPLATE, "get", 404): {errors.NotFound.message},
    (CHAT_TEMPLATE, "get", 413): {errors.PayloadTooLarge.message},
    (CHAT_TEMPLATE, "get", 429): {errors.TooManyRequests.message},
    (CHAT_TEMPLATE, "get", 503): {errors.ServiceUnavailable.message},
    (CHAT_TEMPLATE, "patch", 400): {
        errors.STATUS_MUST_BE_FINISHED,
        errors.AGENT_INVALID,
        errors.AGENT_NOT_FOUND,
        errors.CHAT_ALREADY_ENDED,
        errors.CHAT_ALREADY_ASSIGNED,
    },
    (CHAT_TEMPLATE, "patch", 401): {errors.Unauthorized.message},
    (CHAT_TEMPLATE, "patch", 404): {errors.NotFound.message},
    (CHAT_TEMPLATE, "patch", 413): {errors.PayloadTooLarge.message},
    (CHAT_TEMPLATE, "patch", 429): {errors.TooManyRequests.message},
    (CHAT_TEMPLATE, "patch", 503): {errors.ServiceUnavailable.message},
    (TRANSCRIPT_TEMPLATE, "get", 400): {errors.LIMIT_INVALID, errors.PAGE_TOKEN_INVALID},
    (TRANSCRIPT_TEMPLATE, "get", 401): {errors.Unauthorized.message},
    (TRANSCRIPT_TEMPLATE, "get", 404): {errors.NotFound.message},
    (TRANSCRIPT_TEMPLATE, "get", 413): {errors.PayloadTooLarge.message},
    (TRANSCRIPT_TEMPLATE, "get", 429): {errors.TooManyRequests.message},
    (TRANSCRIPT_TEMPLATE, "get", 503): {errors.ServiceUnavailable.message},
    (EVENTS_PATH, "get", 400): {
        errors.SINCE_INVALID,
        errors.TYPE_INVALID,
        errors.LIMIT_INVALID,
        errors.PAGE_TOKEN_INVALID,
    },
    (EVENTS_PATH, "get", 401): {errors.Unauthorized.message},
    (EVENTS_PATH, "get", 413): {errors.PayloadTooLarge.message},
    (EVENTS_PATH, "get", 429): {errors.TooManyRequests.message},
    (EVENTS_PATH, "get", 503): {errors.ServiceUnavailable.message},
}


def test_each_error_answer_lists_exactly_its_texts() -> None:
    documented = {
        (path, method, int(status))
        for path, method, op in every_operation()
        for status in op["responses"]
        if not status.startswith("2")
    }
    assert documented == set(ERROR_TEXTS)
    assert len(ERROR_TEXTS[SMS_PATH, "post", 400]) == 20
    for (path, method, status), texts in ERROR_TEXTS.items():
        listed = message_enum(documented_response(path, method, status))
        assert sorted(listed) == sorted(texts), (method, path, status)
    components = SPEC["components"]["responses"]
    assert message_enum(components["NotFound"]) == [errors.NotFound.message]
    assert message_enum(components["MethodNotAllowed"]) == [errors.MethodNotAllowed.message]
    assert message_enum(components["TooManyRequests"]) == [errors.TooManyRequests.message]


def test_the_400_table_follows_the_order_of_precedence() -> None:
    """The texts of POST /apps/api/v1/sms's 400 come in the order sms/errors.py checks them,
    in the table, in the schema's enum, with the opted-out text right after row 13 and the
    quiet-hours text right after it."""
    described = documented_response(SMS_PATH, "post", 400)["description"]
    rows = re.findall(r"^\| [^|]+ \| .+ \| `(.+)` \|$", described, flags=re.MULTILINE)
    assert rows == [errors.IDEMPOTENCY_KEY_INVALID, *errors.PRECEDENCE]
    enum = message_enum(documented_response(SMS_PATH, "post", 400))
    assert enum == [errors.IDEMPOTENCY_KEY_INVALID, *errors.PRECEDENCE]
    assert enum.index(errors.OPTED_OUT) == enum.index(errors.MESSAGE_TOO_LONG) + 1
    assert enum.index(errors.QUIET_HOURS) == enum.index(errors.OPTED_OUT) + 1
    assert rows.index(errors.QUIET_HOURS) == rows.index(errors.OPTED_OUT) + 1


def _raised_texts() -> set[str]:
    """The texts written out where sms/ raises an error of sms/errors.py with a literal
    message (`errors.BadRequest("...")`) instead of one of its constants."""
    texts = set()
    for source in sorted((ROOT / "sms").rglob("*.py")):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "errors"
                and isinstance(getattr(errors, node.func.attr, None), type)
                and issubclass(getattr(errors, node.func.attr), errors.ApiError)
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                texts.add(node.args[0].value)
    return texts


def _code_texts() -> set[str]:
    """Every error text the code answers with: sms/errors.py's constants and its classes' own
    messages, and any text raised as a literal elsewhere."""
    texts = {
        value for name, value in vars(errors).items() if name.isupper() and isinstance(value, str)
    }
    classes = [errors.ApiError]
    while classes:
        cls = classes.pop()
        classes.extend(cls.__subclasses__())
        if "message" in vars(cls) and cls is not errors.ApiError:
            texts.add(vars(cls)["message"])
    return texts | _raised_texts()


def _document_texts() -> set[str]:
    """Every message text the document's error answers list, read from the document."""
    responses = [
        resolve(response)
        for _, _, op in every_operation()
        for status, response in op["responses"].items()
        if not status.startswith("2")
    ]
    responses += SPEC["components"]["responses"].values()
    return {text for response in responses for text in message_enum(response)}


def test_every_error_text_of_the_code_is_in_the_document_and_no_other() -> None:
    code = _code_texts()
    assert len(code) >= 37
    webhooks = {
        "MessageSid is required", "MessageStatus is required", "From is required",
        "To is required", "From is invalid", "MessageSid is invalid",
    }  # fmt: skip
    assert webhooks <= code
    yaml_text = DOCUMENT_PATH.read_text(encoding="utf-8")
    assert sorted(text for text in code if text not in yaml_text) == []
    assert _document_texts() == code
    # ApiError's own text belongs to the 500 that SPEC section 1 rules out: never documented.
    assert errors.ApiError.message not in yaml_text


def test_the_webhooks_are_the_event_types_each_with_its_data_and_standard_headers() -> None:
    assert list(SPEC["webhooks"]) == list(EVENT_TYPES)
    assert resolve({"$ref": "#/components/schemas/EventType"})["enum"] == list(EVENT_TYPES)
    data = {"chat": "Chat", "message": "Message", "consumer": "ConsumerChange"}
    for kind, webhook in SPEC["webhooks"].items():
        post_op = webhook["post"]
        assert post_op["security"] == [], kind  # signed, not HTTP Basic
        headers = [resolve(parameter) for parameter in post_op["parameters"]]
        assert [(h["name"], h["in"], h["required"]) for h in headers] == [
            ("webhook-id", "header", True),
            ("webhook-timestamp", "header", True),
            ("webhook-signature", "header", True),
        ]
        [media_type] = post_op["requestBody"]["content"]
        assert media_type == "application/json"
        event, typed = post_op["requestBody"]["content"][media_type]["schema"]["allOf"]
        assert event == {"$ref": "#/components/schemas/Event"}
        assert typed["properties"]["type"] == {"const": kind}
        schema = data[kind.split(".")[0]]
        assert typed["properties"]["data"] == {"$ref": f"#/components/schemas/{schema}"}
        assert list(post_op["responses"]) == ["2XX"]
    # What the service sends fits the headers' schemas: one secret, or two while rotating.
    webhook_id, body = "evt_" + "0" * 32, b"{}"
    for secrets in ([signing.new_secret()], [signing.new_secret(), signing.new_secret()]):
        sent = signing.headers(secrets, webhook_id, 1633368051, body)
        for header in ("WebhookId", "WebhookTimestamp", "WebhookSignature"):
            parameter = SPEC["components"]["parameters"][header]
            assert schema_errors(parameter["schema"], sent[parameter["name"]]) == [], header


def test_the_headers_of_the_contract_are_documented() -> None:
    post_op = operation(SMS_PATH, "post")
    [parameter] = [resolve(p) for p in post_op["parameters"]]
    assert (parameter["name"], parameter["in"], parameter["required"]) == (
        "Idempotency-Key",
        "header",
        False,
    )
    key_schema = parameter["schema"]
    assert schema_errors(key_schema, "a" * 255) == []
    for bad in ("", "a" * 256, "has space", "caf\u00e9"):
        assert schema_errors(key_schema, bad) != [], bad
    for status in (200, 400, 502):
        replayed = resolve(documented_response(SMS_PATH, "post", status)["headers"][REPLAYED])
        assert replayed["schema"]["enum"] == ["true"]
    for path, method in (
        (SMS_PATH, "post"),
        (CHAT_TEMPLATE, "get"),
        (CHATS, "get"),
        (STATUS_PATH, "post"),
        (INBOUND_PATH, "post"),
    ):
        unavailable = documented_response(path, method, 503)
        assert resolve(unavailable["headers"]["Retry-After"])["required"] is True, path
    required = {
        "Unauthorized": "WWW-Authenticate",
        "MethodNotAllowed": "Allow",
        "ServiceUnavailable": "Retry-After",
        "TooManyRequests": "Retry-After",
    }
    for response, header in required.items():
        spec = resolve(SPEC["components"]["responses"][response]["headers"][header])
        assert spec["required"] is True, header
    unauthorized = SPEC["components"]["responses"]["Unauthorized"]["headers"]
    assert resolve(unauthorized["WWW-Authenticate"])["schema"]["const"] == 'Basic realm="sms"'


# The operations a tenant calls with HTTP Basic: those its rate limit counts (SPEC 10.6).
SIGNED_IN = {
    (SMS_PATH, "post"),
    (CHAT_TEMPLATE, "get"),
    (CHAT_TEMPLATE, "patch"),
    (TRANSCRIPT_TEMPLATE, "get"),
    (EVENTS_PATH, "get"),
    (CHATS, "get"),
}


def test_429_is_documented_for_every_operation_a_tenant_calls_and_no_webhook() -> None:
    limited = {(path, method) for path, method, op in every_operation() if "429" in op["responses"]}
    basic_auth = {(path, method) for path, method, op in every_operation() if "security" not in op}
    assert limited == basic_auth == SIGNED_IN
    for path, method in SIGNED_IN:
        answer = operation(path, method)["responses"]["429"]
        assert answer == {"$ref": "#/components/responses/TooManyRequests"}, (method, path)
    retry_after = resolve(
        SPEC["components"]["responses"]["TooManyRequests"]["headers"]["Retry-After"]
    )
    assert retry_after["required"] is True
    assert schema_errors(retry_after["schema"], 1) == []  # SPEC 10.6: always `Retry-After: 1`
    for other in (0, 2, "1"):
        assert schema_errors(retry_after["schema"], other) != [], other


def test_the_rate_limit_is_described_with_its_setting_and_its_place_in_the_order() -> None:
    overview = SPEC["info"]["description"]
    for words in (
        "`rate_limit_per_second`",
        "`tenants/{subdomain}`",
        "missing or `0`",
        "writes `10`",
        "`Retry-After: 1`",
        "#/components/responses/TooManyRequests",
    ):
        assert words in overview, words
    order = overview[overview.index("**Which answer comes first.**") :]
    places = [order.index(f"(`{status}`") for status in (404, 405, 413, 401, 429, 400)]
    assert places == sorted(places)
    # A 429 is never recorded for an Idempotency-Key: the document says so where it lists
    # what is.
    assert "`429`" in SPEC["components"]["parameters"]["IdempotencyKey"]["description"]
    too_many = SPEC["components"]["responses"]["TooManyRequests"]["description"]
    assert "`tenants/{subdomain}`" in too_many


# ---- live answers: success --------------------------------------------------------------


def _examples(pointer: dict[str, Any]) -> dict[str, Any]:
    return {name: resolve(example)["value"] for name, example in pointer["examples"].items()}


REQUEST_EXAMPLES = _examples(
    resolve(operation(SMS_PATH, "post")["requestBody"])["content"]["application/json"]
)
ANSWER_EXAMPLES = _examples(
    documented_response(SMS_PATH, "post", 200)["content"]["application/json"]
)


@pytest.mark.parametrize("name", sorted(REQUEST_EXAMPLES))
def test_each_documented_request_answers_its_documented_chat(
    post: Callable[..., requests.Response], name: str
) -> None:
    response = post(REQUEST_EXAMPLES[name])
    document = opened(response)
    assert request_errors(response) == []
    assert list(document) == CHAT_KEYS
    assert shape(document) == shape(ANSWER_EXAMPLES[name])
    assert REPLAYED not in response.headers


@pytest.mark.parametrize(
    ("changes", "status"),
    [
        ({"chat_type": "Messaging (API)", "agent_id": "1"}, "assigned"),
        ({"chat_type": "SMS", "agent_email": "JOHN.DOE@foo.com", "agentId": 1}, "assigned"),
        ({"end_user_number": "(415) 555-0100", "chat_subtype": "api_initiated"}, "selecting"),
    ],
    ids=["api_type_digit_agent_id", "sms_type_both_agent_fields", "local_number_subtype"],
)
def test_other_accepted_spellings_conform(
    post: Callable[..., requests.Response], changes: dict[str, Any], status: str
) -> None:
    response = post({**SEED_BODY, **changes})
    document = opened(response)
    assert request_errors(response) == []
    assert (document["chat_type"], document["status"]) == ("Messaging (SMS)", status)
    agent = {"id": 1, **DEMO_AGENT} if status == "assigned" else None
    assert document["agent_info"] == agent


def test_a_replay_with_an_idempotency_key_conforms(post: Callable[..., requests.Response]) -> None:
    first = post(key="order-4711")
    opened(first)
    assert REPLAYED not in first.headers
    again = post(key="order-4711")
    assert (again.status_code, again.content) == (200, first.content)
    assert again.headers[REPLAYED] == "true"
    assert request_errors(again) == []
    assert_conforms(again)


def test_a_replayed_400_conforms(post: Callable[..., requests.Response]) -> None:
    body = {**SEED_BODY, "message": "   "}
    first = post(body, key="empty-message")
    assert error_of(first) == (400, {"message": errors.MESSAGE_REQUIRED})
    again = post(body, key="empty-message")
    assert (again.status_code, again.content) == (400, first.content)
    assert again.headers[REPLAYED] == "true"
    assert_conforms(again)


def test_get_and_patch_answers_conform(
    post: Callable[..., requests.Response], chat: Callable[..., requests.Response]
) -> None:
    created = opened(post({**SEED_BODY, "agentId": 1}))
    read = chat("GET", created["id"])
    assert read.content == json.dumps(created, ensure_ascii=False).encode()
    assert request_errors(read) == []
    assert_conforms(read)

    ended = chat("PATCH", created["id"], FINISH)
    assert request_errors(ended) == []
    document = opened(ended)
    assert document["status"] == "finished"
    assert document["ends_at"] is not None
    assert [p["ended_at"] for p in document["participants"]] == [document["ends_at"]] * 2
    assert_conforms(chat("GET", created["id"]))


def test_transcript_pages_conform_and_their_tokens_lead_through_it(
    post: Callable[..., requests.Response], transcript: Callable[..., requests.Response]
) -> None:
    created = opened(post({**SEED_BODY, "agentId": 1}))
    opened(post({**SEED_BODY, "agentId": 1, "message": "Olá! 😀 On its way."}))  # on behalf

    whole = page(transcript(created["id"]))
    assert whole["next_page_token"] is None
    first, second = whole["messages"]
    assert [m["text"] for m in (first, second)] == ["lorem ipsum", "Olá! 😀 On its way."]
    for message in (first, second):
        assert (message["chat_id"], message["direction"], message["agent_id"]) == (
            created["id"],
            "outbound",
            1,
        )
        assert (message["from"], message["to"]) == ("+16285550199", "+14155550100")
        assert (message["status"], statuses(message)) == ("sent", ["queued", "sending", "sent"])
        assert message["carrier_id"] is not None
        assert message["error_code"] is None
    assert (first["encoding"], second["encoding"]) == ("GSM-7", "UCS-2")

    one = page(transcript(created["id"], "limit=1"))
    assert one["messages"] == [first]
    token = one["next_page_token"]
    assert isinstance(token, str)
    rest = page(transcript(created["id"], f"limit=200&page_token={token}"))
    assert rest == {"messages": [second], "next_page_token": None}


def test_a_page_that_holds_the_last_message_names_no_next_page(
    post: Callable[..., requests.Response], transcript: Callable[..., requests.Response]
) -> None:
    chat_id = opened(post())["id"]
    only = page(transcript(chat_id, "limit=1"))
    assert [m["agent_id"] for m in only["messages"]] == [None]
    assert only["next_page_token"] is None


def test_a_held_answer_its_transcript_and_a_quiet_hours_400_conform(
    server: str, make_tenant: Callable[..., Any]
) -> None:
    # Quiet hours from an hour ago to two hours on, where the seed's consumer (+1 415) is.
    here = dt.datetime.now(ZoneInfo("America/Los_Angeles"))
    hours = {
        "start": f"{here - dt.timedelta(hours=1):%H:%M}",
        "end": f"{here + dt.timedelta(hours=2):%H:%M}",
    }

    def quiet(policy: str) -> Any:
        settings = {**SMS_ON, "quiet_hours": {**hours, "policy": policy}}
        return make_tenant(settings=settings, agents={1: dict(DEMO_AGENT)})

    holding = quiet("hold")
    held = call(server, "POST", SMS_PATH, {**SEED_BODY, "agentId": 1}, headers=holding.headers)
    assert request_errors(held) == []
    document = opened(held)
    assert document["status"] == "assigned"
    messages = f"{CHATS}/{document['id']}/messages"
    [message] = page(call(server, "GET", messages, headers=holding.headers))["messages"]
    assert (message["status"], statuses(message)) == ("scheduled", ["scheduled"])
    assert (message["carrier_id"], message["error_code"]) == (None, None)
    assert message["scheduled_for"] > message["created_at"]  # both UTC, as ISO 8601 sorts
    ended = call(server, "PATCH", f"{CHATS}/{document['id']}", FINISH, headers=holding.headers)
    assert opened(ended)["status"] == "finished"
    [cancelled] = page(call(server, "GET", messages, headers=holding.headers))["messages"]
    assert (cancelled["status"], cancelled["error_code"]) == ("failed", None)
    assert statuses(cancelled) == ["scheduled", "failed"]
    assert cancelled["scheduled_for"] == message["scheduled_for"]

    refused = call(server, "POST", SMS_PATH, SEED_BODY, headers=quiet("refuse").headers)
    assert error_of(refused) == (400, {"message": errors.QUIET_HOURS})
    assert request_errors(refused) == []  # the document cannot tell from the request alone
    assert_conforms(refused)


# ---- live answers: 400 ------------------------------------------------------------------


def _body(*drop: str, **changes: Any) -> dict[str, Any]:
    return {**{k: v for k, v in SEED_BODY.items() if k not in drop}, **changes}


class Refusal(NamedTuple):
    config: dict[str, Any]  # the tenant's configuration, over a tenant with agent 1
    body: Any  # a JSON value, or the raw bytes of the body
    text: str  # the expected message
    schema_refuses: bool  # whether the document's request schema can tell the body is wrong


def refusal(config: dict[str, Any], body: Any, text: str, schema_refuses: bool, name: str) -> Any:
    return pytest.param(Refusal(config, body, text, schema_refuses), id=name)


BAD_REQUESTS = [
    refusal({}, b"[1, 2]", errors.BODY_NOT_OBJECT, True, name="1-array"),
    refusal({}, b"not json", errors.BODY_NOT_OBJECT, True, name="1-not-json"),
    refusal({}, _body("chat_type"), errors.CHAT_TYPE_REQUIRED, True, name="2"),
    refusal({}, _body(chat_type="In-app"), errors.CHAT_TYPE_INVALID, True, name="3"),
    refusal({}, _body(chat_type=5), errors.CHAT_TYPE_INVALID, True, name="3-number"),
    refusal(
        {"settings": {**SMS_ON, "sms_enabled": False}},
        SEED_BODY,
        errors.SMS_DISABLED,
        False,
        name="4",
    ),
    refusal(
        {"settings": {**SMS_ON, "outbound_sms_enabled": False}},
        SEED_BODY,
        errors.OUTBOUND_SMS_DISABLED,
        False,
        name="5",
    ),
    refusal({}, _body("end_user_number"), errors.END_USER_NUMBER_REQUIRED, True, name="6"),
    refusal({}, _body(end_user_number="12345"), errors.END_USER_NUMBER_INVALID, False, name="7"),
    refusal({}, _body(outbound_number="+82 000-000-0000"), errors.NUMBER_FOREIGN, False, name="8"),
    refusal(
        {}, _body(end_user_number="+1 604 253 1234"), errors.NUMBER_FOREIGN, False, name="8-CA"
    ),
    refusal({}, _body("outbound_number"), errors.OUTBOUND_NUMBER_REQUIRED, True, name="9"),
    refusal({}, _body(outbound_number="12345"), errors.OUTBOUND_NUMBER_INVALID, False, name="10"),
    refusal(
        {"outbound_numbers": {}}, SEED_BODY, errors.OUTBOUND_NUMBER_NOT_FOUND, False, name="11"
    ),
    refusal({}, _body(message=""), errors.MESSAGE_REQUIRED, True, name="12-empty"),
    refusal({}, _body(message=" \n\t "), errors.MESSAGE_REQUIRED, True, name="12-blank"),
    refusal({}, _body(message="x" * 1601), errors.MESSAGE_TOO_LONG, True, name="13"),
    refusal({}, _body(ticket_id="t" * 256), errors.TICKET_ID_INVALID, True, name="14-long"),
    refusal({}, _body(ticket_id=5006), errors.TICKET_ID_INVALID, True, name="14-number"),
    refusal({}, _body(agentId="one"), errors.AGENT_INVALID, True, name="15-type"),
    refusal({}, _body(agent_id=True), errors.AGENT_INVALID, True, name="15-boolean"),
    refusal(
        {"agents": {1: DEMO_AGENT, 2: {**DEMO_AGENT, "email": "jane@foo.com"}}},
        _body(agent_id=1, agentId=2),
        errors.AGENT_INVALID,
        False,
        name="15-disagree",
    ),
    refusal({}, _body(agentId=99), errors.AGENT_NOT_FOUND, False, name="16"),
]


@pytest.mark.parametrize("case", BAD_REQUESTS)
def test_each_400_conforms_and_the_schema_agrees_where_it_can_tell(
    server: str, make_tenant: Callable[..., Any], case: Refusal
) -> None:
    who = make_tenant(**{"agents": {1: dict(DEMO_AGENT)}, **case.config})
    data = case.body if isinstance(case.body, bytes) else json.dumps(case.body).encode()
    response = call(server, "POST", SMS_PATH, data=data, headers=who.headers)
    assert error_of(response) == (400, {"message": case.text})
    assert_conforms(response)
    assert bool(request_errors(response)) is case.schema_refuses, request_errors(response)


def test_an_active_session_400_conforms(post: Callable[..., requests.Response]) -> None:
    opened(post())
    again = post({**SEED_BODY, "message": "second"})
    assert error_of(again) == (400, {"message": errors.ACTIVE_SESSION})
    assert request_errors(again) == []
    assert_conforms(again)


@pytest.mark.parametrize("key", ["has space", "k" * 256, "tab\tkey"])
def test_an_invalid_idempotency_key_400_conforms(
    post: Callable[..., requests.Response], key: str
) -> None:
    response = post(key=key)
    assert error_of(response) == (400, {"message": errors.IDEMPOTENCY_KEY_INVALID})
    assert_conforms(response)
    assert request_errors(response) != []


def test_both_patch_400s_conform(
    post: Callable[..., requests.Response], chat: Callable[..., requests.Response]
) -> None:
    chat_id = opened(post())["id"]
    for body in ({"status": "open"}, {}, ["finished"]):
        wrong = chat("PATCH", chat_id, body)
        assert error_of(wrong) == (400, {"message": errors.STATUS_MUST_BE_FINISHED})
        assert_conforms(wrong)
        assert request_errors(wrong) != []
    not_json = chat("PATCH", chat_id, data=b"finished")
    assert error_of(not_json) == (400, {"message": errors.STATUS_MUST_BE_FINISHED})
    assert_conforms(not_json)

    opened(chat("PATCH", chat_id, FINISH))
    again = chat("PATCH", chat_id, FINISH)
    assert error_of(again) == (400, {"message": errors.CHAT_ALREADY_ENDED})
    assert request_errors(again) == []
    assert_conforms(again)


class BadQuery(NamedTuple):
    query: str
    text: str  # the expected message
    schema_refuses: bool  # whether the document's parameters can tell the query is wrong


BAD_QUERIES = [
    BadQuery("limit=0", errors.LIMIT_INVALID, True),
    BadQuery("limit=201", errors.LIMIT_INVALID, True),
    BadQuery("limit=-1", errors.LIMIT_INVALID, True),
    BadQuery("limit=ten", errors.LIMIT_INVALID, True),
    BadQuery("limit=1.5", errors.LIMIT_INVALID, True),
    BadQuery("limit=", errors.LIMIT_INVALID, False),  # openapi-core reads "" as no value
    BadQuery("limit=0&page_token=bad", errors.LIMIT_INVALID, True),  # limit is checked first
    BadQuery("page_token=bad", errors.PAGE_TOKEN_INVALID, False),
    BadQuery("page_token=MTIzLjQ1Ng%3D%3D", errors.PAGE_TOKEN_INVALID, False),  # padded
    BadQuery("limit=5&page_token=%E2%82%AC", errors.PAGE_TOKEN_INVALID, False),
    BadQuery("page_token=", errors.PAGE_TOKEN_INVALID, False),  # the same
]


@pytest.mark.parametrize("case", BAD_QUERIES, ids=[case.query for case in BAD_QUERIES])
@pytest.mark.parametrize("which", ["own", "unknown"])
def test_each_transcript_400_conforms_before_the_chat_is_looked_up(
    post: Callable[..., requests.Response],
    transcript: Callable[..., requests.Response],
    case: BadQuery,
    which: str,
) -> None:
    chat_id = opened(post())["id"] + (1000 if which == "unknown" else 0)
    response = transcript(chat_id, case.query)
    assert error_of(response) == (400, {"message": case.text})
    assert_conforms(response)
    assert bool(request_errors(response)) is case.schema_refuses, request_errors(response)


# ---- live answers: 401, 404, 405, 409, 413, 422 -----------------------------------------


@pytest.mark.parametrize(
    "credentials",
    [
        {},
        {"Authorization": "Bearer abc"},
        {"Authorization": "Basic !!!"},
        "wrong-token",
        "unknown-tenant",
    ],
    ids=["none", "bearer", "malformed", "wrong_token", "unknown_tenant"],
)
@pytest.mark.parametrize("route", ["post", "get", "patch", "transcript", "events"])
def test_401_conforms_on_every_route(
    server: str, post: Callable[..., requests.Response], tenant: Any, credentials: Any, route: str
) -> None:
    chat_id = opened(post())["id"]
    if credentials == "wrong-token":
        credentials = basic(tenant.id, "not-the-token")
    elif credentials == "unknown-tenant":
        credentials = basic("no-such-tenant", tenant.token)
    method, path, body = {
        "post": ("POST", SMS_PATH, {**SEED_BODY, "end_user_number": "+1 415-555-0101"}),
        "get": ("GET", f"{CHATS}/{chat_id}", None),
        "patch": ("PATCH", f"{CHATS}/{chat_id}", FINISH),
        "transcript": ("GET", f"{CHATS}/{chat_id}/messages?limit=0", None),  # 401 comes first
        "events": ("GET", f"{EVENTS_PATH}?limit=0", None),  # the same
    }[route]
    response = call(server, method, path, body, headers=credentials)
    assert error_of(response) == (401, {"message": "Unauthorized"})
    assert response.headers["WWW-Authenticate"] == 'Basic realm="sms"'
    assert_conforms(response)
    # The document requires HTTP Basic: a request without it breaks the document too.
    without_basic = not response.request.headers.get("Authorization", "").startswith("Basic ")
    # (The lists' limit=0 breaks it as well: the 401 still comes first.)
    assert bool(request_errors(response)) is (without_basic or route in {"transcript", "events"})


def test_404_of_an_unknown_or_foreign_chat_conforms(
    post: Callable[..., requests.Response],
    chat: Callable[..., requests.Response],
    transcript: Callable[..., requests.Response],
    make_tenant: Callable[..., Any],
) -> None:
    chat_id = opened(post())["id"]
    stranger = make_tenant()
    answers = [
        chat("GET", chat_id + 1000),
        chat("PATCH", chat_id + 1000, FINISH),
        transcript(chat_id + 1000),
        transcript(chat_id + 1000, "limit=5"),
        chat("GET", chat_id, headers=stranger.headers),
        chat("PATCH", chat_id, FINISH, headers=stranger.headers),
        transcript(chat_id, headers=stranger.headers),
    ]
    for response in answers:
        assert error_of(response) == (404, {"message": "Not Found"})
        assert_conforms(response)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/"),
        ("POST", "/apps/api/v1/sms/status/x"),
        ("POST", "/apps/api/v1/sms/inbound/x"),
        ("GET", "/apps/api/v1/chat"),
        ("GET", "/apps/api/v1/chats/messages"),
        ("GET", "/apps/api/v1/chats/1/messages/x"),
        ("GET", "/apps/api/v1/chats/0/messages"),
        ("GET", "/apps/api/v1/chats/abc"),
        ("PATCH", "/apps/api/v1/chats/0"),
        ("DELETE", "/apps/api/v2/sms"),
    ],
)
def test_404_of_an_undocumented_path_conforms(
    server: str, tenant: Any, method: str, path: str
) -> None:
    response = call(server, method, path, FINISH, headers=tenant.headers)
    assert error_of(response) == (404, {"message": "Not Found"})
    assert_conforms_to_component(response, "NotFound")


@pytest.mark.parametrize(
    ("method", "path", "template"),
    [
        ("GET", SMS_PATH, SMS_PATH),
        ("PUT", SMS_PATH, SMS_PATH),
        ("DELETE", SMS_PATH + "/", SMS_PATH),
        ("POST", f"{CHATS}/1", CHAT_TEMPLATE),
        ("PUT", f"{CHATS}/1", CHAT_TEMPLATE),
        ("DELETE", f"{CHATS}/1", CHAT_TEMPLATE),
        ("OPTIONS", f"{CHATS}/1", CHAT_TEMPLATE),
        ("POST", CHATS, CHATS),
        ("PATCH", CHATS + "/", CHATS),
        ("DELETE", CHATS, CHATS),
        ("POST", f"{CHATS}/1/messages", TRANSCRIPT_TEMPLATE),
        ("PATCH", f"{CHATS}/1/messages/", TRANSCRIPT_TEMPLATE),
        ("DELETE", f"{CHATS}/1/messages", TRANSCRIPT_TEMPLATE),
        ("GET", STATUS_PATH, STATUS_PATH),
        ("PUT", STATUS_PATH + "/", STATUS_PATH),
        ("GET", INBOUND_PATH, INBOUND_PATH),
        ("DELETE", INBOUND_PATH + "/", INBOUND_PATH),
    ],
)
def test_405_conforms_and_allow_names_the_documented_methods(
    server: str, tenant: Any, method: str, path: str, template: str
) -> None:
    response = call(server, method, path, FINISH, headers=tenant.headers)
    assert error_of(response) == (405, {"message": "Method Not Allowed"})
    assert_conforms_to_component(response, "MethodNotAllowed")
    allowed = {m.strip().lower() for m in response.headers["Allow"].split(",")}
    documented = {m for m in HTTP_METHODS if m in SPEC["paths"][template]}
    assert allowed == documented


def test_409_conforms(
    post: Callable[..., requests.Response], db: firestore.Client, tenant: Any
) -> None:
    # A first request that holds the key and is still running (its lease has not run out),
    # recorded as sms/idempotency.py records it.
    now = dt.datetime.now(dt.timezone.utc)
    digest = hashlib.sha256(b"still-running").hexdigest()
    db.document(f"tenants/{tenant.id}/idempotency_keys/{digest}").set(
        {
            "fingerprint": idempotency.fingerprint(SEED_BODY),
            "holder": "a-request-in-progress",
            "status": None,
            "body": None,
            "lease_expires_at": now + dt.timedelta(minutes=1),
            "expires_at": now + dt.timedelta(hours=23),
        }
    )
    response = post(key="still-running")
    assert error_of(response) == (409, {"message": errors.IDEMPOTENCY_KEY_IN_PROGRESS})
    assert request_errors(response) == []
    assert_conforms(response)


def test_413_conforms(
    server: str,
    tenant: Any,
    post: Callable[..., requests.Response],
    chat: Callable[..., requests.Response],
    transcript: Callable[..., requests.Response],
) -> None:
    padding = LIMIT - len(json.dumps({**SEED_BODY, "pad": ""}).encode()) + 1
    data = json.dumps({**SEED_BODY, "pad": "p" * padding}).encode()
    assert len(data) == LIMIT + 1
    form_headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": "unchecked",  # the size is checked before the signature
    }
    form = b"MessageSid=SM1&MessageStatus=sent&Pad=" + b"p" * LIMIT
    webhook = call(server, "POST", STATUS_PATH, data=form, headers=form_headers)
    reply = b"MessageSid=SM1&From=%2B14155550100&To=%2B16285550199&Body=" + b"p" * LIMIT
    inbound = call(server, "POST", INBOUND_PATH, data=reply, headers=form_headers)
    answers = (
        post(data=data),
        chat("PATCH", 1, data=data),
        chat("GET", 1, data=data),
        transcript(1, data=data),
        call(server, "GET", EVENTS_PATH, data=data, headers=tenant.headers),
        webhook,
        inbound,
    )
    for response in answers:
        assert error_of(response) == (413, {"message": "request body is too large"})
        assert_conforms(response)


def test_422_conforms(post: Callable[..., requests.Response]) -> None:
    opened(post(key="order-4712"))
    response = post({**SEED_BODY, "message": "another text"}, key="order-4712")
    assert error_of(response) == (422, {"message": errors.IDEMPOTENCY_KEY_REUSED})
    assert request_errors(response) == []
    assert_conforms(response)


# ---- live answers: 429 ------------------------------------------------------------------

TOO_MANY = {"message": errors.TooManyRequests.message}
OTHER_CONSUMER = "+1 415-555-0102"  # the limited tenant's open chat; the requests use 0100


@pytest.fixture
def limited(make_tenant: Callable[..., Any]) -> Any:
    """A tenant that may make one request a second (SPEC 10.6)."""
    return make_tenant(
        settings={"sms_enabled": True, "outbound_sms_enabled": True, "rate_limit_per_second": 1}
    )


def next_second() -> None:
    """Wait until just after the start of a second, so that what follows falls within one."""
    time.sleep(1.05 - time.time() % 1)


def in_one_second(
    admitted: Callable[[], requests.Response], *after: Callable[[], requests.Response]
) -> list[requests.Response]:
    """At the start of a second, `admitted` spends the tenant's one request of it; then each
    of `after`, in the same second. Their answers."""
    next_second()
    second = int(time.time())
    first = admitted()
    answers = [request() for request in after]
    assert int(time.time()) == second, "the requests straddled a second"
    assert first.status_code != 429, first.text
    return answers


def assert_too_many(response: requests.Response) -> None:
    """The documented 429: its text and `Retry-After: 1`, as the operation documents them."""
    assert error_of(response) == (429, TOO_MANY)
    assert response.headers["Retry-After"] == "1"
    assert REPLAYED not in response.headers
    assert_conforms(response)


def stored(db: firestore.Client, tenant: Any) -> dict[str, Any]:
    """What the tenant's requests have written: sessions and their messages, the consumers'
    marks, end users, Idempotency-Key records."""
    found = {}
    for name in ("chats", "active_sessions", "end_users", "idempotency_keys"):
        for snap in db.collection(f"tenants/{tenant.id}/{name}").stream():
            found[f"{name}/{snap.id}"] = snap.to_dict()
            for message in snap.reference.collection("messages").stream():
                found[f"{name}/{snap.id}/messages/{message.id}"] = message.to_dict()
    return found


class Limited(NamedTuple):
    method: str
    path: str  # "{id}": the limited tenant's open chat
    body: Any  # a JSON value, or the raw bytes of the body
    key: str | None  # an Idempotency-Key, where one is sent
    schema_refuses: bool  # whether the document can tell the request is wrong
    then: tuple[int, str | None]  # the same request's answer in the next second (its text)


LIMITED = {
    "post": Limited("POST", SMS_PATH, SEED_BODY, None, False, (200, None)),
    "post_invalid_body": Limited(
        "POST", SMS_PATH, _body(chat_type="In-app"), None, True, (400, errors.CHAT_TYPE_INVALID)
    ),
    "post_not_json": Limited(
        "POST", SMS_PATH, b"not json", None, True, (400, errors.BODY_NOT_OBJECT)
    ),
    "post_invalid_key": Limited(
        "POST", SMS_PATH, SEED_BODY, "has space", True, (400, errors.IDEMPOTENCY_KEY_INVALID)
    ),
    "get": Limited("GET", CHAT_TEMPLATE, None, None, False, (200, None)),
    "get_unknown": Limited("GET", f"{CHATS}/999999", None, None, False, (404, "Not Found")),
    "patch": Limited("PATCH", CHAT_TEMPLATE, FINISH, None, False, (200, None)),
    "patch_invalid": Limited(
        "PATCH",
        CHAT_TEMPLATE,
        {"status": "open"},
        None,
        True,
        (400, errors.STATUS_MUST_BE_FINISHED),
    ),
    "transcript": Limited("GET", TRANSCRIPT_TEMPLATE, None, None, False, (200, None)),
    "transcript_bad_limit": Limited(
        "GET", TRANSCRIPT_TEMPLATE + "?limit=0", None, None, True, (400, errors.LIMIT_INVALID)
    ),
    "events": Limited("GET", EVENTS_PATH, None, None, False, (200, None)),
    "events_bad_type": Limited(
        "GET", EVENTS_PATH + "?type=chat.opened", None, None, True, (400, errors.TYPE_INVALID)
    ),
    "list": Limited("GET", CHATS, None, None, False, (200, None)),
    "list_bad_status": Limited(
        "GET", CHATS + "?status=open", None, None, True, (400, errors.STATUS_INVALID)
    ),
    "patch_assign": Limited(  # the limited tenant has no agents
        "PATCH", CHAT_TEMPLATE, {"agentId": 1}, None, False, (400, errors.AGENT_NOT_FOUND)
    ),
}


@pytest.mark.parametrize("case", LIMITED.values(), ids=LIMITED.keys())
def test_a_429_conforms_on_each_operation_wins_over_its_other_answers_and_writes_nothing(
    server: str, limited: Any, db: firestore.Client, case: Limited
) -> None:
    open_chat = _body(end_user_number=OTHER_CONSUMER)
    chat_id = opened(call(server, "POST", SMS_PATH, open_chat, headers=limited.headers))["id"]
    path = case.path.replace("{id}", str(chat_id))
    headers = {**limited.headers, **({"Idempotency-Key": case.key} if case.key else {})}
    data = case.body if isinstance(case.body, bytes) else None

    def request() -> requests.Response:
        return call(server, case.method, path, case.body, data=data, headers=headers)

    def read_the_chat() -> requests.Response:
        return call(server, "GET", f"{CHATS}/{chat_id}", headers=limited.headers)

    before = stored(db, limited)
    [refused] = in_one_second(read_the_chat, request)
    assert_too_many(refused)
    assert bool(request_errors(refused)) is case.schema_refuses, request_errors(refused)
    assert stored(db, limited) == before

    next_second()  # a new second: the same request answers as it does within the limit
    then = request()
    status, text = case.then
    assert then.status_code == status, then.text
    if text is not None:
        assert then.json() == {"message": text}
    assert REPLAYED not in then.headers
    assert_conforms(then)


def test_a_429_leaves_the_idempotency_key_free(
    server: str, limited: Any, db: firestore.Client
) -> None:
    def post_with_key(body: Any = SEED_BODY) -> requests.Response:
        headers = {**limited.headers, "Idempotency-Key": "order-4713"}
        return call(server, "POST", SMS_PATH, body, headers=headers)

    def read_a_chat() -> requests.Response:
        return call(server, "GET", f"{CHATS}/1", headers=limited.headers)

    [refused] = in_one_second(read_a_chat, post_with_key)
    assert_too_many(refused)
    assert request_errors(refused) == []
    assert stored(db, limited) == {}

    next_second()
    first = post_with_key()  # runs afresh: nothing was recorded for the key
    created = opened(first)
    assert REPLAYED not in first.headers
    next_second()
    again = post_with_key()  # the 200 was recorded, and is replayed
    assert (again.status_code, again.content) == (200, first.content)
    assert again.headers[REPLAYED] == "true"
    assert_conforms(again)
    chats = [key for key in stored(db, limited) if re.fullmatch(r"chats/\d+", key)]
    assert chats == [f"chats/{created['id']}"]  # one session: the 200's

    # Beyond the limit, the bound key answers 429 as well, not its replay nor its 422.
    other = _body(message="another text")
    for refused in in_one_second(read_a_chat, post_with_key, lambda: post_with_key(other)):
        assert_too_many(refused)


def test_404_405_413_and_401_come_before_the_429(server: str, limited: Any) -> None:
    def read_a_chat() -> requests.Response:
        return call(server, "GET", f"{CHATS}/1", headers=limited.headers)

    oversized = json.dumps({**SEED_BODY, "pad": "p" * LIMIT}).encode()
    wrong_token = basic(limited.id, "not-the-token")
    earlier = {
        "NotFound": ("GET", "/apps/api/v1/chat", None, limited.headers, 404),
        "MethodNotAllowed": ("DELETE", f"{CHATS}/1", None, limited.headers, 405),
        "PayloadTooLarge": ("POST", SMS_PATH, oversized, limited.headers, 413),
        "Unauthorized": ("POST", SMS_PATH, None, wrong_token, 401),
    }
    for name, (method, path, data, headers, status) in earlier.items():

        def request(
            method: str = method, path: str = path, data: Any = data, headers: Any = headers
        ) -> requests.Response:
            return call(server, method, path, SEED_BODY, data=data, headers=headers)

        answer, spent = in_one_second(read_a_chat, request, read_a_chat)
        assert answer.status_code == status, (name, answer.text)
        assert_conforms_to_component(answer, name)
        assert_too_many(spent)  # the second's budget was spent all along


# ---- live answers: sending through Twilio (502, 409, 503) -------------------------------


@pytest.fixture
def twilio(standin: TwilioStandIn) -> Iterator[TwilioStandIn]:
    """The stand-in for Twilio, with nothing stored, scripted or held before or after."""
    standin.reset()
    yield standin
    standin.release()
    standin.reset()


def twilio_post(
    base: str, tenant: Any, key: str | None = None, **changes: Any
) -> requests.Response:
    headers = {**tenant.headers, **({"Idempotency-Key": key} if key else {})}
    return call(base, "POST", SMS_PATH, {**SEED_BODY, **changes}, headers=headers)


def twilio_transcript(base: str, tenant: Any, chat_id: int) -> list[dict[str, Any]]:
    return list(
        page(call(base, "GET", f"{CHATS}/{chat_id}/messages", headers=tenant.headers))["messages"]
    )


def only_chat_id(db: firestore.Client, tenant: Any) -> int:
    [stored] = db.collection(f"tenants/{tenant.id}/chats").stream()
    return int(stored.get("id"))


def test_a_502_conforms_and_is_replayed_and_the_failed_chat_and_transcript_conform(
    twilio_server: str, twilio: TwilioStandIn, tenant: Any, db: firestore.Client
) -> None:
    twilio.script(Refuse(21610))
    first = twilio_post(twilio_server, tenant, key="opted-out", agentId=1)
    assert error_of(first) == (502, NOT_SENT)
    assert REPLAYED not in first.headers
    assert request_errors(first) == []
    assert_conforms(first)

    again = twilio_post(twilio_server, tenant, key="opted-out", agentId=1)
    assert (again.status_code, again.content) == (502, first.content)
    assert again.headers[REPLAYED] == "true"
    assert_conforms(again)
    assert len([r for r in twilio.requests if r.method == "POST"]) == 1

    chat_id = only_chat_id(db, tenant)
    read = call(twilio_server, "GET", f"{CHATS}/{chat_id}", headers=tenant.headers)
    failed = opened(read)
    assert (failed["status"], failed["fail_reason"]) == ("failed", "end_user_opt_out")
    assert failed["ends_at"] is not None
    assert failed["agent_info"] == {"id": 1, **DEMO_AGENT}
    [message] = twilio_transcript(twilio_server, tenant, chat_id)
    assert (message["status"], message["carrier_id"], message["error_code"]) == (
        "failed",
        None,
        "21610",
    )
    assert statuses(message) == ["queued", "sending", "failed"]

    refused = twilio_post(twilio_server, tenant)
    assert error_of(refused) == (400, {"message": errors.OPTED_OUT})
    assert request_errors(refused) == []  # the document cannot tell from the request alone
    assert_conforms(refused)
    assert len([r for r in twilio.requests if r.method == "POST"]) == 1


def test_a_502_for_any_other_refusal_shows_fail_reason_unknown(
    twilio_server: str, twilio: TwilioStandIn, tenant: Any, db: firestore.Client
) -> None:
    twilio.script(Refuse(21211))
    answer = twilio_post(twilio_server, tenant)
    assert error_of(answer) == (502, NOT_SENT)
    assert_conforms(answer)
    chat_id = only_chat_id(db, tenant)
    failed = opened(call(twilio_server, "GET", f"{CHATS}/{chat_id}", headers=tenant.headers))
    assert (failed["status"], failed["fail_reason"]) == ("failed", "unknown")
    [message] = twilio_transcript(twilio_server, tenant, chat_id)
    assert (message["status"], message["error_code"]) == ("failed", "21211")
    opened(twilio_post(twilio_server, tenant))  # not an opt-out: the consumer may be texted


def test_a_409_while_the_first_request_is_still_sending_conforms(
    twilio_server: str, twilio: TwilioStandIn, tenant: Any
) -> None:
    twilio.script(Hold(record="before"))
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(twilio_post, twilio_server, tenant, "held-send")
        assert twilio.holding.wait(10)
        during = twilio_post(twilio_server, tenant, key="held-send")
        twilio.release()
        done = first.result()
    assert error_of(during) == (409, {"message": errors.IDEMPOTENCY_KEY_IN_PROGRESS})
    assert int(during.headers["Retry-After"]) >= 1
    assert request_errors(during) == []
    assert_conforms(during)
    opened(done)


def test_a_503_of_an_unsettled_send_conforms_and_its_retry_answers_the_200(
    twilio_server: str, twilio: TwilioStandIn, tenant: Any, db: firestore.Client
) -> None:
    twilio.script(Hold(record="after"))
    first = twilio_post(twilio_server, tenant, key="unsettled")
    assert error_of(first) == (503, {"message": errors.ServiceUnavailable.message})
    assert int(first.headers["Retry-After"]) >= 1
    assert_conforms(first)
    chat_id = only_chat_id(db, tenant)
    [message] = twilio_transcript(twilio_server, tenant, chat_id)
    assert (message["status"], message["carrier_id"]) == ("sending", None)
    twilio.release()  # Twilio finishes the create it held: the SMS went out after all

    retry = twilio_post(twilio_server, tenant, key="unsettled")
    deadline = time.monotonic() + 30
    while retry.status_code in (409, 503) and time.monotonic() < deadline:
        assert_conforms(retry)  # the first request's hold on the key has not passed yet
        time.sleep(min(int(retry.headers["Retry-After"]), 2))
        retry = twilio_post(twilio_server, tenant, key="unsettled")
    assert opened(retry)["id"] == chat_id
    assert retry.headers[REPLAYED] == "true"
    [message] = twilio_transcript(twilio_server, tenant, chat_id)
    assert message["status"] == "sent"
    assert len(twilio.sent_to("+14155550100")) == 1


# ---- live answers: Twilio's status callback ---------------------------------------------


def sent_sid(base: str, twilio: TwilioStandIn, tenant: Any) -> tuple[str, int]:
    """Send one SMS through the stand-in; its Twilio sid and its chat id."""
    chat_id = opened(twilio_post(base, tenant))["id"]
    [sms] = twilio.sent_to("+14155550100")
    return sms["sid"], chat_id


class Callback(NamedTuple):
    status: str  # Twilio's MessageStatus
    error_code: int | None
    stored: str  # the message's status afterwards


@pytest.mark.parametrize(
    "case",
    [
        Callback("delivered", None, "delivered"),
        Callback("read", None, "delivered"),
        Callback("undelivered", 30003, "undelivered"),
    ],
    ids=["delivered", "read", "undelivered"],
)
def test_a_signed_status_callback_answers_204_as_documented(
    twilio_server: str, twilio: TwilioStandIn, tenant: Any, case: Callback
) -> None:
    sid, chat_id = sent_sid(twilio_server, twilio, tenant)
    answer = twilio.status_callback(sid, case.status, error_code=case.error_code)
    assert answer.status_code == 204
    assert request_errors(answer) == []
    assert_conforms_without_body(answer)
    [message] = twilio_transcript(twilio_server, tenant, chat_id)
    assert (message["status"], statuses(message)[-1]) == (case.stored, case.stored)
    assert message["error_code"] == (str(case.error_code) if case.error_code else None)


@pytest.mark.parametrize(
    "form",
    [
        {"MessageSid": "SM" + "f" * 32, "MessageStatus": "delivered"},  # a message unknown here
        {"MessageSid": "SM" + "e" * 32, "MessageStatus": "receiving", "ErrorCode": ""},
    ],
    ids=["unknown_sid", "ignored_status"],
)
def test_a_callback_that_changes_nothing_answers_204_too(
    twilio_server: str, twilio: TwilioStandIn, form: dict[str, str]
) -> None:
    answer = signed_post(twilio_server, form, twilio.auth_token)
    assert answer.status_code == 204
    assert request_errors(answer) == []
    assert_conforms_without_body(answer)


@pytest.mark.parametrize(
    ("form", "text", "schema_refuses"),
    [
        ({"MessageStatus": "delivered"}, "MessageSid is required", True),
        ({"MessageSid": "  ", "MessageStatus": "delivered"}, "MessageSid is required", True),
        ({"MessageSid": "SM" + "f" * 32}, "MessageStatus is required", True),
        ({"MessageSid": "SM" + "f" * 32, "MessageStatus": ""}, "MessageStatus is required", True),
        ({"AccountSid": "AC" + "0" * 32}, "MessageSid is required", True),
        # Not Twilio's form: the document's schema takes any text, the function does not.
        ({"MessageSid": "a/b/c", "MessageStatus": "delivered"}, "MessageSid is invalid", False),
        ({"MessageSid": "__x__", "MessageStatus": "delivered"}, "MessageSid is invalid", False),
        ({"MessageSid": "SM" + "f" * 31, "MessageStatus": "sent"}, "MessageSid is invalid", False),
        ({"MessageSid": "sm" + "f" * 32, "MessageStatus": "sent"}, "MessageSid is invalid", False),
        ({"MessageSid": "a/b/c"}, "MessageStatus is required", True),  # required first
    ],
    ids=[
        "no_sid",
        "blank_sid",
        "no_status",
        "empty_status",
        "neither",
        "nested_sid",
        "reserved_sid",
        "short_sid",
        "lower_case_sid",
        "invalid_sid_no_status",
    ],
)
def test_each_webhook_400_conforms(
    twilio_server: str,
    twilio: TwilioStandIn,
    form: dict[str, str],
    text: str,
    schema_refuses: bool,
) -> None:
    answer = signed_post(twilio_server, form, twilio.auth_token)
    assert error_of(answer) == (400, {"message": text})
    assert_conforms(answer)
    assert bool(request_errors(answer)) is schema_refuses, request_errors(answer)


@pytest.mark.parametrize("signature", [None, "", "forged", "other-token", "other-url"])
def test_a_webhook_403_conforms_and_changes_nothing(
    twilio_server: str, twilio: TwilioStandIn, tenant: Any, signature: str | None
) -> None:
    sid, chat_id = sent_sid(twilio_server, twilio, tenant)
    url = twilio_server + STATUS_PATH
    form = {"MessageSid": sid, "MessageStatus": "failed", "ErrorCode": "30008"}
    if signature == "other-token":
        signature = sign(url, form, "not-the-auth-token")
    elif signature == "other-url":
        signature = sign("https://elsewhere.example.com" + STATUS_PATH, form, twilio.auth_token)
    headers = {} if signature is None else {"X-Twilio-Signature": signature}
    answer = requests.post(url, data=form, headers=headers, timeout=TIMEOUT)
    assert error_of(answer) == (403, {"message": "Forbidden"})
    assert_conforms(answer)
    # The document requires the signature header: a request without one breaks it too.
    assert bool(request_errors(answer)) is (signature is None)
    assert twilio_transcript(twilio_server, tenant, chat_id)[0]["status"] == "sent"


def test_the_webhook_of_a_function_not_set_up_for_twilio_answers_403(
    server: str, twilio: TwilioStandIn
) -> None:
    form = {"MessageSid": "SM" + "f" * 32, "MessageStatus": "delivered"}
    answer = signed_post(server, form, twilio.auth_token)
    assert error_of(answer) == (403, {"message": "Forbidden"})
    assert_conforms(answer)


# ---- live answers: Twilio's incoming-message webhook ------------------------------------

# This module's own numbers, +1 628-555-7xxx for the tenants (indexed in numbers/{E.164},
# which replies reach) and +1 415-555-7xxx or +1 212-555-7xxx for the consumers.
_numbers = itertools.count(7000)
ACTIVE = {"message": errors.ACTIVE_SESSION}


def fresh(area: str) -> str:
    n = next(_numbers)
    assert n < 8000, "this module's numbers ran out"
    return f"+1{area}555{n}"


@pytest.fixture
def owner(make_tenant: Callable[..., Any]) -> Any:
    """A tenant with agent 1 and a number of its own that replies reach (numbers/{E.164})."""
    return make_tenant(
        agents={1: dict(DEMO_AGENT)}, outbound_numbers={fresh("628"): {}}, index_numbers=True
    )


def number_of(tenant: Any) -> str:
    [number] = tenant.outbound_numbers
    return str(number)


def reply_form(
    twilio: TwilioStandIn,
    to: str,
    sender: str,
    body: str | None = "Yes, thanks",
    *,
    example: str = "IncomingMessageReply",
) -> dict[str, str]:
    """An incoming SMS as Twilio posts it: the document's example, with these numbers, this
    text (None: no Body) and a MessageSid of its own."""
    form = dict(resolve(SPEC["components"]["examples"][example])["value"])
    sid = "SM" + uuid.uuid4().hex
    form.update(
        MessageSid=sid, SmsSid=sid, SmsMessageSid=sid, To=to, From=sender,
        AccountSid=twilio.account_sid,
    )  # fmt: skip
    if body is None:
        del form["Body"]
    else:
        form["Body"] = body
    return form


def post_reply(base: str, twilio: TwilioStandIn, form: dict[str, str]) -> requests.Response:
    return signed_post(base, form, twilio.auth_token, path=INBOUND_PATH)


def chat_document(base: str, tenant: Any, chat_id: int) -> dict[str, Any]:
    read = call(base, "GET", f"{CHATS}/{chat_id}", headers=tenant.headers)
    assert request_errors(read) == []
    document = opened(read)
    assert list(document) == CHAT_KEYS
    return document


def nothing_sent(twilio: TwilioStandIn) -> bool:
    return [r for r in twilio.requests if r.method == "POST"] == []


def test_a_reply_without_a_session_answers_twiml_and_opens_a_queued_chat_as_documented(
    twilio_server: str, twilio: TwilioStandIn, owner: Any, db: firestore.Client
) -> None:
    to, consumer = number_of(owner), fresh("415")
    form = reply_form(twilio, to, consumer, "Is my order on its way?")
    answer = post_reply(twilio_server, twilio, form)
    assert request_errors(answer) == []
    assert_conforms_twiml(answer)

    chat_id = only_chat_id(db, owner)
    document = chat_document(twilio_server, owner, chat_id)
    example = resolve(SPEC["components"]["examples"]["ChatQueued"])["value"]
    assert shape(document) == shape({**example, "outbound_number": to})
    assert document["queued_at"] == document["created_at"]
    assert (document["status"], document["assigned_at"], document["agent_info"]) == (
        "queued",
        None,
        None,
    )

    [message] = twilio_transcript(twilio_server, owner, chat_id)
    [documented] = SPEC["components"]["examples"]["TranscriptOpenedByReply"]["value"]["messages"]
    at = document["created_at"]
    assert message == {
        **documented,
        "id": message["id"],
        "chat_id": chat_id,
        "from": consumer,
        "to": to,
        "carrier_id": form["MessageSid"],
        "created_at": at,
        "status_history": [{"status": "received", "at": at}],
    }
    assert nothing_sent(twilio)


def test_a_message_sid_delivered_again_answers_the_same_and_is_stored_once(
    twilio_server: str, twilio: TwilioStandIn, owner: Any, db: firestore.Client
) -> None:
    form = reply_form(twilio, number_of(owner), fresh("415"))
    first = post_reply(twilio_server, twilio, form)
    again = post_reply(twilio_server, twilio, form)
    for answer in (first, again):
        assert request_errors(answer) == []
        assert_conforms_twiml(answer)
    [message] = twilio_transcript(twilio_server, owner, only_chat_id(db, owner))
    assert message["carrier_id"] == form["MessageSid"]


def test_a_queued_chat_refuses_outbound_requests_and_ends_like_any_other(
    twilio_server: str, twilio: TwilioStandIn, owner: Any, db: firestore.Client
) -> None:
    to, consumer = number_of(owner), fresh("415")
    assert_conforms_twiml(post_reply(twilio_server, twilio, reply_form(twilio, to, consumer)))
    chat_id = only_chat_id(db, owner)

    refused = twilio_post(twilio_server, owner, end_user_number=consumer, outbound_number=to)
    assert error_of(refused) == (400, ACTIVE)
    assert request_errors(refused) == []
    assert_conforms(refused)

    ended = call(twilio_server, "PATCH", f"{CHATS}/{chat_id}", FINISH, headers=owner.headers)
    assert request_errors(ended) == []
    document = opened(ended)
    assert (document["status"], document["agent_info"]) == ("finished", None)
    assert document["queued_at"] == document["created_at"]  # kept once it has ended
    assert [p["ended_at"] for p in document["participants"]] == [document["ends_at"]]
    assert chat_document(twilio_server, owner, chat_id) == document

    answer = twilio_post(
        twilio_server, owner, end_user_number=consumer, outbound_number=to, agentId=1
    )
    new = opened(answer)
    assert (new["status"], new["queued_at"]) == ("assigned", None)
    assert new["end_user"] == document["end_user"]


def test_a_reply_joins_the_active_session_and_the_transcript_conforms(
    twilio_server: str, twilio: TwilioStandIn, owner: Any
) -> None:
    to, consumer = number_of(owner), fresh("415")
    answer = twilio_post(
        twilio_server, owner, end_user_number=consumer, outbound_number=to, agentId=1
    )
    chat_id = opened(answer)["id"]
    text = "Thanks! Can you leave it at the door?"
    form = reply_form(twilio, to, consumer, text)
    assert_conforms_twiml(post_reply(twilio_server, twilio, form))

    document = chat_document(twilio_server, owner, chat_id)
    assert (document["status"], document["queued_at"]) == ("assigned", None)
    sent, received = twilio_transcript(twilio_server, owner, chat_id)
    documented = SPEC["components"]["examples"]["TranscriptConversation"]["value"]["messages"]
    for live, example in zip((sent, received), documented, strict=True):
        fields = ("direction", "agent_id", "encoding", "segments", "error_code")
        assert [live[f] for f in fields] == [example[f] for f in fields]
    assert (sent["status"], received["status"]) == ("sent", "received")
    assert (received["from"], received["to"], received["text"]) == (consumer, to, text)
    assert received["carrier_id"] == form["MessageSid"]
    assert statuses(received) == ["received"]
    assert len(twilio.sent_to(consumer)) == 1  # the outbound SMS; nothing sent back


def test_a_reply_without_a_body_is_stored_as_an_empty_text(
    twilio_server: str, twilio: TwilioStandIn, owner: Any, db: firestore.Client
) -> None:
    form = reply_form(twilio, number_of(owner), fresh("415"), body=None)
    form.update(
        NumMedia="1", MediaUrl0="https://api.twilio.com/media/ME0", MediaContentType0="image/jpeg"
    )
    answer = post_reply(twilio_server, twilio, form)
    assert request_errors(answer) == []
    assert_conforms_twiml(answer)
    [message] = twilio_transcript(twilio_server, owner, only_chat_id(db, owner))
    assert (message["text"], message["direction"]) == ("", "inbound")


def test_keywords_answer_twiml_are_stored_and_opt_the_consumer_out_and_back_in(
    twilio_server: str, twilio: TwilioStandIn, owner: Any, db: firestore.Client
) -> None:
    to, consumer = number_of(owner), fresh("415")
    keyword = resolve(SPEC["components"]["examples"]["IncomingMessageStop"])["value"]["Body"]
    assert keyword.strip().upper() == "STOP" != keyword
    stop = reply_form(twilio, to, consumer, keyword, example="IncomingMessageStop")
    answer = post_reply(twilio_server, twilio, stop)
    assert request_errors(answer) == []
    assert_conforms_twiml(answer)
    chat_id = only_chat_id(db, owner)

    outbound = {"end_user_number": consumer, "outbound_number": to}
    refused = twilio_post(twilio_server, owner, **outbound)
    assert error_of(refused) == (400, {"message": errors.OPTED_OUT})  # before rule 17
    assert_conforms(refused)

    assert_conforms_twiml(
        post_reply(twilio_server, twilio, reply_form(twilio, to, consumer, "start"))
    )
    refused = twilio_post(twilio_server, owner, **outbound)
    assert error_of(refused) == (400, ACTIVE)  # opted in; the queued session remains
    assert_conforms(refused)
    texts = [m["text"] for m in twilio_transcript(twilio_server, owner, chat_id)]
    assert texts == [keyword, "start"]
    assert chat_document(twilio_server, owner, chat_id)["status"] == "queued"
    assert nothing_sent(twilio)


class BadReply(NamedTuple):
    changes: dict[str, str | None]  # over a reply to the tenant's number; None drops a field
    text: str  # the expected message
    schema_refuses: bool  # whether the document's form schema can tell the form is wrong


BAD_REPLIES = {
    "no_sid": BadReply({"MessageSid": None}, "MessageSid is required", True),
    "blank_sid": BadReply({"MessageSid": "  "}, "MessageSid is required", True),
    "nothing": BadReply(
        {"MessageSid": None, "From": None, "To": None}, "MessageSid is required", True
    ),
    "no_from": BadReply({"From": None}, "From is required", True),
    "empty_from": BadReply({"From": ""}, "From is required", True),
    "no_from_nor_to": BadReply({"From": None, "To": None}, "From is required", True),
    "no_to": BadReply({"To": None}, "To is required", True),
    "blank_to": BadReply({"To": " "}, "To is required", True),
    # A MessageSid not of Twilio's form (the document's schema takes any text): after the
    # required fields, before the numbers are judged.
    "nested_sid": BadReply({"MessageSid": "SM/x"}, "MessageSid is invalid", False),
    "dot_sid": BadReply({"MessageSid": ".."}, "MessageSid is invalid", False),
    "long_sid": BadReply({"MessageSid": "SM" + "a" * 1600}, "MessageSid is invalid", False),
    "invalid_sid_no_to": BadReply({"MessageSid": "..", "To": None}, "To is required", True),
    "invalid_sid_and_from": BadReply(
        {"MessageSid": "__x__", "From": "12345"}, "MessageSid is invalid", False
    ),
    "from_invalid": BadReply({"From": "12345"}, "From is invalid", False),
    "from_words": BadReply({"From": "not a number"}, "From is invalid", False),
    # From is judged before the tenant is looked up: no 404 for this unowned To.
    "from_invalid_to_unowned": BadReply(
        {"From": "12345", "To": "+12125550000"}, "From is invalid", False
    ),
}


@pytest.mark.parametrize("case", BAD_REPLIES.values(), ids=BAD_REPLIES.keys())
def test_each_inbound_400_conforms_and_stores_nothing(
    twilio_server: str,
    twilio: TwilioStandIn,
    owner: Any,
    db: firestore.Client,
    case: BadReply,
) -> None:
    form = reply_form(twilio, number_of(owner), fresh("415"))
    for name, value in case.changes.items():
        if value is None:
            del form[name]
        else:
            form[name] = value
    answer = post_reply(twilio_server, twilio, form)
    assert error_of(answer) == (400, {"message": case.text})
    assert_conforms(answer)
    assert bool(request_errors(answer)) is case.schema_refuses, request_errors(answer)
    assert list(db.collection(f"tenants/{owner.id}/chats").stream()) == []


@pytest.mark.parametrize(
    "numbers",
    [
        {"To": "unowned"},
        {"To": "12345"},
        {"To": "not a number"},
        {"To": "12345", "From": "12345"},  # a To that is no number answers before the From
    ],
    ids=["unowned", "short", "words", "neither_a_number"],
)
def test_an_inbound_404_conforms_and_stores_nothing(
    twilio_server: str,
    twilio: TwilioStandIn,
    owner: Any,
    db: firestore.Client,
    numbers: dict[str, str],
) -> None:
    to = fresh("212") if numbers["To"] == "unowned" else numbers["To"]
    form = reply_form(twilio, to, numbers.get("From") or fresh("415"))
    answer = post_reply(twilio_server, twilio, form)
    assert error_of(answer) == (404, {"message": "Not Found"})
    assert request_errors(answer) == []  # the document cannot tell from the request alone
    assert_conforms(answer)
    assert list(db.collection(f"tenants/{owner.id}/chats").stream()) == []


@pytest.mark.parametrize(
    "signature", [None, "", "forged", "other-token", "other-url", "status-webhook"]
)
def test_an_inbound_403_conforms_and_stores_nothing(
    twilio_server: str,
    twilio: TwilioStandIn,
    owner: Any,
    db: firestore.Client,
    signature: str | None,
) -> None:
    url = twilio_server + INBOUND_PATH
    form = reply_form(twilio, number_of(owner), fresh("415"), "STOP")
    if signature == "other-token":
        signature = sign(url, form, "not-the-auth-token")
    elif signature == "other-url":
        signature = sign("https://elsewhere.example.com" + INBOUND_PATH, form, twilio.auth_token)
    elif signature == "status-webhook":  # signed for the other webhook of this function
        signature = sign(twilio_server + STATUS_PATH, form, twilio.auth_token)
    headers = {} if signature is None else {"X-Twilio-Signature": signature}
    answer = requests.post(url, data=form, headers=headers, timeout=TIMEOUT)
    assert error_of(answer) == (403, {"message": "Forbidden"})
    assert_conforms(answer)
    assert bool(request_errors(answer)) is (signature is None)
    assert list(db.collection(f"tenants/{owner.id}/chats").stream()) == []
    assert not db.document(f"tenants/{owner.id}/opt_outs/{form['From']}").get().exists


def test_the_inbound_webhook_of_a_function_not_set_up_for_twilio_answers_403(
    server: str, twilio: TwilioStandIn, owner: Any, db: firestore.Client
) -> None:
    form = reply_form(twilio, number_of(owner), fresh("415"))
    answer = signed_post(server, form, twilio.auth_token, path=INBOUND_PATH)
    assert error_of(answer) == (403, {"message": "Forbidden"})
    assert_conforms(answer)
    assert list(db.collection(f"tenants/{owner.id}/chats").stream()) == []


# ---- live answers: the events list ------------------------------------------------------


def events_of(base: str, tenant: Any, query: str = "") -> dict[str, Any]:
    """A page of GET /apps/api/v1/events that conforms, each event's keys in their order."""
    path = EVENTS_PATH + (f"?{query}" if query else "")
    response = call(base, "GET", path, headers=tenant.headers)
    assert response.status_code == 200, response.text
    assert request_errors(response) == []
    assert_conforms(response)
    body = response.json()
    assert list(body) == ["events", "next_page_token"]
    for event in body["events"]:
        assert list(event) == ["id", "type", "timestamp", "tenant", "data"]
    return body


def test_the_events_list_conforms_with_events_of_every_kind_paged_and_filtered(
    twilio_server: str, twilio: TwilioStandIn, owner: Any
) -> None:
    assert events_of(twilio_server, owner) == {"events": [], "next_page_token": None}
    number = number_of(owner)
    texter, sent, undelivered, refused = (fresh("415") for _ in range(4))
    for text in ("STOP", "START"):  # a session opened by a reply; opted out, and back in
        form = reply_form(twilio, number, texter, text)
        assert_conforms_twiml(post_reply(twilio_server, twilio, form))
    for to, status in ((sent, "delivered"), (undelivered, "undelivered")):
        request = {"end_user_number": to, "outbound_number": number, "agentId": 1}
        chat_id = opened(twilio_post(twilio_server, owner, **request))["id"]
        [sms] = twilio.sent_to(to)
        assert twilio.status_callback(sms["sid"], status, error_code=30003).status_code == 204
    opened(call(twilio_server, "PATCH", f"{CHATS}/{chat_id}", FINISH, headers=owner.headers))
    twilio.script(Refuse(21211))
    request = {"end_user_number": refused, "outbound_number": number}
    assert twilio_post(twilio_server, owner, **request).status_code == 502

    everything = events_of(twilio_server, owner)
    assert everything["next_page_token"] is None
    events = everything["events"]
    assert {event["type"] for event in events} == set(SPEC["webhooks"]) - {"chat.assigned"}
    pages, query = [], "limit=4"
    while True:
        page_of = events_of(twilio_server, owner, query)
        pages.append(page_of["events"])
        if page_of["next_page_token"] is None:
            break
        query = f"limit=4&page_token={page_of['next_page_token']}"
    assert [event for one in pages for event in one] == events
    assert [len(one) for one in pages[:-1]] == [4] * (len(pages) - 1)
    for kind in {event["type"] for event in events}:
        of_kind = events_of(twilio_server, owner, f"type={kind}")["events"]
        assert of_kind == [event for event in events if event["type"] == kind]
    since = events[5]["timestamp"]
    later = events_of(twilio_server, owner, f"since={since.replace(':', '%3A')}")["events"]
    assert later == [event for event in events if event["timestamp"] >= since]


EVENT_QUERIES = [
    BadQuery("since=yesterday", errors.SINCE_INVALID, True),
    BadQuery("since=2021-10-04T17:20:51.000", errors.SINCE_INVALID, True),  # no Z
    BadQuery("since=2021-13-45T17:20:51Z", errors.SINCE_INVALID, False),  # no such day
    BadQuery("type=chat.opened", errors.TYPE_INVALID, True),
    BadQuery("limit=0", errors.LIMIT_INVALID, True),
    BadQuery("limit=201", errors.LIMIT_INVALID, True),
    BadQuery("page_token=bad", errors.PAGE_TOKEN_INVALID, False),
    BadQuery("since=yesterday&type=x&limit=0&page_token=bad", errors.SINCE_INVALID, True),
    BadQuery("type=x&limit=0&page_token=bad", errors.TYPE_INVALID, True),
    BadQuery("limit=0&page_token=bad", errors.LIMIT_INVALID, True),
]


@pytest.mark.parametrize("case", EVENT_QUERIES, ids=[case.query for case in EVENT_QUERIES])
def test_each_events_list_400_conforms_in_the_documented_order(
    server: str, tenant: Any, case: BadQuery
) -> None:
    response = call(server, "GET", f"{EVENTS_PATH}?{case.query}", headers=tenant.headers)
    assert error_of(response) == (400, {"message": case.text})
    assert_conforms(response)
    assert bool(request_errors(response)) is case.schema_refuses, request_errors(response)


# ---- live answers: the chats list, and assigning a session -----------------------------


def chats_of(base: str, tenant: Any, query: str = "") -> dict[str, Any]:
    """A page of GET /apps/api/v1/chats that conforms, each chat's keys in their order."""
    response = call(base, "GET", CHATS + (f"?{query}" if query else ""), headers=tenant.headers)
    assert response.status_code == 200, response.text
    assert request_errors(response) == []
    assert_conforms(response)
    body = response.json()
    assert list(body) == ["chats", "next_page_token"]
    for chat in body["chats"]:
        assert list(chat) == CHAT_KEYS
    return dict(body)


def test_chat_list_pages_conform_and_their_tokens_lead_through_them(
    server: str,
    tenant: Any,
    post: Callable[..., requests.Response],
    chat: Callable[..., requests.Response],
) -> None:
    assert chats_of(server, tenant) == {"chats": [], "next_page_token": None}
    ended = opened(chat("PATCH", opened(post())["id"], FINISH))
    assigned = opened(post({**SEED_BODY, "agentId": 1}))
    other = opened(post({**SEED_BODY, "end_user_number": "+1 415-555-0101"}))
    assert chats_of(server, tenant) == {
        "chats": [other, assigned, ended],
        "next_page_token": None,
    }
    pages, query = [], "limit=1"
    while True:
        one = chats_of(server, tenant, query)
        pages.append(one["chats"])
        if one["next_page_token"] is None:
            break
        query = f"limit=1&page_token={one['next_page_token']}"
    assert pages == [[other], [assigned], [ended]]
    filters = {
        "status=active": [other, assigned],
        "status=finished": [ended],
        "status=queued": [],
        "end_user_number=%28415%29%20555-0100": [assigned, ended],
        "status=assigned&end_user_number=4155550100": [assigned],
        "end_user_number=%2B82%202-312-3456": [],  # foreign: finds nothing
    }
    for query, chats in filters.items():
        assert chats_of(server, tenant, query)["chats"] == chats, query


def test_the_documented_list_examples_are_what_the_function_answers(
    twilio_server: str, twilio: TwilioStandIn, owner: Any, db: firestore.Client
) -> None:
    to, consumer = number_of(owner), fresh("415")
    ended_id = opened(
        twilio_post(twilio_server, owner, end_user_number=consumer, outbound_number=to)
    )["id"]
    ended = call(twilio_server, "PATCH", f"{CHATS}/{ended_id}", FINISH, headers=owner.headers)
    opened(ended)
    for sender in (consumer, fresh("415")):
        assert_conforms_twiml(post_reply(twilio_server, twilio, reply_form(twilio, to, sender)))

    examples = _examples(documented_response(CHATS, "get", 200)["content"]["application/json"])
    queued = chats_of(twilio_server, owner, "status=queued")
    assert [shape(chat) for chat in queued["chats"]] == [
        shape({**chat, "outbound_number": to}) for chat in examples["queued"]["chats"]
    ]
    assert queued["next_page_token"] is None
    query = f"end_user_number={consumer.replace('+', '%2B')}&limit=1"
    first = chats_of(twilio_server, owner, query)
    [documented] = examples["firstOfTwoPages"]["chats"]
    assert [shape(chat) for chat in first["chats"]] == [
        shape({**documented, "outbound_number": to})
    ]
    assert first["next_page_token"] is not None
    rest = chats_of(twilio_server, owner, f"{query}&page_token={first['next_page_token']}")
    assert rest == {"chats": [opened(ended)], "next_page_token": None}


def test_assigning_a_queued_session_conforms_as_documented(
    twilio_server: str, twilio: TwilioStandIn, owner: Any, db: firestore.Client
) -> None:
    to, consumer = number_of(owner), fresh("415")
    assert_conforms_twiml(post_reply(twilio_server, twilio, reply_form(twilio, to, consumer)))
    chat_id = only_chat_id(db, owner)
    assert [c["id"] for c in chats_of(twilio_server, owner, "status=queued")["chats"]] == [chat_id]

    answer = call(
        twilio_server, "PATCH", f"{CHATS}/{chat_id}", {"agentId": 1}, headers=owner.headers
    )
    assert request_errors(answer) == []
    document = opened(answer)
    assert list(document) == CHAT_KEYS
    example = resolve(SPEC["components"]["examples"]["ChatAssigned"])["value"]
    assert document["wait_duration"] >= 0
    assert shape(document) == shape(
        {**example, "outbound_number": to, "wait_duration": document["wait_duration"]}
    )
    assert chat_document(twilio_server, owner, chat_id) == document
    assert chats_of(twilio_server, owner, "status=queued")["chats"] == []
    assert chats_of(twilio_server, owner, "status=assigned")["chats"] == [document]

    # The agent now sends on the session's behalf: the same session's document.
    on_behalf = twilio_post(
        twilio_server, owner, end_user_number=consumer, outbound_number=to, agentId=1
    )
    assert request_errors(on_behalf) == []
    assert opened(on_behalf)["id"] == chat_id
    assert len(twilio.sent_to(consumer)) == 1


def test_each_documented_assigning_request_conforms(
    post: Callable[..., requests.Response], chat: Callable[..., requests.Response]
) -> None:
    body = resolve(operation(CHAT_TEMPLATE, "patch")["requestBody"])["content"]
    requests_ = {n: v for n, v in _examples(body["application/json"]).items() if "status" not in v}
    assert len(requests_) >= 2
    for n, (name, request) in enumerate(sorted(requests_.items())):
        created = opened(post({**SEED_BODY, "end_user_number": f"+1 415-555-01{20 + n}"}))
        answer = chat("PATCH", created["id"], request)
        assert request_errors(answer) == [], name
        document = opened(answer)
        assert (document["status"], document["agent_info"]) == ("assigned", {"id": 1, **DEMO_AGENT})
        assert [p["type"] for p in document["participants"]] == ["end_user", "agent"]


class BadPatch(NamedTuple):
    chat: str  # "open" (no agent), "ended" or "assigned"
    body: Any
    text: str  # the expected message
    schema_refuses: bool  # whether the document's request schema can tell the body is wrong


BAD_PATCHES = {
    "agent_words": BadPatch("open", {"agentId": "one"}, errors.AGENT_INVALID, True),
    "agent_boolean": BadPatch("open", {"agent_id": True}, errors.AGENT_INVALID, True),
    "agents_disagree": BadPatch("open", {"agent_id": 1, "agentId": 2}, errors.AGENT_INVALID, False),
    "agent_unknown": BadPatch("open", {"agentId": 99}, errors.AGENT_NOT_FOUND, False),
    "email_unknown": BadPatch(
        "open", {"agentEmail": "nobody@foo.com"}, errors.AGENT_NOT_FOUND, False
    ),
    "ended": BadPatch("ended", {"agentId": 1}, errors.CHAT_ALREADY_ENDED, False),
    "ended_agent_unknown": BadPatch("ended", {"agentId": 99}, errors.AGENT_NOT_FOUND, False),
    "assigned": BadPatch("assigned", {"agentId": 1}, errors.CHAT_ALREADY_ASSIGNED, False),
    "assigned_by_email": BadPatch(
        "assigned", {"agent_email": "JOHN.DOE@foo.com"}, errors.CHAT_ALREADY_ASSIGNED, False
    ),
    "both": BadPatch(
        "open", {"status": "finished", "agentId": 1}, errors.STATUS_MUST_BE_FINISHED, True
    ),
    "neither": BadPatch("open", {"agentId": None}, errors.STATUS_MUST_BE_FINISHED, True),
    "ended_status_open": BadPatch(
        "ended", {"status": "open"}, errors.STATUS_MUST_BE_FINISHED, True
    ),
}


@pytest.mark.parametrize("case", BAD_PATCHES.values(), ids=BAD_PATCHES.keys())
def test_each_patch_400_conforms_in_the_documented_order(
    post: Callable[..., requests.Response], chat: Callable[..., requests.Response], case: BadPatch
) -> None:
    created = opened(post({**SEED_BODY, "agentId": 1} if case.chat == "assigned" else SEED_BODY))
    if case.chat == "ended":
        opened(chat("PATCH", created["id"], FINISH))
    response = chat("PATCH", created["id"], case.body)
    assert error_of(response) == (400, {"message": case.text})
    assert_conforms(response)
    assert bool(request_errors(response)) is case.schema_refuses, request_errors(response)


def test_a_patch_naming_an_agent_of_an_unknown_or_foreign_chat_is_a_404_that_conforms(
    post: Callable[..., requests.Response],
    chat: Callable[..., requests.Response],
    make_tenant: Callable[..., Any],
) -> None:
    chat_id = opened(post())["id"]
    stranger = make_tenant(agents={1: dict(DEMO_AGENT)})
    for response in (
        chat("PATCH", chat_id + 1000, {"agentId": 1}),
        chat("PATCH", chat_id + 1000, {"agentId": "one"}),
        chat("PATCH", chat_id, {"agentId": 1}, headers=stranger.headers),
    ):
        assert error_of(response) == (404, {"message": "Not Found"})
        assert_conforms(response)


CHAT_LIST_QUERIES = [
    BadQuery("status=open", errors.STATUS_INVALID, True),
    BadQuery("status=ACTIVE", errors.STATUS_INVALID, True),
    BadQuery("end_user_number=12345", errors.END_USER_NUMBER_INVALID, False),
    BadQuery("end_user_number=not%20a%20number", errors.END_USER_NUMBER_INVALID, False),
    BadQuery("limit=0", errors.LIMIT_INVALID, True),
    BadQuery("limit=201", errors.LIMIT_INVALID, True),
    BadQuery("limit=ten", errors.LIMIT_INVALID, True),
    BadQuery("page_token=bad", errors.PAGE_TOKEN_INVALID, False),
    BadQuery("page_token=MC5fX3hfXw", errors.PAGE_TOKEN_INVALID, False),  # "0.__x__"
    BadQuery(
        "status=open&end_user_number=12345&limit=0&page_token=bad", errors.STATUS_INVALID, True
    ),
    BadQuery("end_user_number=12345&limit=0&page_token=bad", errors.END_USER_NUMBER_INVALID, True),
    BadQuery("limit=0&page_token=bad", errors.LIMIT_INVALID, True),
    BadQuery(
        "status=active&end_user_number=%2B82%202-312-3456&page_token=bad",
        errors.PAGE_TOKEN_INVALID,
        False,
    ),
]


@pytest.mark.parametrize("case", CHAT_LIST_QUERIES, ids=[c.query for c in CHAT_LIST_QUERIES])
def test_each_chat_list_400_conforms_in_the_documented_order(
    server: str, post: Callable[..., requests.Response], tenant: Any, case: BadQuery
) -> None:
    opened(post())
    response = call(server, "GET", f"{CHATS}?{case.query}", headers=tenant.headers)
    assert error_of(response) == (400, {"message": case.text})
    assert_conforms(response)
    assert bool(request_errors(response)) is case.schema_refuses, request_errors(response)


@pytest.mark.parametrize(
    "credentials",
    [{}, {"Authorization": "Bearer abc"}, "wrong-token", "unknown-tenant"],
    ids=["none", "bearer", "wrong_token", "unknown_tenant"],
)
def test_401_of_the_chat_list_conforms_before_its_query_is_judged(
    server: str, tenant: Any, credentials: Any
) -> None:
    if credentials == "wrong-token":
        credentials = basic(tenant.id, "not-the-token")
    elif credentials == "unknown-tenant":
        credentials = basic("no-such-tenant", tenant.token)
    response = call(server, "GET", f"{CHATS}?status=open", headers=credentials)
    assert error_of(response) == (401, {"message": "Unauthorized"})
    assert response.headers["WWW-Authenticate"] == 'Basic realm="sms"'
    assert_conforms(response)
    assert request_errors(response) != []  # status=open breaks it, as no Basic does


def test_413_of_the_chat_list_conforms(server: str, tenant: Any) -> None:
    data = json.dumps({"pad": "p" * LIMIT}).encode()
    response = call(server, "GET", CHATS, data=data, headers=tenant.headers)
    assert error_of(response) == (413, {"message": "request body is too large"})
    assert_conforms(response)


# ---- live answers: 503 ------------------------------------------------------------------


@pytest.fixture(scope="module")
def server_without_firestore(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The function served as in production, pointed at a Firestore that is not there."""
    env = {
        **os.environ,
        "FIRESTORE_EMULATOR_HOST": f"127.0.0.1:{free_port()}",
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "SMS_REQUEST_DEADLINE_SECONDS": "1",
        "SMS_FIRESTORE_TIMEOUT_SECONDS": "0.5",
    }
    with (
        open(tmp_path_factory.mktemp("no-firestore") / "server.log", "wb") as log,
        serving(free_port(), env, log) as url,
    ):
        yield url


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", SMS_PATH, SEED_BODY),
        ("GET", f"{CHATS}/1", None),
        ("PATCH", f"{CHATS}/1", FINISH),
        ("GET", f"{CHATS}/1/messages", None),
        ("GET", CHATS, None),
        ("PATCH", f"{CHATS}/1", {"agentId": 1}),
        ("GET", EVENTS_PATH, None),
    ],
)
def test_503_conforms(server_without_firestore: str, method: str, path: str, body: Any) -> None:
    headers = basic("acme", "some-token")
    response = call(server_without_firestore, method, path, body, headers=headers)
    assert error_of(response) == (503, {"message": errors.ServiceUnavailable.message})
    assert int(response.headers["Retry-After"]) >= 0
    assert_conforms(response)


@pytest.fixture(scope="module")
def twilio_server_without_firestore(
    standin: TwilioStandIn, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The function set up for Twilio, pointed at a Firestore that is not there."""
    port = free_port()
    env = twilio_env(
        standin,
        port,
        FIRESTORE_EMULATOR_HOST=f"127.0.0.1:{free_port()}",
        SMS_REQUEST_DEADLINE_SECONDS="1",
        SMS_FIRESTORE_TIMEOUT_SECONDS="0.5",
    )
    with (
        open(tmp_path_factory.mktemp("twilio-no-firestore") / "server.log", "wb") as log,
        serving(port, env, log) as url,
    ):
        yield url


def test_a_webhook_503_conforms(
    twilio_server_without_firestore: str, standin: TwilioStandIn
) -> None:
    form = {"MessageSid": "SM" + "f" * 32, "MessageStatus": "delivered"}
    response = signed_post(twilio_server_without_firestore, form, standin.auth_token)
    assert error_of(response) == (503, {"message": errors.ServiceUnavailable.message})
    assert int(response.headers["Retry-After"]) >= 0
    assert request_errors(response) == []
    assert_conforms(response)


def test_an_inbound_503_conforms(
    twilio_server_without_firestore: str, standin: TwilioStandIn
) -> None:
    form = reply_form(standin, "+16285557999", "+14155557999")
    response = signed_post(
        twilio_server_without_firestore, form, standin.auth_token, path=INBOUND_PATH
    )
    assert error_of(response) == (503, {"message": errors.ServiceUnavailable.message})
    assert int(response.headers["Retry-After"]) >= 0
    assert request_errors(response) == []
    assert_conforms(response)
