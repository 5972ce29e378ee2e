"""Safe decoding of untrusted bytes: formats by content, limits before pixels, specific errors."""

from __future__ import annotations

import io
import random
import struct
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
from PIL import Image

from healer_core.schema import ErrorCode
from healer_media.errors import ImageRejected
from healer_media.imaging import DecodeLimits, decode_image, sniff_format

LIMITS = DecodeLimits(max_bytes=5_000_000, max_pixels=50_000_000, max_frames=4)


def encode(image: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def rejected(data: bytes, limits: DecodeLimits = LIMITS) -> ImageRejected:
    with pytest.raises(ImageRejected) as info:
        decode_image(data, limits)
    return info.value


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF", "WEBP"])
def test_supported_formats_decode_to_rgb(fmt: str) -> None:
    data = encode(Image.new("RGB", (40, 30), (200, 60, 120)), fmt)
    assert sniff_format(data) == fmt
    image = decode_image(data, LIMITS)
    assert (image.mode, image.size) == ("RGB", (40, 30))


def test_sixteen_bit_rgb_tiff_keeps_its_colours() -> None:
    pixels = np.zeros((16, 16, 3), dtype=np.uint16)
    pixels[..., 0], pixels[..., 1], pixels[..., 2] = 65535, 32768, 0
    buf = io.BytesIO()
    tifffile.imwrite(buf, pixels, photometric="rgb")
    image = decode_image(buf.getvalue(), LIMITS)
    assert image.mode == "RGB" and image.getpixel((3, 3)) == (255, 128, 0)


def test_sixteen_bit_grayscale_tiff_is_scaled_to_its_range() -> None:
    pixels = np.linspace(1000, 3000, 64, dtype=np.uint16).reshape(8, 8)
    buf = io.BytesIO()
    tifffile.imwrite(buf, pixels)
    image = decode_image(buf.getvalue(), LIMITS)
    assert image.mode == "RGB"
    assert image.getpixel((0, 0)) == (0, 0, 0) and image.getpixel((7, 7)) == (255, 255, 255)


def test_transparency_is_flattened_onto_white() -> None:
    data = encode(Image.new("RGBA", (4, 4), (0, 0, 0, 0)), "PNG")
    assert decode_image(data, LIMITS).getpixel((0, 0)) == (255, 255, 255)


def test_format_is_decided_by_content_not_by_name() -> None:
    assert rejected(b"%PDF-1.7 ...").code == ErrorCode.NOT_AN_IMAGE
    assert "PDF" in rejected(b"%PDF-1.7 ...").message
    assert "HTML" in rejected(b"<!doctype html><p>x").message
    assert rejected(b"GIF89a....").code == ErrorCode.NOT_AN_IMAGE


def test_empty_and_oversize() -> None:
    assert rejected(b"").code == ErrorCode.EMPTY
    assert rejected(b"\x89PNG\r\n\x1a\n" + b"\0" * 100, DecodeLimits(max_bytes=50)).code == ErrorCode.TOO_LARGE


def test_truncated_files() -> None:
    png = encode(Image.new("RGB", (300, 300), (1, 2, 3)), "PNG")
    jpeg = encode(Image.effect_noise((300, 300), 50).convert("RGB"), "JPEG")
    assert rejected(png[: len(png) // 2]).code == ErrorCode.TRUNCATED
    assert rejected(jpeg[: len(jpeg) // 2]).code == ErrorCode.TRUNCATED


def test_decompression_bomb_is_caught_from_the_header() -> None:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 60_000, 60_000, 8, 2, 0, 0, 0)
    bomb = (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )
    error = rejected(bomb)
    assert error.code == ErrorCode.DECOMPRESSION_BOMB and "3600000000" in error.message


def test_frame_cap() -> None:
    frames = [Image.new("RGB", (8, 8), (i * 40, 0, 0)) for i in range(6)]
    buf = io.BytesIO()
    frames[0].save(buf, format="TIFF", save_all=True, append_images=frames[1:])
    error = rejected(buf.getvalue())
    assert error.code == ErrorCode.TOO_MANY_FRAMES and "6 frames" in error.message
    ok = decode_image(buf.getvalue(), DecodeLimits(max_frames=6))
    assert ok.size == (8, 8)


# ---- issue 11: every mode to RGB without float64, downscaling, the configured pixel limit --------


def tiff_bytes(pixels: np.ndarray, **kw: Any) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, pixels, **kw)
    return buf.getvalue()


def test_float_samples_are_scaled_by_their_finite_range() -> None:
    pixels = np.linspace(-1.0, 1.0, 64, dtype=np.float32).reshape(8, 8)
    pixels[0, 1], pixels[0, 2], pixels[0, 3] = np.nan, np.inf, -np.inf
    image = decode_image(tiff_bytes(pixels), LIMITS)
    assert image.mode == "RGB"
    assert image.getpixel((7, 7)) == (255, 255, 255)  # the largest finite sample
    assert image.getpixel((1, 0)) == (0, 0, 0) and image.getpixel((2, 0)) == (255, 255, 255)  # NaN, +inf
    assert image.getpixel((3, 0)) == (0, 0, 0)  # -inf


def test_a_constant_deep_image_is_black_not_an_error() -> None:
    image = decode_image(tiff_bytes(np.full((8, 8), 4096, dtype=np.uint16)), LIMITS)
    assert image.getpixel((4, 4)) == (0, 0, 0)


@pytest.mark.parametrize(
    ("mode", "colour", "expected"),
    [
        ("LA", (0, 0), (255, 255, 255)),
        ("LA", (40, 255), (40, 40, 40)),
        ("CMYK", (0, 0, 0, 0), (255, 255, 255)),
        ("1", 1, (255, 255, 255)),
    ],
)
def test_every_mode_becomes_rgb(mode: str, colour: object, expected: tuple[int, int, int]) -> None:
    fmt = "TIFF" if mode == "CMYK" else "PNG"
    image = decode_image(encode(Image.new(mode, (10, 6), colour), fmt), LIMITS)  # type: ignore[arg-type]
    assert (image.mode, image.size, image.getpixel((5, 3))) == ("RGB", (10, 6), expected)


def test_palette_colours_and_transparency() -> None:
    palette = Image.new("P", (6, 6), 1)
    palette.putpalette([10, 20, 30] * 256)
    assert decode_image(encode(palette, "PNG"), LIMITS).getpixel((2, 2)) == (10, 20, 30)
    data = encode(palette, "PNG", transparency=1)
    assert decode_image(data, LIMITS).getpixel((2, 2)) == (255, 255, 255)  # flattened onto white


def test_large_images_are_reduced_to_the_target_never_below_it() -> None:
    data = encode(Image.new("RGB", (1000, 800), (10, 200, 30)), "PNG")
    image = decode_image(data, DecodeLimits(target_px=100))
    assert image.size == (125, 100) and image.getpixel((60, 50)) == (10, 200, 30)  # factor 8
    assert decode_image(data, DecodeLimits(target_px=0)).size == (1000, 800)
    assert decode_image(data, DecodeLimits(target_px=900)).size == (1000, 800)  # 800 // 900 = 0: no reduction


def test_jpeg_is_drafted_at_a_reduced_scale() -> None:
    data = encode(Image.new("RGB", (1600, 1200), (200, 40, 90)), "JPEG")
    image = decode_image(data, DecodeLimits(target_px=300))
    assert image.size == (400, 300)  # scale 1/4: 1/8 would fall below 300 px
    pixel = image.getpixel((200, 150))
    assert isinstance(pixel, tuple)
    assert all(abs(a - b) <= 3 for a, b in zip(pixel, (200, 40, 90), strict=True))


def test_the_reduced_image_keeps_its_content() -> None:
    """A reduce averages boxes: a half-black, half-white image stays so, edges included."""
    pixels = np.zeros((301, 400, 3), dtype=np.uint8)
    pixels[:, 200:] = 255
    image = decode_image(encode(Image.fromarray(pixels), "PNG"), DecodeLimits(target_px=100))
    assert image.size == (134, 101)  # factor 3, partial boxes at the edges kept
    assert image.getpixel((10, 100)) == (0, 0, 0) and image.getpixel((120, 100)) == (255, 255, 255)


# The configured pixel limit, above Pillow's own default (≈ 89.5 Mpx warning, 179 Mpx error).
PIXEL_LIMIT = 100_000_000


@pytest.fixture(scope="module")
def just_under() -> bytes:
    """A real 10000 x 9999 JPEG: 99,990,000 pixels, just under PIXEL_LIMIT."""
    return encode(Image.new("L", (10_000, 9_999), 128), "JPEG", quality=50)


def with_jpeg_height(data: bytes, height: int) -> bytes:
    """The same JPEG with its frame header claiming another height."""
    sof = data.index(b"\xff\xc0")
    return data[: sof + 5] + struct.pack(">H", height) + data[sof + 7 :]


def test_the_configured_pixel_limit_is_the_one_in_force(just_under: bytes) -> None:
    limits = DecodeLimits(max_bytes=5_000_000, max_pixels=PIXEL_LIMIT, target_px=512)
    image = decode_image(just_under, limits)  # over Pillow's default, under ours: decoded
    assert image.mode == "RGB" and min(image.size) >= 512
    just_over = with_jpeg_height(just_under, 10_001)  # 100,010,000 pixels
    error = rejected(just_over, limits)
    assert error.code == ErrorCode.DECOMPRESSION_BOMB
    assert "10000x10001 = 100010000 pixels; the limit is 100000000" in error.message


def test_the_pixel_limit_is_exact_and_per_call_in_concurrent_threads() -> None:
    """Threads decoding with different limits at once each get their own limit's answer; the
    process-wide warning filters (set to turn every warning into an error here) play no part."""
    data = encode(Image.new("RGB", (100, 100), (9, 9, 9)), "PNG")
    exact, one_less = DecodeLimits(max_pixels=10_000), DecodeLimits(max_pixels=9_999)

    def outcome(limits: DecodeLimits) -> str:
        try:
            return decode_image(data, limits).mode
        except ImageRejected as exc:
            return str(exc.code)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(outcome, [exact, one_less] * 100))
    assert results == ["RGB", "decompression_bomb"] * 100
    assert Image.MAX_IMAGE_PIXELS is None  # Pillow's own check stays off: ours is the limit


# ---- issue 11: whatever the decoder raises on uploaded bytes is a coded rejection ----------------


def tiled_tiff_with_a_bad_directory() -> bytes:
    """A three-page tiled TIFF whose second directory names a compression Pillow does not know:
    Pillow raises KeyError while it walks the directory chain (counting frames)."""
    buf = io.BytesIO()
    with tifffile.TiffWriter(buf) as writer:
        for _ in range(3):
            writer.write(np.full((32, 32, 3), 90, dtype=np.uint8), tile=(16, 16), photometric="rgb")
    data = bytearray(buf.getvalue())
    second = tifffile.TiffFile(io.BytesIO(bytes(data))).pages[1]
    tag = second.tags["Compression"]  # type: ignore[union-attr]
    struct.pack_into("<H", data, tag.valueoffset, 204)  # an unknown compression scheme
    return bytes(data)


def test_a_tiled_tiff_broken_in_its_directory_chain_is_rejected_not_raised() -> None:
    data = tiled_tiff_with_a_bad_directory()
    with pytest.raises(KeyError):  # what Pillow itself does with these bytes
        getattr(Image.open(io.BytesIO(data)), "n_frames")  # noqa: B009 (the attribute is the call)
    error = rejected(data)
    assert error.code == ErrorCode.TRUNCATED and "KeyError" in error.message


def fuzz_samples() -> dict[str, bytes]:
    """Valid files in every accepted container, in the layouts and modes uploads come in."""
    rng = np.random.default_rng(11)
    rgb = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    image = Image.fromarray(rgb)
    samples = {
        "png": encode(image, "PNG"),
        "png-interlaced": encode(image, "PNG", interlace=1),
        "png-palette": encode(image.convert("P"), "PNG"),
        "png-16bit": encode(Image.fromarray(rgb[..., 0].astype(np.uint16) * 257), "PNG"),
        "png-rgba": encode(image.convert("RGBA"), "PNG"),
        "jpeg": encode(image, "JPEG"),
        "jpeg-progressive": encode(image, "JPEG", progressive=True),
        "jpeg-cmyk": encode(image.convert("CMYK"), "JPEG"),
        "webp": encode(image, "WEBP"),
        "webp-lossless-rgba": encode(image.convert("RGBA"), "WEBP", lossless=True),
        "tiff": encode(image, "TIFF"),
        "tiff-lzw": encode(image, "TIFF", compression="tiff_lzw"),
        "tiff-float": tiff_bytes(rgb[..., 0].astype(np.float32), compression="zlib"),
        "tiff-16bit-rgb": tiff_bytes(rgb.astype(np.uint16) * 257, photometric="rgb"),
        "tiff-tiled-pages": tiled_pages(rgb),
        "tiff-bigtiff": tiff_bytes(rgb, bigtiff=True, photometric="rgb"),
    }
    for path in sorted(SAMPLES_DIR.glob("*")):
        if path.suffix in (".png", ".tif"):
            samples[f"sample-{path.name}"] = path.read_bytes()
    return samples


def tiled_pages(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    with tifffile.TiffWriter(buf) as writer:
        for _ in range(3):
            writer.write(rgb, tile=(16, 16), photometric="rgb", compression="zlib")
    return buf.getvalue()


SAMPLES_DIR = Path(__file__).resolve().parents[1] / "samples"
FUZZ = fuzz_samples()


def variants(data: bytes, seed: str, flips: int = 60) -> list[bytes]:
    """The file cut at every offset of its first 64 bytes and at 48 more spread over the rest,
    and `flips` copies with one to four bytes changed at random (seeded: the same every run)."""
    n = len(data)
    cuts = sorted(set(range(min(n, 64))) | {n * i // 48 for i in range(1, 48)})
    out = [data[:cut] for cut in cuts]
    rng = random.Random(seed)
    for _ in range(flips):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            mutated[rng.randrange(n)] = rng.randrange(256)
        out.append(bytes(mutated))
    return out


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about corrupt EXIF on the way
@pytest.mark.parametrize("sample", sorted(FUZZ))
def test_fuzzed_uploads_decode_or_are_rejected_with_a_code(sample: str) -> None:
    data = FUZZ[sample]
    assert decode_image(data, LIMITS).mode == "RGB"  # the intact file is a good image
    codes = {str(code) for code in ErrorCode}
    for variant in variants(data, sample):
        try:
            image = decode_image(variant, LIMITS)
        except ImageRejected as exc:
            assert exc.code in codes and exc.message
        else:
            assert image.mode == "RGB" and image.width > 0 and image.height > 0
