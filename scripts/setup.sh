#!/usr/bin/env bash
# Create ./.venv if needed and install vbpi-mix into it, with the CPU build of torch 2.13.0.
# EXTRAS=dev also installs the test tools (pytest, ruff) and the optional ete3 interop.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  if ! "$PYTHON" -m venv .venv 2>/dev/null; then
    # Debian ships venv separately
    rm -rf .venv
    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
    "$PYTHON" -m venv .venv
  fi
fi
.venv/bin/python -m pip install -q "torch==2.13.0"
spec="."
[ -n "${EXTRAS:-}" ] && spec=".[${EXTRAS}]"
.venv/bin/python -m pip install -q -e "$spec"
