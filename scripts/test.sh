#!/usr/bin/env bash
# Quick start, part 2: install vbpi-mix with its test tools and run the test suite.
# Extra arguments go to pytest. Tests that need ../shared/datasets or IQ-TREE skip without them.
set -uo pipefail
cd "$(dirname "$0")/.."
EXTRAS=dev bash scripts/setup.sh || exit 1
.venv/bin/python -m pytest "$@"
status=$?
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests"
  status=0
fi
exit "$status"
