"""deploy/deploy.sh and .gcloudignore, checked without a Google Cloud project.

The script runs only with --dry-run here: what it would run is read back from its output
(one command a line, "+ " then the shell-quoted words). The installed gcloud then checks that
every printed command parses, by running it with no account at all: it must stop at "no
active account", past its argument parsing, before any request. The helpers that only matter
against a real project (tolerating "already exists", retrying a binding) run on stand-ins.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "deploy" / "deploy.sh"
FAKE_PROJECT = "dry-run-project"
SA_EMAIL = f"sms-api@{FAKE_PROJECT}.iam.gserviceaccount.com"

# Every variable the script reads: cleared so that the caller's environment cannot leak in.
SETTINGS = (
    "PROJECT",
    "GOOGLE_CLOUD_PROJECT",
    "REGION",
    "FUNCTION_NAME",
    "SERVICE_ACCOUNT",
    "FIRESTORE_DATABASE",
    "FIRESTORE_LOCATION",
    "FIRESTORE_INDEXES_FILE",
    "RUNTIME",
    "MEMORY",
    "CPU",
    "TIMEOUT",
    "MIN_INSTANCES",
    "MAX_INSTANCES",
    "CONCURRENCY",
    "SMS_REQUEST_DEADLINE_SECONDS",
    "SMS_FIRESTORE_TIMEOUT_SECONDS",
    "SMS_ID_BLOCK_SIZE",
    "SECRETS",
    "BUILD_SERVICE_ACCOUNT",
)


def script_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    env.update(settings)
    return env


def deploy_sh(
    *args: str, env: dict[str, str] | None = None, **settings: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        env=env if env is not None else script_env(**settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def dry_run(**settings: str) -> list[list[str]]:
    """The commands a dry run prints, as argument lists."""
    settings.setdefault("PROJECT", FAKE_PROJECT)
    result = deploy_sh("--dry-run", **settings)
    assert result.returncode == 0, result.stderr
    return commands_of(result.stdout)


def commands_of(stdout: str) -> list[list[str]]:
    return [shlex.split(line[2:]) for line in stdout.splitlines() if line.startswith("+ ")]


def starting(commands: list[list[str]], *prefix: str) -> list[list[str]]:
    return [c for c in commands if c[: len(prefix)] == list(prefix)]


def only(commands: list[list[str]], *prefix: str) -> list[str]:
    found = starting(commands, *prefix)
    assert len(found) == 1, (prefix, found)
    return found[0]


def flags(command: list[str]) -> dict[str, str | bool]:
    """--name=value as {name: value}, a bare --name as {name: True} (the last one wins)."""
    out: dict[str, str | bool] = {}
    for word in command:
        if word.startswith("--"):
            name, sep, value = word[2:].partition("=")
            out[name] = value if sep else True
    return out


def positionals(command: list[str], skip: int) -> list[str]:
    return [w for w in command[skip:] if not w.startswith("--")]


def env_vars(deploy: list[str]) -> dict[str, str]:
    value = flags(deploy)["set-env-vars"]
    assert isinstance(value, str)
    return dict(pair.split("=", 1) for pair in value.split(","))


def declared() -> dict:
    return json.loads((ROOT / "firestore.indexes.json").read_text())


# ---- the dry run with defaults ------------------------------------------------------------


def test_dry_run_prints_only_gcloud_commands_and_the_endpoint() -> None:
    result = deploy_sh("--dry-run", PROJECT=FAKE_PROJECT)
    assert result.returncode == 0, result.stderr
    commands = commands_of(result.stdout)
    assert commands
    assert all(c[0] == "gcloud" for c in commands)
    assert all(f"--project={FAKE_PROJECT}" in c or FAKE_PROJECT in c for c in commands)
    assert "/apps/api/v1/sms" in result.stdout
    assert "Endpoint:" in result.stdout


def test_dry_run_enables_the_apis() -> None:
    enable = only(dry_run(), "gcloud", "services", "enable")
    apis = set(positionals(enable, 3))
    assert {
        "cloudfunctions.googleapis.com",
        "run.googleapis.com",
        "cloudbuild.googleapis.com",
        "artifactregistry.googleapis.com",
        "firestore.googleapis.com",
        "logging.googleapis.com",
    } <= apis
    assert "secretmanager.googleapis.com" not in apis  # only with SECRETS
    assert flags(enable)["project"] == FAKE_PROJECT


def test_dry_run_creates_a_native_database_in_the_region() -> None:
    create = only(dry_run(), "gcloud", "firestore", "databases", "create")
    assert flags(create) == {
        "database": "(default)",
        "location": "us-central1",
        "type": "firestore-native",
        "project": FAKE_PROJECT,
    }


def test_dry_run_creates_the_service_account_with_one_role() -> None:
    commands = dry_run()
    create = only(commands, "gcloud", "iam", "service-accounts", "create")
    assert positionals(create, 4) == ["sms-api"]
    assert flags(create)["project"] == FAKE_PROJECT

    binding = only(commands, "gcloud", "projects", "add-iam-policy-binding")
    assert positionals(binding, 3) == [FAKE_PROJECT]
    assert flags(binding)["member"] == f"serviceAccount:{SA_EMAIL}"
    assert flags(binding)["role"] == "roles/datastore.user"
    assert flags(binding)["condition"] == "None"  # no prompt when the policy has conditions
    # No other grant of any kind.
    assert [c for c in commands if "add-iam-policy-binding" in c] == [binding]
    assert not any("logging.logWriter" in w for c in commands for w in c)
    # The account exists before the binding names it.
    assert commands.index(create) < commands.index(binding)


def test_dry_run_deploys_the_function() -> None:
    commands = dry_run()
    deploy = only(commands, "gcloud", "functions", "deploy")
    assert positionals(deploy, 3) == ["sms-api"]
    f = flags(deploy)
    assert f["gen2"] is True
    assert f["runtime"] == "python312"
    assert f["trigger-http"] is True
    assert f["entry-point"] == "sms_api"
    assert f["allow-unauthenticated"] is True
    assert f["region"] == "us-central1"
    assert f["source"] == str(ROOT)
    assert f["service-account"] == SA_EMAIL
    assert f["project"] == FAKE_PROJECT
    assert f["memory"] == "512Mi"
    assert f["cpu"] == "1"  # concurrency above 1 needs a whole vCPU
    assert f["concurrency"] == "8"
    assert {"timeout", "min-instances", "max-instances"} <= f.keys()
    assert "set-secrets" not in f
    assert env_vars(deploy) == {
        "GOOGLE_CLOUD_PROJECT": FAKE_PROJECT,
        "FIRESTORE_DATABASE": "(default)",
        "SMS_REQUEST_DEADLINE_SECONDS": "8",
        "SMS_FIRESTORE_TIMEOUT_SECONDS": "5",
        "SMS_ID_BLOCK_SIZE": "50",
        "THREADS": "8",
    }
    # Everything the function needs exists before it is deployed; its URL is asked after.
    assert commands[-2] == deploy
    describe = commands[-1]
    assert describe[:4] == ["gcloud", "functions", "describe", "sms-api"]
    assert flags(describe)["format"] == "value(serviceConfig.uri)"
    assert flags(describe)["region"] == "us-central1"


def test_dry_run_applies_the_ttl_policy_and_the_index_exemptions() -> None:
    commands = dry_run()
    ttls = starting(commands, "gcloud", "firestore", "fields", "ttls", "update")
    ttl_fields = {
        (positionals(c, 5)[0], flags(c)["collection-group"]) for c in ttls if flags(c)["enable-ttl"]
    }
    exemptions = starting(commands, "gcloud", "firestore", "indexes", "fields", "update")
    exempt = {
        (positionals(c, 5)[0], flags(c)["collection-group"])
        for c in exemptions
        if flags(c).get("disable-indexes") is True
    }
    for c in ttls + exemptions:
        assert flags(c)["database"] == "(default)"
        assert flags(c)["project"] == FAKE_PROJECT

    # What the README promises today.
    assert ("expires_at", "idempotency_keys") in ttl_fields
    assert {
        ("expires_at", "idempotency_keys"),
        ("body", "idempotency_keys"),
        ("text", "messages"),
    } <= exempt
    # And exactly what firestore.indexes.json declares, whatever it declares.
    overrides = declared()["fieldOverrides"]
    assert ttl_fields == {(o["fieldPath"], o["collectionGroup"]) for o in overrides if o.get("ttl")}
    assert exempt == {
        (o["fieldPath"], o["collectionGroup"]) for o in overrides if o.get("indexes") == []
    }
    composite = starting(commands, "gcloud", "firestore", "indexes", "composite", "create")
    assert len(composite) == len(declared()["indexes"])
    # The database exists before its fields are configured.
    database = only(commands, "gcloud", "firestore", "databases", "create")
    assert all(commands.index(database) < commands.index(c) for c in ttls + exemptions)


def test_dry_run_never_calls_gcloud(tmp_path: Path) -> None:
    """Existence checks are skipped: a gcloud that fails loudly is never reached."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    called = tmp_path / "gcloud-was-called"
    fake = bin_dir / "gcloud"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {shlex.quote(str(called))}\nexit 97\n')
    fake.chmod(0o755)
    env = script_env(PROJECT=FAKE_PROJECT)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    result = deploy_sh("--dry-run", env=env)
    assert result.returncode == 0, result.stderr
    assert not called.exists(), called.read_text()
    # And so the commands that create things are printed as on an empty project.
    commands = commands_of(result.stdout)
    assert starting(commands, "gcloud", "firestore", "databases", "create")
    assert starting(commands, "gcloud", "iam", "service-accounts", "create")


# ---- overrides ----------------------------------------------------------------------------


def test_environment_overrides_change_the_commands() -> None:
    commands = dry_run(
        PROJECT="",
        GOOGLE_CLOUD_PROJECT="other-project",
        REGION="europe-west1",
        FUNCTION_NAME="sms-api-staging",
        SERVICE_ACCOUNT="sms-staging",
        FIRESTORE_DATABASE="sms-staging",
        FIRESTORE_LOCATION="eur3",
        MEMORY="1Gi",
        CPU="2",
        TIMEOUT="30s",
        MIN_INSTANCES="1",
        MAX_INSTANCES="5",
        CONCURRENCY="16",
        SMS_REQUEST_DEADLINE_SECONDS="6",
        SMS_FIRESTORE_TIMEOUT_SECONDS="2.5",
        SMS_ID_BLOCK_SIZE="200",
    )
    email = "sms-staging@other-project.iam.gserviceaccount.com"
    assert all(flags(c).get("project") == "other-project" or "other-project" in c for c in commands)

    database = only(commands, "gcloud", "firestore", "databases", "create")
    assert flags(database)["database"] == "sms-staging"
    assert flags(database)["location"] == "eur3"
    for c in starting(commands, "gcloud", "firestore", "indexes") + starting(
        commands, "gcloud", "firestore", "fields"
    ):
        assert flags(c)["database"] == "sms-staging"

    account = only(commands, "gcloud", "iam", "service-accounts", "create")
    assert positionals(account, 4) == ["sms-staging"]
    binding = only(commands, "gcloud", "projects", "add-iam-policy-binding")
    assert flags(binding)["member"] == f"serviceAccount:{email}"

    deploy = only(commands, "gcloud", "functions", "deploy")
    assert positionals(deploy, 3) == ["sms-api-staging"]
    f = flags(deploy)
    assert (f["region"], f["service-account"]) == ("europe-west1", email)
    assert (f["memory"], f["cpu"], f["timeout"]) == ("1Gi", "2", "30s")
    assert (f["min-instances"], f["max-instances"], f["concurrency"]) == ("1", "5", "16")
    assert env_vars(deploy) == {
        "GOOGLE_CLOUD_PROJECT": "other-project",
        "FIRESTORE_DATABASE": "sms-staging",
        "SMS_REQUEST_DEADLINE_SECONDS": "6",
        "SMS_FIRESTORE_TIMEOUT_SECONDS": "2.5",
        "SMS_ID_BLOCK_SIZE": "200",
        "THREADS": "16",
    }
    describe = only(commands, "gcloud", "functions", "describe")
    assert positionals(describe, 3) == ["sms-api-staging"]
    assert flags(describe)["region"] == "europe-west1"


def test_firestore_location_defaults_to_the_region() -> None:
    database = only(dry_run(REGION="asia-northeast1"), "gcloud", "firestore", "databases", "create")
    assert flags(database)["location"] == "asia-northeast1"


def test_secrets_are_set_and_each_secret_readable_by_the_function() -> None:
    secrets = "WEBHOOK_TOKEN=webhook-token:latest,OTHER=projects/vault-project/secrets/shared:3"
    commands = dry_run(SECRETS=secrets)
    assert "secretmanager.googleapis.com" in only(commands, "gcloud", "services", "enable")
    assert flags(only(commands, "gcloud", "functions", "deploy"))["set-secrets"] == secrets
    grants = starting(commands, "gcloud", "secrets", "add-iam-policy-binding")
    assert sorted((c[3], flags(c)["project"]) for c in grants) == [
        ("shared", "vault-project"),
        ("webhook-token", FAKE_PROJECT),
    ]
    for c in grants:
        assert flags(c)["role"] == "roles/secretmanager.secretAccessor"
        assert flags(c)["member"] == f"serviceAccount:{SA_EMAIL}"
    # The project-wide grant is still the single datastore.user one.
    assert len(starting(commands, "gcloud", "projects", "add-iam-policy-binding")) == 1


def test_build_service_account_is_passed_in_the_form_gcloud_wants() -> None:
    deploy = only(
        dry_run(BUILD_SERVICE_ACCOUNT=f"builder@{FAKE_PROJECT}.iam.gserviceaccount.com"),
        "gcloud",
        "functions",
        "deploy",
    )
    assert flags(deploy)["build-service-account"] == (
        f"projects/{FAKE_PROJECT}/serviceAccounts/builder@{FAKE_PROJECT}.iam.gserviceaccount.com"
    )


def test_composite_indexes_and_field_indexes_of_a_non_empty_file(tmp_path: Path) -> None:
    spec = {
        "indexes": [
            {
                "collectionGroup": "chats",
                "queryScope": "COLLECTION_GROUP",
                "fields": [
                    {"fieldPath": "status", "order": "ASCENDING"},
                    {"fieldPath": "tags", "arrayConfig": "CONTAINS"},
                    {"fieldPath": "created_at", "order": "DESCENDING"},
                ],
            },
            {
                "collectionGroup": "end_users",
                "fields": [
                    {"fieldPath": "phone", "order": "ASCENDING"},
                    {"fieldPath": "created_at", "order": "ASCENDING"},
                ],
            },
        ],
        "fieldOverrides": [
            {
                "collectionGroup": "chats",
                "fieldPath": "updated_at",
                "indexes": [
                    {"order": "DESCENDING", "queryScope": "COLLECTION"},
                    {"arrayConfig": "CONTAINS", "queryScope": "COLLECTION"},
                ],
            },
            {"collectionGroup": "events", "fieldPath": "expire_at", "ttl": True},
        ],
    }
    path = tmp_path / "indexes.json"
    path.write_text(json.dumps(spec))
    commands = dry_run(FIRESTORE_INDEXES_FILE=str(path))

    composite = starting(commands, "gcloud", "firestore", "indexes", "composite", "create")
    assert composite == [
        [
            "gcloud",
            "firestore",
            "indexes",
            "composite",
            "create",
            "--collection-group=chats",
            "--query-scope=collection-group",
            "--field-config=field-path=status,order=ascending",
            "--field-config=field-path=tags,array-config=contains",
            "--field-config=field-path=created_at,order=descending",
            "--database=(default)",
            f"--project={FAKE_PROJECT}",
        ],
        [
            "gcloud",
            "firestore",
            "indexes",
            "composite",
            "create",
            "--collection-group=end_users",
            "--query-scope=collection",
            "--field-config=field-path=phone,order=ascending",
            "--field-config=field-path=created_at,order=ascending",
            "--database=(default)",
            f"--project={FAKE_PROJECT}",
        ],
    ]
    field = only(commands, "gcloud", "firestore", "indexes", "fields", "update")
    assert field[5:] == [
        "updated_at",
        "--collection-group=chats",
        "--index=order=descending",
        "--index=array-config=contains",
        "--database=(default)",
        f"--project={FAKE_PROJECT}",
    ]
    ttl = only(commands, "gcloud", "firestore", "fields", "ttls", "update")
    assert ttl[5:7] == ["expire_at", "--collection-group=events"]
    assert "--enable-ttl" in ttl


@pytest.mark.parametrize(
    "spec",
    [
        "not json",
        {"indexes": [{"collectionGroup": "a", "fields": [{"fieldPath": "v", "order": "UP"}]}]},
        {
            "indexes": [
                {
                    "collectionGroup": "a",
                    "fields": [
                        {"fieldPath": "v", "vectorConfig": {"dimension": 3, "flat": {}}},
                        {"fieldPath": "w", "order": "ASCENDING"},
                    ],
                }
            ]
        },
        {
            "fieldOverrides": [
                {
                    "collectionGroup": "a",
                    "fieldPath": "f",
                    "indexes": [{"order": "ASCENDING", "queryScope": "COLLECTION_GROUP"}],
                }
            ]
        },
    ],
)
def test_an_index_file_gcloud_cannot_apply_stops_before_any_command(
    tmp_path: Path, spec: object
) -> None:
    path = tmp_path / "indexes.json"
    path.write_text(spec if isinstance(spec, str) else json.dumps(spec))
    result = deploy_sh("--dry-run", PROJECT=FAKE_PROJECT, FIRESTORE_INDEXES_FILE=str(path))
    assert result.returncode != 0
    assert str(path) in result.stderr
    assert commands_of(result.stdout) == []


# ---- refusals and help --------------------------------------------------------------------


@pytest.mark.parametrize("args", [("--dry-run",), ()])
def test_no_project_is_refused_with_a_clear_message(args: tuple[str, ...]) -> None:
    result = deploy_sh(*args)
    assert result.returncode != 0
    assert "no project given" in result.stderr
    assert "PROJECT" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SMS_ID_BLOCK_SIZE", "0"),
        ("SMS_ID_BLOCK_SIZE", "2.5"),
        ("SMS_REQUEST_DEADLINE_SECONDS", "-1"),
        ("SMS_FIRESTORE_TIMEOUT_SECONDS", "soon"),
        ("CONCURRENCY", "0"),
        ("SERVICE_ACCOUNT", "Not An Id"),
        ("PROJECT", "Not A Project"),
    ],
)
def test_bad_settings_are_refused_before_any_command(name: str, value: str) -> None:
    settings = {"PROJECT": FAKE_PROJECT, name: value}
    result = deploy_sh("--dry-run", **settings)
    assert result.returncode != 0
    assert name in result.stderr
    assert result.stdout == ""


def test_unknown_argument_is_refused() -> None:
    result = deploy_sh("--dryrun", PROJECT=FAKE_PROJECT)
    assert result.returncode == 2
    assert "--dryrun" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_explains_the_options_and_every_setting(flag: str) -> None:
    result = deploy_sh(flag)
    assert result.returncode == 0
    assert "--dry-run" in result.stdout
    for name in SETTINGS:
        assert name in result.stdout, name
    assert "roles/datastore.user" in result.stdout


def test_script_is_executable_bash() -> None:
    assert os.access(SCRIPT, os.X_OK)
    assert SCRIPT.read_text().startswith("#!/usr/bin/env bash\n")
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shellcheck_is_clean() -> None:
    result = subprocess.run(
        ["shellcheck", str(SCRIPT)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout


# ---- the printed commands are what gcloud accepts -----------------------------------------


def offline_gcloud_env(config_dir: Path) -> dict[str, str]:
    """gcloud with no account, no metadata server and a proxy that refuses: it cannot call."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CLOUDSDK_", "GOOGLE_")) and k not in SETTINGS
    }
    env.update(
        CLOUDSDK_CONFIG=str(config_dir),
        CLOUDSDK_CORE_DISABLE_PROMPTS="1",
        CLOUDSDK_CORE_CHECK_GCE_METADATA="false",
        CLOUDSDK_PROXY_TYPE="http",
        CLOUDSDK_PROXY_ADDRESS="127.0.0.1",
        CLOUDSDK_PROXY_PORT="9",
    )
    return env


def test_gcloud_accepts_every_printed_command(tmp_path: Path) -> None:
    """Each command parses: gcloud gets as far as asking for an account, then stops."""
    index_file = tmp_path / "indexes.json"
    index_file.write_text(
        json.dumps(
            {
                "indexes": [
                    {
                        "collectionGroup": "chats",
                        "queryScope": "COLLECTION_GROUP",
                        "fields": [
                            {"fieldPath": "status", "order": "ASCENDING"},
                            {"fieldPath": "tags", "arrayConfig": "CONTAINS"},
                        ],
                    }
                ],
                "fieldOverrides": [
                    *declared()["fieldOverrides"],
                    {
                        "collectionGroup": "chats",
                        "fieldPath": "updated_at",
                        "indexes": [{"order": "ASCENDING"}, {"arrayConfig": "CONTAINS"}],
                    },
                ],
            }
        )
    )
    commands = dry_run(
        FIRESTORE_INDEXES_FILE=str(index_file),
        SECRETS="WEBHOOK_TOKEN=webhook-token:latest",
        BUILD_SERVICE_ACCOUNT=f"builder@{FAKE_PROJECT}.iam.gserviceaccount.com",
    )
    assert len(commands) >= 12
    env = offline_gcloud_env(tmp_path / "gcloud-config")

    def attempt(command: list[str]) -> tuple[list[str], int, str]:
        result = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=120, check=False
        )
        return command, result.returncode, result.stderr

    with ThreadPoolExecutor(max_workers=6) as pool:
        for command, returncode, stderr in pool.map(attempt, commands):
            assert returncode != 0, command
            assert "do not currently have an active account" in stderr, (command, stderr)


# ---- helpers that only act against a real project, on stand-ins ---------------------------


def helpers(snippet: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Source the script (which defines its functions and runs nothing) and run a snippet."""
    program = f"source {shlex.quote(str(SCRIPT))}\nDRY_RUN=0\n{snippet}"
    return subprocess.run(
        ["bash", "-c", program],
        env=script_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_sourcing_the_script_runs_nothing(tmp_path: Path) -> None:
    result = helpers("echo sourced", tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "sourced\n"
    assert result.stderr == ""


def test_create_counts_already_exists_as_done(tmp_path: Path) -> None:
    result = helpers(
        "run_create sh -c 'echo \"ERROR: ALREADY_EXISTS: index already exists\" >&2; exit 1'\n"
        "echo ok=$?\n"
        "run_create sh -c 'echo \"ERROR: PERMISSION_DENIED\" >&2; exit 3' || echo failed=$?\n",
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["ok=0", "failed=3"]
    assert "(already exists)" in result.stderr
    assert "PERMISSION_DENIED" in result.stderr


def test_binding_is_retried_only_while_the_account_is_unknown(tmp_path: Path) -> None:
    result = helpers(
        "RETRY_SECONDS=0\n"
        "tries=$PWD/tries\n"
        'flaky() { echo x >> "$tries"; [ $(wc -l < "$tries") -ge 3 ] && return 0;'
        " echo 'ERROR: Service account sa@p.iam.gserviceaccount.com does not exist.' >&2;"
        " return 1; }\n"
        'bind flaky && echo bound after $(wc -l < "$tries")\n'
        "denied() { echo y >> \"$PWD/denied\"; echo 'ERROR: PERMISSION_DENIED' >&2; return 1; }\n"
        'bind denied || echo refused after $(wc -l < "$PWD/denied")\n',
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert [" ".join(line.split()) for line in result.stdout.splitlines()] == [
        "bound after 3",
        "refused after 1",
    ]


def test_fields_already_configured_are_left_alone(tmp_path: Path) -> None:
    """field_is reads the field as gcloud describes it (a stand-in gcloud here)."""
    cases = {
        "ttl-active": ({"ttlConfig": {"state": "ACTIVE"}}, "ttl", True),
        "ttl-creating": ({"ttlConfig": {"state": "CREATING"}}, "ttl", True),
        "ttl-off": ({"indexConfig": {"usesAncestorConfig": True}}, "ttl", False),
        "exempt": ({"indexConfig": {"ancestorField": "x"}}, "noindex", True),
        "inherited": (
            {"indexConfig": {"usesAncestorConfig": True, "indexes": [{"order": "ASCENDING"}]}},
            "noindex",
            False,
        ),
        "unreadable": (None, "noindex", False),
    }
    lines = ["FIRESTORE_DATABASE='(default)' PROJECT=p"]
    for name, (field, kind, _) in cases.items():
        body = "return 1" if field is None else f"echo {shlex.quote(json.dumps(field))}"
        lines.append(f"gcloud() {{ {body}; }}")
        lines.append(f"field_is {kind} f --collection-group=g && echo {name}=yes || echo {name}=no")
    result = helpers("\n".join(lines) + "\n", tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"{name}={'yes' if done else 'no'}" for name, (_, _, done) in cases.items()
    ]


# ---- what gcloud uploads ------------------------------------------------------------------


def files_for_upload(tmp_path: Path) -> list[str]:
    result = subprocess.run(
        ["gcloud", "meta", "list-files-for-upload"],
        cwd=ROOT,
        env=offline_gcloud_env(tmp_path / "gcloud-config"),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return sorted(Path(line).as_posix() for line in result.stdout.splitlines() if line)


def test_upload_is_the_function_and_nothing_else(tmp_path: Path) -> None:
    files = files_for_upload(tmp_path)
    assert {"main.py", "requirements.txt", "sms/api.py", "sms/__init__.py"} <= set(files)
    for excluded in ("tests/", "scripts/", "bench/", "deploy/", "sms/devtools/", ".ci/"):
        assert not [f for f in files if f.startswith(excluded)], excluded
    assert not [f for f in files if f.startswith((".git/", ".venv/")) or "__pycache__" in f]
    # Exactly the entry point, its requirements and the modules of the package sms, but for
    # its tools that never run in the function.
    package = sorted(
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "sms").rglob("*.py")
        if p.parent.name not in ("devtools", "admin")
    )
    assert files == sorted(["main.py", "requirements.txt", *package])


def test_uploaded_files_alone_serve_the_function(tmp_path: Path) -> None:
    """Copied alone into an empty directory, the upload imports and builds the app."""
    source = tmp_path / "source"
    for name in files_for_upload(tmp_path):
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
        if name.endswith(".py"):
            text = target.read_text()
            assert not re.search(r"^\s*(from|import)\s+sms\.(devtools|admin)\b", text, re.M), name
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    check = (
        "import functions_framework, sms, sys\n"
        "app = functions_framework.create_app(target='sms_api', source='main.py')\n"
        "assert sms.__file__.startswith(sys.argv[1]), sms.__file__\n"
        "print(sorted(m for m in sys.modules if m.startswith('sms.')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", check, str(source)],
        cwd=source,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "sms.api" in result.stdout
