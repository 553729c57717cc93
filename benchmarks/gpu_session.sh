#!/usr/bin/env bash
# The work for a session lent one GPU, as one call of under 10 minutes on one H200:
#   1. the CUDA tests (bf16 autocast, channels-last, no host sync, fp32 agrees with the CPU), and the
#      core tests under that machine's PyTorch (on its CPUs, in the background);
#   2. candidate toy64 models for the bundled default, trained side by side on the one GPU from
#      toyfaces drawn there, each stopped by SIGTERM at the same second (which saves its snapshot);
#   3. training and inference throughput (bench_train, bench_inference) once the GPU is free.
# Run from the repository root; results land in $OUT (default gpu-out/): the log, each candidate's
# model.safetensors (split into 15 MiB parts when larger: `cat NAME.safetensors.part* > NAME.safetensors`)
# and logs.tar.gz (the runs' config, log.jsonl, grids and console output; the benchmark records).
# It uses the machine's own python3 and PyTorch (no install: such machines reach no package index),
# with the repository on PYTHONPATH.
#
#   bash benchmarks/gpu_session.sh
#
# Smoke test on a CPU: DEVICE=cpu N_FACES=2000 TRAIN_UNTIL=60 BUDGET=120 PY=.venv/bin/python bash ...
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-out}
WORK=${WORK:-/tmp/automod-gpu}
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
N_FACES=${N_FACES:-60000}     # toyfaces drawn for training (seed 0)
TRAIN_UNTIL=${TRAIN_UNTIL:-450}  # second of this script at which every candidate gets SIGTERM
BUDGET=${BUDGET:-575}         # seconds for the whole script; the benchmarks get what is left
mkdir -p "$OUT" "$WORK"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
SECONDS=0
status=0
step() { echo "== [${SECONDS}s] $1"; shift; "$@" || { echo "!! failed ($?): $*"; status=1; }; }
left() { echo $(( BUDGET - SECONDS > 5 ? BUDGET - SECONDS : 5 )); }

# Candidates: name and overrides of the toy64 preset (JSON). One schedule for all: phases of 20k-40k
# samples with 20k-sample fades (64² from 140k), then 64² until the SIGTERM; the duration is never reached.
# First H200 session (README, Speed): an iteration costs 65-100 ms whatever the batch (per-iteration
# overhead), TF32 beat bf16 at these sizes, and width 1/4 at batch 64 reached 307k samples in 383 s
# (17.65 dB, below the CPU model's 25k iterations). So: TF32, and larger batches side by side.
SCHEDULE='"phase_starts": [0, 20000, 40000, 80000, 140000], "fade": 20000, "duration": 50000000,
  "checkpoint_every": 100000, "checkpoint_minutes": 3, "log_every": 10000, "grid_every": 100000,
  "workers": 3, "seed": 0, "precision": "fp32"'
CANDIDATES=(
  "w8b64|{$SCHEDULE, \"device\": \"$DEVICE\", \"width\": 0.125, \"batch\": 64}"
  "w4b128|{$SCHEDULE, \"device\": \"$DEVICE\", \"width\": 0.25, \"batch\": 128}"
  "w4b256|{$SCHEDULE, \"device\": \"$DEVICE\", \"width\": 0.25, \"batch\": 256, \"lr\": 0.002}"
)

train_candidate() {  # name overrides-json; runs `automod train` through the core (no CLI dependency)
  local name=$1 over=$2
  timeout -s TERM -k 40 $(( TRAIN_UNTIL - SECONDS )) $PY - "$WORK/toyfaces64" "$WORK/runs/$name" "$over" \
      >"$WORK/runs/$name.out" 2>&1 <<'PY'
import json, shlex, sys
from automod_cli.train import run_training
from automod_cli.train.schedule import resolve_config
data, run, over = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
cfg = resolve_config("toy64", over)
command = "automod train " + shlex.join([data, "--out", run, "--preset", "toy64"] +
                                         [a for k, v in over.items() for a in ("--set", f"{k}={json.dumps(v)}")])
print(command, flush=True)
sys.exit(run_training(cfg, data, run, command=command, say=lambda s: print(s, flush=True), progress=True))
PY
  echo "candidate $name exited with $?"
}

{
  step "machine" nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  step "torch" $PY -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.is_available() and torch.cuda.get_device_name())"
  echo "== [${SECONDS}s] toyfaces: $N_FACES faces at 64² (seed 0), in the background"
  $PY -c "from automod_cli.data import toyfaces; toyfaces.generate('$WORK/toyfaces64', $N_FACES, 64, 0, workers=12)" \
      >"$WORK/toyfaces.out" 2>&1 &
  gen=$!
  step "cuda tests" timeout 150 $PY -m pytest -q -p no:cacheprovider tests/test_train_cuda.py
  wait $gen || { echo "!! toyfaces failed"; cat "$WORK/toyfaces.out"; status=1; }
  echo "== [${SECONDS}s] $(ls "$WORK/toyfaces64" | wc -l) files in $WORK/toyfaces64"

  # The model and training tests under this PyTorch, on the CPUs, beside the training (niced).
  OMP_NUM_THREADS=2 nice -n 19 timeout 360 $PY -m pytest -q -p no:cacheprovider -x tests/test_model.py \
      tests/test_train_step.py tests/test_train_losses.py tests/test_train_schedule.py tests/test_scales.py \
      >"$WORK/core_tests.out" 2>&1 &
  core=$!

  mkdir -p "$WORK/runs"
  pids=()
  for c in "${CANDIDATES[@]}"; do
    echo "== [${SECONDS}s] training candidate ${c%%|*} until second $TRAIN_UNTIL: ${c#*|}"
    train_candidate "${c%%|*}" "${c#*|}" &
    pids+=($!)
  done
  # GPU load while they train.
  ( while sleep 30; do echo "   [${SECONDS}s] gpu: $(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>&1)"; done ) &
  watch=$!
  wait "${pids[@]}"
  kill $watch 2>/dev/null
  for c in "${CANDIDATES[@]}"; do
    n=${c%%|*}
    echo "== [${SECONDS}s] candidate $n: last lines"
    tail -n 4 "$WORK/runs/$n.out"
    tail -n 1 "$WORK/runs/$n/log.jsonl" 2>/dev/null
  done

  step "bench_train bf16" timeout "$(left)" $PY benchmarks/bench_train.py --device "$DEVICE" --res 32,64,256 \
      --batch 64,64,16 --iterations 20,20,10
  step "bench_train fp32" timeout "$(left)" $PY benchmarks/bench_train.py --device "$DEVICE" --precision fp32 \
      --res 64,256 --batch 64,16 --iterations 10,5
  step "bench_inference" timeout "$(left)" $PY benchmarks/bench_inference.py --device "$DEVICE" --no-whole-process \
      --repeats 2 --json "$WORK/bench_inference.jsonl"
  wait $core; echo "== [${SECONDS}s] core tests exited with $?"; tail -n 5 "$WORK/core_tests.out"

  for c in "${CANDIDATES[@]}"; do
    n=${c%%|*}; f="$WORK/runs/$n/model.safetensors"
    [ -f "$f" ] || { echo "!! no model from $n"; status=1; continue; }
    if [ "$(stat -c %s "$f")" -gt $((15 * 1024 * 1024)) ]; then
      split -b 15M -d "$f" "$OUT/$n.safetensors.part"
    else
      cp "$f" "$OUT/$n.safetensors"
    fi
    sha256sum "$f"
  done
  (cd "$WORK" && find runs toyfaces.out core_tests.out bench_inference.jsonl -type f -size -3M \
      ! -path '*/tensorboard/*' 2>/dev/null | tar czf "$OUT/logs.tar.gz" -T -)
  echo "== [${SECONDS}s] done, status $status"
  exit "$status"
} 2>&1 | tee "$OUT/gpu_session.log"
exit "${PIPESTATUS[0]}"
