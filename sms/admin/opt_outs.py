"""opt-outs: the consumers who get no SMS from a tenant (STOP, the carrier, or an operator)."""

from __future__ import annotations

import argparse
from typing import Any

from sms.admin.checks import allowed_regions, number, subdomain
from sms.admin.commands import Actions, command, group, iso
from sms.admin.store import ConfigStore


def _opt_out_number(store: ConfigStore, args: argparse.Namespace) -> tuple[str, str]:
    tenant_id = subdomain(args.subdomain)
    allowed = allowed_regions(store.require_tenant(tenant_id))
    return tenant_id, number(args.number, allowed)


def opt_outs_list(store: ConfigStore, args: argparse.Namespace) -> Any:
    tenant_id = subdomain(args.subdomain)
    store.require_tenant(tenant_id)
    return [
        {
            "number": e164,
            "at": iso(data.get("at")),
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


def add_commands(groups: Actions) -> None:
    actions = group(groups, "opt-outs", "Opt-outs: consumers who get no SMS from the tenant.")
    command(actions, "list", opt_outs_list, "List the consumers who opted out.", "subdomain")
    command(
        actions, "add", opt_outs_add, "Opt a consumer out: no SMS to it any more.",
        "subdomain", "number",
    )  # fmt: skip
    command(
        actions, "remove", opt_outs_remove, "Lift a consumer's opt-out (as START does).",
        "subdomain", "number",
    )  # fmt: skip
