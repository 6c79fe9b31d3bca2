"""The README's first command, checked end to end: emulator, demo tenant, server, the curl,
and the devtools reply command it prints (with the log carrier, and with the Twilio stand-in).
"""

from __future__ import annotations

import itertools
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from google.cloud import firestore

from conftest import ROOT
from sms.devtools.emulator import free_port

# What the local run is started with here: a newcomer's environment, with none of the
# settings the tests give their own functions (the emulator, the carrier, Twilio's).
_NOT_A_NEWCOMERS = (
    "FIRESTORE_EMULATOR_HOST", "SMS_CARRIER", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN",
    "TWILIO_API_BASE_URL", "TWILIO_MESSAGING_SERVICE_SID", "SMS_PUBLIC_BASE_URL",
)  # fmt: skip


def _newcomers_env(**extra: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in _NOT_A_NEWCOMERS} | extra


def test_run_local_serves_the_demo_tenant_and_its_printed_curl_works() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sms.devtools.run_local", "--once", f"--port={free_port()}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "curl -sS -u demo:" in result.stdout
    [line] = [line for line in result.stdout.splitlines() if line.startswith('{"id": ')]
    answer = json.loads(line)
    assert answer["status"] == "assigned"
    assert answer["outbound_number"] == "+16285550199"
    assert answer["agent_info"]["email"] == "john.doe@foo.com"


@pytest.mark.parametrize(
    ("setting", "names"),
    [
        ({"SMS_CARRIER": "twillio"}, "SMS_CARRIER"),
        (
            {"SMS_CARRIER": "twilio", "TWILIO_ACCOUNT_SID": "AC" + "0" * 32},
            "SMS_CARRIER=twilio needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN",
        ),
        ({"SMS_SWEEP_AFTER_SECONDS": "3"}, "SMS_SWEEP_AFTER_SECONDS"),
    ],
)
def test_a_setting_the_function_cannot_use_stops_the_local_run_before_its_banner(
    setting: dict[str, str], names: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sms.devtools.run_local", "--once", f"--port={free_port()}"],
        cwd=ROOT,
        env=_newcomers_env(**setting),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert f"the function cannot start: {names}" in output
    assert "is serving on" not in output
    assert "curl -sS" not in output
    assert "Stopped the servers and the emulators." in output


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _printed_command(printed: list[str], marker: str) -> tuple[list[str], dict[str, str]]:
    """The command the local run printed (the first line that has ``marker``), as an argv run
    from the project's virtual environment, and the variables written before it."""
    [line] = [line for line in printed if marker in line][:1]
    words = shlex.split(line)
    assigned = dict(w.split("=", 1) for w in itertools.takewhile(lambda w: "=" in w, words))
    argv = words[len(assigned) :]
    if argv[0] == "python":
        argv[0] = sys.executable
    return argv, assigned


def _run_printed(printed: list[str], marker: str, env: dict[str, str]) -> str:
    """Run the printed command as a newcomer would, in another terminal; what it printed."""
    argv, assigned = _printed_command(printed, marker)
    done = subprocess.run(
        argv,
        cwd=ROOT,
        env=env | assigned,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _stored_replies(emulator_host: str, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The inbound messages of the demo tenant, in the local run's emulator and project."""
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", emulator_host)
    db = firestore.Client(project="demo-sms-local")
    return [
        message.to_dict()
        for chat in db.collection("tenants/demo/chats").stream()
        for message in chat.reference.collection("messages").stream()
        if message.get("direction") == "inbound"
    ]


def test_a_closed_terminal_stops_everything_and_the_printed_exports_and_reply_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    before = set(Path(tempfile.gettempdir()).glob("sms-local-*"))
    env = _newcomers_env()
    local = subprocess.Popen(
        ["bash", "scripts/run-local.sh", f"--port={port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # a terminal's session of its own, as a shell's would be
    )
    printed = []
    try:
        assert local.stdout is not None
        for line in local.stdout:
            printed.append(line)
            if line.startswith("Ctrl-C stops"):
                break
        exports = next(line.split("export ", 1)[1] for line in printed if "export " in line)
        admin_env = {**env, **dict(pair.split("=", 1) for pair in exports.split())}
        shown = subprocess.run(
            [sys.executable, "-m", "sms.admin", "tenants", "show", "demo"],
            cwd=ROOT,
            env=admin_env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        emulator_port = int(admin_env["FIRESTORE_EMULATOR_HOST"].rsplit(":", 1)[1])
        replied = _run_printed(printed, "sms.devtools reply", env)
        stored = _stored_replies(admin_env["FIRESTORE_EMULATOR_HOST"], monkeypatch)
        assert _port_open(port)
        assert _port_open(emulator_port)

        os.killpg(local.pid, signal.SIGHUP)  # the terminal closes
        local.wait(timeout=60)
    finally:
        if local.poll() is None:
            os.killpg(local.pid, signal.SIGKILL)

    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["tenant"] == "demo"
    assert "200 OK\n<Response/>" in replied  # the log carrier's run checks Twilio's signature
    assert [(m["from"], m["to"], m["text"]) for m in stored] == [
        ("+14155550100", "+16285550199", "yes please")
    ]
    assert "Stopped the servers and the emulators." in local.stdout.read() + "".join(printed)
    deadline = time.monotonic() + 20
    while (_port_open(port) or _port_open(emulator_port)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _port_open(port), "the server still listens"
    assert not _port_open(emulator_port), "the emulator still listens"
    assert set(Path(tempfile.gettempdir()).glob("sms-local-*")) <= before


def test_the_admin_command_line_never_guesses_a_project() -> None:
    env = {k: v for k, v in os.environ.items() if k != "GOOGLE_CLOUD_PROJECT"}
    done = subprocess.run(
        [sys.executable, "-m", "sms.admin", "tenants", "create", "acme"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 2
    assert "Set GOOGLE_CLOUD_PROJECT or pass --project" in done.stderr
    assert "nothing was written" in done.stderr


def test_with_sms_carrier_twilio_it_sends_through_a_twilio_standin_of_its_own() -> None:
    """No Twilio account: the local run starts the stand-in, the printed curl sends through it,
    the stand-in reports the SMS delivered, and the printed reply joins the session."""
    port = free_port()
    env = _newcomers_env(SMS_CARRIER="twilio")
    local = subprocess.Popen(
        [sys.executable, "-m", "sms.devtools.run_local", f"--port={port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    printed = []
    try:
        assert local.stdout is not None
        for line in local.stdout:
            printed.append(line)
            if line.startswith("Ctrl-C stops"):
                break
        [started] = [line for line in printed if "stand-in for Twilio's Messages API on" in line]
        standin_port = int(started.rsplit(":", 1)[1])
        assert _port_open(standin_port)

        chat = json.loads(_run_printed(printed, "curl -sS -u demo:", env))
        replied = _run_printed(printed, "sms.devtools reply", env)
        argv, _ = _printed_command(printed, "curl -sS -u demo:")
        token = argv[argv.index("-u") + 1].split(":", 1)[1]
        messages_url = f"http://127.0.0.1:{port}/apps/api/v1/chats/{chat['id']}/messages"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            answer = requests.get(messages_url, auth=("demo", token), timeout=30)
            messages = answer.json()["messages"]
            if messages[0]["status"] == "delivered":
                break
            time.sleep(0.5)

        os.killpg(local.pid, signal.SIGINT)  # Ctrl-C
        local.wait(timeout=60)
    finally:
        if local.poll() is None:
            os.killpg(local.pid, signal.SIGKILL)

    assert chat["status"] == "assigned"
    assert "200 OK\n<Response/>" in replied
    sent, received = messages
    assert (sent["direction"], sent["status"], sent["carrier_id"][:2]) == (
        "outbound",
        "delivered",
        "SM",
    )
    assert [s["status"] for s in sent["status_history"]] == [
        "queued",
        "sending",
        "sent",
        "delivered",
    ]
    assert (received["direction"], received["from"], received["text"]) == (
        "inbound",
        "+14155550100",
        "yes please",
    )
    assert "Stopped the servers and the emulators." in local.stdout.read() + "".join(printed)
    deadline = time.monotonic() + 20
    while (_port_open(port) or _port_open(standin_port)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _port_open(standin_port), "the stand-in still listens"
