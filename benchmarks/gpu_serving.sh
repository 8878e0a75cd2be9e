#!/usr/bin/env bash
# #14's micro-batching target with the server on a GPU: benchmarks/serving.py --batching --device cuda, the
# clients in 4 processes (on a 2-core CPU the model is the bottleneck and batching cannot show), then the
# raw-body overhead on that machine's CPU, then a forward pass on the GPU alone and beside a busy Python thread
# (what Python's lock costs a pass there). One script for a GPU machine's short lease; each step time-boxed.
#   OUT=/tmp/gpu bash benchmarks/gpu_serving.sh        (python3 with cnnlab's serve extra importable, or PY=...)
set -u
OUT=${OUT:-/tmp/cnnlab-gpu}; mkdir -p "$OUT"
PY=${PY:-python3}
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/serving.txt"
"$PY" -c "import torch, fastapi, uvicorn, httptools, uvloop; print('torch', torch.__version__, 'fastapi', fastapi.__version__, 'uvicorn', uvicorn.__version__, 'cuda', torch.cuda.is_available(), 'cpus', __import__('os').cpu_count())" | tee -a "$OUT/serving.txt"
timeout -k 5 ${BATCHING_S:-420} "$PY" benchmarks/serving.py --batching --device cuda --client-processes 4 \
  --requests ${SMALL_REQUESTS:-3000} ${RESNET_REQUESTS:-1500} 2>&1 | tee -a "$OUT/serving.txt"
echo "batching rc=${PIPESTATUS[0]}" | tee -a "$OUT/serving.txt"
timeout -k 5 ${RAW_S:-90} "$PY" benchmarks/serving.py --raw-body 2>&1 | tail -n 3 | tee -a "$OUT/serving.txt"
timeout -k 5 ${GIL_S:-60} "$PY" benchmarks/serving.py --gil --device cuda 2>&1 | grep -E "^gil|Error" | tee -a "$OUT/serving.txt"
