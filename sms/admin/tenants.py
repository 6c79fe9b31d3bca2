"""tenants: one per customer company, named by its subdomain, with the settings of SPEC 7."""

from __future__ import annotations

import argparse
from typing import Any

from google.cloud import firestore

from sms import tenants as tenant_rules
from sms.admin import agents, credentials, numbers
from sms.admin.checks import Invalid, positive_int, regions, subdomain, whole_number
from sms.admin.commands import Actions, command, group
from sms.admin.store import ConfigStore
from sms.domain import DEFAULT_ALLOWED_REGIONS, DEFAULT_LANG, DEFAULT_SESSION_TIMEOUT_SECONDS

DEFAULT_RATE_LIMIT = 10  # the platform's documented limit (SPEC 10.6)

_SETTINGS = (
    "sms_enabled",
    "outbound_sms_enabled",
    "lang",
    "session_timeout_seconds",
    "allowed_regions",
    "ticket_url_template",
    "rate_limit_per_second",
    "quiet_hours",
    "default_time_zone",
)
DEFAULT_QUIET_HOURS_POLICY = "hold"


def _names_quiet_hours(args: argparse.Namespace) -> bool:
    return (args.quiet_hours, args.quiet_hours_policy, args.state_rules) != (None, None, None)


def _quiet_hours(args: argparse.Namespace, stored: Any) -> dict[str, Any]:
    """The quiet_hours map the options name, over the one ``stored`` (on update): what the
    options leave out is kept, else policy hold and no state rules."""
    kept = stored if isinstance(stored, dict) else None
    if args.quiet_hours is None:
        if kept is None:
            raise Invalid("the tenant has no quiet hours: give --quiet-hours HH:MM-HH:MM")
        start, end = kept.get("start"), kept.get("end")
    else:
        start, dash, end = (part.strip() for part in args.quiet_hours.partition("-"))
        if not dash:
            raise Invalid(
                f"--quiet-hours must be a window HH:MM-HH:MM (start-end), got {args.quiet_hours!r}"
            )
    kept = kept or {}
    policy = args.quiet_hours_policy
    rules = args.state_rules
    return {
        "start": start,
        "end": end,
        "policy": policy if policy is not None else kept.get("policy", DEFAULT_QUIET_HOURS_POLICY),
        "state_rules": rules if rules is not None else kept.get("state_rules", False),
    }


def _quiet_hours_refusal(quiet: dict[str, Any], why: str) -> str:
    """Why the function could not use these quiet hours, said of the option that set them."""
    if why.startswith("quiet_hours.policy"):
        return f"--quiet-hours-policy {quiet['policy']!r}: {why}"
    if why.startswith("quiet_hours.state_rules"):
        return f"--state-rules: {why}"
    return f"--quiet-hours {quiet['start']}-{quiet['end']}: {why}"


def _tenant_settings(args: argparse.Namespace, stored: dict[str, Any]) -> dict[str, Any]:
    """The tenant fields the command line names, judged by the rules the function reads them
    with (sms.tenants): what the function could not use is refused here, not written.
    ``stored``: the tenant's document as it is (on update), which options may amend."""
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
    if _names_quiet_hours(args):
        fields["quiet_hours"] = _quiet_hours(args, stored.get("quiet_hours"))
    if args.default_time_zone is not None:
        fields["default_time_zone"] = args.default_time_zone
    for name, why in tenant_rules.refusals(fields).items():
        if name == "quiet_hours":
            raise Invalid(_quiet_hours_refusal(fields[name], why))
        shown = repr(fields[name])
        shown = shown if len(shown) <= 80 else f"{shown[:77]}... ({len(str(fields[name]))} chars)"
        raise Invalid(f"--{name.replace('_', '-')} {shown} {why}")
    return fields


def _ordered(settings: dict[str, Any]) -> dict[str, Any]:
    """A tenant's settings in the order of SPEC section 7, then anything else stored."""
    known = {name: settings[name] for name in _SETTINGS if name in settings}
    return {**known, **{k: v for k, v in sorted(settings.items()) if k not in known}}


def tenants_create(store: ConfigStore, args: argparse.Namespace) -> Any:
    tenant_id = subdomain(args.subdomain)
    fields = {
        "sms_enabled": True,
        "outbound_sms_enabled": True,
        "lang": DEFAULT_LANG,
        "session_timeout_seconds": DEFAULT_SESSION_TIMEOUT_SECONDS,
        "allowed_regions": list(DEFAULT_ALLOWED_REGIONS),
        "rate_limit_per_second": DEFAULT_RATE_LIMIT,
        **_tenant_settings(args, {}),
    }
    store.create(store.tenant(tenant_id), fields, f"tenant {tenant_id!r}")
    return {"tenant": tenant_id, **fields}


def tenants_update(store: ConfigStore, args: argparse.Namespace) -> Any:
    tenant_id = subdomain(args.subdomain)
    if args.clear_quiet_hours and _names_quiet_hours(args):
        raise Invalid("give --quiet-hours (and its options) or --clear-quiet-hours, not both")
    # Quiet hours amend the stored ones: what the options leave out is kept.
    current = store.require_tenant(tenant_id) if _names_quiet_hours(args) else None
    fields = _tenant_settings(args, current or {})
    if args.clear_ticket_url_template:
        if "ticket_url_template" in fields:
            raise Invalid("give --ticket-url-template or --clear-ticket-url-template, not both")
        fields["ticket_url_template"] = firestore.DELETE_FIELD
    if args.clear_quiet_hours:
        fields["quiet_hours"] = firestore.DELETE_FIELD
    if not fields:
        raise Invalid("nothing to update: name at least one setting (see --help)")
    if current is None:
        current = store.require_tenant(tenant_id)
    if "allowed_regions" in fields:
        numbers.check_allowed(store, tenant_id, fields["allowed_regions"])
    store.update(store.tenant(tenant_id), fields, f"tenant {tenant_id!r}")
    shown = {
        name: value
        for name, value in {**current, **fields}.items()
        if value is not firestore.DELETE_FIELD
    }
    return {"tenant": tenant_id, **_ordered(shown)}


def tenants_show(store: ConfigStore, args: argparse.Namespace) -> Any:
    tenant_id = subdomain(args.subdomain)
    settings = store.require_tenant(tenant_id)
    return {
        "tenant": tenant_id,
        **_ordered(settings),
        "outbound_numbers": numbers.listed(store, tenant_id),
        "agents": agents.listed(store, tenant_id),
        "api_credentials": credentials.listed(store, tenant_id),
    }


def tenants_list(store: ConfigStore, args: argparse.Namespace) -> Any:
    return store.list_tenants()


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
    parser.add_argument(
        "--quiet-hours",
        metavar="HH:MM-HH:MM",
        help="consumers' local hours in which no session is opened, e.g. 21:00-08:00",
    )
    parser.add_argument(
        "--quiet-hours-policy",
        metavar="POLICY",
        help="hold (send when the quiet hours end) or refuse (answer 400); default hold",
    )
    parser.add_argument(
        "--state-rules",
        action=argparse.BooleanOptionalAction,
        help="also keep to 08:00-20:00 for numbers of Florida, Oklahoma and Maryland",
    )
    parser.add_argument(
        "--default-time-zone",
        metavar="ZONE",
        help="IANA zone of numbers whose own is unknown (default America/New_York)",
    )


def add_commands(groups: Actions) -> None:
    actions = group(groups, "tenants", "Tenants: one per customer company, named by its subdomain.")
    sub = command(
        actions, "create", tenants_create, "Create a tenant (SMS on unless told off).", "subdomain"
    )
    _tenant_options(sub)
    sub = command(actions, "update", tenants_update, "Change settings of a tenant.", "subdomain")
    _tenant_options(sub)
    sub.add_argument("--clear-ticket-url-template", action="store_true", help="remove the link")
    sub.add_argument("--clear-quiet-hours", action="store_true", help="no quiet hours any more")
    command(
        actions,
        "show",
        tenants_show,
        "Show a tenant with numbers, agents, credentials.",
        "subdomain",
    )
    command(actions, "list", tenants_list, "List the tenants' subdomains.")
