"""Pinned staging: each prepared image reaches the GPU from the thread that prepared it.

Without it the engine's thread, per batch, stacks the prepared images on the CPU (154 MB at batch
32, 896 px, bf16) and copies them from pageable memory while the GPU waits: ≈ 8% of the service's
stream on the H200 (docs/BENCHMARKS.md). With it, a preparing thread casts its image into a pinned
buffer of its own and copies it to the GPU on a side stream, while the previous batch is still
computing on the default stream; the batch then only concatenates tensors already on the device.

The copy is waited for in the preparing thread before its buffer is reused (≈ 0.2 ms for 4.8 MB),
so each thread needs one buffer per image shape and nothing is shared between threads. Device
memory: one image per prepared, queued request (4.8 MB at 896 px in bf16, ≈ 0.3 GB at MAX_QUEUE=64).
"""

from __future__ import annotations

import threading

import torch

from inference_service.engine.fast_paths import LeverLog, describe

LEVER = "pinned_staging"


class PinnedStager:
    """Uploads prepared pixels to `device` through per-thread pinned buffers and a side stream.

    `upload` returns None once staging has fallen back (logged once): the caller keeps the pixels on
    the CPU and the batch copies them as before.
    """

    def __init__(self, device: torch.device, dtype: torch.dtype, levers: LeverLog) -> None:
        self._device = device
        self._dtype = dtype
        self._levers = levers
        self._local = threading.local()
        self._stream = torch.cuda.Stream(device)
        self._on = True
        levers.on(LEVER, "prepared images copied to the GPU on a side stream by the preparing threads")

    def upload(self, pixels: torch.Tensor) -> torch.Tensor | None:
        """`pixels` (CPU, any float dtype) on the device in the compute dtype, the copy finished."""
        if not self._on:
            return None
        try:
            staged = self._buffer(tuple(pixels.shape))
            staged.copy_(pixels)  # the cast to the compute dtype, into pinned memory
            with torch.cuda.stream(self._stream):
                on_device = torch.empty(staged.shape, dtype=self._dtype, device=self._device)
                on_device.copy_(staged, non_blocking=True)
                copied = torch.cuda.Event()
                copied.record(self._stream)
            copied.synchronize()  # this thread's buffer is free again, and the image is on the device
            # Batches read it on the default stream: its memory must not go back to the side
            # stream's pool (and a later upload) before the batch that reads it has run there.
            on_device.record_stream(torch.cuda.default_stream(self._device))
            return on_device
        except torch.cuda.OutOfMemoryError:
            raise
        except Exception as exc:
            self._on = False
            self._levers.fell_back(LEVER, describe(exc))
            return None

    def _buffer(self, shape: tuple[int, ...]) -> torch.Tensor:
        buffers: dict[tuple[int, ...], torch.Tensor] | None = getattr(self._local, "buffers", None)
        if buffers is None:
            buffers = self._local.buffers = {}
        buffer = buffers.get(shape)
        if buffer is None:
            buffer = buffers[shape] = torch.empty(shape, dtype=self._dtype, pin_memory=True)
        return buffer
