#!/usr/bin/env bash
# The static checks CI runs: ruff (lint and format) on everything, mypy --strict on the package.
# shellcheck source=scripts/_venv.sh
source "$(dirname "$0")/_venv.sh"
cd "$ROOT" || exit
ruff check .
ruff format --check .
mypy
