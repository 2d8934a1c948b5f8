#!/usr/bin/env bash
# Quick start, part 1: install vbpi-mix, fit a variational posterior to the bundled example
# (16 taxa, 800 sites, its UFBoot support bundled), print its summary, then summarise the
# posterior into runs/example/posterior (topology probabilities, splits, MAP and consensus
# trees). About a minute.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/vbpi-mix fit data/example.fasta --support-dir data/example_support \
  --out runs/example --iterations 1500 --lr 0.01 --warmup 500 "$@"
echo
.venv/bin/vbpi-mix summarize runs/example
echo
# The simulation's true tree in the same canonical form, to compare with the MAP topology.
.venv/bin/python - <<'PY'
from vbpi_mix.io.tree_files import read_tree_file
from vbpi_mix.phylo.alignment import load_alignment
from vbpi_mix.trees.conversions import topology_from_dendropy

taxa = load_alignment("data/example.fasta").taxa
truth = topology_from_dendropy(read_tree_file("data/example_true_tree.nwk")[0], taxa)[0]
print(f"true topology:       {truth.newick()}")
PY
