#!/usr/bin/env bash
# Make the locks from their inputs: requirements.in -> requirements.txt (what the function
# runs with; Cloud Functions installs it) and requirements-dev.in -> requirements-dev.txt
# (the tests and tools), every package pinned with its hashes. Pins already in a lock are
# kept unless its input asks otherwise; to upgrade one: bash scripts/lock.sh --upgrade-package NAME
#   bash scripts/lock.sh --check   fails if a lock is not what its input makes (CI runs it)
set -euo pipefail
# shellcheck source=scripts/_venv.sh
source "$(dirname "$0")/_venv.sh"
cd "$ROOT" || exit
check=0
if [[ "${1:-}" == "--check" ]]; then
  check=1
  shift
fi
compile() { # INPUT LOCK [uv options]
  local input="$1" lock="$2" out
  shift 2
  out="$lock"
  if [[ "$check" == 1 ]]; then
    out="$(mktemp)"
    cp "$lock" "$out"
  fi
  uv pip compile --quiet --universal --python-version 3.11 --generate-hashes \
    --custom-compile-command "bash scripts/lock.sh" "$@" "$input" -o "$out"
  if [[ "$check" == 1 ]]; then
    if ! diff -u "$lock" "$out" >&2; then
      echo "$lock is not what $input makes: run bash scripts/lock.sh and commit both" >&2
      rm -f "$out"
      exit 1
    fi
    rm -f "$out"
  fi
}
compile requirements.in requirements.txt "$@"
compile requirements-dev.in requirements-dev.txt "$@"
[[ "$check" == 1 ]] && echo "The locks match their inputs." >&2
exit 0
