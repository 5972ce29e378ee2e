"""Safe decoding of untrusted bytes: formats by content, limits before pixels, specific errors."""

from __future__ import annotations

import io
import struct
import zlib

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
