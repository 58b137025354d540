#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh), then runs lint, type checks and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=.venv/bin/python
echo "[test] ruff"
"$PY" -m ruff check fusionlang tests benchmarks scripts
echo "[test] mypy"
"$PY" -m mypy fusionlang
echo "[test] pytest"
"$PY" -m pytest "$@"
