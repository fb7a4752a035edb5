#!/usr/bin/env bash
# One prepared GPU check of golf_fast on a fresh H100/H200 (Python 3.12, torch 2.11, Triton 3.6).
#
#   bash benchmarks/gpu_check.sh [OUT_DIR] [extra golf-fast gpu-check arguments]
#
# Runs `python -m golf_fast.cli gpu-check` from this checkout (no install needed to start: the
# driver's install step builds golf_fast._C, falling back to the C++ part with the reason), with
# the offline wheelhouse benchmarks/gpu_wheels/ (or $GF_WHEELS) for brotli and python-minifier.
# Every step is time-boxed, a failure never stops the next, the whole run stays inside 470 s, and
# everything lands in OUT_DIR/gpu_check_report.md (default: ./gpu_check_out).
# Building the wheelhouse (on any machine with network): see README, "GPU check".
set -u
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-$PWD/gpu_check_out}}
shift || true
WHEELS=${GF_WHEELS:-$PWD/benchmarks/gpu_wheels}
PY=${PYTHON:-python3}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
# golf_fast.cli imports every subcommand (the artifact code imports brotli): the wheels go in first
if ! $PY -c "import brotli, python_minifier" 2>/dev/null; then
    $PY -m pip install -q --no-index --no-deps --find-links "$WHEELS" brotli python-minifier \
        || echo "gpu_check.sh: brotli/python-minifier missing and not installable from $WHEELS"
fi
exec $PY -m golf_fast.cli gpu-check --out "$OUT" --wheels "$WHEELS" "$@"
