"""opt-outs: the consumers who get no SMS from a tenant (STOP, the carrier, or an operator).

An operator's opt-out, and its lifting, is recorded as the function records the others: with
its consumer.opted_out or consumer.opted_in event (source "admin") in the same commit, the
event announced through the function's transport where it has one (SPEC 10.7).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from sms.admin import service
from sms.admin.checks import allowed_regions, number, subdomain
from sms.admin.commands import Actions, command, group, iso
from sms.admin.store import ConfigStore
from sms.clock import utc_now
from sms.domain import Event
from sms.events import model


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


def _announce(store: ConfigStore, args: argparse.Namespace, event: Event) -> None:
    """Tell the dispatcher of a committed event, where the function has a transport; what
    it does not take now, the sweeper announces on its next run."""
    if not args.settings.publish_events:
        return
    transport = service.transport(service.app(store, args.settings))
    if transport is None:
        return
    if not service.announce(transport, {event.tenant: [event.id]}):
        print(
            f"warning: event {event.id} is recorded, but {transport.name} did not take it "
            f"within {service.ANNOUNCE_SECONDS:g} s: the sweeper's next run announces it",
            file=sys.stderr,
        )


def opt_outs_add(store: ConfigStore, args: argparse.Namespace) -> Any:
    tenant_id, e164 = _opt_out_number(store, args)
    now = utc_now()
    record = {"number": e164, "at": now, "source": "admin", "error_code": None}
    event = model.consumer_event(model.OPTED_OUT, tenant_id, e164, "admin", now)
    store.write_with_event(store.opt_out(tenant_id, e164), record, event, f"the opt-out of {e164}")
    _announce(store, args, event)
    return {"tenant": tenant_id, "opted_out": e164}


def opt_outs_remove(store: ConfigStore, args: argparse.Namespace) -> Any:
    tenant_id, e164 = _opt_out_number(store, args)
    event = model.consumer_event(model.OPTED_IN, tenant_id, e164, "admin", utc_now())
    store.write_with_event(store.opt_out(tenant_id, e164), None, event, f"the opt-out of {e164}")
    _announce(store, args, event)
    return {"tenant": tenant_id, "opted_in": e164}


def add_commands(groups: Actions) -> None:
    actions = group(groups, "opt-outs", "Opt-outs: consumers who get no SMS from the tenant.")
    command(actions, "list", opt_outs_list, "List the consumers who opted out.", "subdomain")
    for name, run, text in (
        ("add", opt_outs_add, "Opt a consumer out: no SMS to it any more."),
        ("remove", opt_outs_remove, "Lift a consumer's opt-out (as START does)."),
    ):
        sub = command(actions, name, run, text, "subdomain", "number")
        sub.set_defaults(before=service.read_settings)
