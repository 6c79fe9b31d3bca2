# shellcheck shell=bash
# deploy.sh, steps 1 to 6: the APIs, the Firestore database and its indexes, the service
# accounts, the events' topics and the roles.
# Sourced by deploy/deploy.sh; its functions share the script's globals.

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
