"""The README's first command, checked end to end: emulator, demo tenant, server, the curl."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from conftest import ROOT
from sms.devtools.emulator import free_port


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


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_a_closed_terminal_stops_everything_and_the_printed_exports_work(tmp_path: Path) -> None:
    port = free_port()
    before = set(Path(tempfile.gettempdir()).glob("sms-local-*"))
    env = {k: v for k, v in os.environ.items() if k not in ("FIRESTORE_EMULATOR_HOST",)}
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
        assert _port_open(port)
        assert _port_open(emulator_port)

        os.killpg(local.pid, signal.SIGHUP)  # the terminal closes
        local.wait(timeout=60)
    finally:
        if local.poll() is None:
            os.killpg(local.pid, signal.SIGKILL)

    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["tenant"] == "demo"
    assert "Stopped the server and the emulator." in local.stdout.read() + "".join(printed)
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
