"""credentials: the tokens a tenant's API clients sign in with, stored only as their hashes."""

from __future__ import annotations

import argparse
import re
import secrets
from collections.abc import Callable
from typing import Any

from sms.admin.checks import Invalid, subdomain
from sms.admin.commands import Actions, command, group, iso
from sms.admin.store import ConfigStore
from sms.credentials import hash_token, new_token


def listed(store: ConfigStore, tenant_id: str) -> list[dict[str, Any]]:
    """The tenant's credentials: never their tokens, nor even the tokens' hashes."""
    return [
        {
            "id": credential_id,
            "name": data.get("name"),
            "enabled": data.get("enabled") is True,
            "created_at": iso(data.get("created_at")),
            "rotated_at": iso(data.get("rotated_at")),
        }
        for credential_id, data in sorted(store.documents(tenant_id, "api_credentials"))
    ]


def credentials_create(store: ConfigStore, args: argparse.Namespace) -> Any:
    tenant_id = subdomain(args.subdomain)
    name = args.name.strip()
    if not name:
        raise Invalid("a credential needs a name")
    store.require_tenant(tenant_id)
    token = new_token()
    credential_id = secrets.token_hex(8)
    store.create(
        store.credential(tenant_id, credential_id),
        {
            "name": name,
            "token_sha256": hash_token(token),
            "enabled": True,
            "created_at": store.now(),
        },
        f"credential {credential_id}",
    )
    return {"tenant": tenant_id, "id": credential_id, "name": name, "token": token}


def credentials_list(store: ConfigStore, args: argparse.Namespace) -> Any:
    tenant_id = subdomain(args.subdomain)
    store.require_tenant(tenant_id)
    return listed(store, tenant_id)


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
    token = new_token()
    store.update(
        store.credential(tenant_id, credential_id),
        {"token_sha256": hash_token(token), "rotated_at": store.now()},
        f"credential {credential_id}",
    )
    return {"tenant": tenant_id, "id": credential_id, "token": token}


def add_commands(groups: Actions) -> None:
    actions = group(groups, "credentials", "API credentials: the tokens clients sign in with.")
    sub = command(
        actions, "create", credentials_create, "Create a credential; prints its token once.",
        "subdomain",
    )  # fmt: skip
    sub.add_argument("--name", default="api", help="what the credential is for (default api)")
    command(actions, "list", credentials_list, "List credentials, never tokens.", "subdomain")
    for name, run, text in (
        ("disable", _set_enabled(False), "Disable a credential: its token stops working."),
        ("enable", _set_enabled(True), "Enable a disabled credential again."),
        ("rotate", credentials_rotate, "Give a credential a new token; the old one stops working."),
    ):
        command(actions, name, run, text, "subdomain", "credential_id")
