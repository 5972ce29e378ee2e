"""The heatmap: tile p_yes as colour over the slide's thumbnail, plus a colour bar.

The PNG's left part is the thumbnail at `downsample` level-0 pixels per pixel with every scored
tile painted at (x / downsample, y / downsample) in the colour of its p_yes (blended at ALPHA,
so the tissue stays visible); the colour bar sits to the right of it, so overlay pixels keep the
thumbnail's coordinates. The scale is written into the PNG too (text chunks
`healer:downsample`, `healer:overlay_width`), so a viewer can map a pixel back to the slide.
Colour map: matplotlib's RdYlBu_r (blue = no, red = yes), legible on pink H&E and for the
commonest colour-vision deficiencies.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

from slide_service.aggregate import TileScore

CMAP = "RdYlBu_r"
ALPHA = 0.55


@dataclass(frozen=True)
class Heatmap:
    """The rendered PNG and its geometry."""

    png: bytes
    width: int
    height: int
    overlay_width: int  # pixels [0, overlay_width) are the slide; the colour bar is to the right
    downsample: float  # level-0 pixels per overlay pixel


def colour(p_yes: float) -> tuple[int, int, int]:
    """The RGB colour the heatmap gives a p_yes."""
    r, g, b, _ = colormaps[CMAP](float(p_yes))
    return round(r * 255), round(g * 255), round(b * 255)


def render_heatmap(
    thumbnail: Image.Image,
    downsample: float,
    scores: Sequence[TileScore],
    threshold: float = 0.5,
    max_px: int = 2048,
    min_px: int = 1024,
) -> Heatmap:
    """The heatmap PNG of `scores` over `thumbnail` (the slide at `downsample` level-0 px/px),
    its longest side brought within [min_px, max_px]."""
    thumb = thumbnail.convert("RGB")
    longest = max(thumb.size)
    # Shrink a huge thumbnail; enlarge a biopsy's postage stamp so tiles and legend are legible.
    target = min(max(longest, min_px), max_px)
    if target != longest:
        scale = target / longest
        size = (max(1, round(thumb.width * scale)), max(1, round(thumb.height * scale)))
        thumb = thumb.resize(size, Image.Resampling.BOX if scale < 1 else Image.Resampling.LANCZOS)
        downsample = downsample / scale
    cols, rows = thumb.size
    field = np.full((rows, cols), np.nan, np.float32)
    for s in scores:
        c0, c1 = round(s.x / downsample), round((s.x + s.w) / downsample)
        r0, r1 = round(s.y / downsample), round((s.y + s.h) / downsample)
        field[max(r0, 0) : min(max(r1, r0 + 1), rows), max(c0, 0) : min(max(c1, c0 + 1), cols)] = s.p_yes
    painted = ~np.isnan(field)
    rgb = np.asarray(thumb, np.float32)
    colours = colormaps[CMAP](np.nan_to_num(field))[..., :3].astype(np.float32) * 255.0
    rgb[painted] = rgb[painted] * (1.0 - ALPHA) + colours[painted] * ALPHA
    overlay = Image.fromarray(np.clip(rgb + 0.5, 0, 255).astype(np.uint8), "RGB")
    image = _with_colour_bar(overlay, threshold)
    meta = PngInfo()
    meta.add_text("healer:downsample", f"{downsample:.6g}")
    meta.add_text("healer:overlay_width", str(cols))
    meta.add_text("healer:colour_map", f"{CMAP} p_yes 0..1, alpha {ALPHA}")
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=meta, optimize=False)
    return Heatmap(buf.getvalue(), image.width, image.height, cols, downsample)


def _with_colour_bar(overlay: Image.Image, threshold: float) -> Image.Image:
    height = overlay.height
    font_size = max(10, min(24, height // 24))
    bar_w = max(12, font_size)
    pad = font_size // 2 + 2
    label_w = font_size * 4
    canvas = Image.new("RGB", (overlay.width + pad + bar_w + pad + label_w, height), (255, 255, 255))
    canvas.paste(overlay, (0, 0))
    top, bottom = pad + 2 * font_size, height - pad - font_size // 2
    if bottom - top < 10:  # a sliver of a slide: no room for a bar, the overlay alone
        return overlay
    ramp = np.linspace(1.0, 0.0, bottom - top, dtype=np.float32)  # p_yes 1 at the top
    bar = (colormaps[CMAP](ramp)[:, :3] * 255).astype(np.uint8)
    bar_image = Image.fromarray(np.repeat(bar[:, None, :], bar_w, axis=1), "RGB")
    x0 = overlay.width + pad
    canvas.paste(bar_image, (x0, top))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=font_size)
    draw.text((x0, pad // 2), "p_yes", fill=(0, 0, 0), font=font)
    for value in (1.0, threshold, 0.0):
        y = round(top + (1.0 - value) * (bottom - top - 1))
        draw.line([(x0 + bar_w, y), (x0 + bar_w + 4, y)], fill=(0, 0, 0))
        draw.text((x0 + bar_w + 6, y - font_size // 2), f"{value:.2g}", fill=(0, 0, 0), font=font)
    return canvas
