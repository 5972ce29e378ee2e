"""`make demo`: bring the local stack up, upload the sample tiles and one whole slide generated
from them, print every verdict (the slide's with its report and where its heatmap is).

Uses only the official clients against the stack: google-cloud-storage to upload (the Eventarc
stand-in sees the new objects), google-cloud-firestore (through the job store) to read.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from google.cloud import storage  # type: ignore[attr-defined]
from rich.console import Console
from rich.table import Table

from healer.stack import StackConfig, up
from healer.stack.control import StackError
from healer_core.ids import job_id_for
from healer_core.schema import Job, JobKind, Report, ReportStatus
from healer_core.store import JobStore, new_client

REPO = Path(__file__).resolve().parents[1]
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp"}


def sample_images() -> list[Path]:
    """The real H&E tiles shipped in `samples/` (or the folder `HEALER_SAMPLES` names)."""
    folder = Path(os.environ.get("HEALER_SAMPLES", REPO / "samples"))
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def demo_slide(cfg: StackConfig, samples: list[Path]) -> Path | None:
    """A whole-slide image generated now from the sample tiles (tumor and normal tissue regions on
    glass, a pyramidal tiled TIFF with Aperio metadata), or None without tumor/normal samples."""
    from slide_service import synth

    if not any(p.name.startswith("tumor_") for p in samples) or not any(p.name.startswith("normal_") for p in samples):
        return None
    path = cfg.home / "demo" / "slide-1.svs"
    if not path.exists():  # generated once per HEALER_HOME (a few seconds)
        synth.write_slide(path, samples, width=16384, height=12288, mpp=0.25)
    return path


def upload(cfg: StackConfig, paths: list[Path], prefix: str) -> dict[str, str]:
    """Upload each file; returns job id -> object name."""
    bucket = storage.Client(project=cfg.project).bucket(cfg.bucket)
    jobs: dict[str, str] = {}
    for path in paths:
        blob = bucket.blob(f"{prefix}/{path.name}")
        blob.upload_from_filename(str(path))
        jobs[job_id_for(cfg.bucket, blob.name, int(blob.generation))] = blob.name
    return jobs


def settled(job: Job) -> bool:
    """Terminal, and for a slide with a report, the report written, failed or off (it follows the verdict)."""
    report = job.verdict.slide.report if job.verdict is not None and job.verdict.slide is not None else None
    return job.state.terminal and (report is None or report.status != ReportStatus.PENDING)


def wait_for(store: JobStore, job_ids: list[str], timeout_s: float, console: Console) -> dict[str, Job]:
    """Poll until every job is terminal and every slide report written (or the timeout). Returns
    the jobs as last read."""
    deadline = time.monotonic() + timeout_s
    latest: dict[str, Job] = {}
    with console.status("waiting for verdicts…") as status:
        while time.monotonic() < deadline:
            latest = store.get_many(job_ids)
            done = sum(1 for j in latest.values() if j.state.terminal)
            reports = sum(1 for j in latest.values() if j.state.terminal and not settled(j))
            waiting = f" (and {reports} slide report{'s' if reports > 1 else ''})" if reports else ""
            status.update(f"waiting for verdicts… {done}/{len(job_ids)}{waiting}")
            if len(latest) == len(job_ids) and all(settled(j) for j in latest.values()):
                break
            time.sleep(0.5)
    return latest


EXPLANATION_CHARS = 120  # MedGemma's one sentence fits; a runaway generation does not fill the screen
REPORT_CHARS = 240  # the start of a slide report (the whole text: `healer slide JOB`)


def render(jobs: dict[str, str], results: dict[str, Job], prefix: str = "") -> Table:
    """One row per uploaded object (named relative to `prefix`): answer, p_yes, explanation, seconds."""
    title = "Healer verdicts (screening aid, not a diagnosis)"
    table = Table(title=title, caption=f"objects under {prefix}/" if prefix else None)
    table.add_column("object", no_wrap=True)
    for col in ("answer", "p_yes", "explanation", "seconds"):
        table.add_column(col, overflow="fold")
    for job_id, name in jobs.items():
        label = name.removeprefix(f"{prefix}/") if prefix else name
        job = results.get(job_id)
        if job is not None and job.kind == JobKind.SLIDE:
            label += " (whole slide)"
        if job is None:
            table.add_row(label, "[red]no job[/red]", "", "", "")
            continue
        seconds = ""
        if job.finished_at and job.created_at:
            seconds = f"{(job.finished_at - job.created_at).total_seconds():.1f}"
        if job.verdict:
            v = job.verdict
            colour = {"yes": "red", "no": "green"}.get(v.answer, "yellow")
            p = f"{v.p_yes:.3f}" if v.p_yes is not None else "—"
            explanation = v.explanation
            if len(explanation) > EXPLANATION_CHARS:
                explanation = explanation[: EXPLANATION_CHARS - 1] + "…"
            table.add_row(label, f"[{colour}]{v.answer}[/{colour}]", p, explanation, seconds)
        elif job.error:
            table.add_row(label, f"[red]{job.state}[/red]", "", f"{job.error.code}: {job.error.message}", seconds)
        else:
            table.add_row(label, f"[yellow]{job.state}[/yellow]", "", "", "")
    return table


def fetch_heatmaps(cfg: StackConfig, results: dict[str, Job]) -> dict[str, Path]:
    """A local copy of each slide's heatmap under `<home>/demo/` (to open without any Google client)."""
    client = storage.Client(project=cfg.project)
    copies: dict[str, Path] = {}
    for job in results.values():
        if job.verdict is None or job.verdict.slide is None or not job.verdict.slide.heatmap_uri:
            continue
        bucket, _, name = job.verdict.slide.heatmap_uri.removeprefix("gs://").partition("/")
        path = cfg.home / "demo" / f"{job.job_id}-heatmap.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        client.bucket(bucket).blob(name).download_to_filename(str(path))
        copies[job.job_id] = path
    return copies


def slide_lines(
    jobs: dict[str, str],
    results: dict[str, Job],
    prefix: str = "",
    copies: dict[str, Path] | None = None,
    console_url: str = "",
) -> list[str]:
    """For each slide: its verdict in numbers, where its heatmap and GeoJSON are, and (with
    `console_url`) the review console's page that opens it in the deep-zoom viewer."""
    lines: list[str] = []
    for job_id, name in jobs.items():
        job = results.get(job_id)
        if job is None or job.kind != JobKind.SLIDE or job.verdict is None or job.verdict.slide is None:
            continue
        v, block = job.verdict, job.verdict.slide
        label = name.removeprefix(f"{prefix}/") if prefix else name
        lines.append(
            f"slide {label}: {v.answer} (slide score {v.p_yes:.3f}, {block.tiles_positive} of {block.tiles_scored}"
            f" tiles positive, top-{block.aggregation.top_k} mean)"
        )
        lines.append(f"  report:  {report_summary(block.report)}")
        lines.append(f"  heatmap: {block.heatmap_uri}")
        if copies and job_id in copies:
            lines.append(f"           (a copy: {copies[job_id]})")
        lines.append(f"  tiles:   {block.geojson_uri} (GeoJSON; QuPath: File > Import objects from file)")
        if console_url:
            lines.append(f"  viewer:  {console_url}/jobs/{job_id} (review console: slide, heatmap, report)")
    return lines


def report_summary(report: Report) -> str:
    """A slide report in one line: its status, and for a written one its provenance and the start of it."""
    if report.status == ReportStatus.DONE:
        text = " ".join(report.text.split())
        if len(text) > REPORT_CHARS:
            text = text[: REPORT_CHARS - 1] + "…"
        return f"done ({report.patches} patches, {report.model_id}, prompt {report.prompt_version}): {text}"
    if report.status == ReportStatus.FAILED:
        return f"failed: {report.error or 'no reason recorded'}"
    if report.status == ReportStatus.PENDING:
        return f"pending ({report.patches} tiles chosen; still being written when the demo stopped waiting)"
    return "off (SLIDE_REPORT_PATCHES=0)"


def main() -> int:
    console = Console()
    cfg = StackConfig()
    try:
        up(cfg, echo=lambda line: console.print(f"[dim]{line}[/dim]"))
    except StackError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 1
    paths = sample_images()
    if not paths:
        console.print("[red]error:[/red] no sample images found (samples/, or the folder HEALER_SAMPLES names)")
        return 1
    prefix = "demo/" + datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    slide = demo_slide(cfg, paths)
    slide_note = " and a whole slide generated from them" if slide else ""
    console.print(f"uploading {len(paths)} images{slide_note} to gs://{cfg.bucket}/{prefix}/ …")
    jobs = upload(cfg, paths + ([slide] if slide else []), prefix)
    store = JobStore(new_client(cfg.project), cfg.jobs_collection)
    results = wait_for(store, list(jobs), float(os.environ.get("HEALER_DEMO_TIMEOUT", "1800")), console)
    console.print(render(jobs, results, prefix))
    viewer = f"http://{cfg.host}:{cfg.console_port}"
    for line in slide_lines(jobs, results, prefix, fetch_heatmaps(cfg, results), viewer):
        console.print(line, soft_wrap=True, markup=False)
    model = next((j.verdict.model_id for j in results.values() if j.verdict), "")
    if model:
        console.print(f"model: {model}")
    console.print(f"The stack is still up: `source {cfg.env_file}` to use any Google client; `make down` stops it.")
    unfinished = [j for j in jobs if j not in results or not results[j].state.terminal]
    return 1 if unfinished else 0


if __name__ == "__main__":
    sys.exit(main())
