#!/usr/bin/env bash
# On a lent GPU machine: train the compression benchmark's longer states, then the README's smoke
# run on cuda (the H100 default path end to end). Prepared to run as ONE device call:
#
#   OUT=/somewhere bash benchmarks/gpu_states.sh        # data: gpustates/data (see below)
#
# The tokenized corpus is built here first (CPU, seconds) and carried (git-ignored):
#   python -m golf_fast.cli data build --input tinyshakespeare.txt --vocab-size 8192 \
#       --tokenizer fineweb_8192_bpe.model --out gpustates/data
# Wheels for brotli / python-minifier come from benchmarks/gpu_wheels (the GPU machine has no network).
# Everything lands in $OUT: <run>.gfa per state, logs.tgz (train logs, metrics), smoke.log, env.txt.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_states_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
t0=$(date +%s)
el() { echo "$(( $(date +%s) - t0 )) s"; }
$PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site benchmarks/gpu_wheels/*.whl \
    && export PYTHONPATH=/tmp/site
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; $PY -c "import torch,triton;print(torch.__version__,triton.__version__)"; } > "$OUT/env.txt" 2>&1
MAX_JOBS=16 $PY setup.py build_ext --inplace > "$OUT/install.log" 2>&1
echo "build_ext rc=$? at $(el)" >> "$OUT/env.txt"
export PYTHONPATH=$PWD:/tmp/site
$PY -c "import golf_fast; print(golf_fast.status())" >> "$OUT/env.txt" 2>&1
RUNS=${RUNS:-L2_s600,G4_s2000,G11_s1200}
timeout ${STATES_TIMEOUT:-330} $PY benchmarks/train_states.py --text gpustates/data/COMPLETE \
    --tokenizer gpustates/data/tokenizer.model --out gpustates --runs "$RUNS" --device cuda --parallel
echo "states rc=$? at $(el)" >> "$OUT/env.txt"
for n in ${RUNS//,/ }; do [ -f gpustates/$n/model.gfa ] && cp gpustates/$n/model.gfa "$OUT/$n.gfa"; done
tar czf "$OUT/logs.tgz" gpustates/*.log gpustates/*/train.log gpustates/*/metrics.jsonl "$OUT/install.log" 2>/dev/null
rm -f "$OUT/install.log"
timeout ${SMOKE_TIMEOUT:-150} $PY -m golf_fast.cli train --preset smoke --run.device cuda --run.out_dir /tmp/smoke \
    > "$OUT/smoke.log" 2>&1
echo "smoke rc=$? at $(el)" >> "$OUT/env.txt"
ls -la "$OUT" >> "$OUT/env.txt"
