"""Slides end to end on the whole local stack (`stack_cfg`: emulators, ingest, the Eventarc
stand-in, the slide service, the inference service on the tiny model): upload with
google-cloud-storage, read with google-cloud-firestore — nothing of this project's code on the
client side. The verdict first, then the slide report (MedGemma 1.5's path, on the tiny checkpoint)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from google.cloud import firestore, storage  # type: ignore[attr-defined]
from PIL import Image

from healer.stack.config import StackConfig
from slide_service import synth
from slide_service.synth import SynthSlide
from tests.log_privacy import PATIENT  # object names like labs use: never in a log line
from tests.stack_jobs import reported, terminal

pytestmark = pytest.mark.emulator


@pytest.fixture(scope="module")
def stack_slide(tmp_path_factory: pytest.TempPathFactory, sample_paths: list[Path]) -> SynthSlide:
    """A 10X scan (1 µm/px): 896-px tiles are 896 level-0 pixels, a handful of them tissue."""
    folder = tmp_path_factory.mktemp("e2e-slides")
    return synth.write_slide(folder / "slide.svs", sample_paths, width=4096, height=3072, mpp=1.0)


def test_a_slide_dropped_in_the_bucket_gets_a_slide_verdict_and_artifacts(
    stack_cfg: StackConfig, stack_slide: SynthSlide
) -> None:
    client = storage.Client(project=stack_cfg.project)
    blob = client.bucket(stack_cfg.bucket).blob(f"{PATIENT}/e2e/slide-17.svs")
    blob.upload_from_filename(str(stack_slide.path))
    db = firestore.Client(project=stack_cfg.project)
    job = terminal(db, stack_cfg, blob)
    assert (job["kind"], job["state"]) == ("slide", "done"), job.get("error")
    slide, verdict = job["slide"], job["verdict"]
    assert slide["stage"] == "done" and slide["vendor"] == "aperio" and slide["mpp"] == 1.0
    assert slide["shards_done"] == slide["shards_total"] >= 2 and slide["tiles_scored"] == slide["tiles_total"]
    assert slide["finalize_published_at"] is not None
    assert verdict["answer"] in ("yes", "no", "indeterminate") and 0 <= verdict["p_yes"] <= 1
    assert "tiny" in verdict["model_id"] and verdict["prompt_version"] and "tissue tiles" in verdict["explanation"]
    block = verdict["slide"]
    assert block["tiles_scored"] == slide["tiles_total"] and block["report"]["status"] in ("pending", "done")
    assert block["aggregation"] == {"method": "top_k_mean", "top_k": min(8, slide["tiles_total"])}
    for tile in block["top_tiles"]:
        assert 0 <= tile["x"] < 4096 and 0 <= tile["y"] < 3072 and tile["w"] == tile["h"] == 896
    results = client.bucket(stack_cfg.results_bucket)
    assert block["heatmap_uri"] == f"gs://{stack_cfg.results_bucket}/slides/{job['job_id']}/heatmap.png"
    heatmap = Image.open(io.BytesIO(results.blob(f"slides/{job['job_id']}/heatmap.png").download_as_bytes()))
    assert heatmap.format == "PNG" and float(heatmap.info["healer:downsample"]) > 0
    geojson = json.loads(results.blob(f"slides/{job['job_id']}/tiles.geojson").download_as_bytes())
    assert len(geojson["features"]) == slide["tiles_total"]
    assert results.blob(f"slides/{job['job_id']}/thumbnail.png").exists()
    log = (stack_cfg.home / "logs" / "slide.log").read_text()
    assert job["job_id"] in log and PATIENT not in log

    # Then the report: the tiles chosen at finalize (all of them: fewer than SLIDE_REPORT_PATCHES),
    # one prompt through the tiny checkpoint's real processor, written under the report's own lease.
    report = reported(db, stack_cfg, job["job_id"])
    assert report["status"] == "done", report
    assert report["text"].strip() and report["error"] == "" and report["lease"] is None
    assert "tiny" in report["model_id"] and report["prompt_version"] == "crc-report-v1"
    assert report["patches"] == len(report["tiles"]) == min(125, slide["tiles_total"])
    assert sorted(t["index"] for t in report["tiles"]) == list(range(slide["tiles_total"]))
    assert report["attempts"] == 1 and report["finished_at"] is not None and report["new_tokens"] > 0
    after = db.collection(stack_cfg.jobs_collection).document(job["job_id"]).get().to_dict()
    assert after["state"] == "done" and after["lease"] is None  # the job's own, untouched
    assert {k: v for k, v in after["verdict"].items() if k != "slide"} == {
        k: v for k, v in verdict.items() if k != "slide"
    }
    service_log = (stack_cfg.home / "logs" / "service.log").read_text()
    assert "report written" in service_log and PATIENT not in service_log


def test_bad_slides_fail_end_to_end_with_their_codes(
    stack_cfg: StackConfig, stack_slide: SynthSlide, sample_paths: list[Path], tmp_path: Path
) -> None:
    files = {
        "truncated.svs": (synth.truncate(stack_slide.path, tmp_path / "t.svs", 0.5), "unreadable_slide"),
        "blank.svs": (synth.write_blank_slide(tmp_path / "b.svs", sample_paths, 2048, 1536).path, "no_tissue"),
        "case.mrxs": (synth.write_mrxs_standin(tmp_path / "c.mrxs"), "unsupported_slide"),
    }
    bucket = storage.Client(project=stack_cfg.project).bucket(stack_cfg.bucket)
    blobs = {}
    for name, (path, _) in files.items():
        blobs[name] = bucket.blob(f"{PATIENT}/e2e-bad/{name}")
        blobs[name].upload_from_filename(str(path))
    db = firestore.Client(project=stack_cfg.project)
    for name, (_, code) in files.items():
        job = terminal(db, stack_cfg, blobs[name])
        assert (job["kind"], job["state"], job["error"]["code"]) == ("slide", "failed", code), job["error"]
        assert job["error"]["retryable"] is False and PATIENT not in job["error"]["message"]
