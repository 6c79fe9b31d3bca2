"""Schemathesis, a third-party conformance check, over openapi.yaml against the served function.

Its command line, `st run`, in a subprocess: its four phases (the document's examples,
coverage of each schema's edges, fuzzing, and stateful sequences that follow the links it
infers between operations), every check it has, a fixed seed and MAX_EXAMPLES examples per
operation and phase, against the function served by functions-framework as in production (the
`server` fixture, with the `log` carrier), as a fresh tenant with SMS on, the seed's outbound
number and agent 1. Any failure, and any warning, fails the test with schemathesis's own
report, which shows each failing request as a curl command.

What schemathesis cannot read in the document is declared, each with its reason, in
schemathesis.toml at the repository's root (the tenant's credentials and numbers, the business
rules and states that refuse a schema-valid request), and in one hook here: this file is also
the script the subprocess runs (`python tests/test_schemathesis.py <st arguments>`), which
registers `one_key_one_body` and hands over to schemathesis's command line.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import schemathesis
import schemathesis.cli
from google.cloud import firestore
from schemathesis.core import NotSet

from conftest import ROOT, Tenant, examples
from sms.devtools.seed import DEMO_AGENT

SEED = 1
# Per operation and phase: 300 fuzzed requests over the six operations; with the examples,
# coverage and stateful phases about a thousand test cases, a minute on two shared cores.
MAX_EXAMPLES = 50
CONFIG = ROOT / "schemathesis.toml"
DOCUMENT = ROOT / "openapi.yaml"

IDEMPOTENCY_KEY = "Idempotency-Key"
# The document's schema of the key (components/parameters/IdempotencyKey).
VALID_KEY = re.compile(r"[!-~]{1,255}")


def one_key_one_body(
    context: schemathesis.HookContext, case: schemathesis.Case[Any], kwargs: dict[str, Any]
) -> None:
    """schemathesis `before_call` hook: an Idempotency-Key is sent with one body only.

    The document ties the header to the body (the same key with another body answers 422), a
    relation no schema can state: schemathesis draws the key on its own, and its coverage phase
    sends the same one (`0`) with each of its hundred bodies, so that every request after the
    first would be answered 422 before its body is even read. As a client does, a key is
    therefore made the body's own: a valid key gets the body's digest appended (and stays
    valid: at most 255 visible ASCII characters). The same body sent again with the same key
    is still a retry (replayed with `Idempotent-Replayed: true`), and a key schemathesis made
    invalid on purpose is sent untouched (answered 400).
    """
    headers = case.headers
    key = headers.get(IDEMPOTENCY_KEY) if headers else None
    if not isinstance(key, str) or not VALID_KEY.fullmatch(key):
        return
    body = case.body
    if isinstance(body, NotSet):
        text = ""
    elif isinstance(body, bytes):
        text = body.hex()
    else:  # compared as JSON, as the function compares bodies: key order does not matter
        text = json.dumps(body, sort_keys=True, default=repr)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    headers[IDEMPOTENCY_KEY] = f"{key[:238]}.{digest}"


def test_schemathesis_finds_no_failure_with_every_check(
    server: str, make_tenant: Callable[..., Tenant], db: firestore.Client, tmp_path: Path
) -> None:
    tenant = make_tenant(agents={1: dict(DEMO_AGENT)})
    command = [
        sys.executable, __file__, "--config-file", str(CONFIG),
        "run", str(DOCUMENT), "--url", server,
        "--checks", "all", "--seed", str(SEED), "--max-examples", str(examples(MAX_EXAMPLES)),
        "--workers", "1", "--request-timeout", "30", "--no-color",
    ]  # fmt: skip
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
        # schemathesis.toml's [auth.openapi.tenantBasic]: the tenant's HTTP Basic credentials.
        "SMS_SCHEMATHESIS_TENANT": tenant.id,
        "SMS_SCHEMATHESIS_TOKEN": tenant.token,
        "COLUMNS": "120",
    }
    result = subprocess.run(
        command,
        cwd=tmp_path,  # what schemathesis and Hypothesis write stays out of the repository
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    report = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(command)}\n\n{report}"
    # The run tested what it should: every operation, in every phase, and not only refusals:
    # its requests opened sessions, whose documents it then read, paged and ended.
    assert "8 selected / 8 total" in report, report
    for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):
        assert f"✅ {phase}" in report, report
    chats = db.collection("tenants").document(tenant.id).collection("chats")
    assert len(list(chats.list_documents())) >= 10, report


if __name__ == "__main__":
    schemathesis.hook("before_call")(one_key_one_body)
    schemathesis.cli.schemathesis()
