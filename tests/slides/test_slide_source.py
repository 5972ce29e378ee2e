"""Where the slide service reads a slide: a downloaded temporary file (keeping the suffix) or, on
Cloud Run, the Cloud Storage FUSE mount (a local folder stands in for it here), always pinned to
the job's generation — on the storage emulator."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.cloud import storage  # type: ignore[attr-defined]

from healer_core.schema import ErrorCode, Job, JobKind
from healer_media.errors import ObjectGone, SlideRejected
from slide_service.settings import SlideSettings
from slide_service.source import mounted_path, slide_file, still_current

pytestmark = pytest.mark.emulator
NAME = "lab-a/PATIENT-17/case.svs"


def job_for(blob: storage.Blob) -> Job:
    return Job(job_id="j", bucket=blob.bucket.name, name=blob.name, generation=int(blob.generation), kind=JobKind.SLIDE)


def test_a_download_keeps_the_suffix_and_is_removed_afterwards(bucket: storage.Bucket, tmp_path: Path) -> None:
    blob = bucket.blob(NAME)
    blob.upload_from_string(b"slide bytes")
    settings = SlideSettings(SLIDE_TMP_DIR=str(tmp_path))
    with slide_file(bucket.client, job_for(blob), settings) as path:
        assert path.suffix == ".svs" and path.read_bytes() == b"slide bytes"
        assert "PATIENT" not in str(path)  # the name stays out of paths (OpenSlide messages carry them)
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_the_mount_is_read_in_place_while_the_generation_holds(bucket: storage.Bucket, tmp_path: Path) -> None:
    blob = bucket.blob(NAME)
    blob.upload_from_string(b"generation one")
    job = job_for(blob)
    mounted = tmp_path / NAME
    mounted.parent.mkdir(parents=True)
    mounted.write_bytes(b"generation one")
    settings = SlideSettings(SLIDE_MOUNT=str(tmp_path))
    with slide_file(bucket.client, job, settings) as path:
        assert path == mounted
    still_current(bucket.client, job, settings)
    blob.upload_from_string(b"generation two, longer")  # overwritten while (or after) it was read
    with pytest.raises(ObjectGone):
        still_current(bucket.client, job, settings)
    with pytest.raises(ObjectGone), slide_file(bucket.client, job, settings):  # the pinned generation is gone
        pass


def test_limits_and_names_that_would_leave_the_mount(bucket: storage.Bucket, tmp_path: Path) -> None:
    blob = bucket.blob(NAME)
    blob.upload_from_string(b"x" * 2000)
    with (
        pytest.raises(SlideRejected) as info,
        slide_file(bucket.client, job_for(blob), SlideSettings(MAX_SLIDE_BYTES=1000)),
    ):
        pass
    assert info.value.code == ErrorCode.TOO_LARGE and "MAX_SLIDE_BYTES" in info.value.message
    for name in ("../etc/passwd", "a/../../b.svs", "/abs.svs", "./a.svs"):
        with pytest.raises(SlideRejected):
            mounted_path(tmp_path, name)
    assert mounted_path(tmp_path, "lab/a b#1.svs") == tmp_path / "lab" / "a b#1.svs"
