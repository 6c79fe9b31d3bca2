"""Run the function on this machine, against the Firestore emulator, with a demo tenant.

    python -m sms.devtools.run_local [--port 8080] [--once]

Starts the emulator, configures the tenant "demo" (an outbound number, agent 1 and an API
token) with the admin command line (python -m sms.admin), serves the function with
functions-framework and prints a curl command that works. Ctrl-C stops the server and the
emulator. With ``--once`` it sends that request itself, prints the answer, and stops: a check
of the setup.

Sending: the ``log`` carrier by default. With SMS_CARRIER=twilio and neither a Twilio account
(TWILIO_ACCOUNT_SID) nor TWILIO_API_BASE_URL, it starts the Twilio stand-in
(sms/devtools/run_standin.py) and sends through it. Either way the function gets
TWILIO_AUTH_TOKEN and SMS_PUBLIC_BASE_URL (unless they are set), so that Twilio's webhooks can
be played with ``python -m sms.devtools reply ...``, which it prints. With a Twilio account in
the environment, the Twilio settings are left as given.
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
from collections.abc import Mapping
from pathlib import Path

from sms.devtools import run_standin, webhook
from sms.devtools.emulator import Emulator, free_port
from sms.devtools.server import serving
from sms.devtools.twilio_standin import TwilioStandIn

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
DEMO_CONSUMER = "+14155550100"
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


def _wants_standin(environ: Mapping[str, str]) -> bool:
    """SMS_CARRIER=twilio with no Twilio account and no API of one's own: the stand-in's."""
    return (
        (environ.get("SMS_CARRIER") or "log") == "twilio"
        and not environ.get("TWILIO_ACCOUNT_SID")
        and not environ.get("TWILIO_API_BASE_URL")
    )


def _twilio_env(
    environ: Mapping[str, str], url: str, standin: TwilioStandIn | None
) -> dict[str, str]:
    """What the function is given for Twilio: the stand-in's settings, or (log carrier) the
    webhooks' token and base URL; a Twilio account's settings are left as given."""
    if standin is not None:
        return run_standin.function_env(standin, environ.get("SMS_PUBLIC_BASE_URL") or url)
    if (environ.get("SMS_CARRIER") or "log") == "twilio":
        return {}
    return {
        "TWILIO_AUTH_TOKEN": environ.get("TWILIO_AUTH_TOKEN") or webhook.LOCAL_AUTH_TOKEN,
        "SMS_PUBLIC_BASE_URL": environ.get("SMS_PUBLIC_BASE_URL") or url,
    }


def _reply_hint(url: str, env: Mapping[str, str]) -> str:
    """The devtools reply command that works against this run, and what it needs (nothing
    where the function cannot check Twilio's signatures)."""
    public = env.get("SMS_PUBLIC_BASE_URL", "").rstrip("/")
    if not public or not env.get("TWILIO_AUTH_TOKEN"):
        return ""
    command = ["python", "-m", "sms.devtools", "reply", DEMO_CONSUMER, "yes please"]
    if url != webhook.LOCAL_URL:
        command += ["--url", url]
    if public != url:
        command = [f"SMS_PUBLIC_BASE_URL={public}", *command]
    note = ""
    if env.get("TWILIO_AUTH_TOKEN") != webhook.LOCAL_AUTH_TOKEN:
        note = " (with this run's TWILIO_AUTH_TOKEN in the environment)"
    return (
        f"A consumer's reply to the demo number, signed as Twilio signs it{note}:\n\n"
        f"  {shlex.join(command)}\n\n"
    )


def _carrier_line(env: Mapping[str, str], standin: TwilioStandIn | None) -> str:
    if standin is not None:
        return (
            f"Sending: through the Twilio stand-in at {standin.url}, which reports each "
            "message sent, then delivered."
        )
    if (env.get("SMS_CARRIER") or "log") == "twilio":
        return f"Sending: through Twilio ({env.get('TWILIO_API_BASE_URL') or 'api.twilio.com'})."
    return "Sending: the log carrier (nothing is sent; SMS_CARRIER=twilio uses a Twilio stand-in)."


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
    standin: TwilioStandIn | None = None
    try:
        url = f"http://127.0.0.1:{args.port}"
        if _wants_standin(os.environ):
            run_standin.show_activity()
            standin = run_standin.local_standin().start()
            print(f"Started a stand-in for Twilio's Messages API on {standin.url}", flush=True)
        env = {
            **os.environ,
            "FIRESTORE_EMULATOR_HOST": emulator.host_port,
            "GOOGLE_CLOUD_PROJECT": PROJECT,
            **_twilio_env(os.environ, url, standin),
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
                f"(john.doe@foo.com), API token {token}\n{_carrier_line(env, standin)}\n\n"
                f"Try:\n\n  {shlex.join(curl)}\n\n{_reply_hint(url, env)}"
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
        if standin is not None:
            standin.stop()
        emulator.stop()
        print("\nStopped the server and the emulator.", flush=True)


if __name__ == "__main__":
    sys.exit(main())
