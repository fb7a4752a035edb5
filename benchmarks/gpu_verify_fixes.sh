#!/usr/bin/env bash
# Device check of the fixes to the first GPU check's findings 1-4 (see benchmarks/gpu_verify_fixes.py):
# at most ~150 s of command time on a fresh H100/H200 (torch 2.11, Triton 3.6, no brotli installed).
#
#   bash benchmarks/gpu_verify_fixes.sh [OUT_DIR]        (default: $OUT, else ./gpu_verify_out)
#
# Steps, each time-boxed, a failure never stops the next; results land in OUT_DIR:
#   wheels.log   brotli from the offline wheelhouse benchmarks/gpu_wheels/ (or $GF_WHEELS), which
#                tests/model/test_int6_eval.py needs (golf_fast.artifact imports it)
#   install.log  pip install --no-build-isolation --no-deps -e .  (builds golf_fast._C with csrc/cuda/hessian.cu)
#   verify.jsonl / verify.log   Hessian K=2048 (T=70,000; T·K > 2^31) vs float64, int6 self-checks
#                with bias + low-rank under TF32 (and autocast), the fused MLP's first call under
#                autocast, fused MLP fwd+bwd / fwd timing vs eager at M=98,304 512→2048→512
#   pytest.log   the gpu-marked tests/model/test_int6_eval.py
#   steps.txt    each step's exit status and seconds
set -u
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-$PWD/gpu_verify_out}}
PY=${PYTHON:-python3}
WHEELS=${GF_WHEELS:-$PWD/benchmarks/gpu_wheels}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
step() {  # step NAME SECONDS LOG CMD...
    local name=$1 limit=$2 log=$3 t0=$SECONDS rc
    shift 3
    timeout "$limit" "$@" > "$OUT/$log" 2>&1
    rc=$?
    echo "$name rc=$rc seconds=$((SECONDS - t0)) (limit $limit)" | tee -a "$OUT/steps.txt"
}
if ! $PY -c "import brotli" 2>/dev/null; then
    step wheels 15 wheels.log $PY -m pip install -q --no-index --no-deps --find-links "$WHEELS" brotli
fi
step install 45 install.log $PY -m pip install --no-build-isolation --no-deps -e .
$PY -c "from golf_fast._availability import ext_has_cuda; print('golf_fast._C CUDA part:', ext_has_cuda())" >> "$OUT/install.log" 2>&1
step verify 65 verify.log $PY benchmarks/gpu_verify_fixes.py "$OUT"
step pytest 30 pytest.log $PY -m pytest -q -p no:cacheprovider -m gpu tests/model/test_int6_eval.py
tail -n 3 "$OUT/pytest.log" >> "$OUT/steps.txt"
