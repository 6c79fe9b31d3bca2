#!/usr/bin/env bash
# Deploy the Outbound SMS API to a Google Cloud project: the APIs it needs, a Firestore
# database in Native mode, the indexes and TTL policies of firestore.indexes.json, three
# service accounts with the few roles each needs, the two 2nd-gen Cloud Functions (the API
# and its sweeper) and the Cloud Scheduler job that calls the sweeper every minute.
# Safe to run again: whatever already exists is kept, the functions are redeployed and the
# job is updated. `deploy/deploy.sh --help` explains the settings; `--dry-run` prints what it
# would run.
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
     Firestore, Cloud Logging, IAM, Cloud Scheduler; Secret Manager too when SECRETS or
     TWILIO_AUTH_TOKEN_SECRET is set);
  2. creates the Firestore database (Native mode) unless it exists;
  3. applies firestore.indexes.json: creates each composite index of "indexes", and for each
     entry of "fieldOverrides" enables its TTL policy ("ttl": true) and sets its single-field
     indexes ("indexes": [] exempts the field from indexing);
  4. creates three service accounts unless they exist: the API function's, the sweeper
     function's, and the one Cloud Scheduler calls the sweeper as;
  5. grants the API's and the sweeper's accounts roles/datastore.user (read and write
     Firestore: nothing more) with an IAM condition that limits it to the database
     FIRESTORE_DATABASE (resource.name == "projects/PROJECT/databases/FIRESTORE_DATABASE"),
     then removes an unconditional roles/datastore.user binding of theirs that an older
     deployment left, which would reach every database of the project; and grants them
     roles/secretmanager.secretAccessor on each secret they are given (SECRETS: the API
     only; TWILIO_AUTH_TOKEN_SECRET: both);
  6. deploys the API function (2nd gen, HTTP trigger, entry point sms_api, public) and the
     sweeper function (entry point sms_sweeper, no public access, one instance at most),
     both from the repository root: .gcloudignore keeps the upload to main.py,
     requirements.txt and sms/ without its devtools/ and admin/;
  7. lets the scheduler's account, and it alone, invoke the sweeper;
  8. creates the Cloud Scheduler job that POSTs to the sweeper on SWEEP_SCHEDULE with an
     OIDC token of that account, or updates it when it exists;
  9. prints the function's URL, the endpoint URL (<url>/apps/api/v1/sms) and, with Twilio,
     the webhook URLs to give Twilio.

Running it again keeps what exists, redeploys both functions with the current code and
settings (env vars are replaced as a whole, and so are a function's secrets when it has any
to set), and updates the job.

Options:
  --dry-run   print every gcloud command, one per line prefixed with "+ ", and run none
              (no credentials needed; existence checks are skipped, so the commands that
              create things are printed as they would run on an empty project)
  -h, --help  show this help

Settings, all from the environment (default in brackets):
  PROJECT                        the Google Cloud project id (or GOOGLE_CLOUD_PROJECT);
                                 required
  REGION                         region of the functions [us-central1]
  FUNCTION_NAME                  name of the API function [sms-api]
  SERVICE_ACCOUNT                account id of the API function's service account, created
                                 in PROJECT: <id>@<project>.iam.gserviceaccount.com [sms-api]
  FIRESTORE_DATABASE             Firestore database id, (default) or 4-63 of a-z, 0-9, -;
                                 the only database the functions' accounts may use
                                 [(default)]
  FIRESTORE_LOCATION             where to create the database if missing, e.g. nam5 or
                                 us-central1; cannot change afterwards [REGION]
  FIRESTORE_INDEXES_FILE         the index declarations [<repo>/firestore.indexes.json]
  RUNTIME                        Cloud Functions runtime [python312]
  MEMORY                         memory of an instance (both functions) [512Mi]
  CPU                            vCPUs of an instance (both functions); at least 1 when
                                 CONCURRENCY > 1 [1]
  TIMEOUT                        longest an API request may run [60s]
  MIN_INSTANCES                  API instances kept warm [0]
  MAX_INSTANCES                  most API instances at once [100]
  CONCURRENCY                    requests one API instance serves at once; also sets the
                                 instance's THREADS, as Google recommends for Python [8]
  SMS_REQUEST_DEADLINE_SECONDS   the function's request deadline on Firestore [8]
  SMS_FIRESTORE_TIMEOUT_SECONDS  the longest one Firestore call may take [5]
  SMS_ID_BLOCK_SIZE              ids an instance reserves at once [50]
  SECRETS                        optional, for the API's --set-secrets: comma-separated
                                 ENV_VAR=SECRET:VERSION (Secret Manager) [none]
  BUILD_SERVICE_ACCOUNT          optional service account email for Cloud Build to build
                                 the functions with, instead of the project's default [none]

 The carrier (both functions get the same settings):
  SMS_CARRIER                    log (messages are only logged) or twilio [log]
  TWILIO_ACCOUNT_SID             the Twilio account SID (AC...); required with twilio [none]
  TWILIO_AUTH_TOKEN_SECRET       the Secret Manager secret holding the Twilio auth token,
                                 NAME or projects/P/secrets/NAME; becomes the functions'
                                 TWILIO_AUTH_TOKEN (version latest); required with twilio
                                 [none]
  TWILIO_MESSAGING_SERVICE_SID   optional Messaging Service SID (MG...), sent along with
                                 From [none]
  TWILIO_API_BASE_URL            optional; the function then uses https://api.twilio.com
                                 [none]
  SMS_PUBLIC_BASE_URL            the URL Twilio reaches the API at; its webhooks are
                                 <url>/apps/api/v1/sms/status and <url>/apps/api/v1/sms/inbound
                                 [https://REGION-PROJECT.cloudfunctions.net/FUNCTION_NAME]
  SMS_SWEEP_AFTER_SECONDS        how old a queued or sending message must be before the
                                 sweeper settles it; 0 or more [60]

 The sweeper and its schedule:
  SWEEPER_FUNCTION_NAME          name of the sweeper function [sms-sweeper]
  SWEEPER_SERVICE_ACCOUNT        account id of the sweeper function's service account
                                 [sms-sweeper]
  SWEEPER_TIMEOUT                longest a sweep may run; a sweep stops itself after about
                                 50s [120s]
  SCHEDULER_SERVICE_ACCOUNT      account id that Cloud Scheduler calls the sweeper as; it
                                 may invoke the sweeper and nothing else
                                 [sms-sweeper-invoker]
  SWEEP_JOB                      name of the Cloud Scheduler job [sms-sweep]
  SWEEP_SCHEDULE                 when the job runs, in unix-cron format, UTC [* * * * *]
  SCHEDULER_LOCATION             the job's Cloud Scheduler location [REGION]

Examples:
  PROJECT=my-project deploy/deploy.sh
  PROJECT=my-project REGION=europe-west1 FIRESTORE_LOCATION=eur3 deploy/deploy.sh
  PROJECT=my-project MIN_INSTANCES=1 MAX_INSTANCES=20 deploy/deploy.sh --dry-run
  PROJECT=my-project SMS_CARRIER=twilio TWILIO_ACCOUNT_SID=AC0123... \
    TWILIO_AUTH_TOKEN_SECRET=twilio-auth-token deploy/deploy.sh
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

# Remove an IAM binding that may not be there: "not found" counts as done, so that every run
# can make sure it is gone.
unbind() {
  if [[ "$DRY_RUN" == 1 ]]; then
    show "$@"
    return 0
  fi
  show "$@" >&2
  local err status=0
  err="$(mktemp)"
  "$@" 2> "$err" || status=$?
  if [[ "$status" != 0 ]] &&
    grep -qiE 'Policy bindings? with the specified principal.*not found' "$err"; then
    echo "   (no such binding: nothing to remove)" >&2
    status=0
  else
    cat "$err" >&2
  fi
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

not_negative() { # NAME VALUE: dies unless VALUE is a number, 0 or more
  local pattern='^([0-9]+(\.[0-9]*)?|\.[0-9]+)$'
  [[ "$2" =~ $pattern ]] || die "$1 must be a number, 0 or more, not '$2'"
}

account_id() { # NAME VALUE: dies unless VALUE can be a service account id
  [[ "$2" =~ ^[a-z][a-z0-9-]{4,28}[a-z0-9]$ ]] ||
    die "$1 must be an account id (6-30 of a-z, 0-9, -), not '$2'"
}

# An http(s) URL that the function accepts and that --set-env-vars can carry (no comma).
url() { # NAME VALUE
  [[ "$2" =~ ^https?://[^[:space:],]+$ ]] ||
    die "$1 must be an http(s) URL without spaces or commas, not '$2'"
}

# Sets SECRET_NAME and SECRET_PROJECT from one --set-secrets entry ENV_VAR=SECRET:VERSION,
# where SECRET is a name in PROJECT or projects/P/secrets/NAME; dies on anything else.
secret_of() { # ENTRY
  [[ "$1" == *=*:* ]] || die "SECRETS entries are ENV_VAR=SECRET:VERSION, not '$1'"
  local ref="${1#*=}" # SECRET:VERSION or projects/P/secrets/SECRET:VERSION
  SECRET_NAME="${ref%:*}"
  SECRET_PROJECT="$PROJECT"
  if [[ "$SECRET_NAME" =~ ^projects/([^/]+)/secrets/([^/]+)$ ]]; then
    SECRET_PROJECT="${BASH_REMATCH[1]}"
    SECRET_NAME="${BASH_REMATCH[2]}"
  fi
  [[ "$SECRET_NAME" =~ ^[A-Za-z0-9_-]+$ ]] || die "SECRETS: cannot read a secret name in '$1'"
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
  # The carrier.
  SMS_CARRIER="${SMS_CARRIER:-log}"
  TWILIO_ACCOUNT_SID="${TWILIO_ACCOUNT_SID:-}"
  TWILIO_AUTH_TOKEN_SECRET="${TWILIO_AUTH_TOKEN_SECRET:-}"
  TWILIO_MESSAGING_SERVICE_SID="${TWILIO_MESSAGING_SERVICE_SID:-}"
  TWILIO_API_BASE_URL="${TWILIO_API_BASE_URL:-}"
  # A 2nd-gen function also answers at this URL, known before it is deployed.
  SMS_PUBLIC_BASE_URL="${SMS_PUBLIC_BASE_URL:-https://$REGION-$PROJECT.cloudfunctions.net/$FUNCTION_NAME}"
  SMS_PUBLIC_BASE_URL="${SMS_PUBLIC_BASE_URL%/}"
  SMS_SWEEP_AFTER_SECONDS="${SMS_SWEEP_AFTER_SECONDS:-60}"
  # The sweeper and its schedule.
  SWEEPER_FUNCTION_NAME="${SWEEPER_FUNCTION_NAME:-sms-sweeper}"
  SWEEPER_SERVICE_ACCOUNT="${SWEEPER_SERVICE_ACCOUNT:-sms-sweeper}"
  SWEEPER_TIMEOUT="${SWEEPER_TIMEOUT:-120s}"
  SCHEDULER_SERVICE_ACCOUNT="${SCHEDULER_SERVICE_ACCOUNT:-sms-sweeper-invoker}"
  SWEEP_JOB="${SWEEP_JOB:-sms-sweep}"
  SWEEP_SCHEDULE="${SWEEP_SCHEDULE:-* * * * *}"
  SCHEDULER_LOCATION="${SCHEDULER_LOCATION:-$REGION}"

  # What the functions would only reject once deployed (sms/config.py) is refused now.
  [[ "$PROJECT" =~ ^[a-z][a-z0-9-]{4,28}[a-z0-9]$ ]] ||
    die "PROJECT must be a project id (6-30 of a-z, 0-9, -), not '$PROJECT'"
  account_id SERVICE_ACCOUNT "$SERVICE_ACCOUNT"
  account_id SWEEPER_SERVICE_ACCOUNT "$SWEEPER_SERVICE_ACCOUNT"
  account_id SCHEDULER_SERVICE_ACCOUNT "$SCHEDULER_SERVICE_ACCOUNT"
  # The scheduler's account may invoke the sweeper and do nothing else: it is no other's.
  [[ "$SCHEDULER_SERVICE_ACCOUNT" != "$SERVICE_ACCOUNT" &&
    "$SCHEDULER_SERVICE_ACCOUNT" != "$SWEEPER_SERVICE_ACCOUNT" ]] ||
    die "SCHEDULER_SERVICE_ACCOUNT must be an account of its own, not '$SCHEDULER_SERVICE_ACCOUNT'"
  [[ "$SWEEPER_SERVICE_ACCOUNT" != "$SERVICE_ACCOUNT" ]] ||
    die "SWEEPER_SERVICE_ACCOUNT must differ from SERVICE_ACCOUNT ('$SERVICE_ACCOUNT')"
  [[ "$FUNCTION_NAME" =~ ^[A-Za-z][A-Za-z0-9_-]*$ ]] ||
    die "FUNCTION_NAME must be a function name (letters, digits, - and _), not '$FUNCTION_NAME'"
  [[ "$SWEEPER_FUNCTION_NAME" =~ ^[A-Za-z][A-Za-z0-9_-]*$ ]] ||
    die "SWEEPER_FUNCTION_NAME must be a function name (letters, digits, - and _), not '$SWEEPER_FUNCTION_NAME'"
  # The same name would deploy the sweeper over the API.
  [[ "$SWEEPER_FUNCTION_NAME" != "$FUNCTION_NAME" ]] ||
    die "SWEEPER_FUNCTION_NAME must differ from FUNCTION_NAME ('$FUNCTION_NAME')"
  [[ "$SWEEP_JOB" =~ ^[A-Za-z0-9_-]+$ ]] ||
    die "SWEEP_JOB must be a job name (letters, digits, - and _), not '$SWEEP_JOB'"
  [[ "$SWEEP_SCHEDULE" =~ ^[0-9A-Za-z*/,-]+([[:space:]]+[0-9A-Za-z*/,-]+){4}$ ]] ||
    die "SWEEP_SCHEDULE must be a unix-cron schedule of five fields, e.g. '* * * * *', not '$SWEEP_SCHEDULE'"
  positive SMS_REQUEST_DEADLINE_SECONDS "$SMS_REQUEST_DEADLINE_SECONDS"
  positive SMS_FIRESTORE_TIMEOUT_SECONDS "$SMS_FIRESTORE_TIMEOUT_SECONDS"
  positive SMS_ID_BLOCK_SIZE "$SMS_ID_BLOCK_SIZE" integer
  positive CONCURRENCY "$CONCURRENCY" integer
  not_negative SMS_SWEEP_AFTER_SECONDS "$SMS_SWEEP_AFTER_SECONDS"
  # A database id as Firestore accepts it. It goes into the IAM condition (a CEL string
  # inside gcloud's comma-separated --condition) and into --set-env-vars: nothing else may.
  [[ "$FIRESTORE_DATABASE" == "(default)" ||
    "$FIRESTORE_DATABASE" =~ ^[a-z][a-z0-9-]{2,61}[a-z0-9]$ ]] ||
    die "FIRESTORE_DATABASE must be (default) or a database id (4-63 of a-z, 0-9, -, starting with a letter), not '$FIRESTORE_DATABASE'"

  case "$SMS_CARRIER" in
    log | twilio) ;;
    *) die "SMS_CARRIER must be log or twilio, not '$SMS_CARRIER'" ;;
  esac
  if [[ "$SMS_CARRIER" == twilio ]]; then
    [[ -n "$TWILIO_ACCOUNT_SID" ]] ||
      die "SMS_CARRIER=twilio needs TWILIO_ACCOUNT_SID, the SID of the Twilio account (AC...)"
    [[ -n "$TWILIO_AUTH_TOKEN_SECRET" ]] ||
      die "SMS_CARRIER=twilio needs TWILIO_AUTH_TOKEN_SECRET, the Secret Manager secret that holds the Twilio auth token, e.g. twilio-auth-token (see deploy/README.md)"
  fi
  [[ -z "$TWILIO_ACCOUNT_SID" || "$TWILIO_ACCOUNT_SID" =~ ^[A-Za-z0-9]+$ ]] ||
    die "TWILIO_ACCOUNT_SID must be a Twilio SID (letters and digits), not '$TWILIO_ACCOUNT_SID'"
  [[ -z "$TWILIO_MESSAGING_SERVICE_SID" || "$TWILIO_MESSAGING_SERVICE_SID" =~ ^[A-Za-z0-9]+$ ]] ||
    die "TWILIO_MESSAGING_SERVICE_SID must be a Twilio SID (letters and digits), not '$TWILIO_MESSAGING_SERVICE_SID'"
  [[ -z "$TWILIO_API_BASE_URL" ]] || url TWILIO_API_BASE_URL "$TWILIO_API_BASE_URL"
  url SMS_PUBLIC_BASE_URL "$SMS_PUBLIC_BASE_URL"

  # The secrets of each function: SECRETS are the API's; the Twilio auth token is both's.
  API_SECRETS="$SECRETS"
  SWEEPER_SECRETS=""
  local entry entries
  [[ -z "$SECRETS" ]] || IFS=',' read -r -a entries <<< "$SECRETS"
  for entry in ${entries[@]+"${entries[@]}"}; do
    secret_of "$entry" # dies here, before any command, on an entry it cannot read
    if [[ -n "$TWILIO_AUTH_TOKEN_SECRET" && "${entry%%=*}" == TWILIO_AUTH_TOKEN ]]; then
      die "SECRETS sets TWILIO_AUTH_TOKEN, which TWILIO_AUTH_TOKEN_SECRET sets: keep only TWILIO_AUTH_TOKEN_SECRET"
    fi
  done
  if [[ -n "$TWILIO_AUTH_TOKEN_SECRET" ]]; then
    [[ "$TWILIO_AUTH_TOKEN_SECRET" =~ ^([A-Za-z0-9_-]+|projects/[^/:,]+/secrets/[A-Za-z0-9_-]+)$ ]] ||
      die "TWILIO_AUTH_TOKEN_SECRET must be a secret name or projects/P/secrets/NAME (no version), not '$TWILIO_AUTH_TOKEN_SECRET'"
    SWEEPER_SECRETS="TWILIO_AUTH_TOKEN=$TWILIO_AUTH_TOKEN_SECRET:latest"
    API_SECRETS="${SECRETS:+$SECRETS,}$SWEEPER_SECRETS"
  fi

  [[ -f "$FIRESTORE_INDEXES_FILE" ]] || die "no such file: $FIRESTORE_INDEXES_FILE"
  command -v python3 > /dev/null || die "python3 is needed to read $FIRESTORE_INDEXES_FILE"
  if [[ "$DRY_RUN" == 0 ]]; then
    command -v gcloud > /dev/null || die "gcloud is not installed: https://cloud.google.com/sdk/docs/install"
  fi

  SA_EMAIL="$SERVICE_ACCOUNT@$PROJECT.iam.gserviceaccount.com"
  SWEEPER_SA_EMAIL="$SWEEPER_SERVICE_ACCOUNT@$PROJECT.iam.gserviceaccount.com"
  SCHEDULER_SA_EMAIL="$SCHEDULER_SERVICE_ACCOUNT@$PROJECT.iam.gserviceaccount.com"

  # The IAM condition of the functions' roles/datastore.user: the database's resource name,
  # in the form Google documents for per-database access ("Configure per-database access
  # permissions", Firestore: resource.name=="projects/PROJECT_ID/databases/DATABASE_ID").
  # gcloud splits --condition at commas: the id check above keeps them out of every part.
  # The title and description depend on the database alone, so a second run adds the very
  # same condition (no change), and both accounts share one binding. The title stays short:
  # at most 89 characters, with the longest database id.
  DATABASE_RESOURCE="projects/$PROJECT/databases/$FIRESTORE_DATABASE"
  DATABASE_CONDITION="expression=resource.name==\"$DATABASE_RESOURCE\""
  DATABASE_CONDITION+=",title=Firestore database $FIRESTORE_DATABASE only"
  DATABASE_CONDITION+=",description=Outbound SMS functions (deploy/deploy.sh): this database and no other"
}

# ---- 1. APIs ------------------------------------------------------------------------------

enable_apis() {
  note "APIs of project $PROJECT"
  local apis=(
    cloudfunctions.googleapis.com   # the functions
    run.googleapis.com              # 2nd-gen functions run on Cloud Run
    cloudbuild.googleapis.com       # builds the functions from their source
    artifactregistry.googleapis.com # keeps the built images
    firestore.googleapis.com        # the database
    logging.googleapis.com          # the functions' and the builds' logs
    iam.googleapis.com              # creating the service accounts
    cloudscheduler.googleapis.com   # calls the sweeper every minute
  )
  [[ -z "$API_SECRETS" ]] || apis+=(secretmanager.googleapis.com)
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

# ---- 4. Service accounts ------------------------------------------------------------------

create_account() { # ID EMAIL DISPLAY_NAME
  note "Service account $2"
  if exists gcloud iam service-accounts describe "$2" --project="$PROJECT"; then
    echo "   exists, kept" >&2
  else
    run_create gcloud iam service-accounts create "$1" --display-name="$3" --project="$PROJECT"
  fi
}

create_service_accounts() {
  # One identity per job, so that each holds only what its job needs.
  create_account "$SERVICE_ACCOUNT" "$SA_EMAIL" "Outbound SMS API (Cloud Function $FUNCTION_NAME)"
  create_account "$SWEEPER_SERVICE_ACCOUNT" "$SWEEPER_SA_EMAIL" \
    "Outbound SMS sweeper (Cloud Function $SWEEPER_FUNCTION_NAME)"
  create_account "$SCHEDULER_SERVICE_ACCOUNT" "$SCHEDULER_SA_EMAIL" \
    "Invokes $SWEEPER_FUNCTION_NAME for Cloud Scheduler job $SWEEP_JOB"
}

# ---- 5. Their roles -----------------------------------------------------------------------

# roles/secretmanager.secretAccessor on each secret of a --set-secrets list, not on the
# project, so that the account can read those secrets and no others.
grant_secrets() { # EMAIL SECRET_LIST
  [[ -n "$2" ]] || return 0
  local entries entry bound=" "
  IFS=',' read -r -a entries <<< "$2"
  for entry in ${entries[@]+"${entries[@]}"}; do
    secret_of "$entry"
    [[ "$bound" != *" $SECRET_PROJECT/$SECRET_NAME "* ]] || continue
    bound+="$SECRET_PROJECT/$SECRET_NAME "
    bind gcloud secrets add-iam-policy-binding "$SECRET_NAME" --project="$SECRET_PROJECT" \
      --member="serviceAccount:$1" --role=roles/secretmanager.secretAccessor \
      --condition=None --format=none
  done
}

grant_roles() {
  # The functions' only role on the project:
  #   roles/datastore.user - read and write Firestore documents (the tenants' configuration,
  #     sessions, messages, counters, idempotency records). No admin role: indexes and TTL
  #     policies are set here, by the operator, never by a function. It is bound with an IAM
  #     condition on FIRESTORE_DATABASE's resource name, so that a function reaches its own
  #     database and no other: a staging deployment (FIRESTORE_DATABASE=sms-staging) cannot
  #     read or write the production (default) database.
  # Not granted:
  #   roles/logging.logWriter - the functions log to stdout and stderr, which Cloud Run
  #     collects by itself; they never call the Cloud Logging API (google-cloud-logging is not
  #     in requirements.txt), so they need no logging role.
  # The scheduler's account gets no project role at all: only the right to invoke the
  # sweeper, granted on the sweeper once it is deployed (step 7).
  local email
  for email in "$SA_EMAIL" "$SWEEPER_SA_EMAIL"; do
    note "Roles of $email"
    bind gcloud projects add-iam-policy-binding "$PROJECT" \
      --member="serviceAccount:$email" --role=roles/datastore.user \
      --condition="$DATABASE_CONDITION" --format=none
    # An older deployment bound the role without a condition, on every database of the
    # project: while that binding stays, the condition above limits nothing. It goes only
    # now, after the conditional binding is in place, so the running functions never lose
    # their own database.
    unbind gcloud projects remove-iam-policy-binding "$PROJECT" \
      --member="serviceAccount:$email" --role=roles/datastore.user --condition=None --format=none
    if [[ "$email" == "$SA_EMAIL" ]]; then
      grant_secrets "$email" "$API_SECRETS"
    else
      grant_secrets "$email" "$SWEEPER_SECRETS"
    fi
  done
}

# ---- 6. The functions ---------------------------------------------------------------------

# The environment both functions share: where the data is, and the carrier.
carrier_env() {
  local vars=(
    "GOOGLE_CLOUD_PROJECT=$PROJECT"
    "FIRESTORE_DATABASE=$FIRESTORE_DATABASE"
    "SMS_REQUEST_DEADLINE_SECONDS=$SMS_REQUEST_DEADLINE_SECONDS"
    "SMS_FIRESTORE_TIMEOUT_SECONDS=$SMS_FIRESTORE_TIMEOUT_SECONDS"
    "SMS_CARRIER=$SMS_CARRIER"
  )
  [[ -z "$TWILIO_ACCOUNT_SID" ]] || vars+=("TWILIO_ACCOUNT_SID=$TWILIO_ACCOUNT_SID")
  [[ -z "$TWILIO_MESSAGING_SERVICE_SID" ]] ||
    vars+=("TWILIO_MESSAGING_SERVICE_SID=$TWILIO_MESSAGING_SERVICE_SID")
  [[ -z "$TWILIO_API_BASE_URL" ]] || vars+=("TWILIO_API_BASE_URL=$TWILIO_API_BASE_URL")
  # The sweeper too sends with the API's URL as the base of the status callback.
  vars+=(
    "SMS_PUBLIC_BASE_URL=$SMS_PUBLIC_BASE_URL"
    "SMS_SWEEP_AFTER_SECONDS=$SMS_SWEEP_AFTER_SECONDS"
  )
  (IFS=','; echo "${vars[*]}")
}

# What deploys any function of this repository: the flags both deployments share.
deploy_command() { # NAME -> sets DEPLOY
  DEPLOY=(
    gcloud functions deploy "$1"
    --gen2
    --runtime="$RUNTIME"
    --region="$REGION"
    --source="$ROOT" # .gcloudignore keeps the upload to main.py, requirements.txt and sms/
    --trigger-http
  )
}

deploy_options() { # [SECRET_LIST]: what follows the function's own flags
  local build_sa
  [[ -z "${1:-}" ]] || DEPLOY+=(--set-secrets="$1")
  if [[ -n "$BUILD_SERVICE_ACCOUNT" ]]; then
    build_sa="$BUILD_SERVICE_ACCOUNT"
    [[ "$build_sa" == projects/* ]] || build_sa="projects/$PROJECT/serviceAccounts/$build_sa"
    DEPLOY+=(--build-service-account="$build_sa")
  fi
  DEPLOY+=(--project="$PROJECT")
}

deploy_api() {
  note "Function $FUNCTION_NAME in $REGION (the build takes a few minutes)"
  # functions-framework serves with gunicorn threads; Google's advice for Python is as many
  # threads as the concurrency, or the requests beyond them wait inside the instance.
  local env_list
  env_list="$(carrier_env),SMS_ID_BLOCK_SIZE=$SMS_ID_BLOCK_SIZE,THREADS=$CONCURRENCY"
  deploy_command "$FUNCTION_NAME"
  DEPLOY+=(
    --entry-point=sms_api
    # Callers reach the function without Google credentials; every request is still
    # authenticated by the function itself (HTTP Basic with one of a tenant's API tokens,
    # and Twilio's signature on its webhooks).
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
  deploy_options "$API_SECRETS"
  run "${DEPLOY[@]}"
}

deploy_sweeper() {
  note "Function $SWEEPER_FUNCTION_NAME in $REGION (the build takes a few minutes)"
  local env_list
  env_list="$(carrier_env),THREADS=1"
  deploy_command "$SWEEPER_FUNCTION_NAME"
  DEPLOY+=(
    --entry-point=sms_sweeper
    # Only a caller with the invoker role on it (the scheduler's account) gets through:
    # Cloud Run checks the OIDC token before the function runs. On a redeploy this also
    # takes back any public access granted by hand.
    --no-allow-unauthenticated
    --service-account="$SWEEPER_SA_EMAIL"
    --memory="$MEMORY"
    --cpu="$CPU"
    --timeout="$SWEEPER_TIMEOUT" # a sweep stops itself after about 50 s
    # One sweep at a time: two would only wait for each other's claims.
    --min-instances=0
    --max-instances=1
    --concurrency=1
    --set-env-vars="$env_list"
  )
  deploy_options "$SWEEPER_SECRETS"
  run "${DEPLOY[@]}"
}

# ---- 7. Who may call the sweeper ----------------------------------------------------------

grant_invoker() {
  # For a 2nd-gen function: roles/run.invoker on its Cloud Run service, and nowhere else.
  note "Invoker of $SWEEPER_FUNCTION_NAME: $SCHEDULER_SA_EMAIL"
  bind gcloud functions add-invoker-policy-binding "$SWEEPER_FUNCTION_NAME" --region="$REGION" \
    --member="serviceAccount:$SCHEDULER_SA_EMAIL" --project="$PROJECT" --format=none
}

# ---- 8. The schedule ----------------------------------------------------------------------

# Sets URL to a function's URL, as gcloud describes it. In --dry-run the describe is printed
# and URL is the placeholder given.
function_url() { # NAME PLACEHOLDER
  local describe=(gcloud functions describe "$1" --region="$REGION"
    --project="$PROJECT" --format='value(serviceConfig.uri)')
  if [[ "$DRY_RUN" == 1 ]]; then
    show "${describe[@]}"
    URL="$2"
  else
    show "${describe[@]}" >&2
    URL="$("${describe[@]}")"
    [[ -n "$URL" ]] || die "gcloud gave no URL for function $1"
  fi
}

schedule_sweeps() {
  note "Cloud Scheduler job $SWEEP_JOB in $SCHEDULER_LOCATION ($SWEEP_SCHEDULE)"
  function_url "$SWEEPER_FUNCTION_NAME" "https://<URL of $SWEEPER_FUNCTION_NAME, printed by the describe above>"
  SWEEPER_URL="$URL"
  # Each run POSTs to the sweeper with an OIDC token of the scheduler's account, minted for
  # the sweeper's URL; it may take as long as the sweeper may run.
  local job=(
    --location="$SCHEDULER_LOCATION"
    --schedule="$SWEEP_SCHEDULE"
    --uri="$SWEEPER_URL"
    --http-method=POST
    --oidc-service-account-email="$SCHEDULER_SA_EMAIL"
    --oidc-token-audience="$SWEEPER_URL"
    --attempt-deadline="$SWEEPER_TIMEOUT"
    --description="Settles unsettled SMS sends: calls Cloud Function $SWEEPER_FUNCTION_NAME"
    --project="$PROJECT"
  )
  if exists gcloud scheduler jobs describe "$SWEEP_JOB" --location="$SCHEDULER_LOCATION" \
    --project="$PROJECT"; then
    run gcloud scheduler jobs update http "$SWEEP_JOB" "${job[@]}"
  else
    run_create gcloud scheduler jobs create http "$SWEEP_JOB" "${job[@]}"
  fi
}

# ---- 9. Where it answers ------------------------------------------------------------------

print_urls() {
  local url
  function_url "$FUNCTION_NAME" "https://<the function's URL, printed by the describe above>"
  url="$URL"
  echo
  echo "Function URL:     $url"
  echo "Endpoint:         $url$SMS_PATH"
  if [[ "$SMS_CARRIER" == twilio ]]; then
    # Twilio signs its webhooks over these very URLs: it must be given them as they are.
    echo "Status callback:  $SMS_PUBLIC_BASE_URL$SMS_PATH/status"
    echo "                  (sent to Twilio with each message: nothing to configure)"
    echo "Incoming SMS:     $SMS_PUBLIC_BASE_URL$SMS_PATH/inbound"
    echo "                  (each Twilio number's \"A message comes in\" webhook, HTTP POST)"
  else
    echo "Carrier:          $SMS_CARRIER (messages are logged, not sent)"
  fi
  echo "Sweeper:          $SWEEPER_URL"
  echo "                  (no public access; job $SWEEP_JOB calls it on '$SWEEP_SCHEDULE')"
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
  create_service_accounts
  grant_roles
  deploy_api
  deploy_sweeper
  grant_invoker
  schedule_sweeps
  print_urls
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
