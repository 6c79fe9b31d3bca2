"""chats: the tenant's sessions as the API lists them, and an agent assigned to one waiting
for an agent (SPEC 10.2), through the API's own use cases: the same rules, the same error
messages, and the same chat.assigned event."""

from __future__ import annotations

import argparse
import contextlib
import re
from collections.abc import Iterator
from typing import Any

from sms import errors, render
from sms import tenants as tenant_rules
from sms.admin import service
from sms.admin.checks import Answered, Invalid, subdomain
from sms.admin.commands import Actions, command, group
from sms.admin.store import COMMAND_SECONDS, ConfigStore
from sms.chat_list import STATUSES
from sms.domain import Tenant

# A chat id as the API's paths take it.
_CHAT_ID = re.compile(r"0*[1-9][0-9]{0,17}")
# The API's refusals that say the store is not as the command needs (exit status 1); its
# other 400s are bad input (2).
_STATE = frozenset(
    {errors.CHAT_ALREADY_ENDED, errors.CHAT_ALREADY_ASSIGNED, errors.AGENT_NOT_FOUND}
)


@contextlib.contextmanager
def _as_the_api_answers(store: ConfigStore) -> Iterator[None]:
    """The use case's refusals with the API's message; its log lines on stderr."""
    try:
        with service.quiet(), service.answered(store, COMMAND_SECONDS):
            yield
    except errors.ApiError as exc:
        state = exc.status != 400 or exc.message in _STATE
        raise Answered(exc.message, state=state) from exc


def _tenant(store: ConfigStore, tenant_id: str) -> Tenant:
    """The tenant as the function reads it: each setting judged (what it could not use is
    reported on stderr, and its default used, as the function does)."""
    tenant = tenant_rules.judge(tenant_id, store.require_tenant(tenant_id))
    with service.quiet():
        tenant_rules.report_problems(tenant)
    return tenant


def _chat_id(value: str) -> int:
    if not _CHAT_ID.fullmatch(value):
        raise Invalid(f"{value!r} is not a chat id (see: chats list)")
    return int(value)


def chats_list(store: ConfigStore, args: argparse.Namespace) -> Any:
    tenant_id = subdomain(args.subdomain)
    tenant = _tenant(store, tenant_id)
    built = service.app(store, args.settings)
    with _as_the_api_answers(store):
        page = built.chat_list.page(tenant, args.status, args.number, args.limit, args.page_token)
    return {
        "chats": [render.chat_document(chat) for chat in page.items],
        "next_page_token": page.next_page_token,
    }


def chats_assign(store: ConfigStore, args: argparse.Namespace) -> Any:
    tenant_id = subdomain(args.subdomain)
    chat_id = _chat_id(args.chat_id)
    if args.agent_id is not None:
        body: dict[str, object] = {"agent_id": args.agent_id}
    else:
        body = {"agent_email": args.agent_email}
    tenant = _tenant(store, tenant_id)
    built = service.app(store, args.settings)
    with _as_the_api_answers(store):
        chat = built.chats.assign(tenant, chat_id, body)
    return render.chat_document(chat)


def add_commands(groups: Actions) -> None:
    actions = group(groups, "chats", "Chats: the tenant's sessions, as the API lists them.")
    sub = command(
        actions, "list", chats_list, "List chats, newest first, as GET /chats does.", "subdomain"
    )
    sub.add_argument("--status", metavar="S", help=f"one of {', '.join(STATUSES)}")
    sub.add_argument("--number", metavar="N", help="the consumer's number (any format)")
    sub.add_argument("--limit", metavar="N", help="chats per page, 1 to 200 (default 50)")
    sub.add_argument("--page-token", metavar="TOKEN", help="the next_page_token of a page")
    sub.set_defaults(before=service.read_settings)
    sub = command(
        actions, "assign", chats_assign,
        "Assign an agent to a session that has none (one a reply opened), as PATCH does.",
        "subdomain", "chat_id",
    )  # fmt: skip
    agent = sub.add_mutually_exclusive_group(required=True)
    agent.add_argument("--agent-id", metavar="ID", help="the agent's id")
    agent.add_argument("--agent-email", metavar="EMAIL", help="the agent's email")
    sub.set_defaults(before=service.read_settings)
