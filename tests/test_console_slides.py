"""The console's slide routes against the emulators: Deep Zoom of a generated slide, the verdict's
artifacts from the results bucket, top tiles, slide rows in the list, clear errors, bounded caches."""

from __future__ import annotations

import io
import json
import logging
import shutil
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import openslide
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from console.backend.app import create_app
from console.backend.deepzoom import ByteLRU
from console.backend.settings import ConsoleSettings
from console.backend.slide_files import SlideFiles
from console.backend.slide_settings import SlideViewerSettings
from healer_core.ids import job_id_for
from healer_core.schema import ERROR_DESCRIPTIONS, ErrorCode, Job, JobKind
from healer_core.store import JobStore
from healer_media.errors import SlideRejected
from slide_service import synth
from slide_service.synth import SynthSlide
from tests.console_helpers import console_settings
from tests.slide_jobs import SeededSlide, seed_done_slide, seed_running_slide

pytestmark = pytest.mark.emulator
DZ_NS = "{http://schemas.microsoft.com/deepzoom/2008}"


@pytest.fixture(scope="module")
def slide(tmp_path_factory: pytest.TempPathFactory, sample_paths: list[Path]) -> SynthSlide:
    """8192 x 6144 px at 0.25 µm/px: normal tissue left, tumor right."""
    return synth.write_slide(tmp_path_factory.mktemp("slides") / "case.svs", sample_paths, width=8192, height=6144)


@pytest.fixture(scope="module")
def env(emulator_cfg: Any, slide: SynthSlide) -> dict[str, Any]:
    """Inbox and results buckets, a jobs collection, one finished and one running slide job."""
    from google.cloud import firestore, storage  # type: ignore[attr-defined]

    unique = uuid.uuid4().hex[:8]
    client = storage.Client(project=emulator_cfg.project)
    inbox, results = client.create_bucket(f"inbox-{unique}"), client.create_bucket(f"results-{unique}")
    store = JobStore(firestore.Client(project=emulator_cfg.project), f"jobs-{unique}")
    done = seed_done_slide(store, inbox, results, slide, "lab-a/case 17/slide-17.svs")
    running = seed_running_slide(store, inbox, slide, "lab-a/case 18/slide-18.svs", 37, 120, (1, 2))
    return {"inbox": inbox, "results": results, "store": store, "done": done, "running": running}


def _settings(env: dict[str, Any], emulator_cfg: Any, tmp: Path) -> ConsoleSettings:
    return console_settings(emulator_cfg, env["inbox"], env["store"], tmp / "no-dist")


def _slide_settings(env: dict[str, Any], tmp: Path, **extra: Any) -> SlideViewerSettings:
    return SlideViewerSettings(
        RESULTS_BUCKET=env["results"].name,
        CONSOLE_SLIDE_CACHE_DIR=tmp / "slide-cache",
        CONSOLE_UPLOAD_CHUNK_BYTES=256 * 1024,
        **extra,
    )


@pytest.fixture
def client(env: dict[str, Any], emulator_cfg: Any, tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(
        _settings(env, emulator_cfg, tmp_path), store=env["store"], slide_settings=_slide_settings(env, tmp_path)
    )
    with TestClient(app) as test_client:
        yield test_client


def _image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_dzi_describes_level_0_of_the_slide(client: TestClient, env: dict[str, Any], slide: SynthSlide) -> None:
    job: Job = env["done"].job
    response = client.get(f"/api/jobs/{job.job_id}/slide.dzi")
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/xml")
    root = ET.fromstring(response.text)
    size = root.find(f"{DZ_NS}Size")
    assert root.attrib == {"Format": "jpeg", "Overlap": "1", "TileSize": "254"}
    assert size is not None and (int(size.attrib["Width"]), int(size.attrib["Height"])) == (slide.width, slide.height)
    assert "private" in response.headers["cache-control"]


def test_tiles_at_several_zoom_levels_show_the_slide(
    client: TestClient, env: dict[str, Any], slide: SynthSlide
) -> None:
    job_id = env["done"].job.job_id
    top = 14  # ceil(log2(8192)) + 1 levels: 0..13 is 1 px .. full size
    base = f"/api/jobs/{job_id}/slide_files"
    # The whole slide in one tile at a coarse level: 8192 / 2^(13-5) = 32 px wide.
    coarse = _image(client.get(f"{base}/5/0_0.jpeg").content)
    assert coarse.format == "JPEG" and coarse.size == (32, 24)
    # A mid level and full resolution, each over the tumor's centre, match OpenSlide's own pixels.
    tumor = slide.tumor
    cx, cy = tumor.x + tumor.w // 2, tumor.y + tumor.h // 2
    with openslide.OpenSlide(str(slide.path)) as osr:
        for level in (top - 3, top - 1):
            scale = 2 ** (top - 1 - level)
            col, row = cx // scale // 254, cy // scale // 254
            tile = client.get(f"{base}/{level}/{col}_{row}.jpeg")
            assert tile.status_code == 200 and tile.headers["content-type"] == "image/jpeg"
            got = np.asarray(_image(tile.content).convert("RGB"), np.float32)
            x0 = (col * 254 - (1 if col else 0)) * scale
            y0 = (row * 254 - (1 if row else 0)) * scale
            w, h = got.shape[1], got.shape[0]
            region = osr.read_region((x0, y0), 0, (w * scale, h * scale)).convert("RGB")
            ref = region.resize((w, h), Image.Resampling.BOX)
            diff = np.abs(got - np.asarray(ref, np.float32)).mean()
            assert diff < 12, (level, diff)  # the same tissue (JPEG and resampling aside)
    assert client.get(f"{base}/{top}/0_0.jpeg").status_code == 404  # past the last level
    assert client.get(f"{base}/{top - 1}/999_0.jpeg").status_code == 404
    assert client.get(f"{base}/-1/0_0.jpeg").status_code == 422


def test_artifacts_come_from_the_results_bucket(client: TestClient, env: dict[str, Any]) -> None:
    done: SeededSlide = env["done"]
    job_id = done.job.job_id
    stored = env["results"].blob(f"slides/{job_id}/heatmap.png").download_as_bytes()
    heatmap = client.get(f"/api/jobs/{job_id}/heatmap.png")
    assert heatmap.status_code == 200 and heatmap.content == stored
    geojson = client.get(f"/api/jobs/{job_id}/tiles.geojson")
    assert geojson.headers["content-type"] == "application/geo+json"
    features = json.loads(geojson.content)["features"]
    assert len(features) == len(done.scores) == done.job.verdict.slide.tiles_scored
    thumbnail = _image(client.get(f"/api/jobs/{job_id}/thumbnail.png").content)
    assert thumbnail.format == "PNG" and thumbnail.width / thumbnail.height == pytest.approx(8192 / 6144, rel=0.01)


def test_heatmap_overlay_lines_up_with_the_tumor(client: TestClient, env: dict[str, Any]) -> None:
    done: SeededSlide = env["done"]
    response = client.get(f"/api/jobs/{done.job.job_id}/heatmap-overlay.png")
    assert response.status_code == 200
    width0, height0 = float(response.headers["x-overlay-width0"]), float(response.headers["x-overlay-height0"])
    assert width0 == pytest.approx(done.width, rel=0.01) and height0 == pytest.approx(done.height, rel=0.01)
    overlay = np.asarray(_image(response.content).convert("RGB"), np.int16)
    sx, sy = width0 / overlay.shape[1], height0 / overlay.shape[0]
    # The colour bar is cut off: the rightmost column is glass, not the bar's white margin + ramp.
    assert overlay[:, -1].min() > 200
    hot = (overlay[..., 0] - overlay[..., 2]) > 60
    rows, cols = np.nonzero(hot)
    box = (cols.min() * sx, rows.min() * sy, (cols.max() + 1) * sx, (rows.max() + 1) * sy)
    x, y, w, h = done.tumor
    tile = max(s.w for s in done.scores)
    # The hot region is the tumor, to within one tile (tiles straddle the region's edges).
    for got, want in zip(box, (x, y, x + w, y + h), strict=True):
        assert abs(got - want) <= tile, (box, done.tumor)


def test_top_tiles_are_read_from_the_slide(client: TestClient, env: dict[str, Any]) -> None:
    done: SeededSlide = env["done"]
    top = done.job.verdict.slide.top_tiles
    assert len(top) == 8 and top[0].p_yes == max(s.p_yes for s in done.scores)
    image = _image(client.get(f"/api/jobs/{done.job.job_id}/top-tiles/0.jpeg").content)
    assert image.format == "JPEG" and max(image.size) <= 256
    pixels = np.asarray(image.convert("RGB"), np.float32)
    assert pixels.std() > 15 and pixels.mean() < 220  # tissue, not glass
    assert client.get(f"/api/jobs/{done.job.job_id}/top-tiles/8.jpeg").status_code == 404


def test_list_shows_slide_progress_and_verdicts(client: TestClient, env: dict[str, Any]) -> None:
    items = {item["job_id"]: item for item in client.get("/api/jobs").json()["items"]}
    running = items[env["running"].job_id]
    assert running["kind"] == "slide" and running["state"] == "running"
    assert running["slide"]["stage"] == "scoring"
    assert (running["slide"]["tiles_scored"], running["slide"]["tiles_total"]) == (37, 120)
    assert running["slide"]["tiles_positive"] is None and running["answer"] is None
    done: SeededSlide = env["done"]
    row = items[done.job.job_id]
    assert row["answer"] == "yes" and row["p_yes"] == pytest.approx(done.job.verdict.p_yes)
    assert row["slide"]["tiles_positive"] == done.job.verdict.slide.tiles_positive > 0
    assert row["slide"]["report_status"] == "done" and row["slide"]["stage"] == "done"
    detail = client.get(f"/api/jobs/{done.job.job_id}").json()
    assert detail["kind"] == "slide" and detail["slide"]["width"] == 8192
    assert len(detail["verdict"]["slide"]["top_tiles"]) == 8


def test_a_slide_that_cannot_be_opened_says_why(
    client: TestClient, env: dict[str, Any], slide: SynthSlide, tmp_path: Path
) -> None:
    bad = synth.truncate(slide.path, tmp_path / "cut.svs", keep=0.3)
    name = "lab-a/case 19/cut.svs"
    blob = env["inbox"].blob(name)
    blob.upload_from_filename(str(bad))
    blob.reload()
    job_id = job_id_for(env["inbox"].name, name, int(blob.generation))
    env["store"].create(
        Job(job_id=job_id, kind=JobKind.SLIDE, bucket=env["inbox"].name, name=name, generation=int(blob.generation))
    )
    response = client.get(f"/api/jobs/{job_id}/slide.dzi")
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail["code"] == "unreadable_slide"
    assert detail["description"] == ERROR_DESCRIPTIONS[ErrorCode.UNREADABLE_SLIDE]
    assert "cut.svs" not in response.text and "case 19" not in response.text  # no object names
    # A job without a verdict has no artifacts, and says so.
    assert client.get(f"/api/jobs/{job_id}/heatmap.png").status_code == 404
    # Replaced generation: the job's pinned slide is gone.
    blob.upload_from_filename(str(slide.path))
    assert client.get(f"/api/jobs/{job_id}/slide.dzi").status_code == 404


def test_images_and_foreign_uris_are_refused(client: TestClient, env: dict[str, Any]) -> None:
    inbox, store = env["inbox"], env["store"]
    store.create(Job(job_id="imagejob1", bucket=inbox.name, name="x.png", generation=1))
    assert client.get("/api/jobs/imagejob1/slide.dzi").json()["detail"] == "This job is not a whole-slide image."
    assert client.get("/api/jobs/nosuchjob/slide_files/0/0_0.jpeg").status_code == 404
    # A verdict naming an object outside the results location is never followed.
    done: SeededSlide = env["done"]
    ref = store.collection.document(done.job.job_id)
    original = done.job.verdict.slide.geojson_uri
    try:
        ref.update({"verdict.slide.geojson_uri": f"gs://{inbox.name}/lab-a/case 17/slide-17.svs"})
        refused = client.get(f"/api/jobs/{done.job.job_id}/tiles.geojson")
        assert refused.status_code == 404 and "outside" in refused.json()["detail"]
    finally:
        ref.update({"verdict.slide.geojson_uri": original})


def test_slide_mount_is_read_in_place(
    env: dict[str, Any], emulator_cfg: Any, tmp_path: Path, slide: SynthSlide
) -> None:
    done: SeededSlide = env["done"]
    mount = tmp_path / "mnt"
    (mount / done.job.name).parent.mkdir(parents=True)
    shutil.copyfile(slide.path, mount / done.job.name)
    settings = _slide_settings(env, tmp_path, SLIDE_MOUNT=str(mount))
    app = create_app(_settings(env, emulator_cfg, tmp_path), store=env["store"], slide_settings=settings)
    with TestClient(app) as client:
        assert client.get(f"/api/jobs/{done.job.job_id}/slide.dzi").status_code == 200
        assert client.get(f"/api/jobs/{done.job.job_id}/slide_files/8/0_0.jpeg").status_code == 200
    assert not (tmp_path / "slide-cache").exists()  # nothing downloaded


def test_download_cache_is_bounded(env: dict[str, Any], emulator_cfg: Any, tmp_path: Path, slide: SynthSlide) -> None:
    from google.cloud import storage  # type: ignore[attr-defined]

    size = slide.path.stat().st_size
    files = SlideFiles(
        storage.Client(project=emulator_cfg.project),
        mount="",
        cache_dir=tmp_path / "cache",
        cache_bytes=int(size * 1.5),
        max_slide_bytes=10**10,
    )
    first: SeededSlide = env["done"]
    path = files.path_for(first.job)
    assert path.name == f"{first.job.job_id}.svs" and path.read_bytes() == slide.path.read_bytes()
    assert files.path_for(first.job) == path  # cached: not downloaded again
    second = files.path_for(env["running"])
    assert second.exists() and not path.exists()  # the least recently used slide made room
    assert sorted(p.name for p in second.parent.iterdir()) == [second.name]
    # A console that died left its folder behind: the next one removes it, and keeps its own.
    dead = tmp_path / "cache" / "p999999999"
    dead.mkdir()
    (dead / "x.svs").write_bytes(b"left over")
    SlideFiles(
        storage.Client(project=emulator_cfg.project),
        mount="",
        cache_dir=tmp_path / "cache",
        cache_bytes=1,
        max_slide_bytes=1,
    )
    assert not dead.exists() and second.exists()
    tiny = SlideFiles(
        storage.Client(project=emulator_cfg.project),
        mount="",
        cache_dir=tmp_path / "tiny",
        cache_bytes=size // 2,
        max_slide_bytes=10**10,
    )
    with pytest.raises(SlideRejected) as info:
        tiny.path_for(first.job)
    assert info.value.code == ErrorCode.TOO_LARGE and "SLIDE_MOUNT" in info.value.message


def test_tile_cache_is_bounded_in_bytes() -> None:
    cache = ByteLRU(max_bytes=10)
    cache.put("a", b"12345")
    cache.put("b", b"12345")
    assert cache.get("a") == b"12345"  # a is now the most recent
    cache.put("c", b"123")
    assert cache.get("b") is None and cache.get("a") is not None and cache.used == 8
    cache.put("huge", b"x" * 11)
    assert cache.get("huge") is None and cache.used == 8


def test_logs_name_the_job_never_the_object(client: TestClient, env: dict[str, Any], caplog: Any) -> None:
    job_id = env["done"].job.job_id
    with caplog.at_level(logging.INFO):
        assert client.get(f"/api/jobs/{job_id}/slide.dzi").status_code == 200
        assert client.get(f"/api/jobs/{job_id}/slide_files/9/1_1.jpeg").status_code == 200
        assert client.get(f"/api/jobs/{job_id}/heatmap-overlay.png").status_code == 200
        started = client.post("/api/uploads/resumable", json={"name": "case 31/slide-31.svs", "size": 10})
        assert started.status_code == 200
    logged = "\n".join(json.dumps(vars(record), default=str) for record in caplog.records)
    assert "slide view requested" in logged and "slide opened for viewing" in logged and job_id in logged
    assert "resumable upload started" in logged
    for name_part in ("slide-17", "case 17", "slide-31", "case 31", env["inbox"].name + "/lab-a"):
        assert name_part not in logged


def test_a_report_being_written_shows_pending_and_never_its_lease_token(
    client: TestClient, env: dict[str, Any]
) -> None:
    store = env["store"]
    data = store.collection.document(env["done"].job.job_id).get().to_dict()
    data["job_id"] = "reportpending1"
    lease = {"owner": "inference-1", "token": "fence-token-secret", "expires_at": datetime.now(UTC)}
    data["verdict"]["slide"]["report"] = {"status": "pending", "patches": 12, "attempts": 1, "lease": lease}
    store.collection.document("reportpending1").set(data)
    detail = client.get("/api/jobs/reportpending1").json()
    report = detail["verdict"]["slide"]["report"]
    assert (report["status"], report["patches"], report["lease"]["owner"]) == ("pending", 12, "inference-1")
    assert "token" not in report["lease"] and "fence-token-secret" not in json.dumps(detail)
    row = next(item for item in client.get("/api/jobs").json()["items"] if item["job_id"] == "reportpending1")
    assert row["slide"]["report_status"] == "pending" and row["state"] == "done"
