#!/usr/bin/env bash
# One prepared GPU run of `make bench-gpu` on a bare GPU machine (torch, transformers, Pillow; no
# pydantic, no bitsandbytes, no network): installs any wheels carried in .whl/ (bitsandbytes, for
# the seed's 8-bit path) into a scratch directory, records the stack, runs scripts/bench_gpu.py
# under a time limit and leaves everything in $OUT (default /tmp/healer-gpu-check).
#   bash scripts/gpu_check.sh                 # the full benchmark
#   bash scripts/gpu_check.sh --skip-seed     # any bench_gpu.py options pass through
#   bash scripts/gpu_check.sh --report-only   # the slide report rows alone (needs transformers >= 5.18:
#                                             # carry its wheel in .whl/ if the machine's is older)
#   bash scripts/gpu_check.sh levers          # the speed levers one by one (docs/BENCHMARKS.md), in two
#                                             # processes within ≈ 9.5 min: the verdict path's levers
#                                             # (levers-verdict.txt), then the explanation's
#                                             # (levers-explain.txt: its compiled decode may crash a stack)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/healer-gpu-check}"
mkdir -p "$out"
py="${PYTHON:-python3}"

if compgen -G ".whl/*.whl" >/dev/null; then
  "$py" -m pip install -q --no-index --no-deps --target /tmp/healer-site .whl/*.whl
  export PYTHONPATH="/tmp/healer-site${PYTHONPATH:+:$PYTHONPATH}"
fi

{
  date -u +"%Y-%m-%dT%H:%M:%SZ"
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  fi
  echo "cpus: $(nproc)"
  "$py" -c 'import torch, transformers; print("torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__)'
  "$py" -c 'import bitsandbytes; print("bitsandbytes", bitsandbytes.__version__)' 2>/dev/null || echo "bitsandbytes: absent (seed row skipped)"
  "$py" -c 'import torchvision; print("torchvision", torchvision.__version__)' 2>/dev/null || echo "torchvision: absent (PIL preprocessing)"
  "$py" -c 'import transformers as t; v = tuple(int(x) for x in t.__version__.split(".")[:2]); print("slide report:", "ok" if v >= (5, 18) else "needs transformers >= 5.18 (pre-encoded images in generate): carry its wheel in .whl/")'
  "$py" -c 'import triton; print("triton", triton.__version__)' 2>/dev/null || echo "triton: absent (compile levers fall back)"
  echo "C compiler (Triton builds its launcher with it): $(command -v cc || command -v gcc || echo 'absent: compile levers fall back')"
} | tee "$out/stack.txt"

if [[ "${1:-}" == "levers" ]]; then
  shift
  # Phase 1, the verdict path: every vision lever, pinned staging, then the helpful ones combined.
  # Its own budget skips the levers left (the table still prints) before the timeout cuts it.
  PYTHONUNBUFFERED=1 timeout "${LEVERS_VERDICT_TIMEOUT:-320}" "$py" scripts/bench_gpu.py --levers \
    --iters 3 --lever-budget-s "${LEVERS_VERDICT_BUDGET:-220}" "$@" 2>&1 | tee "$out/levers-verdict.txt" || true
  # Phase 2, explanations at batch 64, in a process of its own: static cache + reduce-overhead
  # segfaulted on the reference stack, and it goes last (after its canary) so it takes nothing with it.
  PYTHONUNBUFFERED=1 timeout "${LEVERS_EXPLAIN_TIMEOUT:-235}" "$py" scripts/bench_gpu.py --levers eager \
    cache=static cache=static,decode-compile=default cache=static,decode-compile=reduce-overhead \
    --lever-batch-sizes 64 --iters 3 --lever-budget-s "${LEVERS_EXPLAIN_BUDGET:-150}" "$@" 2>&1 \
    | tee "$out/levers-explain.txt" || true
  exit 0
fi

PYTHONUNBUFFERED=1 timeout "${BENCH_TIMEOUT:-520}" "$py" scripts/bench_gpu.py "$@" 2>&1 | tee "$out/bench-gpu.txt"
