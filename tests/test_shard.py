"""The shard object format: a round trip, and a specific `bad_shard` reason for every hostile or
broken shard (a shard is read by the inference service: it must never crash it)."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image

from healer_core.schema import ErrorCode
from healer_media.errors import ShardRejected
from healer_media.shard import (
    MANIFEST,
    ShardLimits,
    decode_shard,
    encode_shard,
    encode_tile,
    open_shard,
    shard_object_name,
)

JOB = "0123456789abcdef0123456789abcdef"
PX = 64


@dataclass(frozen=True)
class Box:
    index: int
    x: int
    y: int
    w: int
    h: int


def tile_image(seed: int, px: int = PX) -> Image.Image:
    """A smooth, distinct image per seed (JPEG keeps it to within a few levels)."""
    ramp = np.linspace(0, 80, px, dtype=np.float32)
    base = np.array([60 + 20 * seed, 120, 200 - 20 * seed], np.float32)
    pixels = base + ramp[None, :, None] + ramp[:, None, None] / 2
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8), "RGB")


def good_shard(n_tiles: int = 3) -> bytes:
    tiles = [(Box(10 + i, 3584 * i, 7168, 3584, 3584), encode_tile(tile_image(i))) for i in range(n_tiles)]
    return encode_shard(JOB, 2, PX, tiles)


def members(data: bytes) -> list[tuple[tarfile.TarInfo, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        out = []
        for m in tar.getmembers():
            handle = tar.extractfile(m)
            out.append((m, handle.read() if handle else b""))
        return out


def retar(entries: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for info, data in entries:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def with_manifest(change: Callable[[dict[str, object]], None]) -> bytes:
    entries = members(good_shard())
    manifest = json.loads(entries[0][1])
    change(manifest)
    entries[0] = (entries[0][0], json.dumps(manifest).encode())
    return retar(entries)


def reason(data: bytes, limits: ShardLimits | None = None, **expect: object) -> str:
    with pytest.raises(ShardRejected) as info:
        decode_shard(data, limits, **expect)  # type: ignore[arg-type]
    assert info.value.code == ErrorCode.BAD_SHARD
    assert info.value.as_job_error().retryable is False
    return info.value.reason


def test_round_trip() -> None:
    data = good_shard()
    shard = decode_shard(data, job_id=JOB, shard=2)
    assert (shard.job_id, shard.shard, shard.tile_px) == (JOB, 2, PX)
    assert [(t.index, t.x, t.y, t.w, t.h) for t in shard.tiles] == [
        (10 + i, 3584 * i, 7168, 3584, 3584) for i in range(3)
    ]
    for i, tile in enumerate(shard.tiles):
        assert (tile.image.mode, tile.image.size) == ("RGB", (PX, PX))
        diff = np.abs(np.asarray(tile.image, np.int16) - np.asarray(tile_image(i), np.int16))
        assert diff.mean() < 3  # JPEG at quality 90
    assert [m.name for m, _ in members(data)] == [MANIFEST, "00000.jpg", "00001.jpg", "00002.jpg"]
    assert good_shard() == data  # deterministic bytes
    assert shard_object_name(JOB, 2) == f"shards/{JOB}/00002.tar"


def test_encode_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        encode_shard(JOB, 0, PX, [])
    with pytest.raises(ValueError):
        encode_shard(JOB, 0, PX, [(Box(0, 0, 0, 1, 1), b"\x89PNG\r\n\x1a\n")])


def test_not_a_tar_or_too_big() -> None:
    assert reason(b"") == "not_a_tar"
    assert reason(b"hello, world" * 100) == "not_a_tar"
    assert reason(gzip.compress(good_shard())) == "not_a_tar"  # compressed tars are refused
    assert reason(good_shard(), ShardLimits(max_bytes=1000)) == "too_large"
    data = good_shard()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        first_tile = tar.getmembers()[1]
    assert reason(data[: first_tile.offset_data + 40]) == "truncated"  # cut inside a tile


def test_member_types_and_names() -> None:
    entries = members(good_shard())
    link = tarfile.TarInfo("00003.jpg")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    assert reason(retar([*entries, (link, b"")])) == "member_type"
    folder = tarfile.TarInfo("tiles")
    folder.type = tarfile.DIRTYPE
    assert reason(retar([*entries, (folder, b"")])) == "member_type"
    escape = tarfile.TarInfo("../00003.jpg")
    assert reason(retar([*entries, (escape, entries[1][1])])) == "member_name"
    twice = tarfile.TarInfo("00001.jpg")
    assert reason(retar([*entries, (twice, entries[1][1])])) == "duplicate_member"


def test_member_sets_must_agree() -> None:
    entries = members(good_shard())
    assert reason(retar(entries[1:])) == "manifest"  # no manifest
    assert reason(retar(entries[:-1])) == "member_mismatch"  # a listed tile is missing
    extra = tarfile.TarInfo("00009.jpg")
    assert reason(retar([*entries, (extra, entries[1][1])])) == "member_mismatch"  # an unlisted one


@pytest.mark.parametrize(
    "change",
    [
        lambda m: m.update(format=2),
        lambda m: m.update(extra="field"),
        lambda m: m.update(tile_px="64"),
        lambda m: m.update(job_id="../other"),
        lambda m: m.update(tiles=[]),
        lambda m: m["tiles"][0].update(x=-1),
        lambda m: m["tiles"][0].update(file="../../x.jpg"),
        lambda m: m["tiles"][1].update(index=m["tiles"][0]["index"]),
        lambda m: m["tiles"][1].update(file=m["tiles"][0]["file"]),
    ],
    ids=[
        "format",
        "extra-field",
        "string-number",
        "job-id",
        "no-tiles",
        "negative-x",
        "file-path",
        "dup-index",
        "dup-file",
    ],
)
def test_manifest_is_validated(change: Callable[[dict[str, object]], None]) -> None:
    assert reason(with_manifest(change)) == "manifest"


def test_manifest_not_json() -> None:
    entries = members(good_shard())
    entries[0] = (entries[0][0], b"{not json")
    assert reason(retar(entries)) == "manifest"
    entries[0] = (entries[0][0], b"\xff\xfe")
    assert reason(retar(entries)) == "manifest"


def test_shard_identity_is_checked() -> None:
    assert reason(good_shard(), job_id="f" * 32) == "wrong_shard"
    assert reason(good_shard(), shard=3) == "wrong_shard"


def test_tile_count_limit() -> None:
    assert reason(good_shard(5), ShardLimits(max_tiles=4)) == "tile_count"


def test_tiles_are_decoded_safely() -> None:
    entries = members(good_shard())
    png = io.BytesIO()
    tile_image(0).save(png, format="PNG")
    assert reason(retar([entries[0], (entries[1][0], png.getvalue()), *entries[2:]])) == "bad_tile"
    jpeg = entries[1][1]
    assert reason(retar([entries[0], (entries[1][0], jpeg[: len(jpeg) // 2]), *entries[2:]])) == "bad_tile"
    big = encode_tile(tile_image(0, px=PX * 2))  # a valid JPEG of the wrong size
    assert reason(retar([entries[0], (entries[1][0], big), *entries[2:]])) == "bad_tile"  # over tile_px² pixels
    small = encode_tile(tile_image(0, px=PX // 2))
    assert reason(retar([entries[0], (entries[1][0], small), *entries[2:]])) == "tile_size"
    assert reason(good_shard(), ShardLimits(max_tile_bytes=100)) == "too_large"


def test_open_validates_the_object_and_decodes_each_tile_on_demand() -> None:
    """The inference service opens a shard (everything but the pixels checked) and decodes its
    tiles one by one as they reach the batcher: a broken tile fails when its turn comes, with the
    same reason `decode_shard` gives, and the tiles before it decode."""
    entries = members(good_shard())
    jpeg = entries[3][1]
    broken = retar([*entries[:3], (entries[3][0], jpeg[: len(jpeg) // 2])])
    opened = open_shard(broken, job_id=JOB, shard=2)
    assert [(r.index, r.file) for r in opened.refs] == [(10, "00000.jpg"), (11, "00001.jpg"), (12, "00002.jpg")]
    first = opened.decode(opened.refs[0])
    assert (first.index, first.image.size) == (10, (PX, PX))
    with pytest.raises(ShardRejected) as info:
        opened.decode(opened.refs[2])
    assert info.value.reason == "bad_tile" and "tile 12" in info.value.message
    assert reason(broken) == "bad_tile"  # decoding the whole shard at once says the same
    with pytest.raises(ShardRejected) as wrong:  # the object's checks do not wait for the pixels
        open_shard(with_manifest(lambda m: m.update(shard=3)), job_id=JOB, shard=2)
    assert wrong.value.reason == "wrong_shard"
