"""The vision tower's speed levers, applied to a loaded Gemma 3 model in place (and removable).

SigLIP is 72-74% of a verdict on the H200 (docs/BENCHMARKS.md): 27 layers of self-attention over
4096 patches per 896 px image. Three levers, each independent, each falling back to the eager
tower with a logged reason when it fails (`LeverLog`):

- `sdpa_backend`: the tower's forward runs inside `torch.nn.attention.sdpa_kernel([backend])`, so
  only its attention (not the language model's) is pinned to cuDNN, Flash, efficient or math;
- `patch_embed`: the 14x14 stride-14 convolution as channels-last, or as what it is arithmetically,
  a reshape of the pixels into patches and one matmul (`linear_patch_embed`);
- `compile`: `torch.compile` of the tower at fixed batch sizes (the batcher's sizes, compiled by
  warm-up before `/readyz` turns 200); a batch of any other size runs the eager tower.

The tower's `forward` is replaced on the instance (the weights and their names are untouched), so
every caller gets the levers: the verdict's forward pass and the slide report's `image_features`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

import torch

from inference_service.engine.fast_paths import LeverLog, VisionOptions, describe

log = logging.getLogger(__name__)

_BACKEND_NAMES = {
    "cudnn": "CUDNN_ATTENTION",
    "flash": "FLASH_ATTENTION",
    "efficient": "EFFICIENT_ATTENTION",
    "math": "MATH",
}


def vision_tower(model: Any) -> Any:
    """The SigLIP tower of a Gemma 3 image-text model (transformers 5: `model.model.vision_tower`)."""
    inner = getattr(model, "model", None)
    tower = getattr(inner, "vision_tower", None) if inner is not None else None
    if tower is None:
        tower = getattr(model, "vision_tower", None)
    if tower is None:
        raise ValueError(f"{type(model).__name__} has no vision tower")
    return tower


def linear_patch_embed(conv: torch.nn.Conv2d, pixels: torch.Tensor) -> torch.Tensor:
    """The patch embedding's convolution (kernel = stride = patch, no padding) as one matmul.

    (B, C, H, W) → patches (B, H/p * W/p, C*p*p) @ weight (out, C*p*p)ᵀ → (B, out, H/p, W/p), laid
    out so that SigLIP's `flatten(2).transpose(1, 2)` afterwards is a view, not a copy.
    """
    batch, channels, height, width = pixels.shape
    p = conv.kernel_size[0]
    rows, cols = height // p, width // p
    patches = pixels.reshape(batch, channels, rows, p, cols, p).permute(0, 2, 4, 1, 3, 5)
    patches = patches.reshape(batch, rows * cols, channels * p * p)
    out = torch.nn.functional.linear(patches, conv.weight.reshape(conv.out_channels, -1), conv.bias)
    return out.transpose(1, 2).reshape(batch, conv.out_channels, rows, cols)


class VisionLevers:
    """The levers of one model's vision tower. `install()` applies them, `remove()` undoes them.

    Calls come one batch at a time (the engine's lock), so the state needs no lock of its own.
    """

    def __init__(self, model: Any, options: VisionOptions, levers: LeverLog) -> None:
        self._tower = vision_tower(model)
        self._options = options
        self._levers = levers
        self._eager: Callable[..., Any] = self._tower.forward
        self._conv: torch.nn.Conv2d = self._tower.embeddings.patch_embedding
        self._conv_weight = self._conv.weight.data
        self._backend: Any = None
        self._compiled: Callable[..., Any] | None = None
        self._compiled_sizes: set[int] = set()
        self._patch_on = False  # plain flags, not LeverLog calls: Dynamo traces them without a break
        self._bypass = False
        self._installed = False

    def install(self) -> VisionLevers:
        """Apply every lever asked for (each one that cannot start is logged as off)."""
        o = self._options
        if o.sdpa_backend != "auto":
            from torch.nn.attention import SDPBackend

            self._backend = getattr(SDPBackend, _BACKEND_NAMES[o.sdpa_backend])
            self._levers.on("vision_sdpa_backend", o.sdpa_backend)
        if o.patch_embed != "conv":
            if o.patch_embed == "channels-last":
                self._conv.weight.data = self._conv_weight.contiguous(memory_format=torch.channels_last)
            self._conv.forward = self._patch_embed  # type: ignore[method-assign,assignment]
            self._patch_on = True
            self._levers.on("vision_patch_embed", o.patch_embed)
        if o.compile != "off":
            self._start_compile()
        self._tower.forward = self._forward
        self._installed = True
        return self

    def remove(self) -> None:
        """Restore the eager tower (the benchmark measures levers one after another)."""
        if not self._installed:
            return
        for module in (self._tower, self._conv):
            if "forward" in vars(module):
                del module.forward
        self._conv.weight.data = self._conv_weight
        self._compiled = None
        self._patch_on = False
        self._installed = False

    @property
    def compiled_sizes(self) -> list[int]:
        """Batch sizes whose compiled tower has run (warm-up compiles them)."""
        return sorted(self._compiled_sizes)

    @contextlib.contextmanager
    def bypassed(self) -> Iterator[None]:
        """Run the eager tower inside this block (the reference for the numerics check)."""
        self._bypass = True
        try:
            yield
        finally:
            self._bypass = False

    def _start_compile(self) -> None:
        o = self._options
        try:
            import torch._dynamo.config as dynamo_config

            # One compiled graph per batch size: let Dynamo keep them all (its default is 8).
            wanted = len(o.compile_batch_sizes) + 2
            for name in ("recompile_limit", "cache_size_limit"):
                if hasattr(dynamo_config, name):
                    setattr(dynamo_config, name, max(getattr(dynamo_config, name), wanted))
                    break
            mode = None if o.compile == "default" else o.compile
            self._compiled = torch.compile(self._eager, mode=mode, dynamic=False, backend=o.compile_backend)
        except Exception as exc:
            self._levers.fell_back("vision_compile", describe(exc))
            return
        sizes = ",".join(str(s) for s in o.compile_batch_sizes)
        self._levers.on("vision_compile", f"{o.compile} at batch sizes {sizes} (others eager)")

    def _forward(self, pixel_values: torch.Tensor | None = None, **kwargs: Any) -> Any:
        """The tower's forward with the levers: compiled at its sizes, else eager (in the backend)."""
        if self._bypass or pixel_values is None:
            return self._eager(pixel_values=pixel_values, **kwargs)
        batch = int(pixel_values.shape[0])
        if self._compiled is not None and batch in self._options.compile_batch_sizes:
            try:
                out = self._run_compiled(pixel_values, **kwargs)
            except torch.cuda.OutOfMemoryError:
                raise  # not the lever's fault: the eager tower would not fit either
            except Exception as exc:
                self._compiled = None
                self._levers.fell_back("vision_compile", describe(exc))
            else:
                self._compiled_sizes.add(batch)
                return out
        if self._backend is not None:
            try:
                with self._sdpa():
                    return self._eager(pixel_values=pixel_values, **kwargs)
            except torch.cuda.OutOfMemoryError:
                raise
            except RuntimeError as exc:  # "No available kernel": the backend cannot take these inputs
                self._backend = None
                self._levers.fell_back("vision_sdpa_backend", describe(exc))
        return self._eager(pixel_values=pixel_values, **kwargs)

    def _run_compiled(self, pixel_values: torch.Tensor, **kwargs: Any) -> Any:
        assert self._compiled is not None
        cuda_graphs = self._options.compile == "reduce-overhead"
        if cuda_graphs:
            # Each batch is a new step for CUDA graph trees: the previous batch's outputs are done.
            torch.compiler.cudagraph_mark_step_begin()
        with self._sdpa():
            out = self._compiled(pixel_values=pixel_values, **kwargs)
        if cuda_graphs:
            # A CUDA graph's output lives in its static memory, overwritten by the next replay (the
            # slide report keeps chunk after chunk): hand out a copy (≈ 0.3 GB at batch 32, µs).
            out.last_hidden_state = out.last_hidden_state.clone()
        return out

    def _sdpa(self) -> contextlib.AbstractContextManager[Any]:
        if self._backend is None:
            return contextlib.nullcontext()
        from torch.nn.attention import sdpa_kernel

        return sdpa_kernel([self._backend])

    def _patch_embed(self, pixels: torch.Tensor) -> torch.Tensor:
        conv = self._conv
        if self._bypass or not self._patch_on:
            return torch.nn.Conv2d.forward(conv, pixels)
        try:
            if self._options.patch_embed == "channels-last":
                return torch.nn.Conv2d.forward(conv, pixels.contiguous(memory_format=torch.channels_last))
            p = conv.kernel_size[0]
            if pixels.shape[-1] % p or pixels.shape[-2] % p:
                raise ValueError(f"image side not a multiple of the patch ({p} px)")
            return linear_patch_embed(conv, pixels)
        except torch.cuda.OutOfMemoryError:
            raise
        except Exception as exc:
            self._patch_on = False
            self._levers.fell_back("vision_patch_embed", describe(exc))
            return torch.nn.Conv2d.forward(conv, pixels)
