#!/usr/bin/env bash
# Run the tests. Uses the emulator at FIRESTORE_EMULATOR_HOST when set, else starts its own.
# Extra arguments go to pytest, e.g. scripts/test.sh -k concurrency
# shellcheck source=scripts/_venv.sh
source "$(dirname "$0")/_venv.sh"
cd "$ROOT" || exit
exec python -m pytest "$@"
