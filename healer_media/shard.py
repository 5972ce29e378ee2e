"""The shard object: a batch of one slide's tiles, as the slide service writes it to the work
bucket and the inference service reads it back.

    shards/{job_id}/{n:05d}.tar          an uncompressed POSIX tar, in this order:
      manifest.json                       {"format": 1, "job_id", "shard", "tile_px",
                                           "tiles": [{"index", "x", "y", "w", "h", "file"}]}
      00000.jpg, 00001.jpg, ...           one baseline JPEG per tile (tile_px x tile_px, RGB)

`index` is the tile's number in the slide's tile plan; x, y, w, h its level-0 square. Tar
because it streams, every tool lists it, and members need no compression (JPEG already is).

`decode_shard` trusts nothing: size, member types and names, the manifest's schema, the job and
shard it claims, the tile count, that the listed files and the members agree one to one, and
every tile through the safe image decoder at exactly tile_px x tile_px. Any failure is a
`ShardRejected(reason, message)` (job error code `bad_shard`). Decoded tiles are RGB images:
64 tiles of 896 px hold about 150 MB, so the inference service validates a shard whole
(`open_shard`) and decodes its tiles one by one as they go to the batcher.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from healer_media.errors import ImageRejected, ShardRejected
from healer_media.imaging import DecodeLimits, decode_image, sniff_format

SHARD_FORMAT: Literal[1] = 1
MANIFEST = "manifest.json"
_TILE_FILE = re.compile(r"^[0-9]{5,7}\.jpg$")


def shard_object_name(job_id: str, shard: int) -> str:
    """Where shard `shard` of slide job `job_id` lives in the work bucket."""
    return f"shards/{job_id}/{shard:05d}.tar"


class TileBox(Protocol):
    """Anything with a tile's index and level-0 square (slide_service's TileSpec is one)."""

    @property
    def index(self) -> int: ...
    @property
    def x(self) -> int: ...
    @property
    def y(self) -> int: ...
    @property
    def w(self) -> int: ...
    @property
    def h(self) -> int: ...


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class TileRef(_Strict):
    """One tile as the manifest lists it."""

    index: int = Field(ge=0, le=10_000_000)
    x: int = Field(ge=0)
    y: int = Field(ge=0)
    w: int = Field(gt=0)
    h: int = Field(gt=0)
    file: str = Field(pattern=_TILE_FILE.pattern)


class ShardManifest(_Strict):
    """The shard's table of contents."""

    format: Literal[1]
    job_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")
    shard: int = Field(ge=0, le=1_000_000)
    tile_px: int = Field(ge=16, le=4096)
    tiles: list[TileRef] = Field(min_length=1)


@dataclass(frozen=True)
class ShardLimits:
    """What `decode_shard` accepts at most."""

    max_bytes: int = 128 * 1024 * 1024
    max_tiles: int = 1024
    max_tile_bytes: int = 8 * 1024 * 1024
    max_manifest_bytes: int = 1024 * 1024


@dataclass(frozen=True)
class ShardTile:
    """One decoded tile and where it sits on the slide."""

    index: int
    x: int
    y: int
    w: int
    h: int
    image: Image.Image


@dataclass(frozen=True)
class Shard:
    """A decoded, validated shard."""

    job_id: str
    shard: int
    tile_px: int
    tiles: list[ShardTile]


def encode_tile(image: Image.Image, quality: int = 90) -> bytes:
    """A tile as the baseline JPEG that shards carry."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def encode_shard(job_id: str, shard: int, tile_px: int, tiles: Sequence[tuple[TileBox, bytes]]) -> bytes:
    """The shard object for `tiles` (each a box and its JPEG bytes, see `encode_tile`)."""
    if not tiles:
        raise ValueError("a shard holds at least one tile")
    refs: list[TileRef] = []
    for position, (box, jpeg) in enumerate(tiles):
        if sniff_format(jpeg) != "JPEG":
            raise ValueError(f"tile {box.index} is not JPEG data")
        refs.append(TileRef(index=box.index, x=box.x, y=box.y, w=box.w, h=box.h, file=f"{position:05d}.jpg"))
    manifest = ShardManifest(format=SHARD_FORMAT, job_id=job_id, shard=shard, tile_px=tile_px, tiles=refs)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        _add(tar, MANIFEST, manifest.model_dump_json().encode())
        for ref, (_, jpeg) in zip(refs, tiles, strict=True):
            _add(tar, ref.file, jpeg)
    return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0  # deterministic bytes for the same tiles
    tar.addfile(info, io.BytesIO(data))


@dataclass(frozen=True)
class OpenedShard:
    """A validated shard whose tiles are still JPEG bytes: `decode(ref)` decodes one tile safely
    (a `ShardRejected` if it is not the JPEG of a tile_px image), so a reader can decode its tiles
    one at a time, as it uses them, and hold only those in memory."""

    job_id: str
    shard: int
    tile_px: int
    refs: list[TileRef]
    _jpegs: dict[str, bytes]
    _limits: DecodeLimits

    def decode(self, ref: TileRef) -> ShardTile:
        return _tile(ref, self._jpegs[ref.file], self.tile_px, self._limits)

    def tiles(self, only: Collection[int] | None = None) -> list[ShardTile]:
        """Every tile decoded, in order, or only those whose indices `only` names (a slide report
        needs a few tiles of a shard): an index the shard does not hold is `tiles_mismatch`."""
        refs = self.refs
        if only is not None:
            wanted = set(only)
            absent = sorted(wanted - {ref.index for ref in refs})
            if absent:
                raise ShardRejected("tiles_mismatch", f"the shard holds no tile {absent[:3]}")
            refs = [ref for ref in refs if ref.index in wanted]
        return [self.decode(ref) for ref in refs]


def open_shard(
    data: bytes,
    limits: ShardLimits | None = None,
    job_id: str | None = None,
    shard: int | None = None,
) -> OpenedShard:
    """Validate a shard object, without decoding its tiles; `job_id` / `shard`, when given, must be
    what it claims. Everything but the tiles' pixels is checked here (module docstring)."""
    limits = limits or ShardLimits()
    if len(data) > limits.max_bytes:
        raise ShardRejected("too_large", f"the shard is {len(data)} bytes; the limit is {limits.max_bytes}")
    members = _read_members(data, limits)
    manifest = _manifest(members, limits)
    if job_id is not None and manifest.job_id != job_id:
        raise ShardRejected("wrong_shard", "the shard belongs to another job")
    if shard is not None and manifest.shard != shard:
        raise ShardRejected("wrong_shard", f"the object holds shard {manifest.shard}, not shard {shard}")
    if len(manifest.tiles) > limits.max_tiles:
        raise ShardRejected("tile_count", f"{len(manifest.tiles)} tiles; the limit is {limits.max_tiles}")
    listed = [ref.file for ref in manifest.tiles]
    indices = [ref.index for ref in manifest.tiles]
    if len(set(listed)) != len(listed) or len(set(indices)) != len(indices):
        raise ShardRejected("manifest", "the manifest lists a file or a tile index twice")
    present = set(members) - {MANIFEST}
    if set(listed) != present:
        missing, extra = sorted(set(listed) - present), sorted(present - set(listed))
        raise ShardRejected("member_mismatch", f"missing members {missing[:3]}, unlisted members {extra[:3]}")
    decode_limits = DecodeLimits(
        max_bytes=limits.max_tile_bytes, max_pixels=manifest.tile_px * manifest.tile_px, max_frames=1
    )
    members.pop(MANIFEST)
    return OpenedShard(manifest.job_id, manifest.shard, manifest.tile_px, list(manifest.tiles), members, decode_limits)


def decode_shard(
    data: bytes,
    limits: ShardLimits | None = None,
    job_id: str | None = None,
    shard: int | None = None,
    only: Collection[int] | None = None,
) -> Shard:
    """Validate and decode a shard object (`open_shard`, then `OpenedShard.tiles(only)`); the whole
    object is validated however few tiles `only` names."""
    opened = open_shard(data, limits, job_id, shard)
    return Shard(job_id=opened.job_id, shard=opened.shard, tile_px=opened.tile_px, tiles=opened.tiles(only))


def _read_members(data: bytes, limits: ShardLimits) -> dict[str, bytes]:
    members: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for count, member in enumerate(tar, start=1):
                if count > limits.max_tiles + 1:
                    raise ShardRejected("tile_count", f"more than {limits.max_tiles} tiles")
                if not member.isreg():
                    raise ShardRejected("member_type", "the shard holds something other than regular files")
                if member.name != MANIFEST and not _TILE_FILE.match(member.name):
                    raise ShardRejected("member_name", f"unexpected member name {member.name[:40]!r}")
                if member.name in members:
                    raise ShardRejected("duplicate_member", f"{member.name} appears twice")
                cap = limits.max_manifest_bytes if member.name == MANIFEST else limits.max_tile_bytes
                if member.size > cap:
                    raise ShardRejected("too_large", f"{member.name} is {member.size} bytes; the limit is {cap}")
                if member.offset_data + member.size > len(data):
                    raise ShardRejected("truncated", f"{member.name} is cut short")
                handle = tar.extractfile(member)
                content = handle.read(member.size) if handle is not None else b""
                if len(content) != member.size:
                    raise ShardRejected("truncated", f"{member.name} is cut short")
                members[member.name] = content
    except tarfile.TarError as exc:
        raise ShardRejected("not_a_tar", f"not an uncompressed tar: {exc}") from exc
    except (OSError, EOFError) as exc:
        raise ShardRejected("truncated", f"the tar is cut short: {exc}") from exc
    if not members:
        raise ShardRejected("not_a_tar", "an empty archive")
    return members


def _manifest(members: dict[str, bytes], limits: ShardLimits) -> ShardManifest:
    raw = members.get(MANIFEST)
    if raw is None:
        raise ShardRejected("manifest", f"no {MANIFEST}")
    try:
        return ShardManifest.model_validate(json.loads(raw))
    except (ValueError, ValidationError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ShardRejected("manifest", f"invalid manifest: {str(exc).splitlines()[0][:200]}") from exc


def _tile(ref: TileRef, jpeg: bytes, tile_px: int, limits: DecodeLimits) -> ShardTile:
    if sniff_format(jpeg) != "JPEG":
        raise ShardRejected("bad_tile", f"tile {ref.index} is not a JPEG")
    try:
        image = decode_image(jpeg, limits)
    except ImageRejected as exc:
        raise ShardRejected("bad_tile", f"tile {ref.index}: {exc.message}") from exc
    if image.size != (tile_px, tile_px):
        raise ShardRejected("tile_size", f"tile {ref.index} is {image.size[0]}x{image.size[1]}, not {tile_px}px")
    return ShardTile(index=ref.index, x=ref.x, y=ref.y, w=ref.w, h=ref.h, image=image)
