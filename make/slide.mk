# Whole-slide images: `make bench-slide` (docs/SLIDES.md, "make bench-slide"). On a generated
# 40k x 30k slide: tiles/s per core and peak memory of tile extraction; shard tiles against single
# images through the service's batcher on a modelled GPU; the slide end to end on the bench's own
# local stack (HEALER_HOME .healer/bench/stack, ports 360xx: a `make up` stack is untouched; stopped
# and removed afterwards) with the tiny model, and the slide path against the image path. Prints
# numbers, asserts nothing. BENCH_SLIDE_ARGS passes options: --quick (a short run), --no-stack,
# --port-base, --home, --tile-mpp, --e2e-tile-mpp, ... (python scripts/bench_slide.py --help).
BENCH_SLIDE_ARGS ?=

.PHONY: bench-slide

bench-slide: $(STAMP) ## whole slides: extraction tiles/s per core and memory, batching, end to end on its own stack
	$(PY) scripts/bench_slide.py $(BENCH_SLIDE_ARGS)
