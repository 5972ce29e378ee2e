# Engine targets: the tiny offline checkpoint and the two benchmarks (see docs/BENCHMARKS.md).
MODEL_DIR ?= .healer/models/tiny
BENCH_ARGS ?=
BENCH_GPU_ARGS ?=

.PHONY: tiny-model bench bench-gpu

tiny-model: $(STAMP) ## build the tiny random Gemma 3 checkpoint in $(MODEL_DIR) (offline, seconds)
	$(PY) -c "from healer.model import make_tiny; print(make_tiny('$(MODEL_DIR)'))"

bench: $(STAMP) ## HTTP service images/s and p50/p95 at concurrency 1/8/32, batching off vs on (tiny model)
	$(PY) scripts/bench_http.py --model-dir $(MODEL_DIR) $(BENCH_ARGS)

bench-gpu: $(STAMP) ## GPU only: MedGemma-4B shapes, random weights: the seed's 8-bit path vs Healer's engine
	$(PY) scripts/bench_gpu.py $(BENCH_GPU_ARGS)
