"""agents: who a tenant's sessions can be assigned to, each found by its id or its email."""

from __future__ import annotations

import argparse
from typing import Any

from sms.admin.checks import Invalid, email, positive_int, subdomain, url
from sms.admin.commands import Actions, command, group
from sms.admin.store import ConfigStore


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


def listed(store: ConfigStore, tenant_id: str) -> list[dict[str, Any]]:
    """The tenant's agents, as the commands show them: by id, numeric ids first."""
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
    return listed(store, tenant_id)


def agents_remove(store: ConfigStore, args: argparse.Namespace) -> Any:
    tenant_id = subdomain(args.subdomain)
    agent_id = positive_int("agent id", args.agent_id)
    store.require_tenant(tenant_id)
    store.remove(store.agent(tenant_id, agent_id), f"agent {agent_id}")
    return {"tenant": tenant_id, "removed": agent_id}


def _agent_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--email", help="the agent's email (how requests may name the agent)")
    parser.add_argument("--name", help="display name (default: first and last name)")
    parser.add_argument("--first-name")
    parser.add_argument("--last-name")
    parser.add_argument("--agent-number", metavar="N", help="the agent's number")
    parser.add_argument("--avatar-url", metavar="URL")


def add_commands(groups: Actions) -> None:
    actions = group(groups, "agents", "Agents: who a session can be assigned to.")
    for name, run, text in (
        ("add", agents_add, "Add an agent with its id and email."),
        ("update", agents_update, "Change an agent's details."),
    ):
        _agent_options(command(actions, name, run, text, "subdomain", "agent_id"))
    command(actions, "list", agents_list, "List a tenant's agents.", "subdomain")
    command(actions, "remove", agents_remove, "Remove an agent.", "subdomain", "agent_id")
