"""The demo's verdict table, rendered as a terminal would show it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rich.console import Console

from healer.demo import EXPLANATION_CHARS, render
from healer_core.schema import Job, JobError, JobState, Verdict

PREFIX = "demo/20261130T000000"
START = datetime(2026, 11, 30, tzinfo=UTC)


def _job(job_id: str, name: str, **fields: object) -> Job:
    return Job(job_id=job_id, bucket="healer-inbox", name=f"{PREFIX}/{name}", generation=1, **fields)


def _text(jobs: dict[str, str], results: dict[str, Job]) -> str:
    console = Console(record=True, width=120, color_system=None)
    console.print(render(jobs, results, PREFIX))
    return console.export_text()


def test_every_upload_gets_a_row_with_its_outcome() -> None:
    verdict = Verdict(answer="yes", p_yes=0.91, explanation="x" * 500, model_id="m", prompt_version="v1")
    failure = JobError(code="not_an_image", message="Not an image.")
    finished = START + timedelta(seconds=2.5)
    results = {
        "a": _job("a", "tumor.png", state=JobState.DONE, verdict=verdict, created_at=START, finished_at=finished),
        "b": _job("b", "notes.txt", state=JobState.FAILED, error=failure),
        "c": _job("c", "slow.png", state=JobState.RUNNING),
    }
    jobs = {job_id: job.name for job_id, job in results.items()} | {"d": f"{PREFIX}/lost.png"}
    text = _text(jobs, results)
    lines = text.splitlines()
    row = next(line for line in lines if "tumor.png" in line)
    assert "yes" in row and "0.910" in row and "2.5" in row
    assert PREFIX + "/tumor.png" not in text  # names are shown under the caption's prefix
    assert f"objects under {PREFIX}/" in text
    cells = [line.split("│")[4].strip() for line in lines if line.count("│") == 6]
    explanation = "".join(cell for cell in cells if cell.startswith("x"))
    assert explanation.endswith("…") and len(explanation) == EXPLANATION_CHARS
    assert "not_an_image: Not an image." in next(line for line in lines if "notes.txt" in line)
    assert "running" in next(line for line in lines if "slow.png" in line)
    assert "no job" in next(line for line in lines if "lost.png" in line)
