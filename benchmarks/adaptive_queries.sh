#!/usr/bin/env bash
# The adaptive attacks' gain as the number of public queries Q grows (issue 11), on one noise
# release: for each Q, a copy of params/<preset> (links, without the adaptive models) gets the
# noise release of eval_test and of Q public queries (K per identity), the adapted G and decoder,
# and an evaluation of the plain and adapted attacks (results/<preset>-q<Q>/report.md).
#   bash benchmarks/adaptive_queries.sh demo 2.5 200:1 400:1 1200:3 2400:6   # Q <= 1,200: 16 min; 2,400: > 30 min
# Needs a finished `make demo` (or the preset's pipeline). PY: the Python (default .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
PRESET=$1; SIGMA=$2; shift 2
for QK in "$@"; do
  Q=${QK%%:*}; K=${QK##*:}
  P=params/$PRESET-q$Q
  mkdir -p "$P"
  for f in params/$PRESET/*; do
    case $(basename "$f") in G_adaptive_*|dec_adaptive_*) ;; *) ln -sfn "$(realpath "$f")" "$P/";; esac
  done
  A=(--preset "$PRESET" --params_dir "$P")
  $PY Baselines/noise.py "${A[@]}" --sigma "$SIGMA" --split eval_test
  $PY Baselines/noise.py "${A[@]}" --sigma "$SIGMA" --split public --n_per_id "$K" --n_images "$Q"
  $PY WhiteBoxAttack/adaptiveUpdateG.py "${A[@]}" --protection "noise_s$SIGMA" --n_images "$Q" --n_per_id "$K"
  $PY BlackBoxAttack/adaptiveTrainDecoder.py "${A[@]}" --protection "noise_s$SIGMA" --n_images "$Q" --n_per_id "$K"
  $PY evaluate.py "${A[@]}" --protections "noise_s$SIGMA" \
      --attacks whitebox_amortized,blackbox,adaptive_whitebox,adaptive_blackbox --out "results/$PRESET-q$Q"
done
