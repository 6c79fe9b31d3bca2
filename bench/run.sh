#!/usr/bin/env bash
# The benchmark (bench/bench.py), in the project's .venv: bash bench/run.sh [--rounds 5] ...
# shellcheck source=scripts/_venv.sh
source "$(dirname "$0")/../scripts/_venv.sh"
cd "$ROOT" || exit
exec python bench/bench.py "$@"
