"""What decoding one opened image will hold in memory at its peak, from its header alone.

The estimate is width × height × bytes per pixel of the mode Pillow decodes into (after
`draft()`), plus what the format's decoder keeps on the side and the band-wise conversion
(`healer_media.convert`). Each term is the decoder's own allocation, read from Pillow's and the
codec libraries' sources and checked by measurement (tests/test_decode_memory.py): the budget
reserves exactly this much before a single pixel is decoded.
"""

from __future__ import annotations

from PIL import Image

from healer_media.convert import BAND_BYTES_PER_PIXEL, band_rows, reduced_size

# Bytes per pixel of Pillow's in-memory image, by mode: single-band 8-bit modes take one byte,
# the 16-bit integer modes two, and every other mode (multi-band, I, F) four.
PIXEL_BYTES: dict[str, int] = {
    "1": 1,
    "L": 1,
    "P": 1,
    "I;16": 2,
    "I;16B": 2,
    "I;16L": 2,
    "I;16N": 2,
    "I": 4,
    "F": 4,
    "LA": 4,
    "La": 4,
    "PA": 4,
    "RGB": 4,
    "RGBA": 4,
    "RGBa": 4,
    "RGBX": 4,
    "CMYK": 4,
    "YCbCr": 4,
    "LAB": 4,
    "HSV": 4,
}
# Interpreter objects, codec state and small row buffers of one decode.
FIXED_OVERHEAD = 2 * 1024 * 1024

# TIFF tags read for the libtiff strip or tile buffer.
_BITS_PER_SAMPLE, _SAMPLES_PER_PIXEL, _ROWS_PER_STRIP = 258, 277, 278
_TILE_WIDTH, _TILE_LENGTH = 322, 323


def decode_cost(im: Image.Image, fmt: str, file_bytes: int, factor: int, full_size: tuple[int, int]) -> int:
    """Peak bytes of decoding `im` (opened, drafted, not loaded) and converting it to RGB.

    `full_size` is the size before `draft()`; `factor` the box reduction of the conversion.
    """
    width, height = im.size
    pixels = width * height
    decoded = pixels * PIXEL_BYTES[im.mode]
    rows = min(height, band_rows(width, factor))
    converting = rows * width * BAND_BYTES_PER_PIXEL
    out_w, out_h = reduced_size(im.size, factor)
    # The RGB result (4 bytes per pixel) and the one copy its last step may make (gray → RGB).
    output = out_w * out_h * 4 * 2
    return FIXED_OVERHEAD + decoded + _decoder_extra(im, fmt, file_bytes, full_size) + converting + output


def _decoder_extra(im: Image.Image, fmt: str, file_bytes: int, full_size: tuple[int, int]) -> int:
    """What the format's decoder allocates besides the image itself."""
    width, height = im.size
    if fmt == "JPEG":
        full_w, full_h = full_size
        components = len(im.getbands())
        # libjpeg's row buffers for one MCU row at full width (up to 16 rows, 16-bit workspace).
        extra = full_w * 16 * components * 2
        if im.info.get("progressive") or im.info.get("progression"):
            # A progressive JPEG keeps every DCT coefficient (64 × int16 per 8×8 block and
            # component) until its last scan, at full size whatever the draft scale.
            extra += -(-full_w // 8) * -(-full_h // 8) * 64 * 2 * components
        return extra
    if fmt == "TIFF":
        # Pillow hands libtiff a copy of the file, then libtiff decodes one strip or tile at a time
        # into a buffer of the file's own sample size, or of 4 bytes per pixel (its RGBA path).
        tags = getattr(im, "tag_v2", {})
        bits = tags.get(_BITS_PER_SAMPLE, (8,))
        bits = max(bits) if isinstance(bits, tuple) and bits else int(bits or 8)
        samples = int(tags.get(_SAMPLES_PER_PIXEL, 1) or 1)
        if _TILE_WIDTH in tags and _TILE_LENGTH in tags:
            area = int(tags[_TILE_WIDTH]) * int(tags[_TILE_LENGTH])
        else:
            area = width * min(height, int(tags.get(_ROWS_PER_STRIP, height) or height))
        return file_bytes + area * (samples * -(-bits // 8) + 4)
    if fmt == "WEBP":
        # libwebp's animation decoder keeps two RGBA canvases and hands Pillow a third as bytes.
        return file_bytes + 3 * width * height * 4
    if fmt == "PNG":
        # zlib's window and two rows at up to 8 bytes per pixel (16-bit RGBA).
        return 2 * width * 8 + 256 * 1024
    return 0
