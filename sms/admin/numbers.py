"""numbers: a tenant's outbound numbers, each indexed as numbers/{E.164} (one tenant per number)."""

from __future__ import annotations

import argparse
from typing import Any

from sms import deadline
from sms.admin.checks import allowed_regions, number, subdomain
from sms.admin.commands import Actions, command, group
from sms.admin.store import COMMAND_SECONDS, ConfigStore


def listed(store: ConfigStore, tenant_id: str) -> list[dict[str, Any]]:
    """The tenant's outbound numbers, as the commands show them."""
    return [
        {"number": e164, "sms_enabled": data.get("sms_enabled") is not False}
        for e164, data in sorted(store.documents(tenant_id, "outbound_numbers"))
    ]


def check_allowed(store: ConfigStore, tenant_id: str, allowed: list[str]) -> None:
    """Refuse regions that would leave one of the tenant's own outbound numbers foreign."""
    for e164, _ in store.documents(tenant_id, "outbound_numbers"):
        number(e164, allowed)


def numbers_add(store: ConfigStore, args: argparse.Namespace) -> Any:
    tenant_id = subdomain(args.subdomain)
    allowed = allowed_regions(store.require_tenant(tenant_id))
    e164 = number(args.number, allowed)
    data = {"sms_enabled": not args.disabled}
    store.add_number(tenant_id, e164, data)
    return {"tenant": tenant_id, "number": e164, **data}


def numbers_list(store: ConfigStore, args: argparse.Namespace) -> Any:
    tenant_id = subdomain(args.subdomain)
    store.require_tenant(tenant_id)
    return listed(store, tenant_id)


def numbers_remove(store: ConfigStore, args: argparse.Namespace) -> Any:
    tenant_id = subdomain(args.subdomain)
    allowed = allowed_regions(store.require_tenant(tenant_id))
    e164 = number(args.number, allowed)
    store.remove_number(tenant_id, e164)
    return {"tenant": tenant_id, "removed": e164}


def numbers_reindex(store: ConfigStore, args: argparse.Namespace) -> Any:
    """Write numbers/{E.164} for the numbers tenants had before the index existed.

    Each step (the list of tenants, a tenant's numbers, one number's index) has a command's
    time of its own: a whole project's numbers may take longer than one command's time.
    """
    with deadline.bounded(COMMAND_SECONDS):
        tenants = [subdomain(args.subdomain)] if args.subdomain else store.list_tenants()
    report: dict[str, list[Any]] = {"indexed": [], "already": [], "conflicts": []}
    for tenant_id in tenants:
        with deadline.bounded(COMMAND_SECONDS):
            store.require_tenant(tenant_id)
            held = sorted(store.documents(tenant_id, "outbound_numbers"))
        for e164, _ in held:
            with deadline.bounded(COMMAND_SECONDS):
                done = store.index_number(tenant_id, e164)
            entry = {"tenant": tenant_id, "number": e164}
            if done in ("indexed", "already"):
                report[done].append(entry)
            else:
                report["conflicts"].append({**entry, "held_by": done})
    return report


def add_commands(groups: Actions) -> None:
    actions = group(groups, "numbers", "Outbound numbers: the tenant's numbers that may send SMS.")
    sub = command(
        actions, "add", numbers_add, "Add an outbound number (any format).", "subdomain", "number"
    )
    sub.add_argument("--disabled", action="store_true", help="add it switched off")
    command(actions, "list", numbers_list, "List a tenant's outbound numbers.", "subdomain")
    command(actions, "remove", numbers_remove, "Remove an outbound number.", "subdomain", "number")
    sub = command(
        actions,
        "reindex",
        numbers_reindex,
        "Index every tenant's numbers (numbers/{E.164}) as 'add' does; safe to run again.",
    )
    sub.add_argument("subdomain", nargs="?", metavar="SUBDOMAIN", help="only this tenant")
    sub.set_defaults(own_deadlines=True)
