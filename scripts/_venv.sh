# shellcheck shell=bash
# Sourced by the other scripts: make .venv and install a lock into it (REQUIREMENTS: the
# function's own, requirements.txt, or by default the tests' and tools', requirements-dev.txt),
# again only when that lock changed. Every package is pinned with its hashes.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/${VENV_DIR:-.venv}"  # another Python: PYTHON=python3.12 VENV_DIR=.venv-3.12
PY="${PYTHON:-python3}"
LOCK="$ROOT/${REQUIREMENTS:-requirements-dev.txt}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "Creating $VENV" >&2
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.$(basename "$LOCK").sha256"
want="$(sha256sum "$LOCK" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "Installing $(grep -c '^[A-Za-z0-9].*==' "$LOCK") packages of $(basename "$LOCK") into $VENV" \
    "(once; a minute or two on a new machine)" >&2
  set +o pipefail
  "$VENV/bin/python" -m pip install --disable-pip-version-check --require-hashes -r "$LOCK" 2>&1 \
    | tee "$VENV/pip-install.log" \
    | grep --line-buffered -E '^(Collecting|Successfully installed)' \
    | sed -u -E 's/ \(from .*$//; s/^/  /' | cut -c1-100 >&2
  status="${PIPESTATUS[0]}"
  set -o pipefail
  if [ "$status" != 0 ]; then
    cat "$VENV/pip-install.log" >&2
    echo "Installing $(basename "$LOCK") failed (log above)." >&2
    exit 1
  fi
  echo "$want" > "$stamp"
fi
export PATH="$VENV/bin:$PATH"
