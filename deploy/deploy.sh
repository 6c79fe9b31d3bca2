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

# The steps and their helpers, one file per part (deploy/lib/).
DEPLOY_LIB="$ROOT/deploy/lib"
# shellcheck source=deploy/lib/commands.sh
source "$DEPLOY_LIB/commands.sh"
# shellcheck source=deploy/lib/settings.sh
source "$DEPLOY_LIB/settings.sh"
# shellcheck source=deploy/lib/foundation.sh
source "$DEPLOY_LIB/foundation.sh"
# shellcheck source=deploy/lib/functions.sh
source "$DEPLOY_LIB/functions.sh"

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
