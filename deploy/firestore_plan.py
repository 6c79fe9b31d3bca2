#!/usr/bin/env python3
"""firestore.indexes.json as the gcloud calls that apply it; deploy/deploy.sh runs these.

    python3 deploy/firestore_plan.py FILE
        Prints one line per gcloud call, its words separated by \\x1f (which no declaration
        may contain, so a word never splits):
            index    arguments of `gcloud firestore indexes composite create`
            ttl      FIELD --collection-group=GROUP                   ("ttl": true)
            noindex  FIELD --collection-group=GROUP                   ("indexes": [])
            fieldix  FIELD --collection-group=GROUP --index=... ...   ("indexes": [...])
        Composite indexes first, then each field override, in the file's order. A file
        gcloud cannot apply is refused: exit status 1, the reason on stderr, nothing on
        stdout, so that deploy.sh stops before its first command.

    python3 deploy/firestore_plan.py --field-is ttl|noindex < FIELD_JSON
        Exit status 0 when the field, as `gcloud firestore indexes fields describe
        --format=json` prints it, already is as that step wants it: its TTL policy on or
        being turned on (ttl), or no single-field index at all (noindex); 1 otherwise,
        unreadable input included, so that the step runs.

Standard library only, and Python 3.8 or later: operators run it with their own python3.
"""

from __future__ import annotations

import json
import sys

SEP = "\x1f"
SCOPES = {"COLLECTION": "collection", "COLLECTION_GROUP": "collection-group"}
ORDERS = {"ASCENDING": "ascending", "DESCENDING": "descending"}
FIELD_CHECKS = ("ttl", "noindex")
PROG = "firestore_plan.py"
USAGE = """\
usage: firestore_plan.py FILE
       firestore_plan.py --field-is ttl|noindex < FIELD_JSON"""


class Refused(Exception):
    """A declaration gcloud cannot apply; the message names it and says why."""


def text(value: object, what: str) -> str:
    """A non-empty string that stays one word of one line of the plan."""
    if not isinstance(value, str) or not value or SEP in value or "\n" in value:
        raise Refused(f"{what} must be a non-empty string, got {value!r}")
    return value


def ordering(item: dict[str, object], what: str) -> str:
    """'order=ascending' or 'array-config=contains', for one indexed field."""
    order, array = item.get("order"), item.get("arrayConfig")
    if "arrayConfig" not in item and isinstance(order, str) and order in ORDERS:
        return "order=" + ORDERS[order]
    if "order" not in item and array == "CONTAINS":
        return "array-config=contains"
    raise Refused(
        f"{what}: need exactly one of order ASCENDING/DESCENDING or arrayConfig CONTAINS,"
        f" got {item!r}"
    )


def a_list(value: object, what: str) -> list[object]:
    if not isinstance(value, list):
        raise Refused(f"{what} must be a list")
    return value


def an_object(value: object, what: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise Refused(f"{what} must be an object")
    return value


def index_step(entry: object, what: str) -> list[str]:
    """The `composite create` of one entry of "indexes"."""
    index = an_object(entry, what)
    group = text(index.get("collectionGroup"), f"{what}.collectionGroup")
    scope = index.get("queryScope", "COLLECTION")
    if not isinstance(scope, str) or scope not in SCOPES:
        raise Refused(f"{what}.queryScope must be COLLECTION or COLLECTION_GROUP, got {scope!r}")
    fields = index.get("fields")
    if not isinstance(fields, list) or len(fields) < 2:
        raise Refused(f"{what}.fields must list at least two fields")
    words = ["index", f"--collection-group={group}", f"--query-scope={SCOPES[scope]}"]
    for m, item in enumerate(fields):
        fwhat = f"{what}.fields[{m}]"
        field = an_object(item, fwhat)
        path = text(field.get("fieldPath"), f"{fwhat}.fieldPath")
        # gcloud splits --field-config at commas.
        if "," in path:
            raise Refused(f"{fwhat}.fieldPath cannot contain a comma for gcloud: {path!r}")
        words.append(f"--field-config=field-path={path},{ordering(field, fwhat)}")
    return words


def override_steps(entry: object, what: str) -> list[list[str]]:
    """The TTL and single-field index steps of one entry of "fieldOverrides"."""
    override = an_object(entry, what)
    group = text(override.get("collectionGroup"), f"{what}.collectionGroup")
    field = text(override.get("fieldPath"), f"{what}.fieldPath")
    target = [field, f"--collection-group={group}"]
    steps = []
    ttl = override.get("ttl", False)
    if not isinstance(ttl, bool):
        raise Refused(f"{what}.ttl must be true or false")
    if ttl:
        steps.append(["ttl", *target])
    if "indexes" not in override:
        return steps
    wanted = a_list(override["indexes"], f"{what}.indexes")
    if not wanted:
        steps.append(["noindex", *target])
        return steps
    words = ["fieldix", *target]
    for m, entry_index in enumerate(wanted):
        iwhat = f"{what}.indexes[{m}]"
        index = an_object(entry_index, iwhat)
        if index.get("queryScope", "COLLECTION") != "COLLECTION":
            raise Refused(f"{iwhat}: gcloud sets only collection-scope single-field indexes")
        words.append("--index=" + ordering(index, iwhat))
    steps.append(words)
    return steps


def plan(spec: object) -> list[list[str]]:
    """The steps of a parsed firestore.indexes.json, each a list of words."""
    if not isinstance(spec, dict):
        raise Refused("must be a JSON object")
    steps = []
    for n, index in enumerate(a_list(spec.get("indexes", []), '"indexes"')):
        steps.append(index_step(index, f"indexes[{n}]"))
    overrides = a_list(spec.get("fieldOverrides", []), '"fieldOverrides"')
    for n, override in enumerate(overrides):
        steps.extend(override_steps(override, f"fieldOverrides[{n}]"))
    return steps


def field_is(check: str, field: object) -> bool:
    """Whether a described field already is as the step `check` wants it."""
    if not isinstance(field, dict):
        return False
    wanted = field.get("ttlConfig" if check == "ttl" else "indexConfig") or {}
    if not isinstance(wanted, dict):
        return False
    if check == "ttl":
        return wanted.get("state") in ("CREATING", "ACTIVE")
    return not wanted.get("usesAncestorConfig") and not wanted.get("indexes")


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--field-is" and argv[1] in FIELD_CHECKS:
        try:
            field = json.load(sys.stdin)
        except ValueError:
            return 1
        return 0 if field_is(argv[1], field) else 1
    if len(argv) != 1 or argv[0].startswith("-"):
        print(USAGE, file=sys.stderr)
        return 2
    path = argv[0]
    try:
        with open(path, encoding="utf-8") as f:
            steps = plan(json.load(f))
    except OSError as e:
        return refuse(path, f"cannot be read: {e.strerror}")
    except ValueError as e:
        return refuse(path, f"not valid JSON: {e}")
    except Refused as e:
        return refuse(path, str(e))
    sys.stdout.write("".join(SEP.join(words) + "\n" for words in steps))
    return 0


def refuse(path: str, reason: str) -> int:
    print(f"{PROG}: {path}: {reason}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
