"""`healer slide JOB`: a slide's verdict, its report and top tiles; its heatmap, GeoJSON and thumbnail.

Reads the job document (by id, or the newest generation of an object) and fetches the artifacts
from the gs:// URIs its verdict records, through the CLI's storage client.
"""

from __future__ import annotations

from datetime import UTC
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from healer.cli.app import app, console
from healer.cli.artifacts import ArtifactMissing, check_writable, fetch
from healer.cli.errors import CliError
from healer.cli.lookup import find_job
from healer.cli.render import ANSWER_STYLE, DISCLAIMER, seconds, slide_progress
from healer.cli.target import TargetCommand, target
from healer_core.schema import Aggregation, Job, JobKind, JobState, Report, SlideVerdict, Verdict

ARTIFACTS = ("heatmap", "geojson", "thumbnail")


def _out(flag: str, metavar: str, help: str) -> Any:
    return typer.Option(flag, metavar=metavar, help=help, dir_okay=False)


HeatmapOut = Annotated[
    Path | None, _out("--heatmap", "OUT.png", "Write the heatmap PNG (p_yes over the thumbnail) here.")
]
GeojsonOut = Annotated[
    Path | None, _out("--geojson", "OUT.json", "Write the tiles' GeoJSON (polygons with p_yes; QuPath imports it).")
]
ThumbnailOut = Annotated[Path | None, _out("--thumbnail", "OUT.png", "Write the slide's thumbnail PNG here.")]


@app.command(cls=TargetCommand)
def slide(
    ctx: typer.Context,
    ref: Annotated[
        str, typer.Argument(metavar="JOB", help="Job id, object name or gs://bucket/name (its latest generation).")
    ],
    heatmap: HeatmapOut = None,
    geojson: GeojsonOut = None,
    thumbnail: ThumbnailOut = None,
    top: Annotated[int, typer.Option(help="Top tiles listed.", min=0)] = 10,
) -> None:
    """A slide's verdict, report and top tiles; --heatmap, --geojson, --thumbnail fetch its artifacts."""
    wanted = {what: path for what, path in zip(ARTIFACTS, (heatmap, geojson, thumbnail), strict=True) if path}
    for path in wanted.values():
        check_writable(path)
    clients = target(ctx).clients(need_bucket=False)
    job = find_job(clients.store, ref, clients.settings.bucket or None)
    verdict, found = finished_slide(job)
    out = console()
    print_slide(out, job, verdict, found, top)
    missing = []
    for what, path in wanted.items():
        try:
            got = fetch(clients.storage, what, getattr(found, f"{what}_uri"), path)
        except ArtifactMissing as exc:
            missing.append(f"{what}: {exc}")
            continue
        out.print(f"wrote {got.path} ({got.size:,} bytes): the {what}")
    if missing:
        raise CliError(f"slide {job.job_id}: missing {'; '.join(missing)}")


def finished_slide(job: Job) -> tuple[Verdict, SlideVerdict]:
    """The verdict of a done slide job; one clear CliError for anything else."""
    if job.kind != JobKind.SLIDE:
        raise CliError(f"job {job.job_id} is an image, not a slide: `healer results {job.job_id}` shows its verdict")
    if job.state == JobState.FAILED:
        reason = f"{job.error.code}: {job.error.message}" if job.error else "no reason recorded"
        raise CliError(f"slide {job.job_id} failed: {reason}")
    if job.state != JobState.DONE:
        raise CliError(
            f"slide {job.job_id} is not done yet ({job.state}: {slide_progress(job)}): follow it with `healer watch`"
        )
    if job.verdict is None or job.verdict.slide is None:
        raise CliError(
            f"slide {job.job_id} is done but its verdict has no slide part: see `healer results --format json`"
        )
    return job.verdict, job.verdict.slide


def print_slide(out: Console, job: Job, verdict: Verdict, found: SlideVerdict, top: int) -> None:
    """The verdict table, the report, the top tiles and the artifacts' URIs."""
    out.print(_verdict_table(job, verdict, found))
    out.print(_report_line(found.report))
    if found.report.status == "done" and found.report.text:
        out.print(found.report.text, markup=False)
    if top and found.top_tiles:
        out.print(_top_tiles(found, top))
    artifacts = Table(title="Artifacts", title_justify="left", show_header=False)
    for what in ARTIFACTS:
        artifacts.add_row(what, getattr(found, f"{what}_uri") or "[dim]none recorded[/dim]")
    out.print(artifacts)


def _verdict_table(job: Job, verdict: Verdict, found: SlideVerdict) -> Table:
    style = ANSWER_STYLE[verdict.answer]
    score = "—" if verdict.p_yes is None else f"{verdict.p_yes:.3f}"
    agg = found.aggregation
    plan = job.slide.tiles_total if job.slide else 0
    rows = [
        ("job", job.job_id),
        ("object", f"gs://{job.bucket}/{job.name}"),
        ("answer", f"[{style}]{verdict.answer}[/{style}]"),
        ("slide score", f"{score} ({_aggregation(agg)})"),
        (
            "tiles",
            f"{found.tiles_positive} positive of {found.tiles_scored} scored" + (f" ({plan} planned)" if plan else ""),
        ),
        *_geometry(job),
        ("model", f"{verdict.model_id}" + (f" @ {verdict.model_revision}" if verdict.model_revision else "")),
        ("prompt", verdict.prompt_version),
    ]
    if job.finished_at:
        took = seconds(job)
        rows.append(
            (
                "finished",
                f"{job.finished_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
                + (f", {took} s after upload" if took else ""),
            )
        )
    table = Table(title=f"Slide verdict ({DISCLAIMER})", title_justify="left", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in rows:
        table.add_row(key, value)
    return table


def _aggregation(agg: Aggregation) -> str:
    if agg.method == "top_k_mean":
        return f"mean p_yes of the top {agg.top_k} tiles"
    return f"{agg.method}, k={agg.top_k}"


def _geometry(job: Job) -> list[tuple[str, str]]:
    """What was tiled: the slide's format and size, and the tile geometry (when recorded)."""
    s = job.slide
    if s is None:
        return []
    what = s.format or "slide"
    if s.vendor and s.vendor != s.format:
        what += f" ({s.vendor})"
    size = f"{what}, {s.width} x {s.height} px" if s.width else what
    if s.mpp:
        size += f", {s.mpp:g} µm/px" + (" (assumed: no MPP in the file)" if s.mpp_assumed else "")
    if s.levels:
        size += f", {s.levels} levels"
    rows = [("slide", size)]
    if s.tile_px:
        rows.append(("tiles at", f"{s.tile_mpp:g} µm/px, {s.tile_px} px"))
    return rows


def _report_line(report: Report) -> str:
    if report.status == "done":
        where = ", ".join(
            p for p in (report.model_id, report.prompt_version and f"prompt {report.prompt_version}") if p
        )
        return f"[bold]Report[/bold] ({where}; {report.patches} patches)"
    if report.status == "failed":
        return f"[bold]Report[/bold]: [red]failed[/red]: {report.error or 'no reason recorded'}"
    if report.status == "pending":
        chosen = f"{report.patches} tiles chosen; " if report.patches else ""
        retry = f"; last attempt: {report.error}" if report.error else ""
        return f"[bold]Report[/bold]: pending ({chosen}written after the tiles are scored{retry})"
    return f"[bold]Report[/bold]: {report.status} (SLIDE_REPORT_PATCHES is 0 on the slide service)"


def _top_tiles(found: SlideVerdict, top: int) -> Table:
    tiles = sorted(found.top_tiles, key=lambda t: t.p_yes, reverse=True)[:top]
    title = f"Top {len(tiles)} of {len(found.top_tiles)} tiles (level-0 pixels)"
    table = Table(title=title, title_justify="left")
    for col in ("#", "tile", "x", "y", "w", "h", "p_yes"):
        table.add_column(col, justify="right", no_wrap=True)
    for rank, t in enumerate(tiles, 1):
        table.add_row(str(rank), str(t.index), str(t.x), str(t.y), str(t.w), str(t.h), f"{t.p_yes:.3f}")
    return table
