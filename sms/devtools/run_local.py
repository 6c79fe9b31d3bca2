"""Run the function on this machine, against the Firestore emulator, with a demo tenant.

    python -m sms.devtools.run_local [--port 8080] [--once]

Starts the emulator, configures the tenant "demo" (an outbound number, agent 1 and an API
token) with the admin command line (python -m sms.admin), serves the function with
functions-framework and prints a curl command that works. Ctrl-C stops the server and the
emulator. With ``--once`` it sends that request itself, prints the answer, and stops: a check
of the setup.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path

from sms.devtools.emulator import Emulator, free_port
from sms.devtools.server import serving

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "demo-sms-local"
# The demo tenant, configured as an operator would.
DEMO_SETUP = (
    ["tenants", "create", "demo"],
    ["numbers", "add", "demo", "+1 628-555-0199"],
    ["agents", "add", "demo", "1", "--email", "john.doe@foo.com", "--first-name", "John",
     "--last-name", "Doe", "--agent-number", "9", "--avatar-url", "https://foobar.com/johndoe"],
    ["credentials", "create", "demo", "--name", "demo"],
)  # fmt: skip
DEMO_BODY = (
    '{"chat_type": "Messaging (SMS)", "end_user_number": "+1 415-555-0100", '
    '"outbound_number": "+1 628-555-0199", "message": "Your order has shipped.", "agentId": 1}'
)


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _configure_demo(env: dict[str, str]) -> str:
    """Configure the demo tenant with the admin command line; the API token it printed."""
    print("Configuring the tenant 'demo':", flush=True)
    answer = ""
    for command in DEMO_SETUP:
        argv = [sys.executable, "-m", "sms.admin", *command]
        print("  " + shlex.join(["python", "-m", "sms.admin", *command]), flush=True)
        done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{shlex.join(command)} failed: {done.stderr.strip()}")
        answer = done.stdout
    token: str = json.loads(answer)["token"]
    return token


def _stop(signum: int, _: object) -> None:
    raise SystemExit(0)  # the blocks below stop the server and the emulator on the way out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    parser.add_argument("--once", action="store_true", help="send the demo request, then stop")
    args = parser.parse_args(argv)
    if not _port_is_free(args.port):
        print(f"Port {args.port} is in use: set PORT or pass --port.", file=sys.stderr)
        return 2

    logs = ROOT / ".run"  # the project's own, ignored by git: nothing left in /tmp
    logs.mkdir(exist_ok=True)
    # A closed terminal (SIGHUP) stops everything, as Ctrl-C and SIGTERM do.
    for stop in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop, _stop)
    print(f"Starting the Firestore emulator (log: {logs / 'emulator.log'})", flush=True)
    emulator = Emulator.start(port=free_port(), log_path=logs / "emulator.log")
    try:
        env = {
            **os.environ,
            "FIRESTORE_EMULATOR_HOST": emulator.host_port,
            "GOOGLE_CLOUD_PROJECT": PROJECT,
        }
        token = _configure_demo(env)
        with serving(args.port, env) as url:
            curl = [
                "curl", "-sS", "-u", f"demo:{token}", "-H", "Content-Type: application/json",
                "-d", DEMO_BODY, f"{url}/apps/api/v1/sms",
            ]  # fmt: skip
            exports = (
                f"export FIRESTORE_EMULATOR_HOST={emulator.host_port} "
                f"GOOGLE_CLOUD_PROJECT={PROJECT}"
            )
            print(
                f"\nThe function is serving on {url} with the Firestore emulator at "
                f"{emulator.host_port}.\nTenant 'demo': outbound number +16285550199, agent 1 "
                f"(john.doe@foo.com), API token {token}\n\nTry:\n\n  {shlex.join(curl)}\n\n"
                f"The admin command line, in another terminal, against this emulator:\n\n"
                f"  cd {shlex.quote(str(ROOT))} && . .venv/bin/activate\n  {exports}\n"
                f"  python -m sms.admin tenants show demo\n",
                flush=True,
            )
            if args.once:
                return subprocess.run(curl, check=False).returncode
            print("Ctrl-C stops the server and the emulator.", flush=True)
            signal.pause()
            return 0
    except KeyboardInterrupt:
        return 0
    finally:
        emulator.stop()
        print("\nStopped the server and the emulator.", flush=True)


if __name__ == "__main__":
    sys.exit(main())
