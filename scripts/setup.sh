#!/usr/bin/env bash
# Sets up everything fusionlang needs on a fresh Debian machine (Python >= 3.10), idempotently:
#   graphviz's `dot` (Debian package, when missing and we are root), a virtual environment in
#   .venv that can see system packages, torch (the pinned CPU wheel, only when no torch is
#   importable), fusionlang itself in editable mode with its dev extra, and mace-torch (an oracle
#   for tests) without its e3nn==0.4.4 pin.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
say() { printf '[setup] %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo -n "$@"; else return 1; fi; }

apt_updated=0
apt_install() {
    command -v apt-get >/dev/null || return 1
    if [ "$apt_updated" = 0 ]; then as_root apt-get update -qq || return 1; apt_updated=1; fi
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

if ! command -v dot >/dev/null; then
    say "graphviz's dot is missing: installing the Debian package graphviz"
    apt_install graphviz || say "could not install graphviz; run 'sudo apt-get install graphviz' (rendering needs it, everything else works)"
fi

"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
    || { say "fusionlang needs Python >= 3.10; found $("$PYTHON" --version)"; exit 1; }

if [ ! -x .venv/bin/python ]; then
    say "creating .venv"
    if ! "$PYTHON" -m venv --system-site-packages .venv 2>/dev/null; then
        rm -rf .venv
        apt_install python3-venv || { say "install python3-venv (sudo apt-get install python3-venv)"; exit 1; }
        "$PYTHON" -m venv --system-site-packages .venv
    fi
fi
PY=.venv/bin/python
export PIP_DISABLE_PIP_VERSION_CHECK=1

if ! "$PY" -c 'import torch' 2>/dev/null; then
    say "installing torch==2.13.0 (CPU wheel)"
    "$PY" -m pip install -q torch==2.13.0
fi
say "installing fusionlang (editable) with its dev extra"
"$PY" -m pip install -q -e ".[dev]"
if ! "$PY" -c 'import mace.modules' 2>/dev/null; then
    say "installing mace-torch without its e3nn pin"
    "$PY" -m pip install -q --no-deps mace-torch
fi
say "ready: $("$PY" -m fusionlang --version)"
