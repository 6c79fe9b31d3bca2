"""python -m sms.admin: configure tenants in Firestore, as SPEC section 7 describes them.

Works against the Firestore emulator when FIRESTORE_EMULATOR_HOST is set, and against a real
project otherwise (Application Default Credentials: `gcloud auth application-default login`).
Every input is checked before anything is written: a command either does all it says or
changes nothing, and says why on stderr with a non-zero exit status.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import secrets
import sys
from collections.abc import Callable, Sequence
from typing import Any

from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exceptions
from google.cloud import firestore

from sms import credentials, phone, tenants
from sms.admin.store import ConfigStore, Exists, Missing
from sms.config import Settings
from sms.domain import (
    DEFAULT_ALLOWED_REGIONS,
    DEFAULT_LANG,
    DEFAULT_SESSION_TIMEOUT_SECONDS,
    SUBDOMAIN,
)

EXIT_INVALID = 2  # bad input (argparse uses 2 as well)
EXIT_STATE = 1  # the store is not as the command needs (missing, exists, unreachable)

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_URL = re.compile(r"https?://\S+")
DEFAULT_RATE_LIMIT = 10  # the platform's documented limit (SPEC 10.6)


class Invalid(Exception):
    """An input the command refuses; nothing has been written."""


# ---- checking inputs -------------------------------------------------------------------


def subdomain(value: str) -> str:
    if not SUBDOMAIN.fullmatch(value):
        raise Invalid(f"{value!r} is not a subdomain (letters, digits, '-' and '_', 1 to 63)")
    return value


def positive_int(what: str, value: str) -> int:
    if not re.fullmatch(r"[0-9]{1,18}", value) or int(value) <= 0:
        raise Invalid(f"{what} must be a positive whole number, got {value!r}")
    return int(value)


def whole_number(what: str, value: str) -> int:
    """A number as typed: digits only (what it may be is the tenant rules' to say)."""
    if not re.fullmatch(r"[0-9]{1,18}", value):
        raise Invalid(f"{what} must be a whole number, got {value!r}")
    return int(value)


def regions(value: str) -> list[str]:
    return [name.strip().upper() for name in value.split(",") if name.strip()]


def email(value: str) -> str:
    if not _EMAIL.fullmatch(value):
        raise Invalid(f"{value!r} is not an email address")
    return value


def url(value: str) -> str:
    if not _URL.fullmatch(value):
        raise Invalid(f"{value!r} is not an http(s) URL")
    return value


def number(value: str, allowed: Sequence[str]) -> str:
    """A phone number as the API will judge it for this tenant, in E.164."""
    judgement = phone.judge(value, allowed)
    if judgement.e164 is None:
        reason = {
            phone.Verdict.MISSING: "is empty",
            phone.Verdict.INVALID: "is not a valid phone number",
            phone.Verdict.FOREIGN: f"is outside the tenant's allowed regions {list(allowed)}",
        }[judgement.verdict]
        raise Invalid(f"{value!r} {reason}")
    return judgement.e164


def _allowed_regions(tenant: dict[str, Any]) -> list[str]:
    stored = tenant.get("allowed_regions")
    if isinstance(stored, list) and stored and all(isinstance(r, str) for r in stored):
        return [r.upper() for r in stored]
    return list(DEFAULT_ALLOWED_REGIONS)


# ---- commands -----------------------------------------------------------------------------


def _tenant_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The tenant fields the command line names, judged by the rules the function reads them
    with (sms.tenants): what the function could not use is refused here, not written."""
    fields: dict[str, Any] = {}
    if args.sms_enabled is not None:
        fields["sms_enabled"] = args.sms_enabled
    if args.outbound_sms_enabled is not None:
        fields["outbound_sms_enabled"] = args.outbound_sms_enabled
    if args.lang is not None:
        fields["lang"] = args.lang
    if args.session_timeout_seconds is not None:
        fields["session_timeout_seconds"] = positive_int(
            "session timeout", args.session_timeout_seconds
        )
    if args.allowed_regions is not None:
        fields["allowed_regions"] = regions(args.allowed_regions)
    if args.ticket_url_template is not None:
        fields["ticket_url_template"] = args.ticket_url_template
        if "{ticket_id}" not in args.ticket_url_template:  # a link that names no ticket
            raise Invalid(
                f"--ticket-url-template must contain {{ticket_id}}: {args.ticket_url_template!r}"
            )
    if args.rate_limit_per_second is not None:
        fields["rate_limit_per_second"] = whole_number(
            "--rate-limit-per-second", args.rate_limit_per_second
        )
    for name, why in tenants.refusals(fields).items():
        shown = repr(fields[name])
        shown = shown if len(shown) <= 80 else f"{shown[:77]}... ({len(str(fields[name]))} chars)"
        raise Invalid(f"--{name.replace('_', '-')} {shown} {why}")
    return fields


def tenants_create(store: ConfigStore, args: argparse.Namespace) -> Any:
    tenant_id = subdomain(args.subdomain)
    fields = {
        "sms_enabled": True,
        "outbound_sms_enabled": True,
        "lang": DEFAULT_LANG,
        "session_timeout_seconds": DEFAULT_SESSION_TIMEOUT_SECONDS,
        "allowed_regions": list(DEFAULT_ALLOWED_REGIONS),
        "rate_limit_per_second": DEFAULT_RATE_LIMIT,
        **_tenant_settings(args),
    }
    store.create(store.tenant(tenant_id), fields, f"tenant {tenant_id!r}")
    return {"tenant": tenant_id, **fields}


def tenants_update(store: ConfigStore, args: argparse.Namespace) -> Any:
    tenant_id = subdomain(args.subdomain)
    fields = _tenant_settings(args)
    if args.clear_ticket_url_template:
        if "ticket_url_template" in fields:
            raise Invalid("give --ticket-url-template or --clear-ticket-url-template, not both")
        fields["ticket_url_template"] = firestore.DELETE_FIELD
    if not fields:
        raise Invalid("nothing to update: name at least one setting (see --help)")
    current = store.require_tenant(tenant_id)
    if "allowed_regions" in fields:
        _check_numbers_allowed(store, tenant_id, fields["allowed_regions"])
    store.update(store.tenant(tenant_id), fields, f"tenant {tenant_id!r}")
    shown = {**current, **fields}
    if args.clear_ticket_url_template:
        del shown["ticket_url_template"]
    return {"tenant": tenant_id, **_ordered(shown)}


def _check_numbers_allowed(store: ConfigStore, tenant_id: str, allowed: list[str]) -> None:
    """Refuse regions that would leave one of the tenant's own outbound numbers foreign."""
    for e164, _ in store.documents(tenant_id, "outbound_numbers"):
        number(e164, allowed)


_SETTINGS = (
    "sms_enabled",
    "outbound_sms_enabled",
    "lang",
    "session_timeout_seconds",
    "allowed_regions",
    "ticket_url_template",
    "rate_limit_per_second",
)


def _ordered(settings: dict[str, Any]) -> dict[str, Any]:
    """A tenant's settings in the order of SPEC section 7, then anything else stored."""
    known = {name: settings[name] for name in _SETTINGS if name in settings}
    return {**known, **{k: v for k, v in sorted(settings.items()) if k not in known}}


def tenants_show(store: ConfigStore, args: argparse.Namespace) -> Any:
    tenant_id = subdomain(args.subdomain)
    settings = store.require_tenant(tenant_id)
    return {
        "tenant": tenant_id,
        **_ordered(settings),
        "outbound_numbers": _numbers(store, tenant_id),
        "agents": _agents(store, tenant_id),
        "api_credentials": _credentials(store, tenant_id),
    }


def tenants_list(store: ConfigStore, args: argparse.Namespace) -> Any:
    return store.list_tenants()


def _numbers(store: ConfigStore, tenant_id: str) -> list[dict[str, Any]]:
    return [
        {"number": e164, "sms_enabled": data.get("sms_enabled") is not False}
        for e164, data in sorted(store.documents(tenant_id, "outbound_numbers"))
    ]


def numbers_add(store: ConfigStore, args: argparse.Namespace) -> Any:
    tenant_id = subdomain(args.subdomain)
    allowed = _allowed_regions(store.require_tenant(tenant_id))
    e164 = number(args.number, allowed)
    data = {"sms_enabled": not args.disabled}
    store.add_number(tenant_id, e164, data)
    return {"tenant": tenant_id, "number": e164, **data}


def numbers_list(store: ConfigStore, args: argparse.Namespace) -> Any:
    tenant_id = subdomain(args.subdomain)
    store.require_tenant(tenant_id)
    return _numbers(store, tenant_id)


def numbers_remove(store: ConfigStore, args: argparse.Namespace) -> Any:
    tenant_id = subdomain(args.subdomain)
    allowed = _allowed_regions(store.require_tenant(tenant_id))
    e164 = number(args.number, allowed)
    store.remove_number(tenant_id, e164)
    return {"tenant": tenant_id, "removed": e164}


def numbers_reindex(store: ConfigStore, args: argparse.Namespace) -> Any:
    """Write numbers/{E.164} for the numbers tenants had before the index existed."""
    tenants = [subdomain(args.subdomain)] if args.subdomain else store.list_tenants()
    report: dict[str, list[Any]] = {"indexed": [], "already": [], "conflicts": []}
    for tenant_id in tenants:
        store.require_tenant(tenant_id)
        for e164, _ in sorted(store.documents(tenant_id, "outbound_numbers")):
            done = store.index_number(tenant_id, e164)
            entry = {"tenant": tenant_id, "number": e164}
            if done in ("indexed", "already"):
                report[done].append(entry)
            else:
                report["conflicts"].append({**entry, "held_by": done})
    return report


_AGENT_FIELDS = ("agent_number", "email", "name", "first_name", "last_name", "avatar_url")


def _agent_fields(args: argparse.Namespace) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if args.agent_number is not None:
        fields["agent_number"] = positive_int("agent number", args.agent_number)
    if args.email is not None:
        fields["email"] = email(args.email)
    for name in ("name", "first_name", "last_name"):
        value = getattr(args, name)
        if value is not None:
            if not value.strip():
                raise Invalid(f"{name.replace('_', ' ')} must not be empty")
            fields[name] = value.strip()
    if args.avatar_url is not None:
        fields["avatar_url"] = url(args.avatar_url)
    return fields


def _agents(store: ConfigStore, tenant_id: str) -> list[dict[str, Any]]:
    agents = []
    for agent_id, data in store.documents(tenant_id, "agents"):
        agents.append({"id": int(agent_id) if agent_id.isdigit() else agent_id, **data})
    return sorted(agents, key=lambda a: (not isinstance(a["id"], int), str(a["id"]).zfill(20)))


def agents_add(store: ConfigStore, args: argparse.Namespace) -> Any:
    tenant_id = subdomain(args.subdomain)
    agent_id = positive_int("agent id", args.agent_id)
    fields = _agent_fields(args)
    if "email" not in fields:
        raise Invalid("an agent needs --email")
    if "name" not in fields and ("first_name" in fields or "last_name" in fields):
        parts = (fields.get("first_name"), fields.get("last_name"))
        fields["name"] = " ".join(p for p in parts if p)
    store.require_tenant(tenant_id)
    _check_email_free(store, tenant_id, agent_id, fields["email"])
    store.create(store.agent(tenant_id, agent_id), fields, f"agent {agent_id}")
    return {"tenant": tenant_id, "id": agent_id, **fields}


def _check_email_free(store: ConfigStore, tenant_id: str, agent_id: int, address: str) -> None:
    """An email names one agent: the API finds agents by it."""
    for other_id, data in store.documents(tenant_id, "agents"):
        other = data.get("email")
        taken = isinstance(other, str) and other.casefold() == address.casefold()
        if taken and other_id != str(agent_id):
            raise Invalid(f"{address} is already the email of agent {other_id}")


def agents_update(store: ConfigStore, args: argparse.Namespace) -> Any:
    tenant_id = subdomain(args.subdomain)
    agent_id = positive_int("agent id", args.agent_id)
    fields = _agent_fields(args)
    if not fields:
        raise Invalid("nothing to update: name at least one field (see --help)")
    store.require_tenant(tenant_id)
    if "email" in fields:
        _check_email_free(store, tenant_id, agent_id, fields["email"])
    store.update(store.agent(tenant_id, agent_id), fields, f"agent {agent_id}")
    return {"tenant": tenant_id, "id": agent_id, "updated": sorted(fields)}


def agents_list(store: ConfigStore, args: argparse.Namespace) -> Any:
    tenant_id = subdomain(args.subdomain)
    store.require_tenant(tenant_id)
    return _agents(store, tenant_id)


def agents_remove(store: ConfigStore, args: argparse.Namespace) -> Any:
    tenant_id = subdomain(args.subdomain)
    agent_id = positive_int("agent id", args.agent_id)
    store.require_tenant(tenant_id)
    store.remove(store.agent(tenant_id, agent_id), f"agent {agent_id}")
    return {"tenant": tenant_id, "removed": agent_id}


def _credentials(store: ConfigStore, tenant_id: str) -> list[dict[str, Any]]:
    """The tenant's credentials: never their tokens, nor even the tokens' hashes."""
    return [
        {
            "id": credential_id,
            "name": data.get("name"),
            "enabled": data.get("enabled") is True,
            "created_at": _iso(data.get("created_at")),
            "rotated_at": _iso(data.get("rotated_at")),
        }
        for credential_id, data in sorted(store.documents(tenant_id, "api_credentials"))
    ]


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def credentials_create(store: ConfigStore, args: argparse.Namespace) -> Any:
    tenant_id = subdomain(args.subdomain)
    name = args.name.strip()
    if not name:
        raise Invalid("a credential needs a name")
    store.require_tenant(tenant_id)
    token = credentials.new_token()
    credential_id = secrets.token_hex(8)
    store.create(
        store.credential(tenant_id, credential_id),
        {
            "name": name,
            "token_sha256": credentials.hash_token(token),
            "enabled": True,
            "created_at": store.now(),
        },
        f"credential {credential_id}",
    )
    return {"tenant": tenant_id, "id": credential_id, "name": name, "token": token}


def _credential_id(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,100}", value):
        raise Invalid(f"{value!r} is not a credential id (see: credentials list)")
    return value


def _set_enabled(enabled: bool) -> Callable[[ConfigStore, argparse.Namespace], Any]:
    def command(store: ConfigStore, args: argparse.Namespace) -> Any:
        tenant_id = subdomain(args.subdomain)
        credential_id = _credential_id(args.credential_id)
        ref = store.credential(tenant_id, credential_id)
        store.update(ref, {"enabled": enabled}, f"credential {credential_id}")
        return {"tenant": tenant_id, "id": credential_id, "enabled": enabled}

    return command


def credentials_rotate(store: ConfigStore, args: argparse.Namespace) -> Any:
    tenant_id = subdomain(args.subdomain)
    credential_id = _credential_id(args.credential_id)
    token = credentials.new_token()
    store.update(
        store.credential(tenant_id, credential_id),
        {"token_sha256": credentials.hash_token(token), "rotated_at": store.now()},
        f"credential {credential_id}",
    )
    return {"tenant": tenant_id, "id": credential_id, "token": token}


def _opt_out_number(store: ConfigStore, args: argparse.Namespace) -> tuple[str, str]:
    tenant_id = subdomain(args.subdomain)
    allowed = _allowed_regions(store.require_tenant(tenant_id))
    return tenant_id, number(args.number, allowed)


def opt_outs_list(store: ConfigStore, args: argparse.Namespace) -> Any:
    tenant_id = subdomain(args.subdomain)
    store.require_tenant(tenant_id)
    return [
        {
            "number": e164,
            "at": _iso(data.get("at")),
            "source": data.get("source"),
            "error_code": data.get("error_code"),
        }
        for e164, data in sorted(store.documents(tenant_id, "opt_outs"))
    ]


def opt_outs_add(store: ConfigStore, args: argparse.Namespace) -> Any:
    tenant_id, e164 = _opt_out_number(store, args)
    record = {"number": e164, "at": store.now(), "source": "admin", "error_code": None}
    store.create(store.opt_out(tenant_id, e164), record, f"the opt-out of {e164}")
    return {"tenant": tenant_id, "opted_out": e164}


def opt_outs_remove(store: ConfigStore, args: argparse.Namespace) -> Any:
    tenant_id, e164 = _opt_out_number(store, args)
    store.remove(store.opt_out(tenant_id, e164), f"the opt-out of {e164}")
    return {"tenant": tenant_id, "opted_in": e164}


def _sweep_settings(args: argparse.Namespace) -> None:
    """The function's settings for a sweep, checked before anything connects."""
    try:
        config = dataclasses.replace(
            Settings.from_env(), project=args.project or os.environ.get("GOOGLE_CLOUD_PROJECT")
        )
        if config.carrier == "twilio":
            from sms import carriers  # noqa: PLC0415 only this command sends

            carriers.from_settings(config)
    except ValueError as exc:
        raise Invalid(str(exc)) from exc
    if config.carrier == "log" and not os.environ.get("FIRESTORE_EMULATOR_HOST"):
        # The log carrier sends nothing: on a real project, a sweep would record unsent
        # messages as sent.
        raise Invalid(
            "SMS_CARRIER is 'log', which sends nothing: set SMS_CARRIER=twilio and the "
            "TWILIO_* variables the function runs with (the sweep may send SMS)"
        )
    args.settings = config


def sweep(store: ConfigStore, args: argparse.Namespace) -> Any:
    """Settle the messages senders left unsettled, as the sms_sweeper target does."""
    from sms import bootstrap, jobs  # noqa: PLC0415 only this command sends
    from sms.repository import FirestoreStore  # noqa: PLC0415

    config: Settings = args.settings
    app = bootstrap.build(config, store=FirestoreStore(store.client, config))
    with contextlib.redirect_stdout(sys.stderr):  # its log lines; the report goes to stdout
        settled = app.sweeper.sweep()
    return jobs.sweep_report(settled)


# ---- the parser ---------------------------------------------------------------------------


def _tenant_options(parser: argparse.ArgumentParser) -> None:
    bool_opt = argparse.BooleanOptionalAction
    parser.add_argument("--sms-enabled", action=bool_opt, help="SMS on or off")
    parser.add_argument("--outbound-sms-enabled", action=bool_opt, help="outbound SMS on or off")
    parser.add_argument("--lang", help="language of the tenant's chats (default en)")
    parser.add_argument(
        "--session-timeout-seconds",
        metavar="SECONDS",
        help="idle time after which a session ends (default 86400)",
    )
    parser.add_argument(
        "--allowed-regions",
        metavar="CODES",
        help="comma-separated regions numbers may belong to (default US)",
    )
    parser.add_argument(
        "--ticket-url-template",
        metavar="URL",
        help="CRM link of a ticket, with {ticket_id}, e.g. https://crm.example.com/t/{ticket_id}",
    )
    parser.add_argument(
        "--rate-limit-per-second",
        metavar="N",
        help=f"API requests per second; 0: no limit (default {DEFAULT_RATE_LIMIT})",
    )


def _agent_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--email", help="the agent's email (how requests may name the agent)")
    parser.add_argument("--name", help="display name (default: first and last name)")
    parser.add_argument("--first-name")
    parser.add_argument("--last-name")
    parser.add_argument("--agent-number", metavar="N", help="the agent's number")
    parser.add_argument("--avatar-url", metavar="URL")


_Actions = Any  # what argparse's add_subparsers returns


def _command(
    actions: _Actions, name: str, run: Callable[..., Any], help_text: str, *positionals: str
) -> argparse.ArgumentParser:
    sub: argparse.ArgumentParser = actions.add_parser(name, help=help_text, description=help_text)
    sub.set_defaults(run=run)
    for positional in positionals:
        sub.add_argument(positional, metavar=positional.upper())
    return sub


def _tenant_commands(actions: _Actions) -> None:
    sub = _command(
        actions, "create", tenants_create, "Create a tenant (SMS on unless told off).", "subdomain"
    )
    _tenant_options(sub)
    sub = _command(actions, "update", tenants_update, "Change settings of a tenant.", "subdomain")
    _tenant_options(sub)
    sub.add_argument("--clear-ticket-url-template", action="store_true", help="remove the link")
    _command(
        actions,
        "show",
        tenants_show,
        "Show a tenant with numbers, agents, credentials.",
        "subdomain",
    )
    _command(actions, "list", tenants_list, "List the tenants' subdomains.")


def _number_commands(actions: _Actions) -> None:
    sub = _command(
        actions, "add", numbers_add, "Add an outbound number (any format).", "subdomain", "number"
    )
    sub.add_argument("--disabled", action="store_true", help="add it switched off")
    _command(actions, "list", numbers_list, "List a tenant's outbound numbers.", "subdomain")
    _command(actions, "remove", numbers_remove, "Remove an outbound number.", "subdomain", "number")
    sub = _command(
        actions,
        "reindex",
        numbers_reindex,
        "Index every tenant's numbers (numbers/{E.164}) as 'add' does; safe to run again.",
    )
    sub.add_argument("subdomain", nargs="?", metavar="SUBDOMAIN", help="only this tenant")


def _agent_commands(actions: _Actions) -> None:
    for name, run, text in (
        ("add", agents_add, "Add an agent with its id and email."),
        ("update", agents_update, "Change an agent's details."),
    ):
        _agent_options(_command(actions, name, run, text, "subdomain", "agent_id"))
    _command(actions, "list", agents_list, "List a tenant's agents.", "subdomain")
    _command(actions, "remove", agents_remove, "Remove an agent.", "subdomain", "agent_id")


def _credential_commands(actions: _Actions) -> None:
    sub = _command(
        actions, "create", credentials_create, "Create a credential; prints its token once.",
        "subdomain",
    )  # fmt: skip
    sub.add_argument("--name", default="api", help="what the credential is for (default api)")
    _command(actions, "list", _list_credentials, "List credentials, never tokens.", "subdomain")
    for name, run, text in (
        ("disable", _set_enabled(False), "Disable a credential: its token stops working."),
        ("enable", _set_enabled(True), "Enable a disabled credential again."),
        ("rotate", credentials_rotate, "Give a credential a new token; the old one stops working."),
    ):
        _command(actions, name, run, text, "subdomain", "credential_id")


def _opt_out_commands(actions: _Actions) -> None:
    _command(actions, "list", opt_outs_list, "List the consumers who opted out.", "subdomain")
    _command(
        actions, "add", opt_outs_add, "Opt a consumer out: no SMS to it any more.",
        "subdomain", "number",
    )  # fmt: skip
    _command(
        actions, "remove", opt_outs_remove, "Lift a consumer's opt-out (as START does).",
        "subdomain", "number",
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sms.admin",
        description="Configure the tenants of the Outbound SMS API in Firestore.",
        epilog="Against the emulator: set FIRESTORE_EMULATOR_HOST. Against a project: "
        "gcloud auth application-default login, then --project or GOOGLE_CLOUD_PROJECT.",
    )
    parser.add_argument("--project", help="Google Cloud project (default: GOOGLE_CLOUD_PROJECT)")
    parser.add_argument("--database", help="Firestore database (default: FIRESTORE_DATABASE)")
    groups = parser.add_subparsers(dest="group", required=True, metavar="GROUP")
    for name, text, add in (
        ("tenants", "Tenants: one per customer company, named by its subdomain.", _tenant_commands),
        ("numbers", "Outbound numbers: the tenant's numbers that may send SMS.", _number_commands),
        ("agents", "Agents: who a session can be assigned to.", _agent_commands),
        ("credentials", "API credentials: the tokens clients sign in with.", _credential_commands),
        ("opt-outs", "Opt-outs: consumers who get no SMS from the tenant.", _opt_out_commands),
    ):
        group = groups.add_parser(name, help=text, description=text)
        add(group.add_subparsers(dest="action", required=True, metavar="ACTION"))
    text = (
        "Settle the messages a crashed or timed-out sender left queued or sending "
        "(SMS_SWEEP_AFTER_SECONDS old), as the sms_sweeper function does; prints what it did."
    )
    groups.add_parser("sweep", help=text, description=text).set_defaults(
        run=sweep, before=_sweep_settings
    )
    return parser


def _list_credentials(store: ConfigStore, args: argparse.Namespace) -> Any:
    tenant_id = subdomain(args.subdomain)
    store.require_tenant(tenant_id)
    return _credentials(store, tenant_id)


def _client(args: argparse.Namespace) -> firestore.Client:
    """The client of the project the command names: never one guessed from the machine (the
    emulator's default project is not the one the function reads)."""
    project = args.project or os.environ.get("GOOGLE_CLOUD_PROJECT")
    if not project:
        emulator = os.environ.get("FIRESTORE_EMULATOR_HOST")
        where = f"the emulator at {emulator}" if emulator else "Firestore"
        raise Invalid(
            f"which project of {where}? Set GOOGLE_CLOUD_PROJECT or pass --project "
            "(the local run prints the exports to use)"
        )
    database = args.database or os.environ.get("FIRESTORE_DATABASE") or "(default)"
    return firestore.Client(project=project, database=database)


def main(argv: Sequence[str] | None = None, client: firestore.Client | None = None) -> int:
    """Run one command; the exit status."""
    args = build_parser().parse_args(argv)
    try:
        if hasattr(args, "before"):
            args.before(args)
        store = ConfigStore(client or _client(args))
        result = args.run(store, args)
    except Invalid as exc:
        print(f"error: {exc}; nothing was written", file=sys.stderr)
        return EXIT_INVALID
    except (Missing, Exists) as exc:
        print(f"error: {exc}; nothing was written", file=sys.stderr)
        return EXIT_STATE
    except (gexc.GoogleAPICallError, gexc.RetryError, auth_exceptions.GoogleAuthError) as exc:
        print(f"error: Firestore could not be used: {exc}", file=sys.stderr)
        return EXIT_STATE
    print(json.dumps(result, indent=2, default=str, ensure_ascii=False))
    if isinstance(result, dict) and "token" in result:
        print("The token is shown only this once: store it now.", file=sys.stderr)
    if isinstance(result, dict) and result.get("conflicts"):
        print("error: numbers held by another tenant were left as they are", file=sys.stderr)
        return EXIT_STATE
    return 0
