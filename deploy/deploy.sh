#!/usr/bin/env bash
# Deploy the Outbound SMS API to a Google Cloud project: the APIs it needs, a Firestore
# database in Native mode, the indexes and TTL policies of firestore.indexes.json, five
# service accounts with the few roles each needs, the Pub/Sub topics that carry events, the
# three 2nd-gen Cloud Functions (the API, its sweeper, and the events function that delivers
# webhooks), the schedule of those deliveries, and the Cloud Scheduler job that calls the
# sweeper every minute. Safe to run again: whatever already exists is kept, the functions
# are redeployed, and the subscriptions and the job are updated. `deploy/deploy.sh --help`
# explains the settings; `--dry-run` prints what it would run.
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
     Firestore, Cloud Logging, IAM, Cloud Scheduler, Pub/Sub, Eventarc; Secret Manager too
     when SECRETS or TWILIO_AUTH_TOKEN_SECRET is set);
  2. creates the Firestore database (Native mode) unless it exists;
  3. applies firestore.indexes.json: creates each composite index of "indexes", and for each
     entry of "fieldOverrides" enables its TTL policy ("ttl": true) and sets its single-field
     indexes ("indexes": [] exempts the field from indexing). Today: the sweeper's queries
     (messages to settle, held messages now due, sessions idle past their timeout, events
     not yet dispatched), GET /apps/api/v1/chats (newest first, by status and/or number)
     and GET /apps/api/v1/events (by type); TTL policies on idempotency_keys,
     request_counts, events (30 days, with their deliveries) and webhook_attempts; deploy/README.md
     lists each index and the query it serves;
  4. creates five service accounts unless they exist: the API function's, the sweeper
     function's, the one Cloud Scheduler calls the sweeper as, the events function's, and
     the one Eventarc and Pub/Sub call the events function as;
  5. creates the Pub/Sub topic SMS_EVENTS_TOPIC, which carries events to the events
     function, and its dead-letter topic SMS_EVENTS_TOPIC-dead-letter, unless they exist;
  6. grants the three functions' accounts roles/datastore.user (read and write Firestore:
     nothing more) with an IAM condition that limits it to the database FIRESTORE_DATABASE
     (resource.name == "projects/PROJECT/databases/FIRESTORE_DATABASE"), then removes an
     unconditional roles/datastore.user binding of theirs that an older deployment left,
     which would reach every database of the project; grants the API's and the sweeper's
     accounts roles/secretmanager.secretAccessor on each secret they are given (SECRETS: the
     API only; TWILIO_AUTH_TOKEN_SECRET: both), and roles/pubsub.publisher on the topic
     SMS_EVENTS_TOPIC (on the topic, not on the project);
  7. deploys the API function (2nd gen, HTTP trigger, entry point sms_api, public), the
     sweeper function (entry point sms_sweeper, no public access, one instance at most) and
     the events function (entry point sms_events, no public access, fed by SMS_EVENTS_TOPIC
     through an Eventarc trigger, failed deliveries retried), all from the repository root:
     .gcloudignore keeps the upload to main.py, requirements.txt and sms/ without its
     devtools/ and admin/;
  8. lets the scheduler's account, and it alone, invoke the sweeper, and the trigger's
     account, and it alone, invoke the events function;
  9. sets the schedule of webhook deliveries on the Pub/Sub subscription of the events
     function's trigger: retries from 10s to 600s apart, messages kept 3 days, and after 100
     attempts (about 16 hours) the message goes to the dead-letter topic, whose own push
     subscription SMS_EVENTS_TOPIC-dead-letter-retry (created, or updated when it exists)
     brings it back to the events function on the same schedule, until the function gives
     an endpoint up at 3 days; Pub/Sub's service agent may publish to the dead-letter topic
     and acknowledge on the trigger's subscription, which dead-lettering needs;
 10. creates the Cloud Scheduler job that POSTs to the sweeper on SWEEP_SCHEDULE with an
     OIDC token of that account, or updates it when it exists;
 11. prints the function's URL, the endpoint URL (<url>/apps/api/v1/sms), the sweeper's and
     the events function's URLs and, with Twilio, the webhook URLs to give Twilio.

Running it again keeps what exists, redeploys the three functions with the current code and
settings (env vars are replaced as a whole, and so are a function's secrets when it has any
to set), and updates the subscriptions and the job.

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
  MEMORY                         memory of an instance (every function) [512Mi]
  CPU                            vCPUs of an instance (every function); at least 1 when
                                 CONCURRENCY > 1 [1]
  TIMEOUT                        longest an API request may run [60s]
  MIN_INSTANCES                  API instances kept warm [0]
  MAX_INSTANCES                  most API instances at once [100]
  CONCURRENCY                    requests one API or events instance serves at once; also
                                 sets the instance's THREADS, as Google recommends for
                                 Python [8]
  SMS_REQUEST_DEADLINE_SECONDS   the function's request deadline on Firestore, at most 10 [8]
  SMS_FIRESTORE_TIMEOUT_SECONDS  the longest one Firestore call may take [5]
  SMS_ID_BLOCK_SIZE              ids an instance reserves at once [50]
  SECRETS                        optional, for the API's --set-secrets: comma-separated
                                 ENV_VAR=SECRET:VERSION (Secret Manager) [none]
  BUILD_SERVICE_ACCOUNT          optional service account email for Cloud Build to build
                                 the functions with, instead of the project's default [none]

 The carrier (the API and the sweeper get the same settings):
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
                                 sweeper settles it; 15 or more [60]

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

 The events (webhooks to the tenants' own systems) and their delivery:
  SMS_EVENTS_TOPIC               the Pub/Sub topic the API and the sweeper publish events
                                 to, and the events function is fed by; its dead-letter
                                 topic is <topic>-dead-letter [sms-events]
  EVENTS_FUNCTION_NAME           name of the events function [sms-events]
  EVENTS_SERVICE_ACCOUNT         account id of the events function's service account
                                 [sms-events]
  EVENTS_TRIGGER_SERVICE_ACCOUNT account id that Eventarc and Pub/Sub call the events
                                 function as; it may invoke it and nothing else
                                 [sms-events-trigger]
  EVENTS_TIMEOUT                 longest one delivery round may run, 10s to 540s; Pub/Sub
                                 waits as long for the function's answer [120s]

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

# Run a command that may fail in a way that is no failure at all. Options, before the command:
#   --done ERE NOTE   a failure whose error output matches ERE (grep -iE) counts as done:
#                     NOTE is printed instead of that output
#   --retry ERE NOTE  a failure whose error output matches ERE is tried again, up to
#                     RETRY_ATTEMPTS attempts in all, waiting RETRY_SECONDS, then twice as
#                     long, and so on; NOTE is printed before each wait
# The command is shown as run() shows it. Its error output is held back until it is known
# whether the failure is tolerated: it is printed then, unless it was.
RETRY_ATTEMPTS=6
RETRY_SECONDS=5
run_tolerating() {
  local done_ere="" done_note="" retry_ere="" retry_note=""
  while [[ "$1" != -- ]]; do
    case "$1" in
      --done) done_ere="$2" done_note="$3" ;;
      --retry) retry_ere="$2" retry_note="$3" ;;
      *) die "internal error: run_tolerating $1" ;;
    esac
    shift 3
  done
  shift
  if [[ "$DRY_RUN" == 1 ]]; then
    show "$@"
    return 0
  fi
  show "$@" >&2
  local attempt=1 err status
  err="$(mktemp)"
  while :; do
    status=0
    "$@" 2> "$err" || status=$?
    if [[ "$status" == 0 || -z "$retry_ere" || "$attempt" -ge "$RETRY_ATTEMPTS" ]] ||
      ! grep -qiE "$retry_ere" "$err"; then
      break
    fi
    echo "   $retry_note: retrying in $((attempt * RETRY_SECONDS))s" >&2
    sleep $((attempt * RETRY_SECONDS))
    attempt=$((attempt + 1))
  done
  if [[ "$status" != 0 && -n "$done_ere" ]] && grep -qiE "$done_ere" "$err"; then
    echo "   $done_note" >&2
    status=0
  else
    cat "$err" >&2
  fi
  rm -f "$err"
  return "$status"
}

# A command that creates something: "already exists" counts as done, so that a check that
# could not see the thing, or two runs racing each other, do not fail the deployment.
run_create() {
  run_tolerating --done 'already exists|ALREADY_EXISTS' "(already exists)" -- "$@"
}

# An IAM binding. Adding a binding that is already there changes nothing, so bindings run
# every time. A service account just created can take a few seconds to be known to IAM: the
# binding is then retried, and only then.
bind() {
  run_tolerating --retry 'does not exist|not found' \
    "the service account is not known to IAM yet" -- "$@"
}

# The removal of an IAM binding that may not be there: "not found" counts as done, so that
# every run can make sure it is gone.
unbind() {
  run_tolerating --done 'Policy bindings? with the specified principal.*not found' \
    "(no such binding: nothing to remove)" -- "$@"
}

# True when the check (a gcloud describe) succeeds, i.e. the thing exists. Never runs in
# --dry-run: there everything counts as missing, and its create command is printed.
exists() {
  [[ "$DRY_RUN" == 0 ]] && "$@" > /dev/null 2>&1
}

# Sets VALUE to what a describe prints (one --format='value(...)'). In --dry-run the describe
# is printed and VALUE is the placeholder given, which names where the value comes from.
read_value() { # WHAT PLACEHOLDER DESCRIBE...
  local what="$1" placeholder="$2"
  shift 2
  if [[ "$DRY_RUN" == 1 ]]; then
    show "$@"
    VALUE="$placeholder"
  else
    show "$@" >&2
    VALUE="$("$@")"
    [[ -n "$VALUE" ]] || die "gcloud gave no $what"
  fi
}

# Sets URL to a function's URL, as gcloud describes it (in --dry-run, the placeholder).
function_url() { # NAME PLACEHOLDER
  read_value "URL for function $1" "$2" gcloud functions describe "$1" --region="$REGION" \
    --project="$PROJECT" --format='value(serviceConfig.uri)'
  URL="$VALUE"
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

at_most() { # NAME VALUE MOST: dies unless VALUE (a number) is MOST (a whole number) or less
  local whole="${2%%.*}" fraction="" within=0
  [[ "$2" == *.* ]] && fraction="${2#*.}"
  while [[ "$whole" == 0* ]]; do whole="${whole#0}"; done
  if [[ "${#whole}" -le 9 ]]; then
    if [[ "${whole:-0}" -lt "$3" ]]; then
      within=1
    elif [[ "${whole:-0}" -eq "$3" && ! "$fraction" =~ [1-9] ]]; then
      within=1
    fi
  fi
  [[ "$within" == 1 ]] || die "$1 must be at most $3, not '$2'"
}

at_least() { # NAME VALUE LEAST: dies unless VALUE is a number, LEAST (a whole number) or more
  local pattern='^([0-9]+(\.[0-9]*)?|\.[0-9]+)$' whole="${2%%.*}"
  while [[ "$whole" == 0* ]]; do whole="${whole#0}"; done
  [[ "$2" =~ $pattern ]] && [[ "${#whole}" -gt 9 || "${whole:-0}" -ge "$3" ]] ||
    die "$1 must be a number, $3 or more, not '$2'"
}

# Dies unless each of the settings NAMEs matches PATTERN (KIND says what that is), and each
# has a value of its own.
distinct() { # PATTERN KIND NAME...
  local pattern="$1" kind="$2" name other
  shift 2
  for name in "$@"; do
    [[ "${!name}" =~ $pattern ]] || die "$name must be $kind, not '${!name}'"
    for other in "$@"; do
      [[ "$other" != "$name" ]] || break
      [[ "${!other}" != "${!name}" ]] || die "$name must differ from $other ('${!other}')"
    done
  done
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
  # The events and their delivery.
  SMS_EVENTS_TOPIC="${SMS_EVENTS_TOPIC:-sms-events}"
  EVENTS_FUNCTION_NAME="${EVENTS_FUNCTION_NAME:-sms-events}"
  EVENTS_SERVICE_ACCOUNT="${EVENTS_SERVICE_ACCOUNT:-sms-events}"
  EVENTS_TRIGGER_SERVICE_ACCOUNT="${EVENTS_TRIGGER_SERVICE_ACCOUNT:-sms-events-trigger}"
  EVENTS_TIMEOUT="${EVENTS_TIMEOUT:-120s}"

  # What the functions would only reject once deployed (sms/config.py) is refused now.
  [[ "$PROJECT" =~ ^[a-z][a-z0-9-]{4,28}[a-z0-9]$ ]] ||
    die "PROJECT must be a project id (6-30 of a-z, 0-9, -), not '$PROJECT'"
  # One identity per job, so that each holds only what its job needs: the scheduler's and
  # the trigger's accounts may each invoke one function and do nothing else.
  distinct '^[a-z][a-z0-9-]{4,28}[a-z0-9]$' "an account id (6-30 of a-z, 0-9, -)" \
    SERVICE_ACCOUNT SWEEPER_SERVICE_ACCOUNT SCHEDULER_SERVICE_ACCOUNT \
    EVENTS_SERVICE_ACCOUNT EVENTS_TRIGGER_SERVICE_ACCOUNT
  # The same name would deploy one function over another.
  distinct '^[A-Za-z][A-Za-z0-9_-]*$' "a function name (letters, digits, - and _)" \
    FUNCTION_NAME SWEEPER_FUNCTION_NAME EVENTS_FUNCTION_NAME
  [[ "$SWEEP_JOB" =~ ^[A-Za-z0-9_-]+$ ]] ||
    die "SWEEP_JOB must be a job name (letters, digits, - and _), not '$SWEEP_JOB'"
  [[ "$SWEEP_SCHEDULE" =~ ^[0-9A-Za-z*/,-]+([[:space:]]+[0-9A-Za-z*/,-]+){4}$ ]] ||
    die "SWEEP_SCHEDULE must be a unix-cron schedule of five fields, e.g. '* * * * *', not '$SWEEP_SCHEDULE'"
  positive SMS_REQUEST_DEADLINE_SECONDS "$SMS_REQUEST_DEADLINE_SECONDS"
  # A request answers within 10 s (SPEC 10.3): the function refuses a longer deadline at start.
  at_most SMS_REQUEST_DEADLINE_SECONDS "$SMS_REQUEST_DEADLINE_SECONDS" 10
  positive SMS_FIRESTORE_TIMEOUT_SECONDS "$SMS_FIRESTORE_TIMEOUT_SECONDS"
  positive SMS_ID_BLOCK_SIZE "$SMS_ID_BLOCK_SIZE" integer
  positive CONCURRENCY "$CONCURRENCY" integer
  # The functions refuse to start with less: a hand-over can be in flight for up to a
  # request's 10 s, and a sweep must not settle it under the request's feet.
  at_least SMS_SWEEP_AFTER_SECONDS "$SMS_SWEEP_AFTER_SECONDS" 15
  # A topic id as Pub/Sub accepts it, with room for "-dead-letter-retry" (the name of the
  # dead-letter topic's subscription), and nothing that --set-env-vars would split at.
  [[ "$SMS_EVENTS_TOPIC" =~ ^[A-Za-z][A-Za-z0-9._~+%-]{2,236}$ &&
    "$SMS_EVENTS_TOPIC" != [gG][oO][oO][gG]* ]] ||
    die "SMS_EVENTS_TOPIC must be a topic id (3-237 of letters, digits and - . _ ~ + %, starting with a letter, not with goog), not '$SMS_EVENTS_TOPIC'"
  # Whole seconds: Pub/Sub waits as long for the function's answer (its ack deadline), and an
  # event-driven function may run 540 s at most.
  [[ "$EVENTS_TIMEOUT" =~ ^[1-9][0-9]{1,2}s$ && "${EVENTS_TIMEOUT%s}" -le 540 ]] ||
    die "EVENTS_TIMEOUT must be whole seconds from 10s to 540s, e.g. 120s, not '$EVENTS_TIMEOUT'"
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
  EVENTS_SA_EMAIL="$EVENTS_SERVICE_ACCOUNT@$PROJECT.iam.gserviceaccount.com"
  EVENTS_TRIGGER_SA_EMAIL="$EVENTS_TRIGGER_SERVICE_ACCOUNT@$PROJECT.iam.gserviceaccount.com"
  DEAD_LETTER_TOPIC="$SMS_EVENTS_TOPIC-dead-letter"
  DEAD_LETTER_SUBSCRIPTION="$DEAD_LETTER_TOPIC-retry"

  # The IAM condition of the functions' roles/datastore.user: the database's resource name,
  # in the form Google documents for per-database access ("Configure per-database access
  # permissions", Firestore: resource.name=="projects/PROJECT_ID/databases/DATABASE_ID").
  # gcloud splits --condition at commas: the id check above keeps them out of every part.
  # The title and description depend on the database alone, so a second run adds the very
  # same condition (no change), and the accounts share one binding. The title stays short:
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
    pubsub.googleapis.com           # carries the events to the events function
    eventarc.googleapis.com         # the events function's trigger on the topic
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

# The file as one line per gcloud call (deploy/firestore_plan.py explains the lines), or a
# refusal of anything gcloud cannot express, before a single command runs.
firestore_plan() { # FILE
  python3 "$ROOT/deploy/firestore_plan.py" "$1"
}

# Whether a field already is as a step wants it: its TTL policy on (ttl), or its indexes off
# (noindex). In --dry-run, or when the field cannot be read, it is not (the update runs).
field_is() { # ttl|noindex FIELD --collection-group=GROUP
  [[ "$DRY_RUN" == 0 ]] || return 1
  gcloud firestore indexes fields describe "$2" "$3" --database="$FIRESTORE_DATABASE" \
    --project="$PROJECT" --format=json 2> /dev/null |
    python3 "$ROOT/deploy/firestore_plan.py" --field-is "$1"
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
  create_account "$EVENTS_SERVICE_ACCOUNT" "$EVENTS_SA_EMAIL" \
    "Outbound SMS events (Cloud Function $EVENTS_FUNCTION_NAME)"
  create_account "$EVENTS_TRIGGER_SERVICE_ACCOUNT" "$EVENTS_TRIGGER_SA_EMAIL" \
    "Invokes $EVENTS_FUNCTION_NAME for Eventarc and Pub/Sub"
}

# ---- 5. The events' topics ----------------------------------------------------------------

create_topic() { # TOPIC
  note "Pub/Sub topic $1"
  if exists gcloud pubsub topics describe "$1" --project="$PROJECT"; then
    echo "   exists, kept" >&2
  else
    run_create gcloud pubsub topics create "$1" --project="$PROJECT"
  fi
}

create_topics() {
  # The API and the sweeper publish each event (its tenant and id) to SMS_EVENTS_TOPIC, and
  # the events function's trigger takes them from there (step 7). What that trigger's
  # subscription gives up on goes to the dead-letter topic (step 9).
  create_topic "$SMS_EVENTS_TOPIC"
  create_topic "$DEAD_LETTER_TOPIC"
}

# ---- 6. Their roles -----------------------------------------------------------------------

# roles/datastore.user limited to FIRESTORE_DATABASE, for one function's account.
grant_database() { # EMAIL
  bind gcloud projects add-iam-policy-binding "$PROJECT" \
    --member="serviceAccount:$1" --role=roles/datastore.user \
    --condition="$DATABASE_CONDITION" --format=none
  # An older deployment bound the role without a condition, on every database of the
  # project: while that binding stays, the condition above limits nothing. It goes only now,
  # after the conditional binding is in place, so the running functions never lose their
  # own database. (For an account that never had one, gcloud finds none: nothing to do.)
  unbind gcloud projects remove-iam-policy-binding "$PROJECT" \
    --member="serviceAccount:$1" --role=roles/datastore.user --condition=None --format=none
}

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

# roles/pubsub.publisher on the events' topic, not on the project, so that the account may
# publish there and nowhere else, and read no message of any topic.
grant_publisher() { # EMAIL
  bind gcloud pubsub topics add-iam-policy-binding "$SMS_EVENTS_TOPIC" \
    --member="serviceAccount:$1" --role=roles/pubsub.publisher --project="$PROJECT" --format=none
}

grant_roles() {
  # The functions' only role on the project:
  #   roles/datastore.user - read and write Firestore documents (the tenants' configuration,
  #     sessions, messages, events, counters, idempotency records). No admin role: indexes
  #     and TTL policies are set here, by the operator, never by a function. It is bound with
  #     an IAM condition on FIRESTORE_DATABASE's resource name, so that a function reaches its
  #     own database and no other: a staging deployment (FIRESTORE_DATABASE=sms-staging)
  #     cannot read or write the production (default) database.
  # Not granted:
  #   roles/logging.logWriter - the functions log to stdout and stderr, which Cloud Run
  #     collects by itself; they never call the Cloud Logging API (google-cloud-logging is not
  #     in requirements.txt), so they need no logging role.
  #   any Pub/Sub role to the events function: Eventarc pushes each message to it, as the
  #     trigger's account; the function itself neither pulls nor publishes.
  # The scheduler's and the trigger's accounts get no role here at all: only the right to
  # invoke their one function, granted on it once it is deployed (step 8).
  note "Roles of $SA_EMAIL"
  grant_database "$SA_EMAIL"
  grant_secrets "$SA_EMAIL" "$API_SECRETS"
  grant_publisher "$SA_EMAIL"
  note "Roles of $SWEEPER_SA_EMAIL"
  grant_database "$SWEEPER_SA_EMAIL"
  grant_secrets "$SWEEPER_SA_EMAIL" "$SWEEPER_SECRETS"
  grant_publisher "$SWEEPER_SA_EMAIL"
  note "Roles of $EVENTS_SA_EMAIL"
  grant_database "$EVENTS_SA_EMAIL"
}

# ---- 7. The functions ---------------------------------------------------------------------

# The environment every function gets: where the data is, and where the events go.
shared_env() {
  local vars=(
    "GOOGLE_CLOUD_PROJECT=$PROJECT"
    "FIRESTORE_DATABASE=$FIRESTORE_DATABASE"
    "SMS_REQUEST_DEADLINE_SECONDS=$SMS_REQUEST_DEADLINE_SECONDS"
    "SMS_FIRESTORE_TIMEOUT_SECONDS=$SMS_FIRESTORE_TIMEOUT_SECONDS"
    "SMS_EVENTS_TOPIC=$SMS_EVENTS_TOPIC"
  )
  (IFS=','; echo "${vars[*]}")
}

# The environment of the functions that send, the API and the sweeper: the shared one and
# the carrier.
carrier_env() {
  local vars=("SMS_CARRIER=$SMS_CARRIER")
  [[ -z "$TWILIO_ACCOUNT_SID" ]] || vars+=("TWILIO_ACCOUNT_SID=$TWILIO_ACCOUNT_SID")
  [[ -z "$TWILIO_MESSAGING_SERVICE_SID" ]] ||
    vars+=("TWILIO_MESSAGING_SERVICE_SID=$TWILIO_MESSAGING_SERVICE_SID")
  [[ -z "$TWILIO_API_BASE_URL" ]] || vars+=("TWILIO_API_BASE_URL=$TWILIO_API_BASE_URL")
  # The sweeper too sends with the API's URL as the base of the status callback.
  vars+=(
    "SMS_PUBLIC_BASE_URL=$SMS_PUBLIC_BASE_URL"
    "SMS_SWEEP_AFTER_SECONDS=$SMS_SWEEP_AFTER_SECONDS"
  )
  (IFS=','; echo "$(shared_env),${vars[*]}")
}

# Deploys one function of this repository: the flags all of them share, around the
# function's own (its trigger, entry point, access, identity, timeout, scaling and
# environment). A SECRET_LIST replaces the function's secrets as a whole; without one, the
# function keeps those it has.
deploy_function() { # NAME SECRET_LIST OWN_FLAG...
  local name="$1" secrets="$2" build_sa
  shift 2
  note "Function $name in $REGION (the build takes a few minutes)"
  local deploy=(
    gcloud functions deploy "$name"
    --gen2
    --runtime="$RUNTIME"
    --region="$REGION"
    --source="$ROOT" # .gcloudignore keeps the upload to main.py, requirements.txt and sms/
    "$@"
    --memory="$MEMORY"
    --cpu="$CPU"
  )
  [[ -z "$secrets" ]] || deploy+=(--set-secrets="$secrets")
  if [[ -n "$BUILD_SERVICE_ACCOUNT" ]]; then
    build_sa="$BUILD_SERVICE_ACCOUNT"
    [[ "$build_sa" == projects/* ]] || build_sa="projects/$PROJECT/serviceAccounts/$build_sa"
    deploy+=(--build-service-account="$build_sa")
  fi
  run "${deploy[@]}" --project="$PROJECT"
}

deploy_api() {
  local own=(
    --trigger-http
    --entry-point=sms_api
    # Callers reach the function without Google credentials; every request is still
    # authenticated by the function itself (HTTP Basic with one of a tenant's API tokens,
    # and Twilio's signature on its webhooks).
    --allow-unauthenticated
    --service-account="$SA_EMAIL"
    --timeout="$TIMEOUT"
    --min-instances="$MIN_INSTANCES"
    --max-instances="$MAX_INSTANCES"
    # functions-framework serves with gunicorn threads; Google's advice for Python is as
    # many threads as the concurrency, or the requests beyond them wait inside the instance.
    --concurrency="$CONCURRENCY"
    --set-env-vars="$(carrier_env),SMS_ID_BLOCK_SIZE=$SMS_ID_BLOCK_SIZE,THREADS=$CONCURRENCY"
  )
  deploy_function "$FUNCTION_NAME" "$API_SECRETS" "${own[@]}"
}

deploy_sweeper() {
  local own=(
    --trigger-http
    --entry-point=sms_sweeper
    # Only a caller with the invoker role on it (the scheduler's account) gets through:
    # Cloud Run checks the OIDC token before the function runs. On a redeploy this also
    # takes back any public access granted by hand.
    --no-allow-unauthenticated
    --service-account="$SWEEPER_SA_EMAIL"
    --timeout="$SWEEPER_TIMEOUT" # a sweep stops itself after about 50 s
    # One sweep at a time: two would only wait for each other's claims.
    --min-instances=0
    --max-instances=1
    --concurrency=1
    --set-env-vars="$(carrier_env),THREADS=1"
  )
  deploy_function "$SWEEPER_FUNCTION_NAME" "$SWEEPER_SECRETS" "${own[@]}"
}

deploy_events() {
  local own=(
    # Eventarc makes a Pub/Sub push subscription on the topic, which calls the function
    # with each message and an identity token of the trigger's account.
    --trigger-topic="$SMS_EVENTS_TOPIC"
    --trigger-service-account="$EVENTS_TRIGGER_SA_EMAIL"
    # The function answers an error while an endpoint still fails, so that Pub/Sub pushes
    # the event again later (step 9). Without --retry, Eventarc would acknowledge the
    # failed delivery and nothing would be retried.
    --retry
    --entry-point=sms_events
    # Only a caller with the invoker role on it (the trigger's account) gets through. On a
    # redeploy this also takes back any public access granted by hand.
    --no-allow-unauthenticated
    --service-account="$EVENTS_SA_EMAIL"
    --timeout="$EVENTS_TIMEOUT"
    --concurrency="$CONCURRENCY" # as many threads as requests, as for the API
    --set-env-vars="$(shared_env),THREADS=$CONCURRENCY"
  )
  deploy_function "$EVENTS_FUNCTION_NAME" "" "${own[@]}"
}

# ---- 8. Who may call the sweeper and the events function ----------------------------------

# For a 2nd-gen function: roles/run.invoker on its Cloud Run service, and nowhere else.
grant_invoker() { # FUNCTION EMAIL
  note "Invoker of $1: $2"
  bind gcloud functions add-invoker-policy-binding "$1" --region="$REGION" \
    --member="serviceAccount:$2" --project="$PROJECT" --format=none
}

grant_invokers() {
  grant_invoker "$SWEEPER_FUNCTION_NAME" "$SCHEDULER_SA_EMAIL"
  grant_invoker "$EVENTS_FUNCTION_NAME" "$EVENTS_TRIGGER_SA_EMAIL"
}

# ---- 9. The schedule of event deliveries --------------------------------------------------

# Pub/Sub's retry policy and retention are the only schedule of webhook deliveries: the
# function tries every endpoint that has not yet succeeded each time a message is pushed,
# and answers an error while one still fails.
#
# Eventarc's subscription retries from 10 s up to 10 minutes apart and keeps a message 3
# days. But Pub/Sub counts at most 100 delivery attempts per message, about 16 hours at
# 10 minutes apart, before it gives a message to the dead-letter topic, while endpoints are
# to be retried for 3 days. So the dead-letter topic has a push subscription of its own,
# SMS_EVENTS_TOPIC-dead-letter-retry, back to the same function, on the same schedule: a
# message goes on from there (keeping its event, whose age the function reads), and it is
# pushed until the function acknowledges it, which the function does once every endpoint
# has succeeded or has been given up, 3 days after the event. The second lap keeps a
# message 3 days from the moment it was dead-lettered, so together the two laps outlast
# those 3 days. It has no dead-letter topic of its own: there is no third lap to hand to.
schedule_events() {
  note "Deliveries of $EVENTS_FUNCTION_NAME: retried 10s to 600s apart; after 100 attempts, again from $DEAD_LETTER_TOPIC"
  local trigger subscription agent
  local schedule=(
    --min-retry-delay=10s
    --max-retry-delay=600s
    --message-retention-duration=3d
    # Pub/Sub waits for the function's answer as long as the function may run, so that it
    # never pushes a message again while the function is still at work on it.
    --ack-deadline="${EVENTS_TIMEOUT%s}"
  )
  read_value "trigger for function $EVENTS_FUNCTION_NAME" \
    "<trigger of $EVENTS_FUNCTION_NAME, printed by the describe above>" \
    gcloud functions describe "$EVENTS_FUNCTION_NAME" --region="$REGION" --project="$PROJECT" \
    --format='value(eventTrigger.trigger)'
  trigger="$VALUE"
  read_value "subscription for Eventarc trigger $trigger" \
    "<subscription of that trigger, printed by the describe above>" \
    gcloud eventarc triggers describe "$trigger" --location="$REGION" --project="$PROJECT" \
    --format='value(transport.pubsub.subscription)'
  subscription="$VALUE"
  read_value "number for project $PROJECT" \
    "<number of $PROJECT, printed by the describe above>" \
    gcloud projects describe "$PROJECT" --format='value(projectNumber)'
  agent="service-$VALUE@gcp-sa-pubsub.iam.gserviceaccount.com"

  # Pub/Sub's own service agent moves a message to the dead-letter topic: it publishes it
  # there and acknowledges it on the subscription, and needs the right to do both.
  bind gcloud pubsub topics add-iam-policy-binding "$DEAD_LETTER_TOPIC" \
    --member="serviceAccount:$agent" --role=roles/pubsub.publisher --project="$PROJECT" \
    --format=none
  bind gcloud pubsub subscriptions add-iam-policy-binding "$subscription" \
    --member="serviceAccount:$agent" --role=roles/pubsub.subscriber --project="$PROJECT" \
    --format=none
  run gcloud pubsub subscriptions update "$subscription" "${schedule[@]}" \
    --dead-letter-topic="$DEAD_LETTER_TOPIC" --max-delivery-attempts=100 --project="$PROJECT"

  # The second lap: pushed to the function's URL with an identity token of the trigger's
  # account, as Eventarc's are. It never expires, however long no message comes by (a
  # subscription otherwise goes after 31 days without activity).
  function_url "$EVENTS_FUNCTION_NAME" \
    "https://<URL of $EVENTS_FUNCTION_NAME, printed by the describe above>"
  EVENTS_URL="$URL"
  local push=(
    --push-endpoint="$EVENTS_URL"
    --push-auth-service-account="$EVENTS_TRIGGER_SA_EMAIL"
    "${schedule[@]}"
    --expiration-period=never
    --project="$PROJECT"
  )
  if exists gcloud pubsub subscriptions describe "$DEAD_LETTER_SUBSCRIPTION" \
    --project="$PROJECT"; then
    run gcloud pubsub subscriptions update "$DEAD_LETTER_SUBSCRIPTION" "${push[@]}"
  else
    run_create gcloud pubsub subscriptions create "$DEAD_LETTER_SUBSCRIPTION" \
      --topic="$DEAD_LETTER_TOPIC" "${push[@]}"
  fi
}

# ---- 10. The sweeper's schedule -----------------------------------------------------------

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

# ---- 11. Where it answers -----------------------------------------------------------------

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
  echo "Events:           $EVENTS_URL"
  echo "                  (no public access; fed by topic $SMS_EVENTS_TOPIC)"
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
  create_topics
  grant_roles
  deploy_api
  deploy_sweeper
  deploy_events
  grant_invokers
  schedule_events
  schedule_sweeps
  print_urls
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
