"""deploy/firestore_plan.py: firestore.indexes.json as gcloud steps, and what it refuses.

Its functions are called directly for each kind of step and each refusal; the command line
runs as deploy.sh runs it (python3 FILE, python3 --field-is KIND < JSON), on this Python and
on Python 3.8 where the machine has it, since operators run it with their own python3.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROGRAM = ROOT / "deploy" / "firestore_plan.py"
SEP = "\x1f"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("firestore_plan", PROGRAM)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


plan_module = load()
plan = plan_module.plan
Refused = plan_module.Refused


def run(
    *args: str, stdin: str = "", python: str = sys.executable
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [python, str(PROGRAM), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def steps_of(stdout: str) -> list[list[str]]:
    return [line.split(SEP) for line in stdout.splitlines()]


# ---- every kind of step -------------------------------------------------------------------


def test_a_composite_index_is_one_create_with_its_fields_in_order() -> None:
    spec = {
        "indexes": [
            {
                "collectionGroup": "chats",
                "queryScope": "COLLECTION",
                "fields": [
                    {"fieldPath": "status", "order": "ASCENDING"},
                    {"fieldPath": "tags", "arrayConfig": "CONTAINS"},
                    {"fieldPath": "created_at", "order": "DESCENDING"},
                ],
            },
            {
                "collectionGroup": "messages",
                "queryScope": "COLLECTION_GROUP",
                "fields": [
                    {"fieldPath": "status", "order": "ASCENDING"},
                    {"fieldPath": "claimed_at", "order": "ASCENDING"},
                ],
            },
        ]
    }
    assert plan(spec) == [
        [
            "index",
            "--collection-group=chats",
            "--query-scope=collection",
            "--field-config=field-path=status,order=ascending",
            "--field-config=field-path=tags,array-config=contains",
            "--field-config=field-path=created_at,order=descending",
        ],
        [
            "index",
            "--collection-group=messages",
            "--query-scope=collection-group",
            "--field-config=field-path=status,order=ascending",
            "--field-config=field-path=claimed_at,order=ascending",
        ],
    ]


def test_an_index_without_a_scope_is_a_collection_index() -> None:
    spec = {
        "indexes": [
            {
                "collectionGroup": "end_users",
                "fields": [
                    {"fieldPath": "phone", "order": "ASCENDING"},
                    {"fieldPath": "created_at", "order": "ASCENDING"},
                ],
            }
        ]
    }
    assert plan(spec)[0][:3] == [
        "index",
        "--collection-group=end_users",
        "--query-scope=collection",
    ]


def test_field_overrides_become_ttl_noindex_and_fieldix_steps() -> None:
    spec = {
        "fieldOverrides": [
            {"collectionGroup": "events", "fieldPath": "expires_at", "ttl": True, "indexes": []},
            {"collectionGroup": "events", "fieldPath": "body", "indexes": []},
            {"collectionGroup": "deliveries", "fieldPath": "expires_at", "ttl": True},
            {
                "collectionGroup": "chats",
                "fieldPath": "updated_at",
                "indexes": [
                    {"order": "DESCENDING", "queryScope": "COLLECTION"},
                    {"arrayConfig": "CONTAINS"},
                ],
            },
            # Neither TTL nor indexes: nothing to do.
            {"collectionGroup": "chats", "fieldPath": "note", "ttl": False},
        ]
    }
    assert plan(spec) == [
        ["ttl", "expires_at", "--collection-group=events"],
        ["noindex", "expires_at", "--collection-group=events"],
        ["noindex", "body", "--collection-group=events"],
        ["ttl", "expires_at", "--collection-group=deliveries"],
        [
            "fieldix",
            "updated_at",
            "--collection-group=chats",
            "--index=order=descending",
            "--index=array-config=contains",
        ],
    ]


def test_indexes_come_before_field_overrides_and_an_empty_file_plans_nothing() -> None:
    index = {
        "collectionGroup": "a",
        "fields": [
            {"fieldPath": "x", "order": "ASCENDING"},
            {"fieldPath": "y", "order": "ASCENDING"},
        ],
    }
    override = {"collectionGroup": "a", "fieldPath": "z", "indexes": []}
    kinds = [step[0] for step in plan({"fieldOverrides": [override], "indexes": [index]})]
    assert kinds == ["index", "noindex"]
    assert plan({}) == []
    assert plan({"indexes": [], "fieldOverrides": []}) == []


def test_the_projects_file_plans_every_declaration() -> None:
    declared = json.loads((ROOT / "firestore.indexes.json").read_text())
    steps = plan(declared)
    assert len([s for s in steps if s[0] == "index"]) == len(declared["indexes"])
    overrides = declared["fieldOverrides"]
    assert len([s for s in steps if s[0] == "ttl"]) == len([o for o in overrides if o.get("ttl")])
    assert len([s for s in steps if s[0] == "noindex"]) == len(
        [o for o in overrides if o.get("indexes") == []]
    )


# ---- every refusal ------------------------------------------------------------------------

TWO_FIELDS = [{"fieldPath": "a", "order": "ASCENDING"}, {"fieldPath": "b", "order": "ASCENDING"}]


def index_with(**entry: object) -> dict[str, object]:
    return {"indexes": [{"collectionGroup": "g", "fields": TWO_FIELDS, **entry}]}


def field_with(field: dict[str, object]) -> dict[str, object]:
    return index_with(fields=[field, TWO_FIELDS[1]])


def override_with(**entry: object) -> dict[str, object]:
    return {"fieldOverrides": [{"collectionGroup": "g", "fieldPath": "f", **entry}]}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ([], "must be a JSON object"),
        ({"indexes": {}}, '"indexes" must be a list'),
        ({"indexes": ["chats"]}, "indexes[0] must be an object"),
        (
            index_with(collectionGroup=""),
            "indexes[0].collectionGroup must be a non-empty string, got ''",
        ),
        (
            index_with(collectionGroup=7),
            "indexes[0].collectionGroup must be a non-empty string, got 7",
        ),
        (
            index_with(queryScope="DATABASE"),
            "indexes[0].queryScope must be COLLECTION or COLLECTION_GROUP, got 'DATABASE'",
        ),
        (index_with(queryScope=["COLLECTION"]), "indexes[0].queryScope must be COLLECTION or"),
        (index_with(fields=TWO_FIELDS[:1]), "indexes[0].fields must list at least two fields"),
        (index_with(fields="a,b"), "indexes[0].fields must list at least two fields"),
        (index_with(fields=["a", "b"]), "indexes[0].fields[0] must be an object"),
        (
            field_with({"order": "ASCENDING"}),
            "indexes[0].fields[0].fieldPath must be a non-empty string, got None",
        ),
        (
            field_with({"fieldPath": "a,b", "order": "ASCENDING"}),
            "indexes[0].fields[0].fieldPath cannot contain a comma for gcloud: 'a,b'",
        ),
        (
            field_with({"fieldPath": "a", "order": "UP"}),
            "indexes[0].fields[0]: need exactly one of order ASCENDING/DESCENDING or"
            " arrayConfig CONTAINS, got {'fieldPath': 'a', 'order': 'UP'}",
        ),
        (field_with({"fieldPath": "a"}), "indexes[0].fields[0]: need exactly one of"),
        (
            field_with({"fieldPath": "a", "order": "ASCENDING", "arrayConfig": "CONTAINS"}),
            "indexes[0].fields[0]: need exactly one of",
        ),
        (
            field_with({"fieldPath": "a", "arrayConfig": "ANY"}),
            "indexes[0].fields[0]: need exactly",
        ),
        (
            field_with({"fieldPath": "a", "order": ["ASCENDING"]}),
            "indexes[0].fields[0]: need exactly",
        ),
        (
            field_with({"fieldPath": "v", "vectorConfig": {"dimension": 3, "flat": {}}}),
            "indexes[0].fields[0]: need exactly one of",
        ),
        ({"fieldOverrides": {}}, '"fieldOverrides" must be a list'),
        ({"fieldOverrides": [None]}, "fieldOverrides[0] must be an object"),
        (
            {"fieldOverrides": [{"fieldPath": "f", "indexes": []}]},
            "fieldOverrides[0].collectionGroup must be a non-empty string, got None",
        ),
        (
            {"fieldOverrides": [{"collectionGroup": "g", "indexes": []}]},
            "fieldOverrides[0].fieldPath must be a non-empty string, got None",
        ),
        (override_with(ttl="yes"), "fieldOverrides[0].ttl must be true or false"),
        (override_with(indexes={}), "fieldOverrides[0].indexes must be a list"),
        (override_with(indexes=["ASCENDING"]), "fieldOverrides[0].indexes[0] must be an object"),
        (
            override_with(indexes=[{"order": "ASCENDING", "queryScope": "COLLECTION_GROUP"}]),
            "fieldOverrides[0].indexes[0]: gcloud sets only collection-scope single-field indexes",
        ),
        (
            override_with(indexes=[{"order": "SIDEWAYS"}]),
            "fieldOverrides[0].indexes[0]: need exactly one of order ASCENDING/DESCENDING or"
            " arrayConfig CONTAINS, got {'order': 'SIDEWAYS'}",
        ),
    ],
)
def test_what_gcloud_cannot_apply_is_refused_with_a_message_naming_it(
    spec: object, message: str
) -> None:
    with pytest.raises(Refused) as refused:
        plan(spec)
    assert str(refused.value).startswith(message)


# ---- the separator ------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["a\x1fb", "a\nb", "\x1f"])
def test_a_value_that_would_split_a_step_or_a_line_is_refused(bad: str) -> None:
    for spec in (
        index_with(collectionGroup=bad),
        field_with({"fieldPath": bad, "order": "ASCENDING"}),
        {"fieldOverrides": [{"collectionGroup": bad, "fieldPath": "f", "indexes": []}]},
        {"fieldOverrides": [{"collectionGroup": "g", "fieldPath": bad, "indexes": []}]},
    ):
        with pytest.raises(Refused, match="must be a non-empty string"):
            plan(spec)


def test_words_are_joined_by_the_separator_alone_so_spaces_stay_inside_a_word(
    tmp_path: Path,
) -> None:
    """Field paths may hold spaces and quotes (`a b`): each is still one word of its step."""
    spec = {
        "indexes": [
            {
                "collectionGroup": "chats",
                "fields": [
                    {"fieldPath": "`a b`", "order": "ASCENDING"},
                    {"fieldPath": "c.d", "order": "DESCENDING"},
                ],
            }
        ],
        "fieldOverrides": [{"collectionGroup": "chats", "fieldPath": "`x y`", "ttl": True}],
    }
    path = tmp_path / "indexes.json"
    path.write_text(json.dumps(spec))
    result = run(str(path))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout == (
        "index\x1f--collection-group=chats\x1f--query-scope=collection"
        "\x1f--field-config=field-path=`a b`,order=ascending"
        "\x1f--field-config=field-path=c.d,order=descending\n"
        "ttl\x1f`x y`\x1f--collection-group=chats\n"
    )
    # deploy.sh reads each line back into its words with IFS=$'\x1f'.
    words = subprocess.run(
        ["bash", "-c", "while IFS=$'\\x1f' read -r -a w; do echo \"${#w[@]}:${w[1]}\"; done"],
        input=result.stdout,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert words.splitlines() == ["5:--collection-group=chats", "3:`x y`"]


# ---- the command line ---------------------------------------------------------------------


def test_the_command_line_prints_the_plan_of_the_projects_file() -> None:
    result = run(str(ROOT / "firestore.indexes.json"))
    assert result.returncode == 0, result.stderr
    declared = json.loads((ROOT / "firestore.indexes.json").read_text())
    assert steps_of(result.stdout) == plan(declared)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("not json", "not valid JSON: Expecting value: line 1 column 1 (char 0)"),
        (b"\xff\xfe", "not valid JSON: "),
        ('{"indexes": {}}', '"indexes" must be a list'),
    ],
)
def test_a_refused_file_prints_nothing_and_says_why_naming_the_file(
    tmp_path: Path, content: str | bytes, reason: str
) -> None:
    path = tmp_path / "indexes.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    result = run(str(path))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"firestore_plan.py: {path}: {reason}")
    assert result.stderr.count("\n") == 1  # one line, no traceback


def test_a_missing_file_is_refused_without_a_traceback(tmp_path: Path) -> None:
    result = run(str(tmp_path / "none.json"))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"firestore_plan.py: {tmp_path / 'none.json'}: cannot be read: No such file or directory\n"
    )


@pytest.mark.parametrize("args", [(), ("a.json", "b.json"), ("--field-is",), ("--field-is", "x")])
def test_a_wrong_command_line_prints_the_usage(args: tuple[str, ...]) -> None:
    result = run(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("usage: firestore_plan.py FILE\n")


@pytest.mark.parametrize(
    ("check", "described", "done"),
    [
        ("ttl", {"ttlConfig": {"state": "ACTIVE"}}, True),
        ("ttl", {"ttlConfig": {"state": "CREATING"}}, True),
        ("ttl", {"ttlConfig": {"state": "NEEDS_REPAIR"}}, False),
        ("ttl", {"indexConfig": {"usesAncestorConfig": True}}, False),
        ("ttl", {"ttlConfig": "ACTIVE"}, False),
        ("noindex", {"indexConfig": {"ancestorField": "x"}}, True),
        ("noindex", {"indexConfig": {}}, True),
        ("noindex", {}, True),
        ("noindex", {"indexConfig": {"usesAncestorConfig": True}}, False),
        ("noindex", {"indexConfig": {"indexes": [{"order": "ASCENDING"}]}}, False),
        ("noindex", [], False),
        ("noindex", None, False),
    ],
)
def test_field_is_reads_the_field_as_gcloud_describes_it(
    check: str, described: object, done: bool
) -> None:
    assert plan_module.field_is(check, described) is done
    result = run("--field-is", check, stdin=json.dumps(described))
    assert (result.returncode, result.stdout, result.stderr) == (0 if done else 1, "", "")


@pytest.mark.parametrize("stdin", ["", "not json", "ERROR: NOT_FOUND"])
def test_field_is_says_not_done_when_the_describe_gave_nothing_readable(stdin: str) -> None:
    result = run("--field-is", "ttl", stdin=stdin)
    assert (result.returncode, result.stdout, result.stderr) == (1, "", "")


# ---- the oldest Python operators may have -------------------------------------------------


def oldest_python() -> str | None:
    """Python 3.8 where this machine has it (pyenv or the PATH), else None."""
    for candidate in (
        shutil.which("python3.8"),
        *sorted(str(p) for p in Path.home().glob(".pyenv/versions/3.8*/bin/python3.8")),
    ):
        if not candidate:
            continue
        version = subprocess.run([candidate, "--version"], capture_output=True, check=False)
        if version.returncode == 0:
            return candidate
    return None


def test_python_3_8_prints_the_same_plan_and_refusals(tmp_path: Path) -> None:
    python = oldest_python()
    if python is None:
        pytest.skip("no Python 3.8 on this machine")
    project_file = str(ROOT / "firestore.indexes.json")
    assert run(project_file, python=python).stdout == run(project_file).stdout
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(override_with(indexes=[{"order": "UP"}])))
    old, new = run(str(bad), python=python), run(str(bad))
    assert (old.returncode, old.stdout, old.stderr) == (new.returncode, new.stdout, new.stderr)
    described = json.dumps({"ttlConfig": {"state": "ACTIVE"}})
    assert run("--field-is", "ttl", stdin=described, python=python).returncode == 0
