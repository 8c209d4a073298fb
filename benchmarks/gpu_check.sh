#!/usr/bin/env bash
# One short device check for a lent GPU machine (dependencies already installed there), < 8 minutes:
#   1. the ResNet-18 cifar10c pipeline efficiency benchmark on cuda;
#   2. one short paper-preset cmnist sweep of every method (10 epochs per stage, 1 % ratio), run once with
#      --jobs 1 and once with --jobs 5 on the same GPU, bf16 autocast + channels-last, to show the
#      concurrency gain; both sweeps' tables and records come back.
# Figures go to $OUT (flat, at most 8 files). DATA_ROOT must hold MNIST/raw on that machine (carry it).
#   --dry-run: the same steps on the CPU with a tiny subset and 1 epoch, to test the script itself.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-results/gpu_check}"
PY="${PYTHON:-python3}"
DATA_ROOT="${DATA_ROOT:-../shared/data}"
mkdir -p "$OUT"

if [[ "${1:-}" == "--dry-run" ]]; then
  DEVICE=cpu EPOCHS=1
  EXTRA=(--set cmnist.train_size=512 --set cmnist.eval_size=256)
else
  DEVICE=cuda EPOCHS=10
  EXTRA=(--amp --channels-last)
fi
export PYTHONUNBUFFERED=1

{
  date -u
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
} > "$OUT/env.txt" 2>&1

BENCH_DEVICE="$DEVICE" "$PY" -m pytest benchmarks/test_resnet18_pipeline.py -q -p no:cacheprovider \
  --benchmark-json="$OUT/pipeline_benchmark.json" > "$OUT/pipeline_benchmark.log" 2>&1
"$PY" benchmarks/summary.py "$OUT/pipeline_benchmark.json" > "$OUT/summary.txt"

sweep() {  # sweep JOBS: the same five runs, timed; prints the wall seconds
  local jobs=$1 work
  work=$(mktemp -d)
  local start
  start=$("$PY" -c "import time; print(time.time())")
  "$PY" run_bench.py --device "$DEVICE" --preset paper --epochs "$EPOCHS" --ratios 0.01 --datasets cmnist \
    --data-root "$DATA_ROOT" --cache-dir "$work/cache" --out "$work/out" --jobs "$jobs" --no-progress \
    "${EXTRA[@]}" > "$work/log" 2>&1 || { cat "$work/log" >&2; return 1; }
  cp "$work/out/table.md" "$OUT/jobs${jobs}_table.md"
  cp "$work/out/results.jsonl" "$OUT/jobs${jobs}_results.jsonl"
  rm -rf "$work"
  "$PY" -c "import time; print(round(time.time() - $start, 1))"
}
serial=$(sweep 1)
concurrent=$(sweep 5)
{
  echo "sweep_seconds_jobs1: $serial"
  echo "sweep_seconds_jobs5: $concurrent"
  echo "jobs_throughput_gain: $("$PY" -c "print(round($serial / $concurrent, 2))")"
} >> "$OUT/summary.txt"
cat "$OUT/summary.txt"
