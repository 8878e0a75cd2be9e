#!/usr/bin/env bash
# The GPU path through the CLI (train in each precision, device-side augmentation, compile, a
# backbone, evaluate / predict / serve on cuda), then benchmarks/gpu.py. One script for a GPU
# machine's short lease: each step is time-boxed and logged, and a failure does not stop the rest.
#   OUT=/tmp/gpu bash benchmarks/gpu_path.sh          (python3 with cnnlab importable, or PY=...)
set -u
OUT=${OUT:-/tmp/cnnlab-gpu}; mkdir -p "$OUT"
SUMMARY=$OUT/summary.txt; LOGS=$(mktemp -d)  # logs go back as one archive (logs.tgz)
PY=${PY:-python3}
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
W=$(mktemp -d)
step() {  # step NAME SECONDS CMD...: run, time-box, log; one summary line each
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  timeout -k 5 "$limit" bash -c '"$@"' _ "$@" >"$LOGS/$name.log" 2>&1; local rc=$?
  echo "step $name: rc=$rc $((SECONDS - t0))s" | tee -a "$SUMMARY"
  [ $rc = 0 ] || tail -n 15 "$LOGS/$name.log"
}
export PY W
cn() { "$PY" -m cnnlab "$@"; }
export -f cn
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$SUMMARY"
"$PY" -c "import torch, lightning, timm; print('torch', torch.__version__, 'lightning', lightning.__version__, 'timm', timm.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$SUMMARY"

step export 60 cn datasets export mnist-5k "$W/mnist"
step train_bf16 90 cn train "$W/mnist/train" -o "$W/bf16" --epochs 3 --precision bf16-mixed --progress false
step train_fp16_aug 90 cn train "$W/mnist/train" -o "$W/fp16" --epochs 2 --precision 16-mixed --augment light --progress false
step train_compile 150 cn train "$W/mnist/train" -o "$W/compiled" --epochs 2 --compile true --channels-last true --progress false
step train_resnet18 120 cn train "$W/mnist/train" -o "$W/r18" -m resnet18 --weights none --input-size 64 --epochs 2 --precision bf16-mixed --augment standard --channels-last true --progress false
step evaluate 60 cn evaluate "$W/bf16" "$W/mnist" --device cuda --json "$LOGS/evaluate_bf16.json"
step evaluate_cpu 60 cn evaluate "$W/bf16" "$W/mnist" --device cpu --json "$LOGS/evaluate_bf16_cpu.json"
step evaluate_r18 60 cn evaluate "$W/r18" "$W/mnist" --device cuda --json "$LOGS/evaluate_r18.json"
step predict 60 cn predict "$W/bf16" "$W/mnist/test/7" --device cuda --csv "$LOGS/predict.csv"
serve_check() {
  cn serve "$W/bf16" --port 8765 --device cuda & local pid=$!
  for _ in $(seq 60); do curl -sf localhost:8765/health >/dev/null && break; sleep 0.5; done
  curl -sf localhost:8765/health; echo
  curl -sf -F "file=@$(ls "$W"/mnist/test/3/* | head -1)" localhost:8765/predict; local rc=$?; echo
  kill $pid; wait $pid 2>/dev/null; return $rc
}
export -f serve_check
step serve 60 serve_check
for f in "$LOGS"/evaluate_*.json; do "$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); print(sys.argv[1].rsplit('/',1)[1], 'accuracy', d.get('accuracy'))" "$f" | tee -a "$SUMMARY"; done
for r in bf16 fp16 compiled r18; do
  tail -n 1 "$W/$r/metrics.csv" 2>/dev/null | sed "s/^/$r last metrics row: /" | tee -a "$SUMMARY"
  for f in "$W/$r"/*.json "$W/$r"/*.yaml "$W/$r"/*.csv; do [ -f "$f" ] && cp "$f" "$LOGS/${r}_$(basename "$f")"; done
done
step gpu_bench ${BENCH_S:-260} "$PY" benchmarks/gpu.py
grep -E "^(ResNet|end to end|\{)" "$LOGS/gpu_bench.log" | tee -a "$SUMMARY"
tar czf "$OUT/logs.tgz" -C "$LOGS" .
