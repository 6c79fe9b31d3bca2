#!/usr/bin/env bash
# Run the function locally: the Firestore emulator, a demo tenant, the server on
# http://127.0.0.1:${PORT:-8080}, and a curl that works. Ctrl-C, SIGTERM or a closed terminal
# (SIGHUP) stops everything. It installs only what running needs (requirements.txt).
# shellcheck source=scripts/_venv.sh
REQUIREMENTS=requirements.txt source "$(dirname "$0")/_venv.sh"
cd "$ROOT" || exit
exec python -m sms.devtools.run_local "$@"
