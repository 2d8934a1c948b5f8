#!/usr/bin/env bash
# Quick start, part 1: install vbpi-mix and run it on the bundled example alignment.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "Log-likelihood (JC69) of the bundled example's true tree:"
.venv/bin/vbpi-mix loglik data/example.fasta data/example_true_tree.nwk --quiet
