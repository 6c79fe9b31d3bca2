"""python -m sms.devtools: playing Twilio's part against a served function.

``reply`` and ``status`` post Twilio's webhooks, signed as Twilio signs them, to the function
served with SMS_CARRIER=twilio against the tests' stand-in (conftest's ``twilio_server``): the
function accepts them and stores what they say. ``twilio-standin`` serves that stand-in as a
program of its own.
"""

from __future__ import annotations

import itertools
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

import pytest
import requests
from google.cloud import firestore
from twilio.request_validator import RequestValidator
from twilio.rest import Client
from twilio_standin import TwilioStandIn

from conftest import ROOT, SEED_BODY, SMS_PATH, Tenant
from sms.devtools import webhook
from sms.devtools.__main__ import main
from sms.devtools.emulator import free_port
from sms.devtools.seed import DEMO_AGENT

# This module's own numbers: +1 628-555-3xxx for the tenants (indexed in numbers/{E.164}),
# +1 415-555-3xxx for the consumers.
_numbers = itertools.count(3000)


def fresh(area: str) -> str:
    n = next(_numbers)
    assert n < 4000, "this module's numbers ran out"
    return f"+1{area}555{n}"


@pytest.fixture
def tenant(make_tenant: Callable[..., Tenant]) -> Tenant:
    """A tenant with agent 1 and a number of its own that replies reach."""
    return make_tenant(
        agents={1: dict(DEMO_AGENT)}, outbound_numbers={fresh("628"): {}}, index_numbers=True
    )


def number_of(tenant: Tenant) -> str:
    [number] = tenant.outbound_numbers
    return str(number)


def env_of(standin: TwilioStandIn, server: str, **changes: str) -> dict[str, str]:
    """The environment the function in ``server`` runs with, as the commands read it."""
    return {
        "TWILIO_ACCOUNT_SID": standin.account_sid,
        "TWILIO_AUTH_TOKEN": standin.auth_token,
        "SMS_PUBLIC_BASE_URL": server,
        **changes,
    }


def sent_form(out: str) -> dict[str, str]:
    """The form the command printed that it sent."""
    return dict(line.strip().split("=", 1) for line in out.splitlines() if line.startswith("  "))


def transcript(url: str, tenant: Tenant, chat_id: int) -> list[dict[str, Any]]:
    answer = requests.get(
        f"{url}/apps/api/v1/chats/{chat_id}/messages", headers=tenant.headers, timeout=30
    )
    assert answer.status_code == 200, answer.text
    return list(answer.json()["messages"])


def chats(db: firestore.Client, tenant: Tenant) -> list[dict[str, Any]]:
    stored = db.collection(f"tenants/{tenant.id}/chats").stream()
    return sorted((snap.to_dict() or {} for snap in stored), key=lambda chat: chat["id"])


# ---- reply ----------------------------------------------------------------------------------


def test_reply_posts_what_twilio_posts_and_the_function_stores_it(
    twilio_server: str,
    standin: TwilioStandIn,
    tenant: Tenant,
    db: firestore.Client,
    capsys: pytest.CaptureFixture[str],
) -> None:
    consumer = fresh("415")
    argv = ["reply", consumer, "yes please", "--to", number_of(tenant), "--url", twilio_server]

    assert main(argv, env_of(standin, twilio_server)) == 0

    out = capsys.readouterr().out
    assert f"POST {twilio_server}/apps/api/v1/sms/inbound" in out
    assert "200 OK\n<Response/>" in out
    form = sent_form(out)
    assert re.fullmatch(r"SM[0-9a-f]{32}", form["MessageSid"])
    assert (form["From"], form["To"], form["Body"]) == (consumer, number_of(tenant), "yes please")
    assert (form["AccountSid"], form["NumMedia"], form["SmsStatus"]) == (
        standin.account_sid,
        "0",
        "received",
    )
    [chat] = chats(db, tenant)
    assert chat["status"] == "queued"
    [message] = transcript(twilio_server, tenant, chat["id"])
    assert (message["direction"], message["status"], message["text"]) == (
        "inbound",
        "received",
        "yes please",
    )
    assert (message["from"], message["carrier_id"]) == (consumer, form["MessageSid"])


def test_reply_takes_numbers_as_people_write_them(
    twilio_server: str,
    standin: TwilioStandIn,
    tenant: Tenant,
    capsys: pytest.CaptureFixture[str],
) -> None:
    consumer = fresh("415")  # +1415555NNNN, written +1 (415) 555-NNNN
    written = f"+1 ({consumer[2:5]}) {consumer[5:8]}-{consumer[8:]}"
    argv = ["reply", written, "hi", "--to", number_of(tenant), "--url", twilio_server]

    assert main(argv, env_of(standin, twilio_server)) == 0
    assert sent_form(capsys.readouterr().out)["From"] == consumer

    with pytest.raises(SystemExit) as refused:
        main(["reply", "415 555", "hi"], {})
    assert refused.value.code == 2
    assert "is not an E.164 number like +14155550100" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("changes", "signed_with"),
    [
        ({"TWILIO_AUTH_TOKEN": "not-the-servers-token"}, "TWILIO_AUTH_TOKEN"),
        ({"TWILIO_AUTH_TOKEN": ""}, "the local run's auth token"),
        ({"SMS_PUBLIC_BASE_URL": "https://sms.example.com"}, "TWILIO_AUTH_TOKEN"),
    ],
)
def test_a_reply_the_server_cannot_verify_exits_non_zero_with_a_hint(
    *,
    changes: dict[str, str],
    signed_with: str,
    twilio_server: str,
    standin: TwilioStandIn,
    tenant: Tenant,
    db: firestore.Client,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["reply", fresh("415"), "yes please", "--to", number_of(tenant), "--url", twilio_server]

    assert main(argv, env_of(standin, twilio_server, **changes)) == 1

    out, err = capsys.readouterr()
    assert "403 FORBIDDEN" in out
    assert "The function refused the signature" in err
    assert "TWILIO_AUTH_TOKEN and SMS_PUBLIC_BASE_URL" in err
    assert f"signed with {signed_with} over " in err
    assert "not-the-servers-token" not in out + err  # a token is never printed
    assert chats(db, tenant) == []


def test_a_server_that_does_not_answer_is_status_1(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"

    assert main(["reply", "+14155550100", "hi", "--url", url], {}) == 1
    assert f"No answer from {url}" in capsys.readouterr().err


# ---- status ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "status", "error_code"),
    [
        (["delivered"], "delivered", None),
        (["undelivered", "--error-code", "30003"], "undelivered", "30003"),
    ],
)
def test_status_posts_a_callback_that_moves_the_message_on(
    *,
    args: list[str],
    status: str,
    error_code: str | None,
    twilio_server: str,
    standin: TwilioStandIn,
    tenant: Tenant,
    capsys: pytest.CaptureFixture[str],
) -> None:
    body = {**SEED_BODY, "end_user_number": fresh("415"), "outbound_number": number_of(tenant)}
    opened = requests.post(twilio_server + SMS_PATH, json=body, headers=tenant.headers, timeout=30)
    assert opened.status_code == 200, opened.text
    [sent] = transcript(twilio_server, tenant, opened.json()["id"])
    assert sent["status"] == "sent"
    argv = ["status", sent["carrier_id"], *args, "--url", twilio_server]

    assert main(argv, env_of(standin, twilio_server)) == 0

    out = capsys.readouterr().out
    assert f"POST {twilio_server}/apps/api/v1/sms/status" in out
    assert "204 NO CONTENT" in out
    form = sent_form(out)
    assert (form["MessageSid"], form["MessageStatus"]) == (sent["carrier_id"], args[0])
    assert form.get("ErrorCode") == error_code
    [message] = transcript(twilio_server, tenant, opened.json()["id"])
    assert (message["status"], message["error_code"]) == (status, error_code)


# ---- twilio-standin -------------------------------------------------------------------------


class _Recorder(ThreadingHTTPServer):
    """Where the stand-in's status callbacks go: it keeps each (path, form, signature)."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _RecordingHandler)
        self.posts: list[tuple[str, dict[str, str], str]] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class _RecordingHandler(BaseHTTPRequestHandler):
    server: _Recorder

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def do_POST(self) -> None:
        data = self.rfile.read(int(self.headers["Content-Length"])).decode()
        form = dict(parse_qsl(data, keep_blank_values=True))
        self.server.posts.append((self.path, form, self.headers.get("X-Twilio-Signature", "")))
        self.send_response(204)
        self.end_headers()


@pytest.fixture
def recorder() -> Iterator[_Recorder]:
    server = _Recorder()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


class _Output:
    """What a process prints, read as it comes (so that it never waits on a full pipe)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self._stdout = process.stdout
        self._lines: list[str] = []
        self._closed = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._stdout is not None
        for line in self._stdout:
            with self._changed:
                self._lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def line(self, marker: str, seconds: float = 30) -> str:
        """The first line that starts with ``marker`` (stripped), once it was printed."""

        def found() -> str | None:
            return next((ln.strip() for ln in self._lines if ln.strip().startswith(marker)), None)

        with self._changed:
            self._changed.wait_for(lambda: found() is not None or self._closed, timeout=seconds)
            line = found()
        if line is None:
            pytest.fail(f"no {marker!r} in what it printed:\n{self.text()}")
        return line

    def text(self) -> str:
        with self._changed:
            return "".join(self._lines)

    def close(self) -> str:
        """Everything it printed, once it exited."""
        self._thread.join(timeout=15)
        return self.text()


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_the_standin_runs_as_a_program_and_reports_deliveries(recorder: _Recorder) -> None:
    port = free_port()
    standin = subprocess.Popen(
        [sys.executable, "-m", "sms.devtools", "twilio-standin", f"--port={port}",
         f"--function-url={recorder.url}"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    output = _Output(standin)
    try:
        exports = dict(
            pair.split("=", 1) for pair in output.line("export ").removeprefix("export ").split()
        )
        assert exports == {
            "SMS_CARRIER": "twilio",
            "TWILIO_ACCOUNT_SID": webhook.LOCAL_ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": webhook.LOCAL_AUTH_TOKEN,
            "TWILIO_API_BASE_URL": f"http://127.0.0.1:{port}",
            "SMS_PUBLIC_BASE_URL": recorder.url,
        }
        client = Client(exports["TWILIO_ACCOUNT_SID"], exports["TWILIO_AUTH_TOKEN"])
        client.api.base_url = exports["TWILIO_API_BASE_URL"]
        callback = exports["SMS_PUBLIC_BASE_URL"] + "/apps/api/v1/sms/status"
        created = client.messages.create(
            to="+14155550100", from_="+16285550199", body="hello", status_callback=callback
        )
        assert (created.status, created.to, created.body) == ("queued", "+14155550100", "hello")

        deadline = time.monotonic() + 15
        while len(recorder.posts) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        validator = RequestValidator(exports["TWILIO_AUTH_TOKEN"])
        assert [form["MessageStatus"] for _, form, _ in recorder.posts] == ["sent", "delivered"]
        for path, form, signature in recorder.posts:
            assert path == "/apps/api/v1/sms/status"
            assert form["MessageSid"] == created.sid
            assert validator.validate(callback, form, signature)
        assert client.messages(created.sid).fetch().status == "delivered"

        standin.send_signal(signal.SIGINT)
        standin.wait(timeout=15)
    finally:
        if standin.poll() is None:
            standin.kill()
            standin.wait()
    assert standin.returncode == 0
    out = output.close()
    assert f"Created {created.sid}: +16285550199 to +14155550100, queued" in out
    assert f"Status callback delivered for {created.sid}: 204" in out
    assert "Stopped the Twilio stand-in." in out
    assert not _listening(port)


def test_the_standin_says_so_when_its_port_is_taken() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "sms.devtools", "twilio-standin", f"--port={port}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert done.returncode == 2
    assert f"Cannot serve on port {port}" in done.stderr
