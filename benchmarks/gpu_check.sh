#!/usr/bin/env bash
# One-shot GPU checks for a machine with an NVIDIA GPU (a few minutes on an H200):
# the model's CUDA tests (official numbers on cuDNN/CUDA kernels, mask head CUDA == CPU) and
# the forward benchmark on CUDA (seg/det latency ratio at S, the paper's "lightweight" claim).
#
#   DFINE_SHARED=/path/to/shared benchmarks/gpu_check.sh [out_dir]
#
# Uses $PY (default python3) as it is: core.model needs only torch (+ scipy, pytest for the tests).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
OUT_DIR=${1:-benchmarks/out}
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1 QT_QPA_PLATFORM=offscreen
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT_DIR/gpu.txt"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())" \
    | tee -a "$OUT_DIR/gpu.txt"
$PY -m pytest -q -rs -p no:cacheprovider -m gpu tests/test_model_cuda.py 2>&1 | tee "$OUT_DIR/gpu_tests.log"
tests_rc=${PIPESTATUS[0]}
$PY benchmarks/model_forward.py --device cuda --threads 16 --sizes n s --batches 1 4 --runs 20 --warmup 5 \
    --json "$OUT_DIR/model_forward_cuda.json" 2>&1 | tee "$OUT_DIR/model_forward_cuda.md"
bench_rc=${PIPESTATUS[0]}
echo "gpu tests rc=$tests_rc, benchmark rc=$bench_rc"
exit $(( tests_rc || bench_rc ))
