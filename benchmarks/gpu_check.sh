#!/usr/bin/env bash
# The GPU check (issue 15): a few steps of every heavy stage at paper settings (64 px, batch 128)
# on synthetic faces made here, with throughput and peak memory per stage, then crafting seconds
# per outer step for the paper's solver (reference) and ours (benchmarks/crafting.py).
#   bash benchmarks/gpu_check.sh            # one GPU: <= 8 minutes
#   bash benchmarks/gpu_check.sh --smoke    # CPU, about 3 minutes (tiny preset: only that it all runs)
# Scratch folder: $GPU_CHECK_DIR (default /tmp/gpu_check); PY: the Python to use (default .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
ROOT=${GPU_CHECK_DIR:-/tmp/gpu_check}
SMOKE=${SMOKE:-0}
[ "${1:-}" = "--smoke" ] && SMOKE=1
rm -rf "$ROOT" && mkdir -p "$ROOT"
t0=$(date +%s)
if [ "$SMOKE" = 1 ]; then
  DEVICE=${DEVICE:-cpu}
  $PY dataset/make_synthetic.py --preset tiny --out "$ROOT/data" > "$ROOT/data.log" 2>&1
  CRAFT=(--preset tiny --horizons 1,2 --batch_size 8)
else
  DEVICE=${DEVICE:-cuda}
  $PY -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "error: no CUDA device; use --smoke on a CPU")'
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
  # 100 public ids x 6 + 40 private ids x 12 images at 64 px: every split holds >= 1 batch of 128
  $PY dataset/make_synthetic.py --out "$ROOT/data" --img_size 64 --n_public 100 --images_per_id 6 \
      --n_private 40 --private_images_per_id 12 > "$ROOT/data.log" 2>&1
  CRAFT=(--horizons 2,3 --batch_size 128 --eval_amor_steps 10 --eps_steps 20)
fi
echo "data: $(( $(date +%s) - t0 )) s"
$PY benchmarks/gpu_check.py --root "$ROOT" --device "$DEVICE" $([ "$SMOKE" = 1 ] && echo --smoke)
# crafting seconds per outer step, the paper's solver (reference) against ours, on one batch
$PY benchmarks/crafting.py "${CRAFT[@]}" --device "$DEVICE" --data_dir "$ROOT/data" \
    --params_dir "$ROOT/params" --results_dir "$ROOT/results" --crafted_dir "$ROOT/crafted" \
    --out "$ROOT/benchmark_crafting" > "$ROOT/crafting.log" 2>&1 || { tail -30 "$ROOT/crafting.log"; exit 1; }
grep -A7 "^crafting benchmark:" "$ROOT/crafting.log" | tail -8   # the largest horizon
echo "gpu_check done in $(( $(date +%s) - t0 )) s (outputs under $ROOT)"
