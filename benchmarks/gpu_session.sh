#!/usr/bin/env bash
# The checks that need a GPU, as one script for a session lent one (about 8 minutes on one H200).
# Run from the repository root; results land in $OUT (default gpu-out/). It uses the machine's own
# python3 and PyTorch (no install: such machines reach no package index), with the repository on
# PYTHONPATH, so only the tests and benchmarks whose imports that environment has are run.
#
#   bash benchmarks/gpu_session.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
PY=${PY:-python3}
status=0
step() { echo "== $1"; shift; "$@" || { echo "!! failed ($?): $*"; status=1; }; }

{
  step "machine" nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  step "torch" $PY -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name())"
  # CUDA training: bf16 autocast, channels-last, no host sync inside an iteration, fp32 agrees with the CPU.
  step "cuda tests" $PY -m pytest -q -p no:cacheprovider tests/test_train_cuda.py
  # The model and training tests again under this PyTorch (they run on the CPU).
  step "core tests" $PY -m pytest -q -p no:cacheprovider -x tests/test_model.py tests/test_train_step.py \
      tests/test_train_losses.py tests/test_train_schedule.py tests/test_scales.py
  # Training throughput of the reference architecture, bf16 autocast and fp32.
  step "bench_train bf16" $PY benchmarks/bench_train.py --device cuda --res 32,64,256 --batch 16,16,16 \
      --iterations 20,20,10
  step "bench_train fp32" $PY benchmarks/bench_train.py --device cuda --precision fp32 --res 32,64,256 \
      --batch 16,16,16 --iterations 10,10,5
  # Inference throughput (encode, decode, reconstruct, mix).
  step "bench_inference" $PY benchmarks/bench_inference.py --device cuda --no-whole-process \
      --json "$OUT/bench_inference.jsonl"
  exit "$status"
} 2>&1 | tee "$OUT/gpu_session.log"
exit "${PIPESTATUS[0]}"
