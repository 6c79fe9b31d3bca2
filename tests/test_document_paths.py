"""SPEC 10.3: every value from outside that could name a Firestore document is judged first.

Firestore refuses some document ids (``__x__``, ``.``, ``..``, over 1,500 bytes) and reads a
``/`` as a path separator (a nested document). Each input that can become part of a document's
path, or of a query's cursor, is fed such values (and lone surrogates, control characters,
near misses of the forms the service makes) through the real routes, the function in-process
against the emulator: never a 5xx, always the route's 400 or 404 JSON (or the answer a value
of the right form has), and nothing written.

The inputs: Twilio's ``MessageSid`` on both webhooks; the page tokens of the transcript, the
chats list and the events list; a chat id in a path; the ``Idempotency-Key`` (hashed); the
tenant of HTTP Basic; the numbers of a request and of a reply (E.164 once judged); the agent
id and email; the tenant and event ids of a Pub/Sub message (``sms_events``).
"""

from __future__ import annotations

import base64
import json
import re
import urllib.parse
import uuid
from collections.abc import Callable
from typing import Any

import flask
import pytest
from google.cloud import firestore
from hypothesis import event, example, given
from hypothesis import strategies as st
from twilio_standin import sign

from conftest import (
    PROJECT,
    SEED_BODY,
    SMS_PATH,
    MovableClock,
    Tenant,
    fuzz,
    in_process,
)
from sms import bootstrap, errors
from sms.config import Settings
from sms.devtools.seed import DEMO_AGENT
from sms.domain import SUBDOMAIN
from sms.jobs import Jobs

AUTH_TOKEN = "document-paths-token"
BASE = "https://sms.example.com"
STATUS = SMS_PATH + "/status"
INBOUND = SMS_PATH + "/inbound"
CHATS = "/apps/api/v1/chats"
EVENTS = "/apps/api/v1/events"
NOT_FOUND = {"message": "Not Found"}
SID = re.compile(r"[A-Z]{2}[0-9a-fA-F]{32}")  # Twilio's form (SPEC 10.3)
E164 = re.compile(r"\+[1-9][0-9]{1,14}")
MESSAGE_ID = re.compile(r"[0-9a-f]{20}")
EVENT_ID = re.compile(r"evt_[0-9a-f]{32}")
KEY_ID = re.compile(r"[0-9a-f]{64}")
CHAT_ID = re.compile(r"[1-9][0-9]*")
MAX_ID = 2**63 - 1

# ---- what Firestore refuses, or reads as a nested path ---------------------------------------

_text = st.text(max_size=12)
# Names Firestore reserves or refuses as a document id, or that nest one.
reserved = st.from_regex(r"__[A-Za-z0-9_.]{0,12}__", fullmatch=True)
dots = st.sampled_from([".", "..", "./", "../x", "x/..", "/", "//"])
with_slash = st.builds(lambda a, b: f"{a}/{b}", _text, _text)
too_long = st.builds(
    lambda unit, count: unit * count,
    st.sampled_from(["a", "0", "f", "é", "😀", "/"]),
    st.integers(min_value=1450, max_value=1700),
)
lone_surrogate = st.builds(
    lambda a, s, b: a + s + b, _text, st.characters(categories=["Cs"]), _text
)
control = st.builds(lambda a, c, b: a + c + b, _text, st.characters(categories=["Cc"]), _text)
refused = st.one_of(reserved, dots, with_slash, too_long, lone_surrogate, control, st.text())


def near_misses(form: str) -> st.SearchStrategy[str]:
    """Values one step from ``form`` (a valid value): cut, grown, nested, reserved."""
    return st.sampled_from(
        [
            form[:-1],
            form + "0",
            form + "/x",
            "x/" + form,
            form.replace(form[len(form) // 2], "/", 1),
            f"__{form}__",
            form.lower(),
            form.upper(),
            " " + form + "/",
        ]
    )


def twilio_sid() -> str:
    return "SM" + uuid.uuid4().hex


def firestore_id(segment: str) -> bool:
    """Whether Firestore takes ``segment`` as a document or collection id."""
    try:
        size = len(segment.encode("utf-8"))
    except UnicodeEncodeError:
        return False
    reserved_name = segment.startswith("__") and segment.endswith("__") and len(segment) >= 4
    return 0 < size <= 1500 and segment not in (".", "..") and not reserved_name


def assert_not_nested(db: firestore.Client, collection: str, value: str) -> None:
    """Nothing was written at ``collection/value`` where ``value`` reads as a nested path."""
    segments = value.split("/")
    if len(segments) < 2 or not all(firestore_id(s) for s in segments):
        return  # not a path Firestore can even read: nothing can be there
    path = f"{collection}/{value}"
    if len(path.split("/")) % 2 == 0:
        assert not db.document(path).get().exists, path
    else:
        assert list(db.collection(path).limit(1).stream()) == [], path


# ---- what a tenant holds ---------------------------------------------------------------------

# Each kind of document a tenant holds, and the form its id has (only such ids are written).
ID_FORMS = {
    "chats": CHAT_ID,
    "active_sessions": E164,
    "end_users": E164,
    "opt_outs": E164,
    "idempotency_keys": KEY_ID,
    "events": EVENT_ID,
    "counters": re.compile(r"[a-z_]+"),
}


def stored_state(db: firestore.Client, tenant_id: str) -> dict[str, Any]:
    """Every document under the tenant but its configuration, with its update time; each id
    checked against the form its kind of document has."""
    state: dict[str, Any] = {}
    for collection in db.collection("tenants").document(tenant_id).collections():
        if collection.id in ("outbound_numbers", "agents", "api_credentials"):
            continue
        form = ID_FORMS.get(collection.id)
        for snap in collection.stream():
            assert form is None or form.fullmatch(snap.id), snap.reference.path
            state[snap.reference.path] = snap.update_time
            for sub in snap.reference.collections():
                assert (collection.id, sub.id) == ("chats", "messages"), sub._path
                for message in sub.stream():
                    assert MESSAGE_ID.fullmatch(message.id), message.reference.path
                    state[message.reference.path] = message.update_time
    return state


def answer_of(response: Any) -> Any:
    """The answer's JSON, after checking what every answer must be: no 5xx, JSON, and an
    error's body exactly {"message": ...}."""
    text = response.get_data()
    assert response.status_code < 500, (response.status_code, text[:300])
    if response.status_code == 204:
        assert text == b""
        return None
    if response.mimetype == "text/xml":  # the inbound webhook's 200
        return text.decode()
    assert response.mimetype == "application/json", response.mimetype
    body = json.loads(text)
    if response.status_code >= 400:
        assert list(body) == ["message"], body
    event(f"{response.status_code} {body.get('message', '') if isinstance(body, dict) else ''}")
    return body


# ---- the function ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(emulator_host: str) -> Any:
    """The function in-process, its webhooks configured, sending with the log carrier."""
    chosen = Settings(
        project=PROJECT,
        twilio_auth_token=AUTH_TOKEN,
        public_base_url=BASE,
        publish_events=False,
        config_cache_seconds=0,
    )
    return in_process(chosen, MovableClock()).test_client()


@pytest.fixture
def fresh(make_tenant: Callable[..., Tenant]) -> Callable[[], Tenant]:
    """A new tenant per example, with agent 1 and a number of its own that replies reach."""

    def make() -> Tenant:
        number = f"+1628555{uuid.uuid4().int % 10000:04d}"
        return make_tenant(
            agents={1: dict(DEMO_AGENT)},
            outbound_numbers={number: {"sms_enabled": True}},
            index_numbers=True,
        )

    return make


def number_of(tenant: Tenant) -> str:
    [number] = tenant.outbound_numbers
    return str(number)


def send(client: Any, tenant: Tenant, **changes: Any) -> Any:
    body = {**SEED_BODY, "outbound_number": number_of(tenant), **changes}
    return client.post(SMS_PATH, json=body, headers=tenant.headers)


def opened(client: Any, tenant: Tenant) -> dict[str, Any]:
    """A session of the tenant, its message handed to the log carrier."""
    answer = send(client, tenant)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return dict(answer.get_json())


def form_body(fields: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    """A form as Twilio posts it (UTF-8, percent-encoded; a lone surrogate as the bytes it
    would have), and the form as the function reads it back, which Twilio signs."""
    pairs = [
        (urllib.parse.quote(k), urllib.parse.quote(v.encode("utf-8", "surrogatepass")))
        for k, v in fields.items()
    ]
    body = "&".join(f"{k}={v}" for k, v in pairs)
    return body.encode("ascii"), dict(urllib.parse.parse_qsl(body, keep_blank_values=True))


def webhook(client: Any, path: str, fields: dict[str, str]) -> tuple[Any, dict[str, str]]:
    """POST a form to a webhook, signed as Twilio signs it; the answer, and the form read."""
    body, read = form_body(fields)
    signature = sign(BASE + path, read, AUTH_TOKEN)
    answer = client.post(
        path,
        data=body,
        content_type="application/x-www-form-urlencoded",
        headers={"X-Twilio-Signature": signature},
    )
    return answer, read


def query(value: str) -> str:
    """A query parameter's value as a client sends it (a lone surrogate as its bytes)."""
    return urllib.parse.quote(value.encode("utf-8", "surrogatepass"), safe="")


def latin1(value: str) -> str:
    """A value as a WSGI server hands a header or a path over: its bytes, read as Latin-1."""
    return value.encode("utf-8", "surrogatepass").decode("latin-1")


# ---- MessageSid: the status callback and the inbound webhook ---------------------------------

sids = st.one_of(
    refused,
    near_misses("SM" + "0123456789abcdef" * 2),
    st.from_regex(r"[A-Z]{2}[0-9a-fA-F]{32}", fullmatch=True),  # Twilio's form: a valid id
)


def sid_answer(sid: str) -> tuple[int, str | None]:
    """What a MessageSid alone makes of a webhook that is otherwise right."""
    value = sid.strip()
    if not value:
        return 400, errors.MESSAGE_SID_REQUIRED
    if not SID.fullmatch(value):
        return 400, errors.MESSAGE_SID_INVALID
    return 0, None  # the route's own answer


@fuzz(60)
@given(sid=sids, status=st.sampled_from(["delivered", "failed", "read", "sent"]))
@example(sid="__x__", status="delivered")
@example(sid=".", status="delivered")
@example(sid="..", status="delivered")
@example(sid="SM/x", status="delivered")
@example(sid="a/b/c", status="failed")
@example(sid="S" * 1602, status="delivered")
@example(sid="SM\ud800" + "0" * 31, status="delivered")
def test_a_status_callbacks_message_sid_is_judged_before_it_names_a_document(
    client: Any, db: firestore.Client, fresh: Callable[[], Tenant], sid: str, status: str
) -> None:
    tenant = fresh()
    opened(client, tenant)
    before = stored_state(db, tenant.id)

    answer, read = webhook(client, STATUS, {"MessageSid": sid, "MessageStatus": status})
    body = answer_of(answer)

    code, text = sid_answer(read["MessageSid"])
    if code:
        assert (answer.status_code, body) == (code, {"message": text})
    else:
        assert answer.status_code == 204  # a message of Twilio's form, unknown here
    assert stored_state(db, tenant.id) == before  # its message, sent, is as it was
    assert_not_nested(db, "carrier_ids", read["MessageSid"].strip())


@fuzz(60)
@given(sid=sids)
@example(sid="__x__")
@example(sid=".")
@example(sid="..")
@example(sid="SM/x")
@example(sid="a/b/c")
@example(sid="S" * 1602)
def test_an_inbound_replys_message_sid_is_judged_before_it_names_a_document(
    client: Any, db: firestore.Client, fresh: Callable[[], Tenant], sid: str
) -> None:
    tenant = fresh()
    consumer = f"+1415555{uuid.uuid4().int % 10000:04d}"
    before = stored_state(db, tenant.id)
    fields = {"MessageSid": sid, "From": consumer, "To": number_of(tenant), "Body": "STOP"}

    answer, read = webhook(client, INBOUND, fields)
    body = answer_of(answer)

    code, text = sid_answer(read["MessageSid"])
    if code:
        assert (answer.status_code, body) == (code, {"message": text})
        assert stored_state(db, tenant.id) == before
    else:  # Twilio's form: the reply is stored (or was: the same id drawn again), by that id
        assert (answer.status_code, body) == (200, "<Response/>")
        assert db.document(f"carrier_ids/{read['MessageSid'].strip()}").get().exists
    assert_not_nested(db, "carrier_ids", read["MessageSid"].strip())


# ---- numbers: E.164 once judged, in a request and in a reply ---------------------------------

numbers = st.one_of(
    refused,
    near_misses("+14155550100"),
    st.sampled_from(
        ["+1 415/555 0100", "+1 (415) 555-0100 ext. 1/2", "415.555.0100", "+82 2 1234 5678"]
    ),
)


@fuzz(50)
@given(field=st.sampled_from(["end_user_number", "outbound_number"]), value=numbers)
@example(field="end_user_number", value="+1415555/0100")
@example(field="end_user_number", value="__+14155550100__")
def test_a_requests_numbers_name_documents_only_in_e164(
    client: Any, db: firestore.Client, fresh: Callable[[], Tenant], field: str, value: str
) -> None:
    tenant = fresh()
    before = stored_state(db, tenant.id)

    answer = send(client, tenant, **{field: value})
    body = answer_of(answer)

    if answer.status_code == 200:  # a number after all: its documents named by E.164
        stored_state(db, tenant.id)  # checks every id's form
    else:
        assert answer.status_code == 400, body
        assert stored_state(db, tenant.id) == before


@fuzz(50)
@given(field=st.sampled_from(["From", "To"]), value=numbers)
@example(field="From", value="+1415555/0100")
@example(field="To", value="..")
def test_a_replys_numbers_name_documents_only_in_e164(
    client: Any, db: firestore.Client, fresh: Callable[[], Tenant], field: str, value: str
) -> None:
    tenant = fresh()
    fields = {
        "MessageSid": twilio_sid(),
        "From": f"+1415555{uuid.uuid4().int % 10000:04d}",
        "To": number_of(tenant),
        "Body": "Hello",
        field: value,
    }
    before = stored_state(db, tenant.id)

    answer, read = webhook(client, INBOUND, fields)
    body = answer_of(answer)

    if answer.status_code == 200:  # numbers after all: stored by their E.164 (stored_state)
        stored_state(db, tenant.id)
        return
    if not read[field].strip():
        assert body == {"message": f"{field} is required"}
    elif field == "From":
        assert (answer.status_code, body) == (400, {"message": errors.FROM_INVALID})
    else:  # no phone number, or one no tenant owns
        assert (answer.status_code, body) == (404, NOT_FOUND)
    assert stored_state(db, tenant.id) == before
    assert_not_nested(db, "numbers", read[field].strip())


# ---- page tokens -----------------------------------------------------------------------------


def token_of(millis: int, item_id: str) -> str:
    """A page token as this service issues them, for any id: base64url of "{millis}.{id}"."""
    raw = f"{millis}.{item_id}".encode("utf-8", "surrogatepass")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


millis = st.one_of(
    st.integers(min_value=0, max_value=10**15 - 1),
    st.sampled_from([0, 253402300799999, 253402300800000, 999999999999999]),
)


def page_tokens(valid_id: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Tokens whose id is refused by Firestore, nests, or is of the list's own form."""
    ids = st.one_of(refused, valid_id, valid_id.flatmap(near_misses))
    return st.one_of(st.builds(token_of, millis, ids), refused)


def issued_form(name: str, token: str) -> bool:
    """Whether ``token`` names an item of the list ``name`` as this service names them."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
    except ValueError:
        return False
    _, _, item_id = raw.partition(".")
    if name == "chats":
        return CHAT_ID.fullmatch(item_id) is not None and int(item_id) <= MAX_ID
    return (MESSAGE_ID if name == "transcript" else EVENT_ID).fullmatch(item_id) is not None


LISTS = {
    # the list: its path (a transcript's chat id filled in), the form of its ids
    "transcript": (CHATS + "/{chat}/messages", st.from_regex(r"[0-9a-f]{20}", fullmatch=True)),
    "chats": (CHATS, st.from_regex(r"[1-9][0-9]{0,19}", fullmatch=True)),
    "events": (EVENTS, st.from_regex(r"evt_[0-9a-f]{32}", fullmatch=True)),
}


@fuzz(60)
@given(data=st.data(), name=st.sampled_from(sorted(LISTS)))
@example(data=None, name="chats")  # filled in below: see the test's body
def test_a_page_token_is_judged_before_its_id_reaches_a_query(
    client: Any, db: firestore.Client, fresh: Callable[[], Tenant], data: Any, name: str
) -> None:
    path, valid_id = LISTS[name]
    if data is None:  # an id of the form of a chat's, but no 64-bit integer
        token = token_of(1_700_000_000_000, str(MAX_ID + 1))
    else:
        token = data.draw(page_tokens(valid_id), label="page_token")
    tenant = fresh()
    chat = opened(client, tenant)
    before = stored_state(db, tenant.id)

    answer = client.get(
        path.format(chat=chat["id"]),
        query_string="page_token=" + query(token),
        headers=tenant.headers,
    )
    body = answer_of(answer)

    if answer.status_code == 200:  # a token of the list's form: it reads from there
        assert issued_form(name, token), token
        assert body["next_page_token"] is None
    else:
        assert (answer.status_code, body) == (400, {"message": errors.PAGE_TOKEN_INVALID})
    assert stored_state(db, tenant.id) == before


# ---- a chat id in a path ---------------------------------------------------------------------

chat_segments = st.one_of(
    refused,
    st.from_regex(r"0{0,6000}[1-9][0-9]{0,40}", fullmatch=True),
    st.sampled_from(["0" * 5000 + "1", "9" * 19, "9" * 4400, "1/..", "1/./messages"]),
).filter(lambda segment: segment.strip("/") != "")


@fuzz(50)
@given(
    segment=chat_segments,
    method=st.sampled_from(["GET", "PATCH"]),
    transcript=st.booleans(),
)
@example(segment="0" * 5000 + "1", method="GET", transcript=False)
@example(segment="0" * 5000 + "1", method="GET", transcript=True)
@example(segment="__1__", method="PATCH", transcript=False)
def test_a_chat_id_in_a_path_is_judged_before_it_names_a_document(
    client: Any,
    db: firestore.Client,
    fresh: Callable[[], Tenant],
    *,
    segment: str,
    method: str,
    transcript: bool,
) -> None:
    tenant = fresh()  # it has no chat: every id is unknown
    before = stored_state(db, tenant.id)
    path = f"{CHATS}/{latin1(segment)}" + ("/messages" if transcript else "")

    answer = client.open(
        "/",
        method=method,
        json={"status": "finished"},
        headers=tenant.headers,
        environ_overrides={"PATH_INFO": path},
    )
    body = answer_of(answer)

    if answer.status_code == 405:  # a transcript's path: GET only
        assert transcript or segment.endswith("/messages")
        assert method == "PATCH"
    else:
        assert (answer.status_code, body) == (404, NOT_FOUND)
    assert stored_state(db, tenant.id) == before


# ---- the Idempotency-Key, the tenant of HTTP Basic, the agent --------------------------------


@fuzz(40)
@given(
    key=st.one_of(refused, st.from_regex(r"[\x21-\x7e]{1,255}", fullmatch=True)).filter(
        lambda key: key == key.strip(" \t") and "\n" not in key and "\r" not in key
    )  # what a header can carry
)
@example(key="__x__")
@example(key="a/b/c")
@example(key="..")
@example(key="k" * 256)
def test_an_idempotency_key_never_names_a_document_but_by_its_hash(
    client: Any, db: firestore.Client, fresh: Callable[[], Tenant], key: str
) -> None:
    tenant = fresh()
    before = stored_state(db, tenant.id)
    body = {**SEED_BODY, "outbound_number": number_of(tenant)}

    answer = client.post(
        SMS_PATH, json=body, headers={**tenant.headers, "Idempotency-Key": latin1(key)}
    )
    answer_body = answer_of(answer)

    if re.fullmatch(r"[\x21-\x7e]{1,255}", key):
        assert answer.status_code == 200, answer_body
        [record] = db.collection(f"tenants/{tenant.id}/idempotency_keys").stream()
        assert KEY_ID.fullmatch(record.id)  # stored_state checks every id's form as well
        stored_state(db, tenant.id)
    else:
        assert (answer.status_code, answer_body) == (
            400,
            {"message": errors.IDEMPOTENCY_KEY_INVALID},
        )
        assert stored_state(db, tenant.id) == before


@fuzz(40)
@given(name=st.one_of(refused, st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True)))
@example(name="__x__")
@example(name="a/b")
@example(name="..")
@example(name="t" * 1600)
def test_the_tenant_of_basic_auth_is_judged_before_it_names_a_document(
    client: Any, db: firestore.Client, name: str
) -> None:
    raw = name.encode("utf-8", "surrogatepass") + b":some-token"
    headers = {"Authorization": "Basic " + base64.b64encode(raw).decode("ascii")}

    answer = client.post(SMS_PATH, json=SEED_BODY, headers=headers)

    assert (answer.status_code, answer_of(answer)) == (401, {"message": "Unauthorized"})
    assert_not_nested(db, "tenants", name)


@fuzz(40)
@given(
    field=st.sampled_from(["agent_id", "agentId", "agent_email", "agentEmail"]),
    value=st.one_of(refused, st.from_regex(r"[0-9]{1,30}", fullmatch=True), st.integers()),
)
@example(field="agentId", value="1/2")
@example(field="agent_id", value="0" * 5000 + "1")
@example(field="agent_email", value="__x__")
@example(field="agentEmail", value="a/b@example.com")
def test_an_agent_named_by_id_or_email_is_judged_before_it_names_a_document(
    client: Any, db: firestore.Client, fresh: Callable[[], Tenant], field: str, value: Any
) -> None:
    tenant = fresh()
    before = stored_state(db, tenant.id)

    answer = send(client, tenant, **{field: value})
    body = answer_of(answer)

    if answer.status_code == 200:  # it named agent 1 after all, or none (an empty name)
        assert body["agent_info"] is None or body["agent_info"]["id"] == 1
        stored_state(db, tenant.id)  # checks every id's form
        return
    assert answer.status_code == 400, body
    texts = {errors.AGENT_INVALID, errors.AGENT_NOT_FOUND}
    if isinstance(value, str) and any("\ud800" <= c <= "\udfff" for c in value):
        texts = {errors.BODY_NOT_OBJECT}  # no text at all: the body is not JSON of Unicode
    assert body["message"] in texts
    assert stored_state(db, tenant.id) == before


# ---- sms_events: the tenant and event ids a Pub/Sub message names ----------------------------


@pytest.fixture(scope="module")
def jobs(emulator_host: str) -> Jobs:
    return Jobs(bootstrap.build(Settings(project=PROJECT, publish_events=False)))


def delivered(jobs: Jobs, announced: Any) -> Any:
    """sms_events handed a Pub/Sub message whose data is ``announced`` as JSON."""
    data = base64.b64encode(json.dumps(announced).encode("utf-8", "surrogatepass"))
    message = {"message": {"data": data.decode("ascii"), "messageId": "1"}}
    with flask.Flask(__name__).test_request_context("/", method="POST"):
        return jobs.deliver(flask.request, message)


@fuzz(40)
@given(
    tenant_name=st.one_of(refused, st.just("{tenant}")),
    event_id=st.one_of(
        refused, near_misses("evt_" + "0" * 32), st.from_regex(EVENT_ID, fullmatch=True)
    ),
)
@example(tenant_name="a/b", event_id="evt_" + "0" * 32)
@example(tenant_name="{tenant}", event_id="evt_0/1")
@example(tenant_name="{tenant}", event_id="__x__")
def test_a_pubsub_messages_tenant_and_event_ids_are_judged_before_they_name_documents(
    jobs: Jobs,
    db: firestore.Client,
    fresh: Callable[[], Tenant],
    tenant_name: str,
    event_id: str,
) -> None:
    tenant = fresh()
    name = tenant_name.replace("{tenant}", tenant.id)
    before = stored_state(db, tenant.id)

    answer = delivered(jobs, {"tenant": name, "events": [event_id]})
    body = answer_of(answer)

    assert answer.status_code == 200, body
    if not SUBDOMAIN.fullmatch(name):
        assert body == {"ignored": "no tenant"}
    elif not EVENT_ID.fullmatch(event_id):
        assert body == {"ignored": "no event ids"}
    else:  # of the forms this service makes: looked up, and none found
        assert "ignored" not in body
    assert stored_state(db, tenant.id) == before
