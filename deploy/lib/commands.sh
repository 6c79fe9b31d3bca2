# shellcheck shell=bash disable=SC2034 # the globals set here are read by the other parts
# deploy.sh: how it says what it does, and how commands are shown, run, or only shown
# (--dry-run).
# Sourced by deploy/deploy.sh; its functions share the script's globals.

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
