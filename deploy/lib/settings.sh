# shellcheck shell=bash disable=SC2034 # the globals set here are read by the other parts
# deploy.sh: its arguments and settings, read from the environment and judged before
# anything runs.
# Sourced by deploy/deploy.sh; its functions share the script's globals.

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
