#!/usr/bin/env bash
# The DS1-DS8 reproduction of benchmarks/results/paper/: VBPI (A=1, K=10, VIMCO, PSP) under
# the published protocol (`--protocol paper`: 400,000 iterations, learning rate 0.001 x0.75
# every 20,000, annealing over 100,000, an MLL estimate every 10,000, final MLL from 100 x
# 1000 particles). Two benches side by side into one resumable folder (default threads: the
# trainers settle on one core each), then the report of every finished setting, copied with
# its plots (never the checkpoints) into benchmarks/results/paper/. Run it again to resume.
#   bash benchmarks/paper.sh [RUN_FOLDER]     (default runs/paper)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/paper}
mkdir -p "$out"
bench() {
  .venv/bin/vbpi-mix bench "$@" --protocol paper --estimators a2a --components 1 \
    --out "$out" --quiet
}
bench DS1 DS8 DS4 DS2 --resume >"$out/stream-1.log" 2>&1 &
bench DS5 DS6 DS7 DS3 --resume >"$out/stream-2.log" 2>&1 &
wait
bench DS1 DS2 DS3 DS4 DS5 DS6 DS7 DS8 --report-only
mkdir -p benchmarks/results/paper
cp "$out"/results.md "$out"/results.csv "$out"/results.json benchmarks/results/paper/
cp -r "$out"/plots benchmarks/results/paper/
for figure in "$out"/DS*/*/posterior_vs_golden.png; do  # DS1-DS4: q against the golden run
  [ -e "$figure" ] || continue
  run=$(dirname "$figure")
  cp "$figure" "benchmarks/results/paper/plots/$(basename "$(dirname "$run")")_$(basename "$run")_posterior_vs_golden.png"
done
