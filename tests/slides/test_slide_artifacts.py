"""The artifacts a pathologist opens: the heatmap lines up with the slide's known tumor region,
and the GeoJSON has QuPath's shape with each tile's p_yes."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from healer_media.shard import decode_shard
from slide_service.aggregate import TileScore, aggregate
from slide_service.geojson import tiles_geojson
from slide_service.grid import plan_tiles
from slide_service.heatmap import colour, render_heatmap
from slide_service.open import open_slide
from slide_service.shards import iter_shards
from slide_service.synth import SynthSlide
from slide_service.tissue import TissueMask, detect_tissue

JOB = "0badc0de0badc0de0badc0de0badc0de"


def scored_slide(slide_path: Path, tumor_box: tuple[int, int, int, int]) -> tuple[TissueMask, list[TileScore]]:
    """The slide run through tissue → plan → shards → decode, each decoded tile scored by where
    the shard says it is (the stand-in for a model that knows the truth), so coordinates travel
    the same way real scores do."""
    with open_slide(slide_path) as slide:
        mask = detect_tissue(slide)
        plan = plan_tiles(slide.info, mask, tile_px=96, tile_mpp=1.0, min_tissue=0.25, max_tiles=5000)
        scores: list[TileScore] = []
        for blob in iter_shards(slide, plan, JOB, shard_tiles=32, quality=90):
            for tile in decode_shard(blob.data, job_id=JOB, shard=blob.n).tiles:
                x, y, w, h = tumor_box
                inside = x <= tile.x + tile.w / 2 < x + w and y <= tile.y + tile.h / 2 < y + h
                scores.append(TileScore(tile.index, tile.x, tile.y, tile.w, tile.h, 0.92 if inside else 0.08))
    return mask, scores


@pytest.fixture(scope="module")
def scored(aperio_slide: SynthSlide) -> tuple[TissueMask, list[TileScore]]:
    t = aperio_slide.tumor
    return scored_slide(aperio_slide.path, (t.x, t.y, t.w, t.h))


def test_heatmap_is_red_over_the_tumor_and_blue_over_normal(
    aperio_slide: SynthSlide, scored: tuple[TissueMask, list[TileScore]]
) -> None:
    mask, scores = scored
    heatmap = render_heatmap(mask.thumbnail, mask.downsample, scores, threshold=0.5, max_px=2048, min_px=1024)
    image = Image.open(io.BytesIO(heatmap.png))
    assert image.format == "PNG" and image.size == (heatmap.width, heatmap.height)
    assert heatmap.overlay_width == 1024 and heatmap.width > 1024  # the colour bar is to the right
    assert float(image.info["healer:downsample"]) == pytest.approx(heatmap.downsample) == pytest.approx(8.0)
    pixels = np.asarray(image.convert("RGB"), np.int16)

    def at(x0: float, y0: float) -> np.ndarray:
        """Mean colour of the heatmap around the level-0 point (x0, y0)."""
        c, r = round(x0 / heatmap.downsample), round(y0 / heatmap.downsample)
        return pixels[r - 3 : r + 4, c - 3 : c + 4].reshape(-1, 3).mean(axis=0)

    normal, tumor = aperio_slide.regions
    hot = at(tumor.x + tumor.w / 2, tumor.y + tumor.h / 2)
    cold = at(normal.x + normal.w / 2, normal.y + normal.h / 2)
    assert hot[0] > hot[2] + 40, hot  # red dominates over the tumor
    assert cold[2] > cold[0] + 20, cold  # blue dominates over normal tissue
    # Glass far from any tile is the thumbnail untouched (near-white, not tinted).
    glass = at(aperio_slide.width - 200, aperio_slide.height - 200)
    assert glass.min() > 225
    # The tumor's left edge falls between tile columns: hot just inside the first tumor tile
    # column, not hot two tiles to its left.
    first_hot = min(s.x for s in scores if s.p_yes > 0.5)
    inside = at(first_hot + 448, tumor.y + tumor.h / 2)
    outside = at(first_hot - 2 * 896 + 448, tumor.y + tumor.h / 2)
    assert inside[0] > inside[2] + 40 and not outside[0] > outside[2] + 40


def test_heatmap_scales_keep_alignment(aperio_slide: SynthSlide, scored: tuple[TissueMask, list[TileScore]]) -> None:
    mask, scores = scored
    small = render_heatmap(mask.thumbnail, mask.downsample, scores, max_px=128, min_px=128)
    assert small.overlay_width == 128 and small.downsample == pytest.approx(64.0)
    pixels = np.asarray(Image.open(io.BytesIO(small.png)).convert("RGB"), np.int16)
    tumor = aperio_slide.tumor
    r, c = round((tumor.y + tumor.h / 2) / 64), round((tumor.x + tumor.w / 2) / 64)
    assert pixels[r, c, 0] > pixels[r, c, 2] + 40


def test_colour_scale_ends() -> None:
    red, blue = colour(1.0), colour(0.0)
    assert red[0] > 150 > red[2] and blue[2] > 100 > blue[0]


def test_aggregate_of_the_slide(scored: tuple[TissueMask, list[TileScore]]) -> None:
    _, scores = scored
    result = aggregate(scores, top_k=8, threshold=0.5, band=0.1)
    assert result.answer == "yes" and result.tiles_positive == sum(s.p_yes > 0.5 for s in scores) > 8


def test_geojson_is_qupath_shaped(scored: tuple[TissueMask, list[TileScore]]) -> None:
    _, scores = scored
    collection = json.loads(json.dumps(tiles_geojson(JOB, scores, threshold=0.5, band=0.1)))
    assert collection["type"] == "FeatureCollection" and len(collection["features"]) == len(scores)
    for feature, score in zip(collection["features"], scores, strict=True):
        assert feature["type"] == "Feature"
        uuid.UUID(feature["id"])  # QuPath reads ids as UUIDs
        ring = feature["geometry"]["coordinates"][0]
        assert feature["geometry"]["type"] == "Polygon" and ring[0] == ring[-1] and len(ring) == 5
        xs, ys = [p[0] for p in ring], [p[1] for p in ring]
        assert (min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)) == (score.x, score.y, score.w, score.h)
        props = feature["properties"]
        assert props["objectType"] == "tile"
        assert props["measurements"] == {"p_yes": pytest.approx(score.p_yes), "tile_index": score.index}
        expected = "Tumor" if score.p_yes >= 0.6 else "Non-tumor"
        assert props["classification"]["name"] == expected and len(props["classification"]["color"]) == 3
    again = tiles_geojson(JOB, scores, threshold=0.5, band=0.1)
    assert again["features"][0]["id"] == collection["features"][0]["id"]  # stable across runs
    other = tiles_geojson("another-job", scores[:1], threshold=0.5, band=0.1)
    assert other["features"][0]["id"] != collection["features"][0]["id"]


def test_geojson_indeterminate_class() -> None:
    feature = tiles_geojson(JOB, [TileScore(0, 0, 0, 10, 10, 0.55)], 0.5, 0.1)["features"][0]
    assert feature["properties"]["classification"]["name"] == "Indeterminate"
