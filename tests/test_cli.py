"""The `healer` command, through Typer's test runner, against the real emulators (and, for
submit --wait and requeue-to-completion, the whole local stack on test ports with the tiny model).
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from healer.cli import app
from healer.cli.evaluation import Label, read_labels
from healer.cli.settings import parse_env_file
from healer.cli.uploads import Upload, Uploaded, collect, upload_all
from healer.cli.when import parse_since
from healer.stack.config import StackConfig
from healer_core.ids import job_id_for
from healer_core.schema import Job, JobError, JobMessage, JobState, Verdict
from healer_core.store import JobStore

runner = CliRunner(env={"COLUMNS": "160"})  # wide enough that ids are not folded
PNG_1PX = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de"
    "0000000c4944415408d763f8cfc0000003010100c9fe92ef0000000049454e44ae426082"
)


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


# ---- pure pieces -----------------------------------------------------------------------------


def test_parse_env_file(tmp_path: Path) -> None:
    env = tmp_path / "local.env"
    env.write_text("# comment\nexport A=1\nB='two words'\n\nexport C=\"x=y\"\nnot a line\n")
    assert parse_env_file(env) == {"A": "1", "B": "two words", "C": "x=y"}


def test_collect_files_folders_globs(tmp_path: Path) -> None:
    (tmp_path / "slides" / "sub").mkdir(parents=True)
    for rel in ("slides/a.png", "slides/sub/b.tif", "slides/notes.md", "c.jpg"):
        (tmp_path / rel).write_bytes(b"x")
    names = [u.name for u in collect([str(tmp_path / "slides"), str(tmp_path / "*.jpg")], prefix="batch/")]
    assert names == ["batch/a.png", "batch/sub/b.tif", "batch/c.jpg"]  # folders: images only
    assert len(collect([str(tmp_path / "slides" / "a.png"), str(tmp_path / "slides")])) == 2  # same file once
    (tmp_path / "slides" / "sub" / "a.png").write_bytes(b"y")
    with pytest.raises(Exception, match="would both upload"):
        collect([str(tmp_path / "slides" / "a.png"), str(tmp_path / "slides" / "sub" / "a.png")])
    with pytest.raises(Exception, match="no files match"):
        collect([str(tmp_path / "*.webp")])


class SlowUploader:
    """Stands in for the bucket: each upload takes a while; records what was uploaded."""

    def __init__(self) -> None:
        self.uploaded: list[str] = []

    def upload(self, item: Upload) -> Uploaded:
        time.sleep(0.2)
        self.uploaded.append(item.name)
        return Uploaded(item.path, item.name, 1, job_id_for("b", item.name, 1))


def test_interrupt_finishes_uploads_in_flight_and_cancels_the_rest(tmp_path: Path) -> None:
    from rich.console import Console

    items = []
    for i in range(20):
        (tmp_path / f"{i:02}.png").write_bytes(b"x")
        items.append(Upload(tmp_path / f"{i:02}.png", f"{i:02}.png"))
    fake = SlowUploader()
    seen: list[str] = []

    def ctrl_c_after_first(u: Uploaded) -> None:
        seen.append(u.name)
        if len(seen) == 1:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C here, in the main thread

    report = upload_all(fake, items, workers=4, console=Console(file=io.StringIO()), on_uploaded=ctrl_c_after_first)
    assert report.interrupted
    # Every file is accounted for exactly once: uploaded (and announced) or not uploaded at all.
    assert sorted(u.name for u in report.uploaded) == sorted(fake.uploaded) == sorted(seen)
    assert {u.name for u in report.not_uploaded} == {i.name for i in items} - set(fake.uploaded)
    assert 1 <= len(fake.uploaded) < len(items)


def test_parse_since() -> None:
    from datetime import UTC, datetime, timedelta

    now = datetime(2026, 1, 31, 12, tzinfo=UTC)
    assert parse_since("2h", now) == now - timedelta(hours=2)
    assert parse_since("2026-01-30", now) == datetime(2026, 1, 30, tzinfo=UTC)
    with pytest.raises(Exception, match="not a time"):
        parse_since("yesterday", now)


def test_read_labels_with_and_without_header(tmp_path: Path) -> None:
    with_header = tmp_path / "labels.csv"
    with_header.write_text("file,tissue,cancer\na.tif,adipose,no\nb.tif,tumor,yes\n")
    assert read_labels(with_header) == [Label("a.tif", False), Label("b.tif", True)]
    bare = tmp_path / "bare.csv"
    bare.write_text("x/a.png,0\nx/b.png,1\n")
    assert read_labels(bare) == [Label("x/a.png", False), Label("x/b.png", True)]
    bad = tmp_path / "bad.csv"
    bad.write_text("path,truth\na.png,maybe\n")
    code, out = run("eval", str(bad))
    assert code == 1 and "line 2: truth must be yes or no" in out


def test_help_is_instant_and_lists_commands() -> None:
    code, out = run("--help")
    assert code == 0
    for command in (
        "submit",
        "results",
        "watch",
        "slide",
        "requeue",
        "dead-letters",
        "reconcile",
        "eval",
        "model",
        "up",
    ):
        assert command in out


# ---- errors: one line, what to do, no traceback --------------------------------------------


def test_stack_not_running_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HEALER_HOME", str(tmp_path))
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:1")  # nothing listens on port 1
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "healer-local")
    code, out = run("results")
    assert code == 1
    assert out.strip() == "error: the local stack is not running: run `make up` (or `healer up`)"


def test_no_credentials_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in (
        "STORAGE_EMULATOR_HOST",
        "PUBSUB_EMULATOR_HOST",
        "FIRESTORE_EMULATOR_HOST",
        "GOOGLE_CLOUD_PROJECT",
        "HEALER_PROJECT",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HEALER_HOME", str(tmp_path))  # no local.env there
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    code, out = run("results")
    assert code == 1
    assert out.startswith("error: no Google credentials: run `gcloud auth application-default login`")
    assert "Traceback" not in out and len(out.strip().splitlines()) == 1


def test_missing_bucket_is_one_line(emulator_cfg: StackConfig, tmp_path: Path, unique: str) -> None:
    image = tmp_path / "a.png"
    image.write_bytes(PNG_1PX)
    code, out = run("submit", str(image), "--bucket", f"nope-{unique}")
    assert code == 1
    assert f"bucket 'nope-{unique}' not found" in out and "Traceback" not in out


# ---- results, watch ------------------------------------------------------------------------


def _verdict(p_yes: float) -> Verdict:
    return Verdict(
        answer="yes" if p_yes >= 0.5 else "no",
        p_yes=p_yes,
        explanation=f"p={p_yes}",
        model_id="test",
        prompt_version="t1",
    )


def _put(
    store: JobStore, bucket: str, name: str, *, p_yes: float | None = None, failed: bool = False, generation: int = 1
) -> Job:
    job = Job(job_id=job_id_for(bucket, name, generation), bucket=bucket, name=name, generation=generation)
    if p_yes is not None:
        job = job.model_copy(update={"state": JobState.DONE, "verdict": _verdict(p_yes)})
    if failed:
        error = JobError(code="engine_error", message="boom", retryable=True)
        job = job.model_copy(update={"state": JobState.FAILED, "error": error})
    store.create(job)
    return job


def test_results_in_each_format(store, unique: str) -> None:
    bucket = f"b-{unique}"
    done = _put(store, bucket, "slides/a.png", p_yes=0.9)
    _put(store, bucket, "slides/b.png", failed=True)
    _put(store, bucket, "slides/a.png", p_yes=0.2, generation=2)  # the newer generation of a.png
    coll = ["--collection", store.collection.id]

    code, out = run("results", *coll, "--format", "json")
    assert code == 0, out
    rows = json.loads(out)
    assert {r["name"] for r in rows} == {"slides/a.png", "slides/b.png"} and len(rows) == 3
    assert "history" not in rows[0]

    code, out = run("results", *coll, "--format", "csv", "--state", "failed")
    assert code == 0, out
    parsed = list(csv.DictReader(io.StringIO(out)))
    assert [(r["name"], r["state"], r["error_code"]) for r in parsed] == [("slides/b.png", "failed", "engine_error")]

    code, out = run("results", f"gs://{bucket}/slides/a.png", *coll, "--format", "json")
    assert code == 0, out
    [latest] = json.loads(out)
    assert latest["generation"] == 2 and latest["verdict"]["p_yes"] == 0.2

    code, out = run("results", done.job_id, *coll, "--format", "csv")
    assert next(csv.DictReader(io.StringIO(out)))["p_yes"] == "0.9"

    code, out = run("results", *coll, "--since", "1h", "--page-size", "2")  # table, two pages
    assert code == 0, out
    assert "slides/b.png" in out and "engine_error" in out and "3 job(s)" in out

    code, out = run("results", f"gs://{bucket}/nothing.png", *coll)
    assert code == 1 and "no job for" in out


def test_watch_shows_recent_jobs(store, unique: str) -> None:
    _put(store, f"b-{unique}", "w/x.png", p_yes=0.7)
    code, out = run("watch", "--collection", store.collection.id, "--timeout", "1.5")
    assert code == 0, out
    assert "w/x.png" in out and "done: 1" in out


# ---- eval: known verdicts in Firestore → known confusion matrix ------------------------------


def test_eval_known_confusion_matrix(store, tmp_path: Path, unique: str) -> None:
    bucket = f"b-{unique}"
    cases = [
        ("c1", True, 0.9),
        ("c2", True, 0.8),
        ("c3", True, 0.4),
        ("c4", False, 0.7),
        ("c5", False, 0.3),
        ("c6", False, 0.2),
        ("c7", False, 0.1),
    ]
    labels = tmp_path / "labels.csv"
    lines = ["object,truth"] + [f"set/{n}.png,{'yes' if t else 'no'}" for n, t, _ in cases] + ["set/c8.png,yes"]
    labels.write_text("\n".join(lines) + "\n")
    for name, _, p in cases:
        _put(store, bucket, f"set/{name}.png", p_yes=p)
    _put(store, bucket, "set/c8.png", failed=True)  # no verdict: reported, not scored
    out_dir = tmp_path / "out"
    args = ["eval", str(labels), "--out", str(out_dir), "--bucket", bucket, "--collection", store.collection.id]

    code, out = run(*args, "--threshold", "0.5", "--timeout", "10")
    assert code == 0, out
    metrics = json.loads((out_dir / "metrics.json").read_text())
    op = metrics["operating_point"]
    assert (op["tp"], op["fp"], op["tn"], op["fn"]) == (2, 1, 3, 1)
    assert op["sensitivity"] == pytest.approx(2 / 3) and op["specificity"] == pytest.approx(0.75)
    assert op["accuracy"] == pytest.approx(5 / 7)
    assert metrics["auroc"] == pytest.approx(11 / 12)
    assert [c["ref"] for c in metrics["unscored"]] == ["set/c8.png"]
    assert (out_dir / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Confusion matrix" in out and "AUROC" in out

    code, out = run(*args, "--timeout", "10")  # operating point chosen by Youden's J
    assert code == 0, out
    assert json.loads((out_dir / "metrics.json").read_text())["operating_point"]["threshold"] == 0.4


# ---- requeue, dead letters, reconcile on the emulators -------------------------------------


@pytest.fixture
def topic(emulator_cfg: StackConfig, unique: str) -> Iterator[tuple[str, object, str]]:
    """A jobs topic with a pull subscription to see what the CLI publishes, and its dead-letter pair."""
    from google.cloud import pubsub_v1  # type: ignore[attr-defined]

    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    name = f"jobs-{unique}"
    project = emulator_cfg.project
    for t in (name, f"{name}-dead-letter"):
        publisher.create_topic(name=publisher.topic_path(project, t))
    check = subscriber.subscription_path(project, f"{name}-check")
    subscriber.create_subscription(name=check, topic=publisher.topic_path(project, name))
    subscriber.create_subscription(
        name=subscriber.subscription_path(project, f"{name}-dead-letter-hold"),
        topic=publisher.topic_path(project, f"{name}-dead-letter"),
    )
    yield name, subscriber, check


def _published(subscriber, subscription: str) -> list[JobMessage]:
    response = subscriber.pull(request={"subscription": subscription, "max_messages": 50}, timeout=5)
    if response.received_messages:
        ack_ids = [m.ack_id for m in response.received_messages]
        subscriber.acknowledge(request={"subscription": subscription, "ack_ids": ack_ids})
    return [JobMessage.from_data(m.message.data) for m in response.received_messages]


def test_requeue_failed_but_never_done(store, topic, unique: str) -> None:
    name, subscriber, check = topic
    bucket = f"b-{unique}"
    failed = _put(store, bucket, "r/failed.png", failed=True)
    done = _put(store, bucket, "r/done.png", p_yes=0.3)
    common = ["--collection", store.collection.id, "--topic", name]

    code, out = run("requeue", failed.job_id, done.job_id, *common)
    assert code == 0, out
    assert "requeued 1" in out and "done: never run twice" in out
    assert store.get(failed.job_id).state == JobState.QUEUED
    assert store.get(done.job_id).state == JobState.DONE
    assert [m.job_id for m in _published(subscriber, check)] == [failed.job_id]

    _put(store, bucket, "r/failed2.png", failed=True)
    code, out = run("requeue", "--failed", *common)
    assert code == 0 and "requeued 1" in out
    code, out = run("requeue", *common)
    assert code == 2 and "one of them" in out


def test_dead_letters_list_then_replay(store, topic, emulator_cfg: StackConfig, unique: str) -> None:
    from google.cloud import pubsub_v1  # type: ignore[attr-defined]

    name, subscriber, check = topic
    job = _put(store, f"b-{unique}", "d/x.png", failed=True)
    message = JobMessage(job_id=job.job_id, bucket=job.bucket, name=job.name, generation=job.generation)
    publisher = pubsub_v1.PublisherClient()
    dead_topic = publisher.topic_path(emulator_cfg.project, f"{name}-dead-letter")
    publisher.publish(dead_topic, message.to_data(), **message.attributes()).result(timeout=10)
    common = ["--collection", store.collection.id, "--topic", name]

    code, out = run("dead-letters", *common)
    assert code == 0, out
    assert job.job_id in out and "1 dead letter(s) retained" in out
    code, out = run("dead-letters", *common)  # listing does not consume them
    assert code == 0 and "1 dead letter(s) retained" in out

    code, out = run("dead-letters", "--replay", *common)
    assert code == 0, out
    assert "requeued" in out and "1 dead letter(s) replayed" in out
    assert store.get(job.job_id).state == JobState.QUEUED
    assert [m.job_id for m in _published(subscriber, check)] == [job.job_id]
    code, out = run("dead-letters", *common)
    assert "0 dead letter(s)" in out


def test_reconcile_is_idempotent(store, bucket, topic) -> None:
    name, subscriber, check = topic
    for obj in ("lost/a.png", "lost/b.png"):
        bucket.blob(obj).upload_from_string(PNG_1PX, content_type="image/png")
    common = ["--bucket", bucket.name, "--collection", store.collection.id, "--topic", name]

    code, out = run("reconcile", *common)
    assert code == 0, out
    assert "ingested_queued" in out and "2 object(s) needed work" in out
    assert len(_published(subscriber, check)) == 2
    code, out = run("reconcile", *common)
    assert code == 0 and "0 object(s) needed work; 2 already had their job" in out


# ---- the whole stack: submit --wait, requeue to completion ----------------------------------


def test_submit_folder_and_wait(stack_cfg: StackConfig, tmp_path: Path, sample_paths: list[Path], unique: str) -> None:
    folder = tmp_path / "slides"
    folder.mkdir()
    for path in sample_paths[:3]:
        shutil.copy(path, folder / path.name)
    code, out = run("submit", str(folder), "--prefix", f"cli-{unique}", "--wait", "--timeout", "240")
    assert code == 0, out
    for path in sample_paths[:3]:
        assert f"cli-{unique}/{path.name}" in out
    assert "3 done, 0 failed, 0 unfinished" in out

    bad = tmp_path / "bad.png"
    bad.write_text("not an image at all")
    code, out = run("submit", str(bad), "--prefix", f"cli-{unique}", "--wait", "--timeout", "240")
    assert code == 1, out
    assert "not_an_image" in out and "0 done, 1 failed" in out


def test_requeue_failed_job_completes_on_the_stack(
    stack_cfg: StackConfig, sample_paths: list[Path], unique: str
) -> None:
    from google.cloud import firestore, storage  # type: ignore[attr-defined]

    blob = storage.Client(project=stack_cfg.project).bucket(stack_cfg.bucket).blob(f"cli-{unique}/requeue.png")
    store = JobStore(firestore.Client(project=stack_cfg.project), stack_cfg.jobs_collection)
    blob.upload_from_filename(str(sample_paths[0]))
    job_id = job_id_for(stack_cfg.bucket, blob.name, int(blob.generation))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not ((job := store.get(job_id)) and job.state.terminal):
        time.sleep(0.3)
    # Pretend it failed (as after an outage), then recover it.
    store.collection.document(job_id).update(
        {"state": "failed", "verdict": None, "error": {"code": "dead_lettered", "message": "x", "retryable": True}}
    )
    code, out = run("requeue", job_id)
    assert code == 0 and "requeued 1" in out, out
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = store.get(job_id)
        if job and job.state == JobState.DONE:
            break
        time.sleep(0.3)
    assert job is not None and job.state == JobState.DONE and job.verdict is not None
