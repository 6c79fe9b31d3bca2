"""Run the function on this machine, against the Firestore and Pub/Sub emulators, with a demo
tenant.

    python -m sms.devtools.run_local [--port 8080] [--once]

Starts both emulators, configures the tenant "demo" (an outbound number, agent 1 and an API
token) with the admin command line (python -m sms.admin), serves sms_events (the event
dispatcher) with the topic SMS_EVENTS_TOPIC and a push subscription to it, as the deploy
does, serves the function, and prints a curl command that works. Ctrl-C stops the servers and
the emulators. With ``--once`` it sends that request itself, prints the answer, and stops: a
check of the setup. Webhooks may reach 127.0.0.1 and localhost (SMS_WEBHOOKS_ALLOW_HOSTS).

Sending: the ``log`` carrier by default. With SMS_CARRIER=twilio and neither a Twilio account
(TWILIO_ACCOUNT_SID) nor TWILIO_API_BASE_URL, it starts the Twilio stand-in
(sms/devtools/run_standin.py) and sends through it. Either way the function gets
TWILIO_AUTH_TOKEN and SMS_PUBLIC_BASE_URL (unless they are set), so that Twilio's webhooks can
be played with ``python -m sms.devtools reply ...``, which it prints. With a Twilio account in
the environment, the Twilio settings are left as given.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

from sms.devtools import run_standin, webhook
from sms.devtools.emulator import Emulator, free_port
from sms.devtools.pubsub import push_events
from sms.devtools.server import running, serving
from sms.devtools.twilio_standin import TwilioStandIn

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "demo-sms-local"
TOPIC = "sms-events"
LOCAL_HOOKS = "127.0.0.1,localhost"  # webhook receivers a developer runs on this machine
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


@contextlib.contextmanager
def _pushing(env: Mapping[str, str], events_url: str) -> Iterator[None]:
    """The events topic, and a push subscription to sms_events (as Eventarc makes it)."""
    os.environ["PUBSUB_EMULATOR_HOST"] = env["PUBSUB_EMULATOR_HOST"]
    push_events(PROJECT, env["SMS_EVENTS_TOPIC"], events_url + "/")
    yield


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
    print(f"Starting the Firestore and Pub/Sub emulators (logs: {logs})", flush=True)
    emulator = Emulator.start(port=free_port(), log_path=logs / "emulator.log")
    pubsub: Emulator | None = None
    standin: TwilioStandIn | None = None
    try:
        pubsub = Emulator.start(port=free_port(), log_path=logs / "pubsub.log", kind="pubsub")
        url = f"http://127.0.0.1:{args.port}"
        if _wants_standin(os.environ):
            run_standin.show_activity()
            standin = run_standin.local_standin().start()
            print(f"Started a stand-in for Twilio's Messages API on {standin.url}", flush=True)
        env = {
            **os.environ,
            "FIRESTORE_EMULATOR_HOST": emulator.host_port,
            "PUBSUB_EMULATOR_HOST": pubsub.host_port,
            "GOOGLE_CLOUD_PROJECT": PROJECT,
            "SMS_EVENTS_TOPIC": os.environ.get("SMS_EVENTS_TOPIC") or TOPIC,
            "SMS_WEBHOOKS_ALLOW_HOSTS": os.environ.get("SMS_WEBHOOKS_ALLOW_HOSTS") or LOCAL_HOOKS,
            **_twilio_env(os.environ, url, standin),
        }
        token = _configure_demo(env)
        with (
            running(free_port(), env, target="sms_events") as events,
            _pushing(env, events.url),
            serving(args.port, env) as url,
        ):
            curl = [
                "curl", "-sS", "-u", f"demo:{token}", "-H", "Content-Type: application/json",
                "-d", DEMO_BODY, f"{url}/apps/api/v1/sms",
            ]  # fmt: skip
            exports = (
                f"export FIRESTORE_EMULATOR_HOST={emulator.host_port} "
                f"PUBSUB_EMULATOR_HOST={pubsub.host_port} GOOGLE_CLOUD_PROJECT={PROJECT} "
                f"SMS_EVENTS_TOPIC={env['SMS_EVENTS_TOPIC']} "
                f"SMS_WEBHOOKS_ALLOW_HOSTS={env['SMS_WEBHOOKS_ALLOW_HOSTS']}"
            )
            print(
                f"\nThe function is serving on {url} with the Firestore emulator at "
                f"{emulator.host_port}.\nTenant 'demo': outbound number +16285550199, agent 1 "
                f"(john.doe@foo.com), API token {token}\n{_carrier_line(env, standin)}\n\n"
                f"Try:\n\n  {shlex.join(curl)}\n\n{_reply_hint(url, env)}"
                f"Events go through the Pub/Sub topic {env['SMS_EVENTS_TOPIC']} to sms_events on "
                f"{events.url}, which delivers them to the tenant's webhooks:\n\n"
                f"  python -m sms.admin webhooks add demo http://127.0.0.1:9000/hooks\n\n"
                f"The admin command line, in another terminal, against these emulators:\n\n"
                f"  cd {shlex.quote(str(ROOT))} && . .venv/bin/activate\n  {exports}\n"
                f"  python -m sms.admin tenants show demo\n",
                flush=True,
            )
            if args.once:  # its answer on a line of its own, between the servers' lines
                done = subprocess.run(curl, capture_output=True, text=True, check=False)
                print(done.stdout + done.stderr, flush=True)
                return done.returncode
            print("Ctrl-C stops the server and the emulator.", flush=True)
            signal.pause()
            return 0
    except KeyboardInterrupt:
        return 0
    except RuntimeError as exc:  # a server that did not start said why, above
        print(f"\nThe local run could not start: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        if standin is not None:
            standin.stop()
        if pubsub is not None:
            pubsub.stop()
        emulator.stop()
        print("\nStopped the servers and the emulators.", flush=True)


if __name__ == "__main__":
    sys.exit(main())
