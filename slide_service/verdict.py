"""A slide verdict from its scored shards: the aggregate (aggregate.py), a one-sentence
explanation built from it, the provenance of the model that scored the tiles, and the `slide`
block (counts, top tiles, artifacts, report). Pure: no I/O."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from healer_core.schema import Aggregation, Report, Shard, SlideVerdict, Timings, Verdict
from healer_core.schema import TileScore as StoredTileScore
from slide_service.aggregate import SlideAggregate, TileScore


class IncompleteScores(RuntimeError):
    """A shard without a score for every tile: finalize ran before the fan-in finished (a bug)."""


@dataclass(frozen=True)
class Artifacts:
    """Where the slide's results were written."""

    heatmap_uri: str
    geojson_uri: str
    thumbnail_uri: str


def tile_scores(shards: Sequence[Shard]) -> list[TileScore]:
    """Every tile's score, from done shards (IncompleteScores when any is missing)."""
    scores: list[TileScore] = []
    for shard in shards:
        if shard.scores is None or len(shard.scores) != len(shard.tiles):
            raise IncompleteScores(f"shard {shard.n} has no score for each of its {len(shard.tiles)} tiles")
        scores.extend(TileScore(t.index, t.x, t.y, t.w, t.h, p) for t, p in zip(shard.tiles, shard.scores, strict=True))
    return scores


def explanation(agg: SlideAggregate, threshold: float, band: float) -> str:
    """One sentence saying how the answer came about, from the aggregate's numbers."""
    if abs(agg.p_yes - threshold) < band:
        relation = f"within {band:.2f} of the {threshold:.2f} threshold"
    else:
        relation = f"{'above' if agg.p_yes >= threshold else 'below'} the {threshold:.2f} threshold"
    top = "highest-scoring tile has" if agg.top_k == 1 else f"{agg.top_k} highest-scoring tiles average"
    return (
        f"{agg.tiles_positive} of {agg.tiles_scored} tissue tiles score as tumor (p_yes ≥ {threshold + band:.2f});"
        f" the {top} p_yes {agg.p_yes:.2f}, {relation}."
    )


def provenance(shards: Sequence[Shard]) -> Shard:
    """The shard whose model scored the most tiles (its model fields are the verdict's): a slide
    scored across a rolling deploy takes the majority model."""
    weights: Counter[tuple[str, str, str, str]] = Counter()
    for shard in shards:
        weights[(shard.model_id, shard.model_revision, shard.quantization, shard.prompt_version)] += len(shard.tiles)
    model = weights.most_common(1)[0][0]
    return next(s for s in shards if (s.model_id, s.model_revision, s.quantization, s.prompt_version) == model)


def slide_verdict(
    agg: SlideAggregate,
    shards: Sequence[Shard],
    artifacts: Artifacts,
    threshold: float,
    band: float,
    timings: Timings,
    report: Report | None = None,
) -> Verdict:
    """The verdict written to `jobs/{job_id}.verdict`; `report` is its report block (`report.py`),
    off when not given."""
    model = provenance(shards)
    top = [StoredTileScore(index=t.index, x=t.x, y=t.y, w=t.w, h=t.h, p_yes=t.p_yes) for t in agg.top_tiles]
    return Verdict(
        answer=agg.answer,
        p_yes=agg.p_yes,
        explanation=explanation(agg, threshold, band),
        model_id=model.model_id,
        model_revision=model.model_revision,
        quantization=model.quantization or "none",
        prompt_version=model.prompt_version,
        timings_ms=timings,
        slide=SlideVerdict(
            aggregation=Aggregation(method=agg.method, top_k=agg.top_k),
            tiles_scored=agg.tiles_scored,
            tiles_positive=agg.tiles_positive,
            top_tiles=top,
            heatmap_uri=artifacts.heatmap_uri,
            geojson_uri=artifacts.geojson_uri,
            thumbnail_uri=artifacts.thumbnail_uri,
            report=report or Report(),
        ),
    )
