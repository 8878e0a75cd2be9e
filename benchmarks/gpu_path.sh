#!/usr/bin/env bash
# The GPU path through the CLI (train in each precision, device-side augmentation, compile, a
# backbone, evaluate / predict / serve on cuda), then benchmarks/gpu.py. One script for a GPU
# machine's short lease: each step is time-boxed and logged, and a failure does not stop the rest.
#   OUT=/tmp/gpu bash benchmarks/gpu_path.sh          (python3 with cnnlab importable, or PY=...)
#   bash benchmarks/gpu_path.sh --smoke                 (the CPU, tiny sizes: every step's CPU fallback runs,
#                                                         so the script is known to work before a lease)
# Exits non-zero when a step failed (the summary names it).
set -u
SMOKE=0; [ "${1:-}" = --smoke ] && SMOKE=1
if [ $SMOKE = 1 ]; then  # digits (8x8), one epoch, 32-bit (fp16 autocast is GPU-only), no compile, no ResNet
  DEV=cpu ACC=cpu DATA=digits EPOCHS=1 FP16=32-true BENCH="benchmarks/gpu.py --smoke" OUT=${OUT:-$(mktemp -d)}
  PORT=${PORT:-$((20000 + RANDOM % 20000))}  # a machine shared with other jobs
else
  DEV=cuda ACC=auto DATA=mnist-5k EPOCHS=3 FP16=16-mixed BENCH=benchmarks/gpu.py PORT=${PORT:-8765}
fi
OUT=${OUT:-/tmp/cnnlab-gpu}; mkdir -p "$OUT"
SUMMARY=$OUT/summary.txt; LOGS=$(mktemp -d)  # logs go back as one archive (logs.tgz)
PY=${PY:-python3}
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
W=$(mktemp -d)
FAILED=0
step() {  # step NAME SECONDS CMD...: run, time-box, log; one summary line each
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  timeout -k 5 "$limit" bash -c '"$@"' _ "$@" >"$LOGS/$name.log" 2>&1; local rc=$?
  echo "step $name: rc=$rc $((SECONDS - t0))s" | tee -a "$SUMMARY"
  [ $rc = 0 ] || { FAILED=1; tail -n 15 "$LOGS/$name.log"; }
}
gpu_only() {  # gpu_only NAME SECONDS CMD...: a step that only a GPU lease runs
  if [ $SMOKE = 1 ]; then echo "step $1: skipped (smoke)" | tee -a "$SUMMARY"; else step "$@"; fi
}
export PY W DEV PORT
cn() { "$PY" -m cnnlab "$@"; }
export -f cn
if [ $SMOKE = 1 ]; then echo "smoke test on the CPU" >"$SUMMARY"
else nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$SUMMARY"; fi
"$PY" -c "import torch, lightning, timm; print('torch', torch.__version__, 'lightning', lightning.__version__, 'timm', timm.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$SUMMARY"

step export 60 cn datasets export $DATA "$W/mnist"
step train_bf16 90 cn train "$W/mnist/train" -o "$W/bf16" --epochs $EPOCHS --precision bf16-mixed --accelerator $ACC --progress false
step train_fp16_aug 90 cn train "$W/mnist/train" -o "$W/fp16" --epochs 2 --precision $FP16 --augment light --accelerator $ACC --progress false
gpu_only train_compile 150 cn train "$W/mnist/train" -o "$W/compiled" --epochs 2 --compile true --channels-last true --progress false
gpu_only train_resnet18 120 cn train "$W/mnist/train" -o "$W/r18" -m resnet18 --weights none --input-size 64 --epochs 2 --precision bf16-mixed --augment standard --channels-last true --progress false
step evaluate 60 cn evaluate "$W/bf16" "$W/mnist" --device $DEV --json "$LOGS/evaluate_bf16.json"
step evaluate_cpu 60 cn evaluate "$W/bf16" "$W/mnist" --device cpu --json "$LOGS/evaluate_bf16_cpu.json"
gpu_only evaluate_r18 60 cn evaluate "$W/r18" "$W/mnist" --device cuda --json "$LOGS/evaluate_r18.json"
step predict 60 cn predict "$W/bf16" "$W/mnist/test/7" --device $DEV --csv "$LOGS/predict.csv"
serve_check() {
  cn serve "$W/bf16" --port $PORT --device $DEV & local pid=$!
  for _ in $(seq 60); do curl -sf localhost:$PORT/health >/dev/null && break; sleep 0.5; done
  curl -sf localhost:$PORT/health; echo
  curl -sf -F "file=@$(ls "$W"/mnist/test/3/* | head -1)" localhost:$PORT/predict; local rc=$?; echo
  kill $pid; wait $pid 2>/dev/null; return $rc
}
export -f serve_check
step serve 60 serve_check
for f in "$LOGS"/evaluate_*.json; do "$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); print(sys.argv[1].rsplit('/',1)[1], 'accuracy', d.get('accuracy'))" "$f" | tee -a "$SUMMARY"; done
for r in bf16 fp16 compiled r18; do
  tail -n 1 "$W/$r/metrics.csv" 2>/dev/null | sed "s/^/$r last metrics row: /" | tee -a "$SUMMARY"
  for f in "$W/$r"/*.json "$W/$r"/*.yaml "$W/$r"/*.csv; do [ -f "$f" ] && cp "$f" "$LOGS/${r}_$(basename "$f")"; done
done
step gpu_bench ${BENCH_S:-260} "$PY" $BENCH
grep -E "^(ResNet|end to end|\{)" "$LOGS/gpu_bench.log" | tee -a "$SUMMARY"
tar czf "$OUT/logs.tgz" -C "$LOGS" .
exit $FAILED
