"""webhooks: where a tenant's events are delivered (SPEC 7 and 10.7), each endpoint with
secrets of its own that sign every delivery; a secret is shown once, when it is made."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import secrets
from collections.abc import Callable
from typing import Any

from sms.admin.checks import Invalid, subdomain
from sms.admin.commands import Actions, command, group, iso
from sms.admin.store import ConfigStore, Exists
from sms.events import model
from sms.events.egress import ALLOW_HOSTS_VARIABLE, AllowHosts, why_undeliverable
from sms.events.signing import new_secret

# How long a secret that was rotated out goes on signing, so that receivers can switch.
OVERLAP = dt.timedelta(hours=24)
_ENDPOINT_ID = re.compile(r"[A-Za-z0-9_-]{1,100}")


def endpoint_id(value: str) -> str:
    if not _ENDPOINT_ID.fullmatch(value):
        raise Invalid(f"{value!r} is not a webhook endpoint id (see: webhooks list)")
    return value


def event_type(value: str) -> str:
    if value not in model.TYPES:
        raise Invalid(f"{value!r} is not an event type (one of {', '.join(model.TYPES)})")
    return value


def event_types(value: str) -> list[str]:
    """Comma-separated event types, each once, in the order given."""
    named = [event_type(name.strip()) for name in value.split(",") if name.strip()]
    if not named:
        raise Invalid("--events names no event type: leave it out for every type")
    return list(dict.fromkeys(named))


def deliverable_url(value: str) -> str:
    """A URL webhooks may be delivered to, as the dispatcher judges it (names are not
    resolved: nothing is contacted)."""
    try:
        allowed = AllowHosts.parse(os.environ.get(ALLOW_HOSTS_VARIABLE))
    except ValueError as exc:
        raise Invalid(str(exc)) from exc
    why = why_undeliverable(value, allowed)
    if why is not None:
        raise Invalid(f"{value!r} can never be delivered to: {why}")
    return value


def _secrets_shown(stored: Any) -> dict[str, Any]:
    """An endpoint's secrets as the commands show them: how many, and when each expires."""
    entries = [entry for entry in stored or () if isinstance(entry, dict)]
    return {
        "count": len(entries),
        "expires_at": [iso(entry.get("expires_at")) for entry in entries],
    }


def listed(store: ConfigStore, tenant_id: str) -> list[dict[str, Any]]:
    """The tenant's endpoints: never their secrets."""
    return [
        {
            "id": endpoint,
            "url": data.get("url"),
            "events": data.get("events") or [],
            "enabled": data.get("enabled") is not False,
            "secrets": _secrets_shown(data.get("secrets")),
            "created_at": iso(data.get("created_at")),
        }
        for endpoint, data in sorted(store.documents(tenant_id, "webhook_endpoints"))
    ]


def webhooks_add(store: ConfigStore, args: argparse.Namespace) -> Any:
    tenant_id = subdomain(args.subdomain)
    url = deliverable_url(args.url)
    types = event_types(args.events) if args.events is not None else []
    store.require_tenant(tenant_id)
    for other, data in store.documents(tenant_id, "webhook_endpoints"):
        if data.get("url") == url:
            raise Exists(f"webhook endpoint {other} delivers to {url} already")
    secret = new_secret()
    new_id = secrets.token_hex(8)
    store.create(
        store.webhook_endpoint(tenant_id, new_id),
        {
            "url": url,
            "events": types,
            "secrets": [{"secret": secret, "expires_at": None}],
            "enabled": True,
            "created_at": store.now(),
        },
        f"webhook endpoint {new_id}",
    )
    return {"tenant": tenant_id, "id": new_id, "url": url, "events": types, "secret": secret}


def webhooks_list(store: ConfigStore, args: argparse.Namespace) -> Any:
    tenant_id = subdomain(args.subdomain)
    store.require_tenant(tenant_id)
    return listed(store, tenant_id)


def rotated(stored: Any, secret: str, now: dt.datetime) -> list[dict[str, Any]]:
    """An endpoint's secrets after ``secret`` joins them: the others expire within OVERLAP
    (an earlier expiry is kept), and those expired already are dropped."""
    until = now + OVERLAP
    kept = []
    for entry in stored if isinstance(stored, list) else ():
        if not isinstance(entry, dict) or not isinstance(entry.get("secret"), str):
            continue  # not a secret: it could sign nothing
        expires = entry.get("expires_at")
        if isinstance(expires, dt.datetime):
            if expires <= now:
                continue
            until_then = min(expires, until)
        else:
            until_then = until
        kept.append({"secret": entry["secret"], "expires_at": until_then})
    return [*kept, {"secret": secret, "expires_at": None}]


def webhooks_rotate(store: ConfigStore, args: argparse.Namespace) -> Any:
    tenant_id = subdomain(args.subdomain)
    endpoint = endpoint_id(args.endpoint_id)
    store.require_tenant(tenant_id)
    secret = new_secret()
    changed = store.change(
        store.webhook_endpoint(tenant_id, endpoint),
        lambda data: {"secrets": rotated(data.get("secrets"), secret, store.now())},
        f"webhook endpoint {endpoint}",
    )
    return {
        "tenant": tenant_id,
        "id": endpoint,
        "secret": secret,
        "secrets": _secrets_shown(changed["secrets"]),
    }


def _set_enabled(enabled: bool) -> Callable[[ConfigStore, argparse.Namespace], Any]:
    def run(store: ConfigStore, args: argparse.Namespace) -> Any:
        tenant_id = subdomain(args.subdomain)
        endpoint = endpoint_id(args.endpoint_id)
        store.require_tenant(tenant_id)
        ref = store.webhook_endpoint(tenant_id, endpoint)
        store.update(ref, {"enabled": enabled}, f"webhook endpoint {endpoint}")
        return {"tenant": tenant_id, "id": endpoint, "enabled": enabled}

    return run


def webhooks_remove(store: ConfigStore, args: argparse.Namespace) -> Any:
    tenant_id = subdomain(args.subdomain)
    endpoint = endpoint_id(args.endpoint_id)
    store.require_tenant(tenant_id)
    store.remove(store.webhook_endpoint(tenant_id, endpoint), f"webhook endpoint {endpoint}")
    return {"tenant": tenant_id, "removed": endpoint}


def add_commands(groups: Actions) -> None:
    actions = group(groups, "webhooks", "Webhook endpoints: where the tenant's events are posted.")
    sub = command(
        actions, "add", webhooks_add,
        "Add an endpoint (an https:// URL with a public host); prints its secret once.",
        "subdomain", "url",
    )  # fmt: skip
    sub.add_argument(
        "--events",
        metavar="TYPE,...",
        help=f"the event types it takes (default: every type): {', '.join(model.TYPES)}",
    )
    command(actions, "list", webhooks_list, "List endpoints, never secrets.", "subdomain")
    for name, run, text in (
        (
            "rotate-secret",
            webhooks_rotate,
            "Give an endpoint a new secret, printed once; the old ones sign for 24 h more.",
        ),
        ("enable", _set_enabled(True), "Enable an endpoint again: events are posted to it."),
        ("disable", _set_enabled(False), "Disable an endpoint: no event is posted to it."),
        ("remove", webhooks_remove, "Remove an endpoint."),
    ):
        command(actions, name, run, text, "subdomain", "endpoint_id")
