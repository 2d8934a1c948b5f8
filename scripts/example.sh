#!/usr/bin/env bash
# Quick start, part 1: install vbpi-mix, fit a variational posterior to the bundled example
# (16 taxa, 800 sites, its UFBoot support bundled) and print its summary. About a minute.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/vbpi-mix fit data/example.fasta --support-dir data/example_support \
  --out runs/example --iterations 1500 --lr 0.01 --warmup 500 "$@"
echo "True tree of the simulation: $(cat data/example_true_tree.nwk)"
