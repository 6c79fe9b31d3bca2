#!/usr/bin/env bash
# The benchmark (bench/bench.py), in the project's .venv: bash bench/run.sh [--rounds 5] ...
source "$(dirname "$0")/../scripts/_venv.sh"
cd "$ROOT"
exec python bench/bench.py "$@"
