#!/usr/bin/env bash
# Quick start, part 2: install vbpi-mix with its test tools and run the test suite.
# Extra arguments go to pytest. Tests that need ../shared/datasets or IQ-TREE skip without them.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=dev bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
