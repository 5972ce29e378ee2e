"""Deep Zoom for slide jobs: the DZI descriptor and JPEG tiles, read through OpenSlide.

OpenSeadragon asks for `slide.dzi`, then for tiles `slide_files/<level>/<col>_<row>.jpeg`;
OpenSlide's `DeepZoomGenerator` maps each one to a region read at the best pyramid level. The
Deep Zoom image is level 0 of the slide without cropping (`limit_bounds=False`), so a viewer
coordinate *is* a level-0 pixel: the heatmap, the GeoJSON tiles and the top tiles (all in level-0
pixels) line up without any offset.

Memory stays bounded: at most CONSOLE_OPEN_SLIDES slides are open (least recently used closed
first, never while a request is reading them), OpenSlide's decoded-tile cache is one cache of
CONSOLE_OPENSLIDE_CACHE_BYTES shared by all of them, and encoded tiles are kept in an LRU of
CONSOLE_TILE_CACHE_BYTES. Slides are opened with the slide service's `open_slide`, so a file that
cannot be viewed fails with the same coded error (`unreadable_slide`, `unsupported_slide`,
`too_large`) the pipeline records.
"""

from __future__ import annotations

import io
import logging
import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import openslide
from openslide.deepzoom import DeepZoomGenerator
from PIL import Image

from console.backend.slide_files import SlideFiles
from healer_core.schema import Job, TileRef
from slide_service.open import Slide, SlideLimits, open_slide

log = logging.getLogger("healer.console.slides")

TILE_SIZE = 254  # + 1 px overlap each side = 256 px images, the usual Deep Zoom choice
OVERLAP = 1
FORMAT = "jpeg"


class TileNotFound(LookupError):
    """A Deep Zoom address outside the slide's pyramid."""


class ByteLRU:
    """A thread-safe LRU of byte strings, bounded by their total size."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.used = 0
        self._items: OrderedDict[Hashable, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> bytes | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: Hashable, value: bytes) -> None:
        if len(value) > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.used -= len(old)
            self._items[key] = value
            self.used += len(value)
            while self.used > self.max_bytes:
                _, evicted = self._items.popitem(last=False)
                self.used -= len(evicted)


@dataclass
class _Opened:
    slide: Slide
    dz: DeepZoomGenerator
    users: int = 0
    evicted: bool = False


def _jpeg(image: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, format="JPEG", quality=quality)
    return out.getvalue()


class SlideViewer:
    """Deep Zoom descriptors, tiles and region thumbnails of slide jobs."""

    def __init__(
        self,
        files: SlideFiles,
        limits: SlideLimits,
        *,
        open_slides: int = 8,
        tile_cache_bytes: int = 64 * 1024**2,
        openslide_cache_bytes: int = 64 * 1024**2,
        jpeg_quality: int = 80,
    ) -> None:
        self._files = files
        self._limits = limits
        self._max_open = open_slides
        self._quality = jpeg_quality
        self.tiles = ByteLRU(tile_cache_bytes)
        self._cache = openslide.OpenSlideCache(openslide_cache_bytes) if openslide_cache_bytes > 0 else None
        self._open: OrderedDict[str, _Opened] = OrderedDict()
        self._lock = threading.Lock()
        self._opening: dict[str, threading.Lock] = {}

    def dzi(self, job: Job) -> str:
        """The Deep Zoom descriptor (XML) of the job's slide."""
        with self._opened(job) as opened:
            xml: str = opened.dz.get_dzi(FORMAT)
            return xml

    def tile(self, job: Job, level: int, col: int, row: int) -> bytes:
        """One Deep Zoom tile as JPEG bytes. Raises TileNotFound outside the pyramid."""
        key = (job.job_id, level, col, row)
        cached = self.tiles.get(key)
        if cached is not None:
            return cached
        with self._opened(job) as opened:
            dz = opened.dz
            if not 0 <= level < dz.level_count:
                raise TileNotFound(f"level {level} is outside 0..{dz.level_count - 1}")
            cols, rows = dz.level_tiles[level]
            if not (0 <= col < cols and 0 <= row < rows):
                raise TileNotFound(f"tile {col}_{row} is outside level {level} ({cols}x{rows} tiles)")
            data = _jpeg(dz.get_tile(level, (col, row)), self._quality)
        self.tiles.put(key, data)
        return data

    def region(self, job: Job, tile: TileRef, max_px: int = 256) -> bytes:
        """A JPEG of the level-0 rectangle `tile`, at most `max_px` a side (read from the coarsest
        pyramid level that still has that many pixels, so the read stays small)."""
        key = (job.job_id, "region", tile.x, tile.y, tile.w, tile.h, max_px)
        cached = self.tiles.get(key)
        if cached is not None:
            return cached
        with self._opened(job) as opened:
            handle = opened.slide.handle
            level = handle.get_best_level_for_downsample(max(tile.w, tile.h) / max_px)
            ds = handle.level_downsamples[level]
            size = (max(1, round(tile.w / ds)), max(1, round(tile.h / ds)))
            image = opened.slide.read_rgb((tile.x, tile.y), level, size)
        image.thumbnail((max_px, max_px), Image.Resampling.LANCZOS)
        data = _jpeg(image, self._quality)
        self.tiles.put(key, data)
        return data

    def close(self) -> None:
        """Close every open slide (on shutdown)."""
        with self._lock:
            for opened in self._open.values():
                opened.slide.close()
            self._open.clear()

    @contextmanager
    def _opened(self, job: Job) -> Iterator[_Opened]:
        opened = self._acquire(job)
        try:
            yield opened
        finally:
            self._release(opened)

    def _acquire(self, job: Job) -> _Opened:
        with self._lock:
            opening = self._opening.setdefault(job.job_id, threading.Lock())
        with opening:  # one open per slide at a time; other slides are not held up
            with self._lock:
                opened = self._open.get(job.job_id)
                if opened is not None:
                    self._open.move_to_end(job.job_id)
                    opened.users += 1
                    return opened
            path = self._files.path_for(job)  # may download: outside the global lock
            slide = open_slide(path, self._limits)
            if self._cache is not None:
                slide.handle.set_cache(self._cache)
            opened = _Opened(slide, DeepZoomGenerator(slide.handle, TILE_SIZE, OVERLAP, limit_bounds=False), users=1)
            with self._lock:
                self._open[job.job_id] = opened
                self._evict_locked()
            log.info("slide opened for viewing", extra={"job_id": job.job_id, "format": slide.info.vendor})
            return opened

    def _release(self, opened: _Opened) -> None:
        with self._lock:
            opened.users -= 1
            if opened.evicted and opened.users == 0:
                opened.slide.close()

    def _evict_locked(self) -> None:
        while len(self._open) > self._max_open:
            _, oldest = self._open.popitem(last=False)
            oldest.evicted = True
            if oldest.users == 0:
                oldest.slide.close()
