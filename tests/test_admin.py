"""The admin command line against the emulator: what it writes, what it refuses, and a tenant
configured with it alone serving a request."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.cloud import firestore

from conftest import PROJECT, ROOT, SEED_BODY, SMS_PATH, basic, count_documents
from sms import credentials, reach
from sms.admin.cli import main
from sms.devtools.emulator import free_port

Admin = Callable[..., tuple[int, Any, str]]


@pytest.fixture
def admin(db: firestore.Client, capsys: pytest.CaptureFixture[str]) -> Admin:
    """Run one command in-process; its exit status, its JSON output and its stderr."""

    def run(*argv: str) -> tuple[int, Any, str]:
        capsys.readouterr()  # drop what came before (such as the function's log lines)
        status = main(list(argv), client=db)
        out, err = capsys.readouterr()
        return status, json.loads(out) if out.strip() else None, err

    return run


@pytest.fixture
def name() -> str:
    return f"op{uuid.uuid4().hex[:12]}"


@pytest.fixture(autouse=True)
def _numbers_free(db: firestore.Client) -> None:
    """One tenant per number: each test's tenant takes the seed's numbers afresh."""
    numbers = ("+16285550199", "+16285550198", "+16042531234")
    for number in (*numbers, *(f"+162855501{n}" for n in range(42, 46))):
        db.document(f"numbers/{number}").delete()


def configure(admin: Admin, name: str) -> str:
    """A tenant as a new operator sets it up; the token the command line printed."""
    assert admin("tenants", "create", name)[0] == 0
    assert admin("numbers", "add", name, "(628) 555-0199")[0] == 0
    status, _, _ = admin(
        "agents", "add", name, "1", "--email", "john.doe@foo.com", "--first-name", "John",
        "--last-name", "Doe", "--agent-number", "9", "--avatar-url", "https://foobar.com/johndoe",
    )  # fmt: skip
    assert status == 0
    status, created, err = admin("credentials", "create", name, "--name", "crm")
    assert status == 0
    assert "shown only this once" in err
    return str(created["token"])


def test_a_tenant_configured_with_the_command_line_alone_serves_requests(
    admin: Admin, name: str, app_client: Any
) -> None:
    token = configure(admin, name)

    answer = app_client.post(SMS_PATH, json={**SEED_BODY, "agentId": 1}, headers=basic(name, token))

    assert answer.status_code == 200, answer.get_data(as_text=True)
    document = answer.get_json()
    assert document["outbound_number"] == "+16285550199"
    assert document["agent_info"]["name"] == "John Doe"
    assert document["agent_info"]["agent_number"] == 9


def test_tenant_documents_are_written_as_the_contract_says(
    admin: Admin, name: str, db: firestore.Client
) -> None:
    token = configure(admin, name)
    tenant = db.document(f"tenants/{name}")

    assert tenant.get().to_dict() == {
        "sms_enabled": True,
        "outbound_sms_enabled": True,
        "lang": "en",
        "session_timeout_seconds": 86400,
        "allowed_regions": ["US"],
        "rate_limit_per_second": 10,  # the platform's documented limit (SPEC 10.6)
    }
    assert tenant.collection("outbound_numbers").document("+16285550199").get().to_dict() == {
        "sms_enabled": True
    }
    assert tenant.collection("agents").document("1").get().get("email") == "john.doe@foo.com"
    [credential] = [doc.to_dict() for doc in tenant.collection("api_credentials").stream()]
    assert credential["token_sha256"] == credentials.hash_token(token)
    assert token not in json.dumps(credential, default=str)
    assert credential["enabled"] is True


def test_every_tenant_setting_can_be_set_and_shown(admin: Admin, name: str) -> None:
    assert admin("tenants", "create", name, "--no-outbound-sms-enabled")[0] == 0
    status, updated, _ = admin(
        "tenants", "update", name, "--outbound-sms-enabled", "--no-sms-enabled", "--lang", "pt-BR",
        "--session-timeout-seconds", "3600", "--allowed-regions", "us,ca",
        "--ticket-url-template", "https://crm.example.com/t/{ticket_id}",
        "--rate-limit-per-second", "0",
    )  # fmt: skip
    assert status == 0
    expected = {
        "tenant": name,
        "sms_enabled": False,
        "outbound_sms_enabled": True,
        "lang": "pt-BR",
        "session_timeout_seconds": 3600,
        "allowed_regions": ["US", "CA"],
        "ticket_url_template": "https://crm.example.com/t/{ticket_id}",
        "rate_limit_per_second": 0,
    }
    assert updated == expected
    _, shown, _ = admin("tenants", "show", name)
    assert {k: shown[k] for k in expected} == expected
    assert shown["outbound_numbers"] == shown["agents"] == shown["api_credentials"] == []

    assert admin("tenants", "update", name, "--clear-ticket-url-template")[0] == 0
    assert "ticket_url_template" not in admin("tenants", "show", name)[1]
    assert name in admin("tenants", "list")[1]


def test_a_canadian_number_is_refused_until_the_tenant_allows_canada(
    admin: Admin, name: str
) -> None:
    admin("tenants", "create", name)
    status, _, err = admin("numbers", "add", name, "+1 604 253 1234")
    assert status == 2
    assert "outside the tenant's allowed regions" in err
    admin("tenants", "update", name, "--allowed-regions", "US,CA")
    assert admin("numbers", "add", name, "+1 604 253 1234")[0] == 0
    status, numbers, _ = admin("numbers", "list", name)
    assert numbers == [{"number": "+16042531234", "sms_enabled": True}]


def test_numbers_are_listed_and_removed_whatever_format_names_them(admin: Admin, name: str) -> None:
    admin("tenants", "create", name)
    admin("numbers", "add", name, "+1 628-555-0199")
    admin("numbers", "add", name, "6285550198", "--disabled")
    _, numbers, _ = admin("numbers", "list", name)
    assert numbers == [
        {"number": "+16285550198", "sms_enabled": False},
        {"number": "+16285550199", "sms_enabled": True},
    ]
    assert admin("numbers", "remove", name, "(628) 555-0199")[0] == 0
    assert admin("numbers", "list", name)[1] == [{"number": "+16285550198", "sms_enabled": False}]
    assert admin("numbers", "remove", name, "(628) 555-0199")[0] == 1


def test_agents_are_added_updated_listed_and_removed(admin: Admin, name: str) -> None:
    admin("tenants", "create", name)
    admin("agents", "add", name, "7", "--email", "ann@foo.com", "--name", "Ann")
    admin("agents", "add", name, "12", "--email", "bob@foo.com", "--first-name", "Bob")
    assert admin("agents", "update", name, "7", "--last-name", "Lee", "--agent-number", "3")[0] == 0
    _, agents, _ = admin("agents", "list", name)
    assert [a["id"] for a in agents] == [7, 12]
    assert agents[0] == {
        "id": 7, "email": "ann@foo.com", "name": "Ann", "last_name": "Lee", "agent_number": 3
    }  # fmt: skip
    assert agents[1]["name"] == "Bob"
    assert admin("agents", "remove", name, "7")[0] == 0
    assert [a["id"] for a in admin("agents", "list", name)[1]] == [12]


def test_credentials_are_disabled_enabled_and_rotated(
    admin: Admin, name: str, app_client: Any
) -> None:
    token = configure(admin, name)
    [listed] = admin("credentials", "list", name)[1]
    assert set(listed) == {"id", "name", "enabled", "created_at", "rotated_at"}
    credential_id = listed["id"]

    def status_with(token: str) -> int:
        return int(app_client.post(SMS_PATH, json=[], headers=basic(name, token)).status_code)

    assert status_with(token) == 400  # authenticated: the body is judged
    assert admin("credentials", "disable", name, credential_id)[0] == 0
    assert status_with(token) == 401
    assert admin("credentials", "enable", name, credential_id)[0] == 0
    assert status_with(token) == 400
    status, rotated, _ = admin("credentials", "rotate", name, credential_id)
    assert status == 0
    assert status_with(token) == 401
    assert status_with(rotated["token"]) == 400
    assert admin("credentials", "list", name)[1][0]["rotated_at"] is not None


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["tenants", "create", "bad name"], "is not a subdomain"),
        (["tenants", "create", "{t}", "--lang", "english!"], "is not a language tag"),
        (["tenants", "create", "{t}", "--session-timeout-seconds", "0"], "positive whole number"),
        (["tenants", "create", "{t}", "--session-timeout-seconds", "1.5"], "positive whole number"),
        (["tenants", "create", "{t}", "--allowed-regions", "USA"], "ISO region codes"),
        (["tenants", "create", "{t}", "--ticket-url-template", "crm/{ticket_id}"], "http(s) URL"),
        (["tenants", "create", "{t}", "--ticket-url-template", "https://crm/t/"], "{ticket_id}"),
        # What the function would refuse to use (sms.tenants), the command line refuses too.
        (["tenants", "create", "{t}", "--lang", "en-a-b-c-d-e"], "is not a language tag"),
        (
            [
                "tenants",
                "create",
                "{t}",
                "--ticket-url-template",
                "https://crm.example.com/t/{ticket_id}?" + "x" * 3000,
            ],
            "at most 2048 characters",
        ),
        (["tenants", "create", "{t}", "--session-timeout-seconds", "31536001"], "from 1 to"),
        (["tenants", "create", "{t}", "--rate-limit-per-second", "1000001"], "from 0 to"),
        (["tenants", "update", "{known}"], "nothing to update"),
        (["tenants", "update", "{known}", "--allowed-regions", "CA"], "outside the tenant's"),
        (["numbers", "add", "{known}", "12345"], "not a valid phone number"),
        (["numbers", "add", "{known}", ""], "is empty"),
        (["agents", "add", "{known}", "0", "--email", "a@b.co"], "positive whole number"),
        (["agents", "add", "{known}", "x", "--email", "a@b.co"], "positive whole number"),
        (["agents", "add", "{known}", "5"], "needs --email"),
        (["agents", "add", "{known}", "5", "--email", "not-an-email"], "not an email"),
        (["agents", "add", "{known}", "5", "--email", "JOHN.doe@foo.com"], "already the email"),
        (["agents", "add", "{known}", "5", "--email", "a@b.co", "--avatar-url", "x"], "http(s)"),
        (["agents", "update", "{known}", "1"], "nothing to update"),
        (["credentials", "create", "{known}", "--name", " "], "needs a name"),
        (["credentials", "disable", "{known}", "a/b"], "not a credential id"),
    ],
)
def test_bad_input_is_refused_with_a_message_and_writes_nothing(
    admin: Admin, name: str, db: firestore.Client, argv: list[str], says: str
) -> None:
    known = f"{name}k"
    configure(admin, known)
    before = count_documents(db, known)
    argv = [part.replace("{t}", name).replace("{known}", known) for part in argv]

    status, out, err = admin(*argv)

    assert status == 2
    assert out is None
    assert says in err
    assert "nothing was written" in err
    assert count_documents(db, known) == before
    assert not db.document(f"tenants/{name}").get().exists


@pytest.mark.parametrize(
    "argv",
    [
        ["tenants", "show", "{t}"],
        ["tenants", "update", "{t}", "--lang", "fr"],
        ["numbers", "add", "{t}", "+16285550199"],
        ["agents", "add", "{t}", "1", "--email", "a@b.co"],
        ["agents", "update", "{known}", "99", "--name", "X"],
        ["agents", "remove", "{known}", "99"],
        ["credentials", "create", "{t}"],
        ["credentials", "rotate", "{known}", "nosuchid"],
        ["tenants", "create", "{known}"],
        ["numbers", "add", "{known}", "+16285550199"],
    ],
)
def test_commands_on_missing_or_existing_documents_fail_and_write_nothing(
    admin: Admin, name: str, db: firestore.Client, argv: list[str]
) -> None:
    known = f"{name}k"
    configure(admin, known)
    before = count_documents(db, known)
    argv = [part.replace("{t}", name).replace("{known}", known) for part in argv]

    status, out, err = admin(*argv)

    assert status == 1, err
    assert out is None
    assert "nothing was written" in err
    assert count_documents(db, known) == before
    assert not db.document(f"tenants/{name}").get().exists


def test_the_module_runs_as_a_program_and_explains_itself_at_every_level(
    emulator_host: str,
) -> None:
    env = {**os.environ, "FIRESTORE_EMULATOR_HOST": emulator_host, "GOOGLE_CLOUD_PROJECT": PROJECT}
    for argv in ([], ["tenants"], ["numbers"], ["agents"], ["credentials"], ["agents", "add"]):
        done = subprocess.run(
            [sys.executable, "-m", "sms.admin", *argv, "--help"],
            cwd=ROOT, env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "usage: python -m sms.admin" in done.stdout

    name = f"op{uuid.uuid4().hex[:12]}"
    done = subprocess.run(
        [sys.executable, "-m", "sms.admin", "tenants", "create", name],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["tenant"] == name


def test_a_reader_that_stops_reading_ends_the_program_without_a_traceback(
    emulator_host: str,
) -> None:
    env = {**os.environ, "FIRESTORE_EMULATOR_HOST": emulator_host, "GOOGLE_CLOUD_PROJECT": PROJECT}
    command = ["tenants", "create", f"op{uuid.uuid4().hex[:12]}"]
    reader, writer = os.pipe()
    os.close(reader)  # as `| head` does once it has its lines: every write now fails
    try:
        done = subprocess.run(
            [sys.executable, "-m", "sms.admin", *command],
            cwd=ROOT, env=env, stdout=writer, stderr=subprocess.PIPE, text=True, timeout=60,
            check=False,
        )  # fmt: skip
    finally:
        os.close(writer)

    assert done.returncode == 141, done.stderr
    assert "Traceback" not in done.stderr
    assert "BrokenPipeError" not in done.stderr


def test_opt_outs_are_added_listed_honoured_and_removed(
    admin: Admin, name: str, app_client: Any
) -> None:
    token = configure(admin, name)
    headers = basic(name, token)

    assert admin("opt-outs", "add", name, "(415) 555-0100")[:2] == (
        0,
        {"tenant": name, "opted_out": "+14155550100"},
    )
    status, listed, _ = admin("opt-outs", "list", name)
    assert status == 0
    [entry] = listed
    assert (entry["number"], entry["source"], entry["error_code"]) == (
        "+14155550100",
        "admin",
        None,
    )
    refused = app_client.post(SMS_PATH, json=SEED_BODY, headers=headers)
    assert (refused.status_code, refused.get_json()) == (
        400,
        {"message": "end_user_number has opted out"},
    )

    assert admin("opt-outs", "remove", name, "+1 415-555-0100")[:2] == (
        0,
        {"tenant": name, "opted_in": "+14155550100"},
    )
    assert admin("opt-outs", "list", name)[1] == []
    assert app_client.post(SMS_PATH, json=SEED_BODY, headers=headers).status_code == 200


def test_opt_out_commands_refuse_bad_numbers_and_missing_or_existing_entries(
    admin: Admin, name: str, db: firestore.Client
) -> None:
    configure(admin, name)
    before = count_documents(db, name)

    assert admin("opt-outs", "add", name, "12345")[0] == 2
    assert admin("opt-outs", "add", name, "+82 10-1234-5678")[0] == 2  # foreign for this tenant
    assert admin("opt-outs", "remove", name, "+14155550100")[0] == 1  # not opted out
    assert admin("opt-outs", "list", "nosuchtenant")[0] == 1
    assert count_documents(db, name) == before
    assert admin("opt-outs", "add", name, "+14155550100")[0] == 0
    status, _, err = admin("opt-outs", "add", name, "+14155550100")
    assert status == 1
    assert "exists already" in err


def test_a_sweep_with_nothing_to_settle_reports_nothing(admin: Admin) -> None:
    status, report, _ = admin("sweep")

    assert status == 0
    assert set(report) == {"counts", "settled", "sessions_ended", "events_announced"}
    assert report["events_announced"] == 0
    assert set(report["counts"]) == {
        "sent", "delivered", "undelivered", "failed", "pending", "taken", "held",
        "other_carrier",
    }  # fmt: skip


def test_a_sweep_refuses_a_carrier_it_does_not_know(admin: Admin) -> None:
    os.environ["SMS_CARRIER"] = "carrier-pigeon"

    status, _, err = admin("sweep")

    assert status == 2
    assert "SMS_CARRIER must be one of log, twilio" in err


def test_a_sweep_against_a_real_project_refuses_the_log_carrier(db: firestore.Client) -> None:
    env = {
        k: v for k, v in os.environ.items() if k not in ("FIRESTORE_EMULATOR_HOST", "SMS_CARRIER")
    }
    done = subprocess.run(
        [sys.executable, "-m", "sms.admin", "--project", "some-project", "sweep"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 2
    assert "SMS_CARRIER is 'log', which sends nothing" in done.stderr
    assert done.stdout == ""


def test_a_number_is_indexed_for_its_tenant_and_refused_to_any_other(
    admin: Admin, name: str, db: firestore.Client
) -> None:
    other = name + "b"
    assert admin("tenants", "create", name)[0] == 0
    assert admin("tenants", "create", other)[0] == 0
    assert admin("numbers", "add", name, "(628) 555-0142")[0] == 0
    assert db.document("numbers/+16285550142").get().to_dict() == {"tenant": name}
    before = count_documents(db, other)

    status, _, err = admin("numbers", "add", other, "+1 628 555 0142")

    assert status == 1
    assert f"+16285550142 belongs to tenant {name!r}" in err
    assert "nothing was written" in err
    assert count_documents(db, other) == before
    assert db.document("numbers/+16285550142").get().to_dict() == {"tenant": name}


def test_removing_a_number_frees_it_for_another_tenant(
    admin: Admin, name: str, db: firestore.Client
) -> None:
    other = name + "b"
    admin("tenants", "create", name)
    admin("tenants", "create", other)
    admin("numbers", "add", name, "+16285550143")

    assert admin("numbers", "remove", name, "+16285550143")[0] == 0
    assert not db.document("numbers/+16285550143").get().exists
    assert admin("numbers", "add", other, "+16285550143")[0] == 0
    assert db.document("numbers/+16285550143").get().to_dict() == {"tenant": other}


def test_reindex_indexes_existing_numbers_reports_conflicts_and_is_safe_to_run_twice(
    admin: Admin, name: str, db: firestore.Client
) -> None:
    other = name + "b"
    for tenant in (name, other):
        admin("tenants", "create", tenant)
    # Numbers configured before the index existed: outbound_numbers entries only.
    for tenant, number in ((name, "+16285550144"), (name, "+16285550145"), (other, "+16285550145")):
        db.document(f"tenants/{tenant}/outbound_numbers/{number}").set({"sms_enabled": True})

    status, report, err = admin("numbers", "reindex", name)
    assert status == 0
    assert report["indexed"] == [
        {"tenant": name, "number": "+16285550144"},
        {"tenant": name, "number": "+16285550145"},
    ]
    status, report, err = admin("numbers", "reindex", other)
    assert status == 1
    assert report["conflicts"] == [{"tenant": other, "number": "+16285550145", "held_by": name}]
    assert "held by another tenant" in err

    status, report, _ = admin("numbers", "reindex", name)
    assert (status, report["indexed"], len(report["already"])) == (0, [], 2)
    assert db.document("numbers/+16285550145").get().to_dict() == {"tenant": name}


# ---- Firestore not answering: each command gives up within its 10 s and says where it tried ----

STOPPED_HINT = "is the emulator running? (bash scripts/run-local.sh starts one"


def test_every_firestore_call_of_a_command_is_one_try_bounded_by_the_commands_10_s(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    client = firestore.Client(project=PROJECT)
    calls: list[tuple[str, Any, Any]] = []

    def spy(method_name: str, method: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            calls.append((method_name, kwargs.get("timeout"), kwargs.get("retry", "default")))
            return method(*args, **kwargs)

        return call

    reach.wrap_generated_calls(client, spy)
    for argv in (
        ["tenants", "create", name],
        ["tenants", "update", name, "--allowed-regions", "US,CA"],
        ["numbers", "add", name, "+16285550199"],
        ["numbers", "reindex", name],
        ["agents", "add", name, "1", "--email", "a@b.co"],
        ["agents", "update", name, "1", "--name", "A"],
        ["credentials", "create", name],
        ["opt-outs", "add", name, "+14155550100"],
        ["opt-outs", "remove", name, "+14155550100"],
        ["opt-outs", "list", name],
        ["tenants", "show", name],
        ["tenants", "list"],
        ["numbers", "remove", name, "+16285550199"],
    ):
        assert main(argv, client=client) == 0, capsys.readouterr().err

    made = {call for call, _, _ in calls}
    assert {"batch_get_documents", "run_query", "list_documents", "begin_transaction"} <= made
    assert "commit" in made
    for call, timeout, retry in calls:
        assert retry is None, (call, retry)
        assert timeout is not None, call
        assert 0 < timeout <= 10, (call, timeout)


@pytest.mark.parametrize(
    "argv",
    [
        ["tenants", "list"],
        ["tenants", "create", "x"],
        ["numbers", "add", "x", "+16285550199"],
    ],
)
def test_a_command_against_a_stopped_emulator_fails_within_10_s_naming_the_host_and_the_fix(
    argv: list[str],
) -> None:
    host = f"127.0.0.1:{free_port()}"  # nothing listens there
    env = {**os.environ, "FIRESTORE_EMULATOR_HOST": host, "GOOGLE_CLOUD_PROJECT": PROJECT}

    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "sms.admin", *argv],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    elapsed = time.monotonic() - started

    assert done.returncode == 1, done.stderr
    assert elapsed < 10, elapsed
    assert done.stdout == ""
    assert done.stderr.startswith(
        f"error: Firestore at {host} (the emulator, FIRESTORE_EMULATOR_HOST) did not answer "
        "within 10 s: "
    ), done.stderr
    assert STOPPED_HINT in done.stderr


@pytest.mark.parametrize("failing", ["begin_transaction", "commit"])
def test_a_number_added_as_the_emulator_stops_is_refused_naming_the_host_and_writes_nothing(
    emulator_host: str,
    name: str,
    db: firestore.Client,
    capsys: pytest.CaptureFixture[str],
    failing: str,
) -> None:
    client = firestore.Client(project=PROJECT)
    assert main(["tenants", "create", name], client=client) == 0
    before = count_documents(db, name)

    def stopped(_: str, method: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            raise gexc.ServiceUnavailable("failed to connect to all addresses")

        return call

    reach.wrap_generated_calls(client, stopped, (failing,))
    capsys.readouterr()

    status = main(["numbers", "add", name, "+16285550199"], client=client)

    out, err = capsys.readouterr()
    assert (status, out) == (1, "")
    assert f"Firestore at {emulator_host} (the emulator, FIRESTORE_EMULATOR_HOST)" in err
    assert STOPPED_HINT in err
    assert count_documents(db, name) == before
    assert not db.document("numbers/+16285550199").get().exists


def test_a_firestore_that_never_answers_is_given_up_on_when_the_commands_10_s_are_spent(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as silent:  # accepts connections (the kernel does), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        host = f"127.0.0.1:{silent.getsockname()[1]}"
        os.environ["FIRESTORE_EMULATOR_HOST"] = host
        client = firestore.Client(project=PROJECT)

        started = time.monotonic()
        status = main(["tenants", "show", "x"], client=client)
        elapsed = time.monotonic() - started

    _, err = capsys.readouterr()
    assert status == 1
    assert 9 < elapsed < 10.5, elapsed
    assert f"error: Firestore at {host} (the emulator, FIRESTORE_EMULATOR_HOST)" in err
    assert STOPPED_HINT in err
