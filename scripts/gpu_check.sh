#!/usr/bin/env bash
# One prepared GPU run of `make bench-gpu` on a bare GPU machine (torch, transformers, Pillow; no
# pydantic, no bitsandbytes, no network): installs any wheels carried in .whl/ (bitsandbytes, for
# the seed's 8-bit path) into a scratch directory, records the stack, runs scripts/bench_gpu.py
# under a time limit and leaves everything in $OUT (default /tmp/healer-gpu-check).
#   bash scripts/gpu_check.sh                 # the full benchmark
#   bash scripts/gpu_check.sh --skip-seed     # any bench_gpu.py options pass through
#   bash scripts/gpu_check.sh --report-only   # the slide report rows alone (needs transformers >= 5.18:
#                                             # carry its wheel in .whl/ if the machine's is older)
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
} | tee "$out/stack.txt"

PYTHONUNBUFFERED=1 timeout "${BENCH_TIMEOUT:-520}" "$py" scripts/bench_gpu.py "$@" 2>&1 | tee "$out/bench-gpu.txt"
