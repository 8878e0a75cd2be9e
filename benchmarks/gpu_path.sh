#!/usr/bin/env bash
# The GPU path in one script for a GPU machine's short lease: sections run in the order given, each step
# time-boxed and logged, a failure does not stop the rest, and every figure is written to $OUT as it comes
# (a lease that ends early still returns what was measured).
#
#   OUT=/tmp/gpu bash benchmarks/gpu_path.sh [SECTION ...]      (python3 with cnnlab importable, or PY=...)
#   bash benchmarks/gpu_path.sh --smoke [SECTION ...]           (the CPU, tiny sizes: every section's CPU
#                                                                fallback runs, so the script is known to work)
# Sections (default: all, in this order: what the last lease left unmeasured first):
#   cli       train (bf16, fp16 + device augmentation, compiled, ResNet-18), evaluate on cuda and cpu, predict, serve
#   resume    --deterministic: two runs identical, a killed and resumed run identical (benchmarks/gpu_resume.py)
#   ablation  ResNet-50 eager: bare loop against cnnlab, its checks off, a plain LightningModule; a profile
#   serving   batching (ResNet-18, 1 and 32 clients, batched vs not), then gil (a pass beside a busy Python
#             thread: eager, and as a CUDA graph)
#   augment   one standard augmentation of 256 images at 224 px on the device: grouped v2 against batched
#   e2e       5,000 JPEGs end to end: the data wait, per data path (benchmarks/gpu.py --e2e)
#   compile   ResNet-50 compiled: bare against cnnlab, MFU (benchmarks/gpu.py --compiled)
# Exits non-zero when a step failed (the summary names it).
set -u
SMOKE=0; [ "${1:-}" = --smoke ] && { SMOKE=1; shift; }
SECTIONS=${*:-augment e2e ablation compile batching gil resume cli}
if [ $SMOKE = 1 ]; then  # digits (8x8), one epoch, 32-bit (fp16 autocast is GPU-only), no compile, no ResNet
  DEV=cpu ACC=cpu DATA=digits EPOCHS=1 FP16=32-true SMOKE_FLAG=--smoke CLIENTS=1 REQUESTS="16 16"
  OUT=${OUT:-$(mktemp -d)}; PORT=${PORT:-$((20000 + RANDOM % 20000))}  # a machine shared with other jobs
else
  DEV=cuda ACC=auto DATA=mnist-5k EPOCHS=3 FP16=16-mixed SMOKE_FLAG= CLIENTS=4 REQUESTS="600 1200" PORT=${PORT:-8765}
fi
OUT=${OUT:-/tmp/cnnlab-gpu}; mkdir -p "$OUT"
SUMMARY=$OUT/summary.txt; LOGS=$(mktemp -d)  # the logs go back as one archive, renewed after each section
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
keep() {  # keep STEP PATTERN: the step's figure lines into the summary
  grep -E "$2" "$LOGS/$1.log" | tee -a "$SUMMARY"
}
export PY W DEV PORT
cn() { "$PY" -m cnnlab "$@"; }
export -f cn
serve_check() {
  "$PY" -m cnnlab serve "$W/bf16" --port $PORT --device $DEV & local pid=$!  # the server itself, not a shell around it: kill stops it
  for _ in $(seq 60); do curl -sf localhost:$PORT/health >/dev/null && break; sleep 0.5; done
  curl -sf localhost:$PORT/health; echo
  curl -sf -F "file=@$(ls "$W"/mnist/test/3/* | head -1)" localhost:$PORT/predict; local rc=$?; echo
  kill $pid; wait $pid 2>/dev/null; return $rc
}
export -f serve_check

section_cli() {
  step export 60 cn datasets export $DATA "$W/mnist"
  step train_bf16 90 cn train "$W/mnist/train" -o "$W/bf16" --epochs $EPOCHS --precision bf16-mixed --accelerator $ACC --progress false
  step train_fp16_aug 90 cn train "$W/mnist/train" -o "$W/fp16" --epochs 2 --precision $FP16 --augment light --accelerator $ACC --progress false
  gpu_only train_compile 150 cn train "$W/mnist/train" -o "$W/compiled" --epochs 2 --compile true --channels-last true --progress false
  gpu_only train_resnet18 120 cn train "$W/mnist/train" -o "$W/r18" -m resnet18 --weights none --input-size 64 --epochs 2 --precision bf16-mixed --augment standard --channels-last true --progress false
  step evaluate 60 cn evaluate "$W/bf16" "$W/mnist" --device $DEV --json "$LOGS/evaluate_bf16.json"
  step evaluate_cpu 60 cn evaluate "$W/bf16" "$W/mnist" --device cpu --json "$LOGS/evaluate_bf16_cpu.json"
  step predict 60 cn predict "$W/bf16" "$W/mnist/test/7" --device $DEV --csv "$LOGS/predict.csv"
  step serve 60 serve_check
  for f in "$LOGS"/evaluate_*.json; do [ -f "$f" ] && "$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); print(sys.argv[1].rsplit('/',1)[1], 'accuracy', d.get('accuracy'))" "$f" | tee -a "$SUMMARY"; done
  for r in bf16 fp16 compiled r18; do
    tail -n 1 "$W/$r/metrics.csv" 2>/dev/null | sed "s/^/$r last metrics row: /" | tee -a "$SUMMARY"
  done
}
section_resume() {
  step resume ${RESUME_S:-150} "$PY" benchmarks/gpu_resume.py $SMOKE_FLAG
  keep resume '^\{'
}
section_ablation() {
  step ablation ${ABLATION_S:-150} "$PY" benchmarks/gpu.py $SMOKE_FLAG --ablation --rounds ${ROUNDS:-2}
  keep ablation "^(round|ablation|host waits)"
}
section_serving() {
  section_batching
  section_gil
}
section_batching() {
  step serving ${SERVING_S:-150} "$PY" benchmarks/serving.py --batching --device $DEV --client-processes $CLIENTS \
    --models resnet18 --clients 1 32 --requests $REQUESTS
  keep serving '^micro-batching'
}
section_gil() {
  step gil ${GIL_S:-90} "$PY" benchmarks/serving.py --gil --device $DEV --models resnet18
  keep gil '^gil'
}
section_augment() {
  step augment ${AUGMENT_S:-90} "$PY" benchmarks/augment_ops.py --device $DEV --rounds ${AUGMENT_ROUNDS:-3}
  keep augment '(grouped|batched|ops)'
}
section_e2e() {
  step e2e ${E2E_S:-180} "$PY" benchmarks/gpu.py $SMOKE_FLAG --e2e
  keep e2e '^end to end'
}
section_compile() {
  gpu_only compile ${COMPILE_S:-240} "$PY" benchmarks/gpu.py --compiled
  [ $SMOKE = 1 ] || keep compile '^ResNet'
}

if [ $SMOKE = 1 ]; then echo "smoke test on the CPU" >"$SUMMARY"
else nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$SUMMARY"; fi
"$PY" -c "import torch, lightning, timm; print('torch', torch.__version__, 'lightning', lightning.__version__, 'timm', timm.__version__, 'cuda', torch.cuda.is_available(), 'cpus', __import__('os').cpu_count())" | tee -a "$SUMMARY"
for s in $SECTIONS; do
  echo "== $s" | tee -a "$SUMMARY"
  "section_$s"
  tar czf "$OUT/logs.tgz" -C "$LOGS" .
done
exit $FAILED
