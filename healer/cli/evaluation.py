"""`healer eval LABELS.csv`: how good is the screen on our slides?

Submits each labelled image that has no verdict yet (local files are uploaded unless identical
bytes are already in the bucket; object names already in the bucket are ingested if they have no
job), waits for every verdict, then writes `metrics.json` and `roc.png` and prints the tables.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from healer.cli.app import app, console
from healer.cli.errors import CliError
from healer.cli.render import DISCLAIMER
from healer.cli.target import TargetCommand, target
from healer_core.schema import Job

if TYPE_CHECKING:
    from healer.cli.clients import Clients

REF_COLUMNS = ("path", "file", "filename", "image", "object", "name")
TRUTH_COLUMNS = ("truth", "label", "cancer", "target", "y")
TRUE_VALUES = {"yes", "y", "true", "1", "positive", "pos", "cancer"}
FALSE_VALUES = {"no", "n", "false", "0", "negative", "neg", "normal"}


@dataclass(frozen=True)
class Label:
    """One labelled case: an image path or object name, and whether it shows cancer."""

    ref: str
    truth: bool


def parse_truth(value: str, where: str) -> bool:
    v = value.strip().lower()
    if v in TRUE_VALUES:
        return True
    if v in FALSE_VALUES:
        return False
    raise CliError(f"{where}: truth must be yes or no, not {value!r}")


def read_labels(path: Path) -> list[Label]:
    """Rows of (image path or object name, yes/no). A header row naming the columns is optional:
    known names (path/file/image/object, truth/label/cancer) pick the columns; without a header,
    the first column is the image and the last the truth.
    """
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    if not rows:
        raise CliError(f"{path} has no rows")
    header = [c.strip().lower() for c in rows[0]]
    ref_col, truth_col = 0, len(header) - 1
    has_header = any(h in REF_COLUMNS or h in TRUTH_COLUMNS for h in header)
    if has_header:
        ref_col = next((header.index(c) for c in REF_COLUMNS if c in header), 0)
        truth_col = next((header.index(c) for c in TRUTH_COLUMNS if c in header), len(header) - 1)
        rows = rows[1:]
    if ref_col == truth_col:
        raise CliError(f"{path}: need two columns, the image and its truth (yes/no)")
    labels = []
    for i, row in enumerate(rows, start=2 if has_header else 1):
        if len(row) <= max(ref_col, truth_col):
            raise CliError(f"{path} line {i}: expected at least {max(ref_col, truth_col) + 1} columns")
        labels.append(Label(row[ref_col].strip(), parse_truth(row[truth_col], f"{path} line {i}")))
    return labels


def roc_png(metrics: dict[str, Any], path: Path) -> Path:
    """The ROC curve with the chosen operating point marked (matplotlib, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    roc = metrics["roc"]
    op = metrics["operating_point"]
    fig, ax = plt.subplots(figsize=(5, 5), dpi=120)
    ax.plot([p["fpr"] for p in roc], [p["tpr"] for p in roc], drawstyle="default", lw=2, label="ROC")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="chance")
    if op["sensitivity"] is not None and op["specificity"] is not None:
        x, y = 1 - op["specificity"], op["sensitivity"]
        ax.plot([x], [y], "o", color="red", ms=8, label=f"threshold {op['threshold']:.4f}")
        ax.annotate(f"p_yes ≥ {op['threshold']:.4f}", (x, y), textcoords="offset points", xytext=(8, -14))
    auroc = metrics["auroc"]
    ax.set_title(f"ROC (AUROC {auroc:.3f}, n={metrics['n']})" if auroc is not None else f"ROC (n={metrics['n']})")
    ax.set_xlabel("1 - specificity (false positive rate)")
    ax.set_ylabel("sensitivity (true positive rate)")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return path


def _job_ids(labels: list[Label], base: Path, prefix: str, clients: Clients, workers: int) -> dict[str, str]:
    """Label ref -> job id: uploads local files (skipping identical objects), ingests bare objects
    exactly as the ingest function would (its admission rules and MAX_IMAGE_BYTES)."""
    from healer.cli.uploads import Upload, Uploader, upload_all

    settings = clients.settings
    files: list[Upload] = []
    ids: dict[str, str] = {}
    by_name: dict[str, str] = {}  # object name -> label ref
    for label in labels:
        local = next((p for p in (base / label.ref, Path(label.ref)) if p.is_file()), None)
        if local is not None:
            rel = label.ref if not Path(label.ref).is_absolute() else local.name
            name = f"{prefix.strip('/')}/{Path(rel).as_posix()}" if prefix.strip("/") else Path(rel).as_posix()
            if name in by_name:
                raise CliError(f"{label.ref} is listed twice")
            by_name[name] = label.ref
            files.append(Upload(local, name))
            continue
        name = label.ref.removeprefix(f"gs://{settings.bucket}/")
        job = clients.store.latest_for(settings.bucket, name)
        if job is None:
            blob = clients.bucket().get_blob(name)
            if blob is None:
                raise CliError(f"{label.ref}: no such file here nor object in gs://{settings.bucket}")
            ids[label.ref] = clients.ingest_blob(blob, event_id="healer-eval").job_id
        else:
            ids[label.ref] = job.job_id
    if files:
        out = console()
        report = upload_all(Uploader(settings.project, settings.bucket, skip_existing=True), files, workers, out)
        if report.interrupted:
            raise CliError("interrupted while uploading: rerun `healer eval` (uploaded files are reused)", 130)
        reused = sum(u.reused for u in report.uploaded)
        out.print(f"{len(report.uploaded) - reused} uploaded, {reused} already in the bucket", style="dim")
        for u in report.uploaded:
            ids[by_name[u.name]] = u.job_id
    return ids


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def _print_report(metrics: dict[str, Any], out_dir: Path) -> None:
    out = console()
    op = metrics["operating_point"]
    out.print(f"Evaluation ({DISCLAIMER})", style="bold")
    summary = Table(show_header=False)
    summary.add_column("metric", style="bold")
    summary.add_column("value", justify="right")
    rows = [
        ("cases scored", f"{metrics['n']} ({metrics['positives']} cancer, {metrics['negatives']} not)"),
        ("AUROC (p_yes)", _fmt(metrics["auroc"])),
        ("threshold", f"{op['threshold']:.4f} ({op['rule']})"),
        ("sensitivity", _fmt(op["sensitivity"])),
        ("specificity", _fmt(op["specificity"])),
        ("accuracy", _fmt(op["accuracy"])),
        ("unscored", str(len(metrics["unscored"]))),
    ]
    for key, value in rows:
        summary.add_row(key, value)
    out.print(summary)
    matrix = Table(title="Confusion matrix at the threshold", title_justify="left", min_width=40)
    matrix.add_column("")
    matrix.add_column("called yes", justify="right")
    matrix.add_column("called no", justify="right")
    matrix.add_row("truth yes", str(op["tp"]), str(op["fn"]))
    matrix.add_row("truth no", str(op["fp"]), str(op["tn"]))
    out.print(matrix)
    sweep = Table(title="Threshold sweep (all of it in metrics.json)", title_justify="left")
    for col in ("p_yes ≥", "sensitivity", "specificity", "accuracy", "tp", "fp", "tn", "fn"):
        sweep.add_column(col, justify="right")
    for row in metrics["sweep"]:
        mark = " ◀" if row["threshold"] == op["threshold"] else ""
        sweep.add_row(
            f"{row['threshold']:.4f}{mark}",
            _fmt(row["sensitivity"]),
            _fmt(row["specificity"]),
            _fmt(row["accuracy"]),
            str(row["tp"]),
            str(row["fp"]),
            str(row["tn"]),
            str(row["fn"]),
        )
    out.print(sweep)
    out.print(f"wrote {out_dir / 'metrics.json'} and {out_dir / 'roc.png'}")


@app.command("eval", cls=TargetCommand)
def eval_command(
    ctx: typer.Context,
    labels_csv: Annotated[
        Path,
        typer.Argument(
            metavar="LABELS.csv", help="Image path or object name, truth yes/no.", exists=True, dir_okay=False
        ),
    ],
    out_dir: Annotated[Path, typer.Option("--out", help="Where metrics.json and roc.png go.")] = Path("eval-out"),
    threshold: Annotated[float | None, typer.Option(help="Fix the operating point (p_yes ≥ it is yes).")] = None,
    min_sensitivity: Annotated[
        float | None, typer.Option(help="Choose the most specific threshold with at least this sensitivity.")
    ] = None,
    prefix: Annotated[str | None, typer.Option(help="Object prefix for uploads (default: eval/<csv name>).")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for verdicts.")] = 1800.0,
    workers: Annotated[int, typer.Option(help="Parallel uploads.", min=1, max=64)] = 8,
) -> None:
    """Sensitivity, specificity, accuracy, AUROC and a ROC curve on a labelled set of images."""
    from healer.cli.follow import follow_with_progress
    from healer.evaluate import evaluate

    labels = read_labels(labels_csv)
    clients = target(ctx).clients()
    ids = _job_ids(
        labels, labels_csv.parent, prefix if prefix is not None else f"eval/{labels_csv.stem}", clients, workers
    )
    jobs: dict[str, Job] = follow_with_progress(clients.store, list(dict.fromkeys(ids.values())), timeout, console())
    cases: list[dict[str, Any]] = []
    unscored: list[dict[str, Any]] = []
    for label in labels:
        job = jobs.get(ids[label.ref])
        p_yes = job.verdict.p_yes if job and job.verdict else None
        case = {
            "ref": label.ref,
            "job_id": ids[label.ref],
            "truth": "yes" if label.truth else "no",
            "state": str(job.state) if job else "missing",
            "answer": job.verdict.answer if job and job.verdict else "",
            "p_yes": p_yes,
        }
        (cases if p_yes is not None else unscored).append(case)
    if not cases:
        raise CliError(f"none of the {len(labels)} cases has a verdict with p_yes yet (see `healer results`)")
    metrics = evaluate(
        [c["truth"] == "yes" for c in cases],
        [c["p_yes"] for c in cases],
        threshold=threshold,
        min_sensitivity=min_sensitivity,
    )
    models = sorted({j.verdict.model_id for j in jobs.values() if j.verdict})
    metrics |= {"labels": str(labels_csv), "model_ids": models, "cases": cases, "unscored": unscored}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    roc_png(metrics, out_dir / "roc.png")
    _print_report(metrics, out_dir)
    unfinished = [c for c in unscored if c["state"] not in ("done", "failed")]
    if unfinished:
        raise CliError(f"{len(unfinished)} case(s) still unfinished after {timeout:.0f}s: metrics exclude them", 3)
