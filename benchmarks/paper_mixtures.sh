#!/usr/bin/env bash
# The mixture half of the DS1-DS8 reproduction (benchmarks/results/paper_mixtures/): under
# one common protocol (`--protocol short`: 100,000 iterations, learning rate 0.003 x0.75
# every 20,000, annealing over 25,000, an MLL estimate every 10,000, final MLL from 100 x 1000
# particles), VBPI (A=1) against mixtures of A=5 under A2A, S2A (S=1) and S2S (S=1), each
# mixture split at half the iterations (the protocol's) with the sigma cap of 2 (the default).
# Two benches side by side into one resumable folder, then the report of every finished
# setting, copied with its plots (never the checkpoints). Run it again to resume.
#   bash benchmarks/paper_mixtures.sh [RUN_FOLDER] [STREAM_1_SETS] [STREAM_2_SETS]
#   (defaults: runs/paper_mixtures, "DS1 DS8 DS4 DS2", "DS5 DS6 DS7 DS3")
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/paper_mixtures}
stream_1=${2:-DS1 DS8 DS4 DS2}
stream_2=${3:-DS5 DS6 DS7 DS3}
mkdir -p "$out"
bench() {  # A=1, then A=5 under each estimator, data set by data set
  .venv/bin/vbpi-mix bench "$@" --protocol short --components 1 5 --subset 1 --out "$out" --quiet
}
# shellcheck disable=SC2086
bench $stream_1 --resume >"$out/stream-1.log" 2>&1 &
# shellcheck disable=SC2086
bench $stream_2 --resume >"$out/stream-2.log" 2>&1 &
wait
bench DS1 DS2 DS3 DS4 DS5 DS6 DS7 DS8 --report-only
mkdir -p benchmarks/results/paper_mixtures
cp "$out"/results.md "$out"/results.csv "$out"/results.json benchmarks/results/paper_mixtures/
cp -r "$out"/plots benchmarks/results/paper_mixtures/
