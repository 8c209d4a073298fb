#!/usr/bin/env bash
# The prepared check for a lent GPU machine: one call, about 7 minutes on one H200 (limit 9), nothing
# downloaded or installed (the machine's python3 has the dependencies; carry DATA_ROOT's MNIST/raw).
#   1. correctness on CUDA: every test's CUDA case (pytest -m cuda: training, evaluation, PGD's closed
#      form against the per-sample loop, every method through run_bench.py, AMP and channels-last,
#      --jobs, in-run checkpoints, CPU-CUDA agreement of the same steps within the tests' tolerance);
#   2. speed on CUDA: the ResNet-18 pipeline's efficiency against pure fwd+bwd over one cifar10c-sized
#      epoch (projected to the 50k-iteration protocol), checkpoint cost, host-device syncs per training
#      step of every method (CUDA's sync debug mode), DFA's ResNet-18 step;
#   3. the full table's cost: the five methods on cmnist at 1 %, paper preset cut to $EPOCHS epochs per
#      stage, timed per phase, once with --jobs 1 and once with --jobs $JOBS, and from them the projected
#      wall time of the full cmnist table (5 methods x 3 ratios x 3 seeds).
# Writes flat into $OUT (8 files): env.txt, summary.txt (one "name: value" line per figure),
# cuda_tests.log, benchmarks.json, benchmarks.log, sweep_jobs1.jsonl, sweep_jobsN.jsonl, sweep.log.
#   --dry-run: the same steps on the CPU, small (CUDA cases skip), to test the script itself in CI.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-results/gpu_check}"
PY="${PYTHON:-python3}"
DATA_ROOT="${DATA_ROOT:-../shared/data}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

if [[ "${1:-}" == "--dry-run" ]]; then
  DEVICE=cpu EPOCHS=1 JOBS=2
  SWEEP_EXTRA=(--set cmnist.train_size=256 --set cmnist.eval_size=128)
  BENCHES=(benchmarks/test_resnet18_pipeline.py benchmarks/test_checkpoint_cost.py::test_checkpoint_cost_resnet18
           benchmarks/test_cuda_syncs.py)
  export BENCH_SMALL=1
else
  DEVICE=cuda EPOCHS=10 JOBS=5
  SWEEP_EXTRA=(--amp --channels-last)
  BENCHES=(benchmarks/test_resnet18_pipeline.py benchmarks/test_checkpoint_cost.py benchmarks/test_cuda_syncs.py)
fi
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
say() { echo "$1" >> "$SUMMARY"; }
elapsed() { "$PY" -c "import time, sys; print(round(time.time() - float(sys.argv[1]), 1))" "$1"; }
now() { "$PY" -c "import time; print(time.time())"; }
check_start=$(now)

{
  date -u
  git rev-parse HEAD 2>/dev/null || true
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
} > "$OUT/env.txt" 2>&1
say "device: $DEVICE"

# 1. correctness: the CUDA case of every device-parametrised test
start=$(now)
DATA_ROOT="$DATA_ROOT" "$PY" -m pytest tests -m cuda -q -p no:cacheprovider -rfEs > "$OUT/cuda_tests.log" 2>&1
say "cuda_tests_exit_code: $?"
"$PY" - "$OUT/cuda_tests.log" >> "$SUMMARY" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
for word in ("passed", "failed", "skipped", "error"):
    found = re.findall(rf"(\d+) {word}", text.splitlines()[-1] if text.strip() else "")
    print(f"cuda_tests_{word}: {found[0] if found else 0}")
EOF
say "cuda_tests_seconds: $(elapsed "$start")"

# 2. speed on the device
start=$(now)
BENCH_DEVICE="$DEVICE" DATA_ROOT="$DATA_ROOT" "$PY" -m pytest "${BENCHES[@]}" -q -p no:cacheprovider \
  --benchmark-json="$OUT/benchmarks.json" > "$OUT/benchmarks.log" 2>&1
say "benchmarks_exit_code: $?"
[[ -f "$OUT/benchmarks.json" ]] && "$PY" benchmarks/summary.py "$OUT/benchmarks.json" >> "$SUMMARY"
say "benchmarks_seconds: $(elapsed "$start")"

# 3. the table's cost: the same five runs at --jobs 1 and --jobs $JOBS, one dataset cache for both
work=$(mktemp -d)
sweep() {  # sweep JOBS NAME: prints the wall seconds; its records go to $OUT/sweep_NAME.jsonl
  local jobs=$1 name=$2 start
  start=$(now)
  # The five methods of the first table: their timings are what earlier checks measured (the script's time).
  "$PY" run_bench.py --device "$DEVICE" --methods erm,lff,jtt,dfa,pgd --preset paper --epochs "$EPOCHS" \
    --ratios 0.01 --datasets cmnist \
    --data-root "$DATA_ROOT" --cache-dir "$work/cache" --out "$work/$name" --jobs "$jobs" --no-progress \
    "${SWEEP_EXTRA[@]}" >> "$OUT/sweep.log" 2>&1 || echo "sweep $name: exit code $?" >> "$OUT/sweep.log"
  local seconds
  seconds=$(elapsed "$start")
  cp "$work/$name/results.jsonl" "$OUT/sweep_$name.jsonl" 2>/dev/null || true
  echo "$seconds"
}
"$PY" run_bench.py --device "$DEVICE" --methods erm --epochs 1 --ratios 0.01 --datasets cmnist \
  --data-root "$DATA_ROOT" --cache-dir "$work/cache" --out "$work/warm" --no-progress "${SWEEP_EXTRA[@]}" \
  >> "$OUT/sweep.log" 2>&1  # builds the dataset cache outside the timings
serial=$(sweep 1 jobs1)
concurrent=$(sweep "$JOBS" jobsN)
say "sweep_epochs_per_stage: $EPOCHS"
say "sweep_seconds_jobs1: $serial"
say "sweep_seconds_jobs$JOBS: $concurrent"
say "jobs${JOBS}_throughput_gain: $("$PY" -c "print(round($serial / $concurrent, 2))")"
if [[ -f "$OUT/sweep_jobs1.jsonl" ]]; then
  "$PY" benchmarks/project_table.py "$OUT/sweep_jobs1.jsonl" "$serial" "$concurrent" "$JOBS" >> "$SUMMARY" 2>> "$OUT/sweep.log"
fi
rm -rf "$work"
say "gpu_check_seconds: $(elapsed "$check_start")"
cat "$SUMMARY"
