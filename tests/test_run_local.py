"""The README's first command, checked end to end: emulator, demo tenant, server, the curl."""

from __future__ import annotations

import json
import subprocess
import sys

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
