"""What `make demo` prints for a slide: its row in the table and where its heatmap is."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from healer.demo import render, slide_lines
from healer_core.schema import (
    Aggregation,
    Job,
    JobKind,
    JobState,
    Slide,
    SlideStage,
    SlideVerdict,
    TileScore,
    Verdict,
)

PREFIX = "demo/20261201T000000"
URI = "gs://healer-results/slides/s1/heatmap.png"


def test_the_slide_row_and_its_heatmap() -> None:
    verdict = Verdict(
        answer="yes",
        p_yes=0.81,
        explanation="9 of 35 tissue tiles score as tumor; the 8 highest-scoring tiles average p_yes 0.81.",
        model_id="m",
        prompt_version="v1",
        slide=SlideVerdict(
            aggregation=Aggregation(top_k=8),
            tiles_scored=35,
            tiles_positive=9,
            top_tiles=[TileScore(index=3, x=0, y=0, w=896, h=896, p_yes=0.95)],
            heatmap_uri=URI,
            geojson_uri=URI.replace("heatmap.png", "tiles.geojson"),
        ),
    )
    job = Job(
        job_id="s1",
        bucket="healer-inbox",
        name=f"{PREFIX}/slide-1.svs",
        generation=1,
        kind=JobKind.SLIDE,
        state=JobState.DONE,
        verdict=verdict,
        slide=Slide(stage=SlideStage.DONE, tiles_total=35),
    )
    console = Console(record=True, width=160, color_system=None)
    console.print(render({"s1": job.name}, {"s1": job}, PREFIX))
    row = next(line for line in console.export_text().splitlines() if "slide-1.svs" in line)
    assert "(whole slide)" in row and "yes" in row and "0.810" in row
    lines = slide_lines({"s1": job.name}, {"s1": job}, PREFIX, {"s1": Path("/tmp/s1-heatmap.png")})
    assert lines[0] == "slide slide-1.svs: yes (slide score 0.810, 9 of 35 tiles positive, top-8 mean)"
    assert lines[1] == f"  heatmap: {URI}" and "/tmp/s1-heatmap.png" in lines[2]
    assert "tiles.geojson" in lines[3]
