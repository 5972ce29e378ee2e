"""What `make demo` prints for a slide: its row in the table, its report and where its heatmap is."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from healer.demo import REPORT_CHARS, render, report_summary, settled, slide_lines
from healer_core.schema import (
    Aggregation,
    Job,
    JobState,
    Report,
    Slide,
    SlideStage,
    SlideVerdict,
    TileScore,
    Verdict,
)
from tests.slide_docs import done_report, slide_job, slide_verdict

PREFIX = "demo/20261201T000000"
URI = "gs://healer-results/slides/s1/heatmap.png"


def test_the_slide_row_and_its_heatmap() -> None:
    verdict = slide_verdict(
        "yes",
        0.81,
        aggregation=Aggregation(top_k=8),
        tiles_scored=35,
        tiles_positive=9,
        top_tiles=[TileScore(index=3, x=0, y=0, w=896, h=896, p_yes=0.95)],
        artifacts=URI.removesuffix("/heatmap.png"),
        report=done_report("A [bold] report.\n\nSecond paragraph.", "m", "r1", 12),
        explanation="9 of 35 tissue tiles score as tumor; the 8 highest-scoring tiles average p_yes 0.81.",
        model_id="m",
        prompt_version="v1",
    )
    job = slide_job(
        "healer-inbox",
        f"{PREFIX}/slide-1.svs",
        job_id="s1",
        state=JobState.DONE,
        verdict=verdict,
        slide=Slide(stage=SlideStage.DONE, tiles_total=35),
    )
    console = Console(record=True, width=160, color_system=None)
    console.print(render({"s1": job.name}, {"s1": job}, PREFIX))
    row = next(line for line in console.export_text().splitlines() if "slide-1.svs" in line)
    assert "(whole slide)" in row and "yes" in row and "0.810" in row
    lines = slide_lines(
        {"s1": job.name}, {"s1": job}, PREFIX, {"s1": Path("/tmp/s1-heatmap.png")}, "http://127.0.0.1:8090"
    )
    assert lines[0] == "slide slide-1.svs: yes (slide score 0.810, 9 of 35 tiles positive, top-8 mean)"
    assert lines[1] == "  report:  done (12 patches, m, prompt r1): A [bold] report. Second paragraph."
    assert lines[2] == f"  heatmap: {URI}" and "/tmp/s1-heatmap.png" in lines[3]
    assert "tiles.geojson" in lines[4]
    assert lines[5].startswith("  viewer:  http://127.0.0.1:8090/jobs/s1 ")  # the console's page for it


@pytest.mark.parametrize(
    ("report", "line"),
    [
        (Report(status="done", text="w " * 400, patches=3, model_id="m", prompt_version="r1"), "done (3 patches, m"),
        (Report(status="failed", error="Shard 2's object is gone."), "failed: Shard 2's object is gone."),
        (Report(status="pending", patches=7), "pending (7 tiles chosen; still being written"),
        (Report(status="off"), "off (SLIDE_REPORT_PATCHES=0)"),
    ],
)
def test_the_report_line_says_each_status(report: Report, line: str) -> None:
    summary = report_summary(report)
    assert summary.startswith(line), summary
    if report.status == "done":  # a long report is cut to its start
        assert summary.endswith("…") and len(summary.split(": ", 1)[1]) == REPORT_CHARS


def test_the_demo_waits_for_a_pending_report_not_for_a_finished_one() -> None:
    base = slide_job("b", "n", job_id="s", state=JobState.DONE)
    verdict = Verdict(answer="no", p_yes=0.1, model_id="m", prompt_version="v", slide=SlideVerdict())

    def with_report(status: str) -> Job:
        slide = SlideVerdict(report=Report(status=status))
        return base.model_copy(update={"verdict": verdict.model_copy(update={"slide": slide})})

    assert not settled(with_report("pending"))
    assert all(settled(with_report(status)) for status in ("done", "failed", "off"))
    assert not settled(base.model_copy(update={"state": JobState.RUNNING}))
