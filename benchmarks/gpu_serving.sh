#!/usr/bin/env bash
# #14's micro-batching target with the server on a GPU: benchmarks/serving.py --batching --device cuda, the
# clients in 4 processes (on a 2-core CPU the model is the bottleneck and batching cannot show), then the
# raw-body overhead on that machine's CPU, then a forward pass on the GPU alone and beside a busy Python thread
# (what Python's lock costs a pass there). One script for a GPU machine's short lease; each step time-boxed.
#   OUT=/tmp/gpu bash benchmarks/gpu_serving.sh        (python3 with cnnlab's serve extra importable, or PY=...)
#   bash benchmarks/gpu_serving.sh --smoke               (the CPU, a few requests: the script's steps run)
# Exits non-zero when a step failed.
set -u
if [ "${1:-}" = --smoke ]; then  # the same steps on the CPU, one client process, a few requests each
  DEV=cpu CLIENTS=1 SMALL_REQUESTS=${SMALL_REQUESTS:-16} RESNET_REQUESTS=${RESNET_REQUESTS:-8} OUT=${OUT:-$(mktemp -d)}
else
  DEV=cuda CLIENTS=4
fi
OUT=${OUT:-/tmp/cnnlab-gpu}; mkdir -p "$OUT"
PY=${PY:-python3}
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
if [ $DEV = cpu ]; then echo "smoke test on the CPU" >"$OUT/serving.txt"
else nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/serving.txt"; fi
FAILED=0
"$PY" -c "import torch, fastapi, uvicorn, httptools, uvloop; print('torch', torch.__version__, 'fastapi', fastapi.__version__, 'uvicorn', uvicorn.__version__, 'cuda', torch.cuda.is_available(), 'cpus', __import__('os').cpu_count())" | tee -a "$OUT/serving.txt"
timeout -k 5 ${BATCHING_S:-420} "$PY" benchmarks/serving.py --batching --device $DEV --client-processes $CLIENTS \
  --requests ${SMALL_REQUESTS:-3000} ${RESNET_REQUESTS:-1500} 2>&1 | tee -a "$OUT/serving.txt"
rc=${PIPESTATUS[0]}; [ $rc = 0 ] || FAILED=1
echo "batching rc=$rc" | tee -a "$OUT/serving.txt"
timeout -k 5 ${RAW_S:-90} "$PY" benchmarks/serving.py --raw-body 2>&1 | tail -n 3 | tee -a "$OUT/serving.txt"
rc=${PIPESTATUS[0]}; [ $rc = 0 ] || FAILED=1
echo "raw-body rc=$rc" | tee -a "$OUT/serving.txt"
timeout -k 5 ${GIL_S:-60} "$PY" benchmarks/serving.py --gil --device $DEV 2>&1 | grep -E "^gil|Error" | tee -a "$OUT/serving.txt"
rc=${PIPESTATUS[0]}; [ $rc = 0 ] || FAILED=1
echo "gil rc=$rc" | tee -a "$OUT/serving.txt"
exit $FAILED
