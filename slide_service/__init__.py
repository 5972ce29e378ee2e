"""Healer's slide service: whole-slide images into tiles, shards and a slide verdict.

One small module per step, in the order a slide goes through them:
open (OpenSlide, SlideInfo, coded rejections) → tissue (mask on a low level) → grid (tile plan)
→ tiles (read one tile) → shards (pack tiles into shard objects) → aggregate (slide verdict)
→ heatmap, geojson (the artifacts). settings holds the knobs; synth generates test slides.
No torch here: the service runs on CPU (openslide-python + openslide-bin).
"""
