#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh), then runs the main job: build the couplings, compile
# every example to a module and an SVG under build/examples, and show that they work.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python scripts/demo.py "$@"
