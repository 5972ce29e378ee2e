"""Slide job documents as the pipeline writes them, for the tests that check what a user sees of a
slide (the CLI, `make demo`, the console): the job, and a finished slide's verdict."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from healer_core.answer import Answer
from healer_core.ids import job_id_for
from healer_core.schema import Aggregation, Job, JobKind, Report, SlideVerdict, TileScore, Verdict

# Where a slide's artifacts lie under its results prefix (`slides/<job_id>/`).
ARTIFACT_FILES = {"heatmap": "heatmap.png", "geojson": "tiles.geojson", "thumbnail": "thumbnail.png"}


def slide_job(bucket: str, name: str, generation: int = 1, **fields: Any) -> Job:
    """A slide job for `bucket/name#generation` with any other `fields`; its id as ingest derives it
    unless `fields` names one."""
    fields.setdefault("job_id", job_id_for(bucket, name, generation))
    return Job(kind=JobKind.SLIDE, bucket=bucket, name=name, generation=generation, **fields)


def done_report(text: str, model_id: str, prompt_version: str, patches: int) -> Report:
    """A slide report the model finished writing."""
    return Report(status="done", text=text, model_id=model_id, prompt_version=prompt_version, patches=patches)


def slide_verdict(
    answer: Answer,
    p_yes: float,
    *,
    aggregation: Aggregation,
    tiles_scored: int,
    tiles_positive: int,
    top_tiles: Sequence[TileScore],
    artifacts: str,
    report: Report,
    **provenance: Any,
) -> Verdict:
    """A finished slide's verdict: its counts and top tiles, its artifacts under `artifacts` (a gs://
    prefix, ARTIFACT_FILES below it), its report; `provenance` is the rest of the Verdict (model_id, ...)."""
    uri = {what: f"{artifacts}/{file}" for what, file in ARTIFACT_FILES.items()}
    found = SlideVerdict(
        aggregation=aggregation,
        tiles_scored=tiles_scored,
        tiles_positive=tiles_positive,
        top_tiles=list(top_tiles),
        heatmap_uri=uri["heatmap"],
        geojson_uri=uri["geojson"],
        thumbnail_uri=uri["thumbnail"],
        report=report,
    )
    return Verdict(answer=answer, p_yes=p_yes, slide=found, **provenance)
