# Whole-slide images: the slide service's tiling benchmark (docs/SLIDES.md).
BENCH_SLIDE_ARGS ?=

.PHONY: bench-slide

bench-slide: $(STAMP) ## slide tiling: tiles/s per core (1 and 2 processes) and peak memory on a generated 40k x 30k slide
	$(PY) scripts/bench_slide.py $(BENCH_SLIDE_ARGS)
