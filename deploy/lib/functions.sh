# shellcheck shell=bash
# deploy.sh, steps 7 to 11: the three functions, who may call them, the schedules of
# event deliveries and sweeps, and where it answers.
# Sourced by deploy/deploy.sh; its functions share the script's globals.

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
