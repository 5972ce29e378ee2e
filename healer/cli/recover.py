"""`healer requeue`, `healer dead-letters`, `healer reconcile`: recover after a fix, idempotently.

A job goes back to `queued` only through the store's transaction, which never touches a done
job, and its message is then published again. Running any of these twice does no harm.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from healer.cli.app import app, console
from healer.cli.errors import CliError
from healer.cli.render import state_cell
from healer.cli.target import TargetCommand, target
from healer_core.schema import Job, JobMessage, JobState

if TYPE_CHECKING:
    from healer.cli.clients import Clients


@dataclass(frozen=True)
class Outcome:
    """What requeue did with one job."""

    job_id: str
    name: str
    was: str
    action: str
    requeued: bool


def requeue_one(clients: Clients, job_id: str, *, include_failed: bool, stuck_only: bool) -> Outcome:
    """Requeue one job (store transaction), then republish its message and record the publish."""
    store = clients.store
    before = store.get(job_id)
    if before is None:
        return Outcome(job_id, "", "—", "no such job", False)
    job = store.requeue(job_id, include_failed=include_failed, stuck_only=stuck_only)
    if job is None:
        current = store.get(job_id) or before
        reason = {
            JobState.DONE: "done: never run twice",
            JobState.RUNNING: "running under a live lease",
            JobState.FAILED: "failed (use --failed or name it)",
        }.get(current.state, "left as is")
        return Outcome(job_id, current.name, str(current.state), reason, False)
    clients.publish(job)
    return Outcome(job_id, job.name, str(before.state), "requeued", True)


def _stuck_candidates(clients: Clients, older_than: timedelta) -> list[tuple[str, bool]]:
    """(job id, stuck_only) for running jobs (requeued only if their lease expired) and old queued jobs."""
    from healer_core.store import utcnow

    cutoff = utcnow() - older_than
    running = [(j.job_id, True) for j in clients.store.iter_jobs(JobState.RUNNING)]
    queued = [
        (j.job_id, False)
        for j in clients.store.iter_jobs(JobState.QUEUED)
        if j.updated_at is not None and j.updated_at < cutoff
    ]
    return running + queued


def _outcome_table(outcomes: list[Outcome]) -> Table:
    table = Table(title_justify="left")
    for col in ("job", "object", "was", "action"):
        table.add_column(col, overflow="fold", no_wrap=col == "job")
    for o in outcomes:
        action = f"[green]{o.action}[/green]" if o.requeued else f"[dim]{o.action}[/dim]"
        table.add_row(o.job_id, o.name, state_cell(o.was), action)
    return table


@app.command(cls=TargetCommand)
def requeue(
    ctx: typer.Context,
    job_ids: Annotated[list[str] | None, typer.Argument(metavar="JOB", help="Job ids to run again.")] = None,
    failed: Annotated[bool, typer.Option("--failed", help="Every failed job.")] = False,
    stuck: Annotated[bool, typer.Option("--stuck", help="Running jobs whose lease expired, old queued jobs.")] = False,
    older_than: Annotated[str, typer.Option(help="With --stuck: queued for at least this long.")] = "15m",
) -> None:
    """Run jobs again after a fix: back to queued, message republished. A done job is never rerun."""
    from healer.cli.when import parse_duration

    if sum(bool(x) for x in (job_ids, failed, stuck)) != 1:
        raise CliError("name job ids, or give --failed, or --stuck (one of them)", exit_code=2)
    clients = target(ctx).clients(need_bucket=False)
    if job_ids:
        plan = [(j, False, True) for j in job_ids]
    elif failed:
        plan = [(j.job_id, False, True) for j in clients.store.iter_jobs(JobState.FAILED)]
    else:
        plan = [(j, only, False) for j, only in _stuck_candidates(clients, parse_duration(older_than))]
    outcomes = [requeue_one(clients, j, include_failed=inc, stuck_only=only) for j, only, inc in plan]
    out = console()
    if outcomes:
        out.print(_outcome_table(outcomes))
    n = sum(o.requeued for o in outcomes)
    out.print(f"requeued {n}, left {len(outcomes) - n} as they were")


def _pull_all(subscriber: Any, subscription: str, limit: int, immediate: bool) -> list[Any]:
    """Pull until the subscription is empty (or `limit` messages). Leaves them un-acked.

    `immediate` (the emulator, which honours it) answers an empty pull at once instead of after
    seconds; Pub/Sub proper deprecates it, so there an empty pull ends by its timeout.
    """
    from google.api_core import exceptions as gexc

    received: list[Any] = []
    while len(received) < limit:
        request = {"subscription": subscription, "max_messages": min(100, limit - len(received))}
        if immediate:
            request["return_immediately"] = True
        try:
            response = subscriber.pull(request=request, timeout=10.0)
        except gexc.DeadlineExceeded:
            break
        if not response.received_messages:
            break
        received.extend(response.received_messages)
    return received


@app.command("dead-letters", cls=TargetCommand)
def dead_letters(
    ctx: typer.Context,
    replay: Annotated[bool, typer.Option("--replay", help="Requeue and republish each, then ack it.")] = False,
    limit: Annotated[int, typer.Option(help="At most this many messages.", min=1)] = 1000,
) -> None:
    """List the dead letters retained by the pull subscription; --replay runs their jobs again.

    Without --replay the messages stay retained. With it, a message is acked only after its job
    was requeued and republished (or is already done).
    """
    from google.api_core import exceptions as gexc
    from google.cloud import pubsub_v1  # type: ignore[attr-defined]

    clients = target(ctx).clients(need_bucket=False)
    settings = clients.settings
    subscriber = pubsub_v1.SubscriberClient()
    path = subscriber.subscription_path(settings.project, settings.dead_letter_subscription)
    try:
        received = _pull_all(subscriber, path, limit, immediate=settings.local)
    except gexc.NotFound as exc:
        raise CliError(
            f"subscription {settings.dead_letter_subscription} not found in {settings.project}: "
            "check --topic (terraform output dead_letter_hold_subscription)"
        ) from exc
    out = console()
    table = Table(title_justify="left")
    for col in ("job", "object", "attempts", "dead-lettered", "job state", "action"):
        table.add_column(col, overflow="fold", no_wrap=col == "job")
    ack_ids: list[str] = []
    for rm in received:
        action = "kept"
        try:
            message = JobMessage.from_data(rm.message.data)
        except ValueError:
            table.add_row("?", "", "", "", "", "unreadable: kept")
            continue
        job = clients.store.get(message.job_id)
        state = str(job.state) if job else "missing"
        if replay:
            action = _replay(clients, message, job)
            ack_ids.append(rm.ack_id)
        published = rm.message.publish_time.isoformat(timespec="seconds") if rm.message.publish_time else ""
        attempts = str(rm.delivery_attempt or "")
        table.add_row(message.job_id, message.name, attempts, published, state_cell(state), action)
    if ack_ids:
        subscriber.acknowledge(request={"subscription": path, "ack_ids": ack_ids})
    kept = [rm.ack_id for rm in received if rm.ack_id not in set(ack_ids)]
    if kept:  # hand them straight back so the subscription keeps retaining them
        subscriber.modify_ack_deadline(request={"subscription": path, "ack_ids": kept, "ack_deadline_seconds": 0})
    if received:
        out.print(table)
    verb = "replayed" if replay else "retained"
    hint = "" if replay or not received else "; --replay runs them again"
    out.print(f"{len(received)} dead letter(s) {verb}{hint}")


def _replay(clients: Clients, message: JobMessage, job: Job | None) -> str:
    """Run a dead letter's job again, unless it is done. Returns what was done."""
    if job is None:  # the dead-letter handler normally records one; make sure the job exists
        _, job = clients.store.create(Job.for_message(message))
        clients.publish(job)
        return "created and published"
    outcome = requeue_one(clients, message.job_id, include_failed=True, stuck_only=False)
    return outcome.action


@app.command(cls=TargetCommand)
def reconcile(
    ctx: typer.Context,
    prefix: Annotated[str | None, typer.Option(help="Only objects under this prefix.")] = None,
    grace: Annotated[
        float | None,
        typer.Option(
            help="Republish queued jobs never published after this many seconds "
            "(default: $UNPUBLISHED_GRACE_SECONDS or 120, as the reconcile function).",
            min=0,
        ),
    ] = None,
) -> None:
    """Ingest every object in the bucket that has no job (a lost event). Idempotent.

    The scheduled reconcile function's own code and settings (MAX_IMAGE_BYTES,
    UNPUBLISHED_GRACE_SECONDS, STALE_QUEUED_SECONDS), so it also sweeps stuck jobs as that does.
    """
    clients = target(ctx).clients()
    settings = clients.settings
    clients.bucket()
    counts = clients.reconcile(prefix, unpublished_grace_s=grace)
    out = console()
    out.print(f"reconciled gs://{settings.bucket}/{prefix or ''} with {settings.collection}")
    table = Table()
    table.add_column("outcome")
    table.add_column("objects", justify="right")
    for outcome, n in sorted(counts.items()):
        table.add_row(outcome, str(n))
    out.print(table)
    changed = sum(n for k, n in counts.items() if k != "ok")
    out.print(f"{changed} object(s) needed work; {counts.get('ok', 0)} already had their job")
