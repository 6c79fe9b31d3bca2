#!/usr/bin/env bash
# Deploy the Outbound SMS API to a Google Cloud project: the APIs it needs, a Firestore
# database in Native mode, the indexes and TTL policies of firestore.indexes.json, a service
# account with the one role the function needs, and the 2nd-gen Cloud Function itself.
# Safe to run again: whatever already exists is kept, and the function is redeployed.
# `deploy/deploy.sh --help` explains the settings; `--dry-run` prints what it would run.
#
# Uses no bash 4 feature, so that macOS's bash 3.2 can run it too. Sourcing the file defines
# its functions without running anything (the tests use this to exercise the helpers).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SMS_PATH="/apps/api/v1/sms"
DRY_RUN=0

usage() {
  cat <<'EOF'
Usage: deploy/deploy.sh [--dry-run] [--help]

Deploys the Outbound SMS API to a Google Cloud project with gcloud, as the account that
`gcloud auth login` signed in. In order, it:

  1. enables the APIs it needs (Cloud Functions, Cloud Run, Cloud Build, Artifact Registry,
     Firestore, Cloud Logging, IAM; Secret Manager too when SECRETS is set);
  2. creates the Firestore database (Native mode) unless it exists;
  3. applies firestore.indexes.json: creates each composite index of "indexes", and for each
     entry of "fieldOverrides" enables its TTL policy ("ttl": true) and sets its single-field
     indexes ("indexes": [] exempts the field from indexing);
  4. creates the function's service account unless it exists, and grants it
     roles/datastore.user on the project (read and write Firestore: nothing more);
     with SECRETS, also roles/secretmanager.secretAccessor on each secret named;
  5. deploys the function (2nd gen, HTTP trigger, entry point sms_api, the repository root as
     source: .gcloudignore keeps the upload to main.py, requirements.txt and sms/ without
     its devtools/ and admin/);
  6. prints the function's URL and the endpoint URL (<url>/apps/api/v1/sms).

Running it again keeps what exists and redeploys the function with the current code and
settings (env vars and, when SECRETS is set, secrets are replaced as a whole).

Options:
  --dry-run   print every gcloud command, one per line prefixed with "+ ", and run none
              (no credentials needed; existence checks are skipped, so the commands that
              create things are printed as they would run on an empty project)
  -h, --help  show this help

Settings, all from the environment (default in brackets):
  PROJECT                        the Google Cloud project id (or GOOGLE_CLOUD_PROJECT);
                                 required
  REGION                         region of the function [us-central1]
  FUNCTION_NAME                  name of the function [sms-api]
  SERVICE_ACCOUNT                account id of the function's service account, created in
                                 PROJECT: <id>@<project>.iam.gserviceaccount.com [sms-api]
  FIRESTORE_DATABASE             Firestore database id [(default)]
  FIRESTORE_LOCATION             where to create the database if missing, e.g. nam5 or
                                 us-central1; cannot change afterwards [REGION]
  FIRESTORE_INDEXES_FILE         the index declarations [<repo>/firestore.indexes.json]
  RUNTIME                        Cloud Functions runtime [python312]
  MEMORY                         memory of an instance [512Mi]
  CPU                            vCPUs of an instance; at least 1 when CONCURRENCY > 1 [1]
  TIMEOUT                        longest a request may run [60s]
  MIN_INSTANCES                  instances kept warm [0]
  MAX_INSTANCES                  most instances at once [100]
  CONCURRENCY                    requests one instance serves at once; also sets the
                                 instance's THREADS, as Google recommends for Python [8]
  SMS_REQUEST_DEADLINE_SECONDS   the function's request deadline on Firestore [8]
  SMS_FIRESTORE_TIMEOUT_SECONDS  the longest one Firestore call may take [5]
  SMS_ID_BLOCK_SIZE              ids an instance reserves at once [50]
  SECRETS                        optional, for --set-secrets: comma-separated
                                 ENV_VAR=SECRET:VERSION (Secret Manager) [none]
  BUILD_SERVICE_ACCOUNT          optional service account email for Cloud Build to build
                                 the function with, instead of the project's default [none]

Examples:
  PROJECT=my-project deploy/deploy.sh
  PROJECT=my-project REGION=europe-west1 FIRESTORE_LOCATION=eur3 deploy/deploy.sh
  PROJECT=my-project MIN_INSTANCES=1 MAX_INSTANCES=20 deploy/deploy.sh --dry-run
EOF
}

die() {
  echo "deploy.sh: $*" >&2
  exit 2
}

note() { echo "== $*" >&2; }

# ---- how commands are shown and run -------------------------------------------------------

# One word, quoted for the shell only when it needs it.
quote() {
  if [[ "$1" =~ ^[A-Za-z0-9_./:=@,+%-]+$ ]]; then
    printf '%s' "$1"
  else
    printf "'%s'" "${1//\'/\'\\\'\'}"
  fi
}

# The command as one line "+ word word ...", each word shell-quoted.
show() {
  local line="+" word
  for word in "$@"; do line+=" $(quote "$word")"; done
  printf '%s\n' "$line"
}

# Run a command; in --dry-run only print it (on stdout). Otherwise it is echoed on stderr.
run() {
  if [[ "$DRY_RUN" == 1 ]]; then
    show "$@"
    return 0
  fi
  show "$@" >&2
  "$@"
}

# Run a command that creates something: "already exists" counts as done, so that a check that
# could not see the thing, or two runs racing each other, do not fail the deployment.
run_create() {
  if [[ "$DRY_RUN" == 1 ]]; then
    show "$@"
    return 0
  fi
  show "$@" >&2
  local err status=0
  err="$(mktemp)"
  "$@" 2> "$err" || status=$?
  if [[ "$status" != 0 ]] && grep -qiE 'already exists|ALREADY_EXISTS' "$err"; then
    echo "   (already exists)" >&2
    status=0
  else
    cat "$err" >&2
  fi
  rm -f "$err"
  return "$status"
}

# Run an IAM binding. Adding a binding that is already there changes nothing, so bindings run
# every time. A service account just created can take a few seconds to be known to IAM: the
# binding is then retried, and only then.
RETRY_SECONDS=5
bind() {
  if [[ "$DRY_RUN" == 1 ]]; then
    show "$@"
    return 0
  fi
  show "$@" >&2
  local attempt err status=0
  err="$(mktemp)"
  for attempt in 1 2 3 4 5 6; do
    status=0
    "$@" 2> "$err" || status=$?
    if [[ "$status" == 0 || "$attempt" == 6 ]] || ! grep -qiE 'does not exist|not found' "$err"; then
      break
    fi
    echo "   the service account is not known to IAM yet: retrying in $((attempt * RETRY_SECONDS))s" >&2
    sleep $((attempt * RETRY_SECONDS))
  done
  [[ "$status" == 0 ]] || cat "$err" >&2
  rm -f "$err"
  return "$status"
}

# True when the check (a gcloud describe) succeeds, i.e. the thing exists. Never runs in
# --dry-run: there everything counts as missing, and its create command is printed.
exists() {
  [[ "$DRY_RUN" == 0 ]] && "$@" > /dev/null 2>&1
}

# ---- settings -----------------------------------------------------------------------------

parse_args() {
  local arg
  for arg in "$@"; do
    case "$arg" in
      --dry-run) DRY_RUN=1 ;;
      -h | --help)
        usage
        exit 0
        ;;
      *) die "unknown argument: $arg (see deploy/deploy.sh --help)" ;;
    esac
  done
}

positive() { # NAME VALUE [integer]: dies unless VALUE is a positive number
  local pattern='^([0-9]+(\.[0-9]*)?|\.[0-9]+)$' kind="a positive number"
  if [[ "${3:-}" == integer ]]; then
    pattern='^[0-9]+$'
    kind="a positive whole number"
  fi
  [[ "$2" =~ $pattern && "$2" =~ [1-9] ]] || die "$1 must be $kind, not '$2'"
}

read_settings() {
  PROJECT="${PROJECT:-${GOOGLE_CLOUD_PROJECT:-}}"
  [[ -n "$PROJECT" ]] ||
    die "no project given: set PROJECT to your project id, e.g. PROJECT=my-project deploy/deploy.sh (see --help)"
  REGION="${REGION:-us-central1}"
  FUNCTION_NAME="${FUNCTION_NAME:-sms-api}"
  SERVICE_ACCOUNT="${SERVICE_ACCOUNT:-sms-api}"
  FIRESTORE_DATABASE="${FIRESTORE_DATABASE:-(default)}"
  FIRESTORE_LOCATION="${FIRESTORE_LOCATION:-$REGION}"
  FIRESTORE_INDEXES_FILE="${FIRESTORE_INDEXES_FILE:-$ROOT/firestore.indexes.json}"
  RUNTIME="${RUNTIME:-python312}"
  MEMORY="${MEMORY:-512Mi}"
  CPU="${CPU:-1}"
  TIMEOUT="${TIMEOUT:-60s}"
  MIN_INSTANCES="${MIN_INSTANCES:-0}"
  MAX_INSTANCES="${MAX_INSTANCES:-100}"
  CONCURRENCY="${CONCURRENCY:-8}"
  SMS_REQUEST_DEADLINE_SECONDS="${SMS_REQUEST_DEADLINE_SECONDS:-8}"
  SMS_FIRESTORE_TIMEOUT_SECONDS="${SMS_FIRESTORE_TIMEOUT_SECONDS:-5}"
  SMS_ID_BLOCK_SIZE="${SMS_ID_BLOCK_SIZE:-50}"
  SECRETS="${SECRETS:-}"
  BUILD_SERVICE_ACCOUNT="${BUILD_SERVICE_ACCOUNT:-}"

  # What the function would only reject once deployed (sms/config.py) is refused now.
  [[ "$PROJECT" =~ ^[a-z][a-z0-9-]{4,28}[a-z0-9]$ ]] ||
    die "PROJECT must be a project id (6-30 of a-z, 0-9, -), not '$PROJECT'"
  [[ "$SERVICE_ACCOUNT" =~ ^[a-z][a-z0-9-]{4,28}[a-z0-9]$ ]] ||
    die "SERVICE_ACCOUNT must be an account id (6-30 of a-z, 0-9, -), not '$SERVICE_ACCOUNT'"
  positive SMS_REQUEST_DEADLINE_SECONDS "$SMS_REQUEST_DEADLINE_SECONDS"
  positive SMS_FIRESTORE_TIMEOUT_SECONDS "$SMS_FIRESTORE_TIMEOUT_SECONDS"
  positive SMS_ID_BLOCK_SIZE "$SMS_ID_BLOCK_SIZE" integer
  positive CONCURRENCY "$CONCURRENCY" integer
  [[ "$FIRESTORE_DATABASE" != *,* ]] || die "FIRESTORE_DATABASE cannot contain a comma"
  [[ -f "$FIRESTORE_INDEXES_FILE" ]] || die "no such file: $FIRESTORE_INDEXES_FILE"
  command -v python3 > /dev/null || die "python3 is needed to read $FIRESTORE_INDEXES_FILE"
  if [[ "$DRY_RUN" == 0 ]]; then
    command -v gcloud > /dev/null || die "gcloud is not installed: https://cloud.google.com/sdk/docs/install"
  fi

  SA_EMAIL="$SERVICE_ACCOUNT@$PROJECT.iam.gserviceaccount.com"
}

# ---- 1. APIs ------------------------------------------------------------------------------

enable_apis() {
  note "APIs of project $PROJECT"
  local apis=(
    cloudfunctions.googleapis.com   # the function
    run.googleapis.com              # 2nd-gen functions run on Cloud Run
    cloudbuild.googleapis.com       # builds the function from its source
    artifactregistry.googleapis.com # keeps the built image
    firestore.googleapis.com        # the database
    logging.googleapis.com          # the function's and the builds' logs
    iam.googleapis.com              # creating the service account
  )
  [[ -z "$SECRETS" ]] || apis+=(secretmanager.googleapis.com)
  run gcloud services enable "${apis[@]}" --project="$PROJECT"
}

# ---- 2. Firestore database ----------------------------------------------------------------

create_database() {
  note "Firestore database $FIRESTORE_DATABASE"
  local db_type=""
  if [[ "$DRY_RUN" == 0 ]]; then
    db_type="$(gcloud firestore databases describe --database="$FIRESTORE_DATABASE" \
      --project="$PROJECT" --format='value(type)' 2> /dev/null)" || db_type=""
  fi
  if [[ -n "$db_type" ]]; then
    [[ "$db_type" == FIRESTORE_NATIVE ]] ||
      die "database $FIRESTORE_DATABASE of $PROJECT is in $db_type, not Native mode: choose another FIRESTORE_DATABASE"
    echo "   exists (Native mode), kept as it is" >&2
  else
    run_create gcloud firestore databases create --database="$FIRESTORE_DATABASE" \
      --location="$FIRESTORE_LOCATION" --type=firestore-native --project="$PROJECT"
  fi
}

# ---- 3. Indexes and field overrides of firestore.indexes.json ----------------------------

# Prints the file as one line per gcloud call, its words separated by \x1f:
#   index   <arguments of `gcloud firestore indexes composite create`>
#   ttl     FIELD --collection-group=GROUP                    ("ttl": true)
#   noindex FIELD --collection-group=GROUP                    ("indexes": [])
#   fieldix FIELD --collection-group=GROUP --index=... ...    ("indexes": [...])
# Anything gcloud cannot express is refused here, before a single command runs.
firestore_plan() {
  python3 - "$1" <<'PY'
import json, sys

path = sys.argv[1]
def fail(message):
    sys.exit(f"deploy.sh: {path}: {message}")

try:
    with open(path, encoding="utf-8") as f:
        spec = json.load(f)
except ValueError as e:
    fail(f"not valid JSON: {e}")
if not isinstance(spec, dict):
    fail("must be a JSON object")

SCOPES = {"COLLECTION": "collection", "COLLECTION_GROUP": "collection-group"}
ORDERS = {"ASCENDING": "ascending", "DESCENDING": "descending"}
SEP = "\x1f"

def text(value, what):
    if not isinstance(value, str) or not value or SEP in value or "\n" in value:
        fail(f"{what} must be a non-empty string, got {value!r}")
    return value

def ordering(item, what):
    """'order=ascending' or 'array-config=contains' for one indexed field."""
    if "order" in item and "arrayConfig" not in item and item["order"] in ORDERS:
        return "order=" + ORDERS[item["order"]]
    if "arrayConfig" in item and "order" not in item and item["arrayConfig"] == "CONTAINS":
        return "array-config=contains"
    fail(f"{what}: need exactly one of order ASCENDING/DESCENDING or arrayConfig CONTAINS, got {item!r}")

lines = []
indexes = spec.get("indexes", [])
if not isinstance(indexes, list):
    fail('"indexes" must be a list')
for n, index in enumerate(indexes):
    what = f"indexes[{n}]"
    if not isinstance(index, dict):
        fail(f"{what} must be an object")
    group = text(index.get("collectionGroup"), f"{what}.collectionGroup")
    scope = index.get("queryScope", "COLLECTION")
    if scope not in SCOPES:
        fail(f"{what}.queryScope must be COLLECTION or COLLECTION_GROUP, got {scope!r}")
    fields = index.get("fields")
    if not isinstance(fields, list) or len(fields) < 2:
        fail(f"{what}.fields must list at least two fields")
    words = ["index", f"--collection-group={group}", f"--query-scope={SCOPES[scope]}"]
    for m, field in enumerate(fields):
        fwhat = f"{what}.fields[{m}]"
        if not isinstance(field, dict):
            fail(f"{fwhat} must be an object")
        path_ = text(field.get("fieldPath"), f"{fwhat}.fieldPath")
        if "," in path_:
            fail(f"{fwhat}.fieldPath cannot contain a comma for gcloud: {path_!r}")
        words.append(f"--field-config=field-path={path_},{ordering(field, fwhat)}")
    lines.append(words)

overrides = spec.get("fieldOverrides", [])
if not isinstance(overrides, list):
    fail('"fieldOverrides" must be a list')
for n, override in enumerate(overrides):
    what = f"fieldOverrides[{n}]"
    if not isinstance(override, dict):
        fail(f"{what} must be an object")
    group = text(override.get("collectionGroup"), f"{what}.collectionGroup")
    field = text(override.get("fieldPath"), f"{what}.fieldPath")
    target = [field, f"--collection-group={group}"]
    ttl = override.get("ttl", False)
    if not isinstance(ttl, bool):
        fail(f"{what}.ttl must be true or false")
    if ttl:
        lines.append(["ttl", *target])
    if "indexes" not in override:
        continue
    wanted = override["indexes"]
    if not isinstance(wanted, list):
        fail(f"{what}.indexes must be a list")
    if not wanted:
        lines.append(["noindex", *target])
        continue
    words = ["fieldix", *target]
    for m, item in enumerate(wanted):
        iwhat = f"{what}.indexes[{m}]"
        if not isinstance(item, dict):
            fail(f"{iwhat} must be an object")
        if item.get("queryScope", "COLLECTION") != "COLLECTION":
            fail(f"{iwhat}: gcloud sets only collection-scope single-field indexes")
        words.append("--index=" + ordering(item, iwhat))
    lines.append(words)

for words in lines:
    print(SEP.join(words))
PY
}

# Whether a field already is as a step wants it: its TTL policy on (ttl), or its indexes off
# (noindex). In --dry-run, or when the field cannot be read, it is not (the update runs).
field_is() { # ttl|noindex FIELD --collection-group=GROUP
  [[ "$DRY_RUN" == 0 ]] || return 1
  gcloud firestore indexes fields describe "$2" "$3" --database="$FIRESTORE_DATABASE" \
    --project="$PROJECT" --format=json 2> /dev/null | python3 -c '
import json, sys
try:
    field = json.load(sys.stdin)
except ValueError:
    sys.exit(1)
if not isinstance(field, dict):
    sys.exit(1)
if sys.argv[1] == "ttl":
    done = (field.get("ttlConfig") or {}).get("state") in ("CREATING", "ACTIVE")
else:
    config = field.get("indexConfig") or {}
    done = not config.get("usesAncestorConfig") and not config.get("indexes")
sys.exit(0 if done else 1)
' "$1"
}

apply_indexes() {
  note "Firestore indexes and field overrides of ${FIRESTORE_INDEXES_FILE#"$ROOT"/}"
  local step kind count=0
  local where=(--database="$FIRESTORE_DATABASE" --project="$PROJECT")
  while IFS=$'\x1f' read -r -a step; do
    [[ ${#step[@]} -gt 0 ]] || continue
    count=$((count + 1))
    kind="${step[0]}"
    step=("${step[@]:1}")
    case "$kind" in
      index)
        # Takes minutes on a database with data; "already exists" counts as done.
        run_create gcloud firestore indexes composite create "${step[@]}" "${where[@]}"
        ;;
      ttl)
        if field_is ttl "${step[@]}"; then
          echo "   TTL policy on ${step[0]} (${step[1]#--collection-group=}) already on" >&2
        else
          run gcloud firestore fields ttls update "${step[@]}" --enable-ttl "${where[@]}"
        fi
        ;;
      noindex)
        if field_is noindex "${step[@]}"; then
          echo "   ${step[0]} (${step[1]#--collection-group=}) already exempt from indexing" >&2
        else
          run gcloud firestore indexes fields update "${step[@]}" --disable-indexes "${where[@]}"
        fi
        ;;
      fieldix)
        # Sets the field's indexes to exactly these: running it again changes nothing.
        run gcloud firestore indexes fields update "${step[@]}" "${where[@]}"
        ;;
      *) die "internal error: unknown step $kind" ;;
    esac
  done <<< "$FIRESTORE_PLAN"
  [[ "$count" -gt 0 ]] || echo "   nothing declared" >&2
}

# ---- 4. Service account and its roles -----------------------------------------------------

create_service_account() {
  note "Service account $SA_EMAIL"
  if exists gcloud iam service-accounts describe "$SA_EMAIL" --project="$PROJECT"; then
    echo "   exists, kept" >&2
  else
    run_create gcloud iam service-accounts create "$SERVICE_ACCOUNT" \
      --display-name="Outbound SMS API (Cloud Function $FUNCTION_NAME)" --project="$PROJECT"
  fi
}

grant_roles() {
  # The function's only role on the project:
  #   roles/datastore.user - read and write Firestore documents (the tenants' configuration,
  #     sessions, messages, counters, idempotency records). No admin role: indexes and TTL
  #     policies are set here, by the operator, never by the function.
  # Not granted:
  #   roles/logging.logWriter - the function logs to stdout and stderr, which Cloud Run
  #     collects by itself; it never calls the Cloud Logging API (google-cloud-logging is not
  #     in requirements.txt), so it needs no logging role.
  bind gcloud projects add-iam-policy-binding "$PROJECT" \
    --member="serviceAccount:$SA_EMAIL" --role=roles/datastore.user --condition=None --format=none

  # With SECRETS: roles/secretmanager.secretAccessor on each secret named, not on the project,
  # so that the function can read those secrets and no others.
  [[ -n "$SECRETS" ]] || return 0
  local entries entry ref secret secret_project bound=" "
  IFS=',' read -r -a entries <<< "$SECRETS"
  for entry in "${entries[@]}"; do
    [[ "$entry" == *=*:* ]] || die "SECRETS entries are ENV_VAR=SECRET:VERSION, not '$entry'"
    ref="${entry#*=}"  # SECRET:VERSION or projects/P/secrets/SECRET:VERSION
    secret="${ref%:*}" # without its version
    secret_project="$PROJECT"
    if [[ "$secret" =~ ^projects/([^/]+)/secrets/([^/]+)$ ]]; then
      secret_project="${BASH_REMATCH[1]}"
      secret="${BASH_REMATCH[2]}"
    fi
    [[ "$secret" =~ ^[A-Za-z0-9_-]+$ ]] || die "SECRETS: cannot read a secret name in '$entry'"
    [[ "$bound" != *" $secret_project/$secret "* ]] || continue
    bound+="$secret_project/$secret "
    bind gcloud secrets add-iam-policy-binding "$secret" --project="$secret_project" \
      --member="serviceAccount:$SA_EMAIL" --role=roles/secretmanager.secretAccessor \
      --condition=None --format=none
  done
}

# ---- 5. The function ----------------------------------------------------------------------

deploy_function() {
  note "Function $FUNCTION_NAME in $REGION (the build takes a few minutes)"
  local env_vars=(
    "GOOGLE_CLOUD_PROJECT=$PROJECT"
    "FIRESTORE_DATABASE=$FIRESTORE_DATABASE"
    "SMS_REQUEST_DEADLINE_SECONDS=$SMS_REQUEST_DEADLINE_SECONDS"
    "SMS_FIRESTORE_TIMEOUT_SECONDS=$SMS_FIRESTORE_TIMEOUT_SECONDS"
    "SMS_ID_BLOCK_SIZE=$SMS_ID_BLOCK_SIZE"
    # functions-framework serves with gunicorn threads; Google's advice for Python is as many
    # threads as the concurrency, or the requests beyond them wait inside the instance.
    "THREADS=$CONCURRENCY"
  )
  local env_list build_sa
  env_list="$(IFS=','; echo "${env_vars[*]}")"
  local deploy=(
    gcloud functions deploy "$FUNCTION_NAME"
    --gen2
    --runtime="$RUNTIME"
    --region="$REGION"
    --source="$ROOT" # .gcloudignore keeps the upload to main.py, requirements.txt and sms/
    --entry-point=sms_api
    --trigger-http
    # Callers reach the function without Google credentials; every request is still
    # authenticated by the function itself (HTTP Basic with one of a tenant's API tokens).
    --allow-unauthenticated
    --service-account="$SA_EMAIL"
    --memory="$MEMORY"
    --cpu="$CPU"
    --timeout="$TIMEOUT"
    --min-instances="$MIN_INSTANCES"
    --max-instances="$MAX_INSTANCES"
    --concurrency="$CONCURRENCY"
    --set-env-vars="$env_list"
  )
  [[ -z "$SECRETS" ]] || deploy+=(--set-secrets="$SECRETS")
  if [[ -n "$BUILD_SERVICE_ACCOUNT" ]]; then
    build_sa="$BUILD_SERVICE_ACCOUNT"
    [[ "$build_sa" == projects/* ]] || build_sa="projects/$PROJECT/serviceAccounts/$build_sa"
    deploy+=(--build-service-account="$build_sa")
  fi
  deploy+=(--project="$PROJECT")
  run "${deploy[@]}"
}

# ---- 6. Where it answers ------------------------------------------------------------------

print_urls() {
  local url describe=(gcloud functions describe "$FUNCTION_NAME" --region="$REGION"
    --project="$PROJECT" --format='value(serviceConfig.uri)')
  if [[ "$DRY_RUN" == 1 ]]; then
    show "${describe[@]}"
    url="https://<the function's URL, printed by the describe above>"
  else
    show "${describe[@]}" >&2
    url="$("${describe[@]}")"
  fi
  echo
  echo "Function URL: $url"
  echo "Endpoint:     $url$SMS_PATH"
  if [[ "$DRY_RUN" == 1 ]]; then
    echo "(dry run: nothing was run)"
  else
    echo "Next: configure a tenant (deploy/README.md): python -m sms.admin --project=$PROJECT --help"
  fi
}

main() {
  parse_args "$@"
  read_settings
  # Read before anything runs, so that a file gcloud cannot apply stops the deployment here.
  FIRESTORE_PLAN="$(firestore_plan "$FIRESTORE_INDEXES_FILE")"
  # gcloud must never stop to ask a question: a prompt would hang an unattended run.
  export CLOUDSDK_CORE_DISABLE_PROMPTS=1
  enable_apis
  create_database
  apply_indexes
  create_service_account
  grant_roles
  deploy_function
  print_urls
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
