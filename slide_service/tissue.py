"""Where the tissue is: a mask on a low-resolution rendering of the slide (≈ TISSUE_MPP µm/px).

The rendering is read from the pyramid level just finer than the target, in bounded chunks (a
slide without a useful pyramid costs time, never memory), and doubles as the slide's thumbnail
for the heatmap. The mask is the usual one for H&E: stained tissue is saturated, glass is not.

- Saturation (HSV) above an Otsu threshold, clamped to [0.07, 0.15]: Otsu separates glass from
  tissue when both are present; the clamp keeps it from splitting tissue in two on a slide that
  is nearly all tissue, and from promoting noise to tissue on a slide that has none.
- Marker ink is not tissue: blue and green hues (60°–235°; H&E stays within 240°–360°) and
  near-black, unsaturated strokes are removed first. Red ink shares eosin's hues and is kept.
- A morphological opening (removes specks under ~16 µm) then closing (fills pinholes).

`TissueMask.fraction` gives the tissue fraction of any level-0 rectangle in O(1) from an integral
image; grid.py uses it to keep tiles with at least MIN_TISSUE.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageFilter

from slide_service.open import Slide

SAT_MIN, SAT_MAX = 0.07, 0.15
PEN_HUE_DEG = (60.0, 235.0)
# One read of at most this many level pixels a side (64 Mi px RGBA = 256 MiB is far above it).
_CHUNK_LEVEL_PX = 4096
# The mask never exceeds this a side (the thumbnail is the same size): ~50 MB of RGB at most.
_MAX_MASK_SIDE = 4096
# A level counts as "at least as fine as" a downsample within this tolerance (levels report
# downsamples such as 4.0003 for a nominal 4).
LEVEL_TOLERANCE = 1.01


@dataclass(frozen=True)
class TissueMask:
    """The tissue mask, the thumbnail it was computed on, and their scale."""

    mask: NDArray[np.bool_]  # rows x cols
    thumbnail: Image.Image  # RGB, cols x rows: the slide at the mask's scale
    downsample: float  # level-0 pixels per mask pixel
    threshold: float  # the saturation threshold used
    _integral: NDArray[np.int64] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        integral = np.zeros((self.mask.shape[0] + 1, self.mask.shape[1] + 1), np.int64)
        integral[1:, 1:] = np.cumsum(np.cumsum(self.mask, axis=0, dtype=np.int64), axis=1)
        object.__setattr__(self, "_integral", integral)

    @property
    def tissue_fraction(self) -> float:
        """Fraction of the whole slide that is tissue."""
        return float(self.mask.mean()) if self.mask.size else 0.0

    def fraction(self, x: float, y: float, w: float, h: float) -> float:
        """Tissue fraction of the level-0 rectangle (x, y, w, h); outside the slide is not tissue."""
        if w <= 0 or h <= 0:
            return 0.0
        rows, cols = self.mask.shape
        c0, c1 = round(x / self.downsample), round((x + w) / self.downsample)
        r0, r1 = round(y / self.downsample), round((y + h) / self.downsample)
        area = max(1, (c1 - c0) * (r1 - r0))
        c0, c1 = min(max(c0, 0), cols), min(max(c1, 0), cols)
        r0, r1 = min(max(r0, 0), rows), min(max(r1, 0), rows)
        ii = self._integral
        inside = int(ii[r1, c1] - ii[r0, c1] - ii[r1, c0] + ii[r0, c0])
        return inside / area


def best_level(downsamples: tuple[float, ...] | list[float], target: float) -> int:
    """The coarsest level whose downsample does not exceed `target` (with LEVEL_TOLERANCE)."""
    best = 0
    for index, ds in enumerate(downsamples):
        if ds <= target * LEVEL_TOLERANCE and ds >= downsamples[best]:
            best = index
    return best


def detect_tissue(slide: Slide, target_mpp: float = 8.0) -> TissueMask:
    """Render the slide at about `target_mpp` µm/px and find its tissue."""
    info = slide.info
    ds = max(1.0, target_mpp / info.mpp)
    ds = max(ds, max(info.width, info.height) / _MAX_MASK_SIDE)
    thumbnail = render(slide, ds)
    mask, threshold = tissue_mask(np.asarray(thumbnail))
    return TissueMask(mask=mask, thumbnail=thumbnail, downsample=ds, threshold=threshold)


def render(slide: Slide, ds: float) -> Image.Image:
    """The whole slide at `ds` level-0 pixels per output pixel, read chunk by chunk."""
    info = slide.info
    cols, rows = math.ceil(info.width / ds), math.ceil(info.height / ds)
    level = best_level([lv.downsample for lv in info.levels], ds)
    level_ds = info.levels[level].downsample
    # Output pixels per chunk side, so that a chunk reads at most _CHUNK_LEVEL_PX level pixels.
    block = max(1, int(_CHUNK_LEVEL_PX * level_ds / ds))
    out = Image.new("RGB", (cols, rows), slide.background)
    for by in range(0, rows, block):
        for bx in range(0, cols, block):
            bw, bh = min(block, cols - bx), min(block, rows - by)
            lw = max(1, round(bw * ds / level_ds))
            lh = max(1, round(bh * ds / level_ds))
            region = slide.read_rgb((round(bx * ds), round(by * ds)), level, (lw, lh))
            out.paste(region.resize((bw, bh), Image.Resampling.BOX), (bx, by))
    return out


def tissue_mask(rgb: NDArray[np.uint8]) -> tuple[NDArray[np.bool_], float]:
    """Tissue pixels of an RGB image of a slide at low resolution, and the saturation threshold."""
    hsv = np.asarray(Image.fromarray(rgb, "RGB").convert("HSV"), dtype=np.float32) / 255.0
    hue, sat, val = hsv[..., 0] * 360.0, hsv[..., 1], hsv[..., 2]
    blue_green_ink = (hue >= PEN_HUE_DEG[0]) & (hue <= PEN_HUE_DEG[1]) & (sat > 0.25)
    black_ink = (val < 0.12) & (sat < 0.3)
    ink = blue_green_ink | black_ink
    candidates = sat[~ink]
    threshold = otsu(candidates) if candidates.size else SAT_MAX
    threshold = min(max(threshold, SAT_MIN), SAT_MAX)
    raw = (sat >= threshold) & ~ink
    image = Image.fromarray(raw.astype(np.uint8) * 255, "L")
    image = image.filter(ImageFilter.MinFilter(3)).filter(ImageFilter.MaxFilter(3))  # opening
    image = image.filter(ImageFilter.MaxFilter(5)).filter(ImageFilter.MinFilter(5))  # closing
    return np.asarray(image) > 127, threshold


def otsu(values: NDArray[np.floating], bins: int = 256) -> float:
    """Otsu's threshold of values in [0, 1]: the cut maximising the between-class variance.
    (Ten lines of numpy; scikit-image's would bring scipy into the service image.)"""
    hist, edges = np.histogram(values, bins=bins, range=(0.0, 1.0))
    weights = hist.astype(np.float64)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(weights)
    w1 = w0[-1] - w0
    m0 = np.cumsum(weights * centres)
    mean0 = np.divide(m0, w0, out=np.zeros_like(m0), where=w0 > 0)
    mean1 = np.divide(m0[-1] - m0, w1, out=np.zeros_like(m0), where=w1 > 0)
    between = w0 * w1 * (mean0 - mean1) ** 2
    return float(edges[int(np.argmax(between)) + 1])
