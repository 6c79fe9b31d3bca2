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
)


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
    for name, why in tenant_rules.refusals(fields).items():
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
        numbers.check_allowed(store, tenant_id, fields["allowed_regions"])
    store.update(store.tenant(tenant_id), fields, f"tenant {tenant_id!r}")
    shown = {**current, **fields}
    if args.clear_ticket_url_template:
        del shown["ticket_url_template"]
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


def add_commands(groups: Actions) -> None:
    actions = group(groups, "tenants", "Tenants: one per customer company, named by its subdomain.")
    sub = command(
        actions, "create", tenants_create, "Create a tenant (SMS on unless told off).", "subdomain"
    )
    _tenant_options(sub)
    sub = command(actions, "update", tenants_update, "Change settings of a tenant.", "subdomain")
    _tenant_options(sub)
    sub.add_argument("--clear-ticket-url-template", action="store_true", help="remove the link")
    command(
        actions,
        "show",
        tenants_show,
        "Show a tenant with numbers, agents, credentials.",
        "subdomain",
    )
    command(actions, "list", tenants_list, "List the tenants' subdomains.")
