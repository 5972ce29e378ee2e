"""MedGemma (or any Gemma 3 image-text checkpoint) through transformers, as an `Engine`.

Verdict = ONE forward pass over a batch: p_yes is the softmax over the Yes/No answer tokens'
logits at the last prompt position (`logits_to_keep=1`, so the 262k-wide vocabulary projection runs
for one position only). With `explain`, one greedy `generate` call gives both: its first step's
logits are that same prefill's, and its text is the explanation.

The slide report (`report_slide`) is one greedy `generate` over a prompt with many tiles: the
vision tower runs over them `vision_chunk` images at a time and the projected image tokens go to
`generate` pre-encoded, merged by the model's own forward (`image_features`, `report_generate`),
so memory grows with the 256 tokens per tile, not with the tower's activations.

Preprocessing is split from the model: `prepare(image)` resizes and normalises one image on the CPU
(thread-safe, no lock), so the service runs it in request threads while the previous batch is on
the GPU; `predict` then only stacks pixels and runs the model. Every row has the same prompt and,
with one crop per image (MedGemma's processor: no pan-and-scan), the same tokens, so the tokenized
prompt is computed once at load and repeated per batch.

Speed levers (`fast_paths.py`: the vision tower's attention kernel, patch embedding and compile,
pinned staging in `prepare`, the explanation's stop, cache and compiled decode) are off unless
asked for; each falls back to the path above with a logged reason.

torch and transformers are imported here, so only the loader (inside the app's lifespan) may
import this module.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import torch
from PIL import Image as PILImage
from PIL.Image import Image

from inference_service.engine.base import DeviceProbeError, EngineResult, ModelInfo
from inference_service.engine.canary import decode_compile_canary
from inference_service.engine.decode import SentenceStop, generate_kwargs
from inference_service.engine.fast_paths import (
    P_YES_TOLERANCE,
    DecodeOptions,
    FastPaths,
    LeverLog,
    describe,
    record_decode,
    select,
)
from inference_service.engine.manifest import read_manifest
from inference_service.engine.prompt import (
    NO_WORDS,
    PROMPT_TEXT,
    PROMPT_VERSION,
    REPORT_PROMPT_TEXT,
    REPORT_PROMPT_VERSION,
    THINKING_START,
    YES_WORDS,
    clean_report,
    decide,
    parse_generated,
)
from inference_service.engine.slide_report import SlideReport
from inference_service.engine.staging import PinnedStager
from inference_service.engine.vision_levers import VisionLevers, vision_tower

log = logging.getLogger(__name__)


class EngineConfigError(ValueError):
    """The requested device, dtype or quantization cannot work; the message says what to change."""


@dataclass(frozen=True)
class LoadOptions:
    """How to load the checkpoint (resolved from Settings by the loader)."""

    model_dir: str
    device: str = "auto"  # auto | cuda | cpu
    dtype: str = "auto"  # auto | bfloat16 | float32 | float16 (refused)
    quantization: str = "none"  # none | 8bit | 4bit
    attn_implementation: str = "sdpa"
    model_id: str = ""  # fallbacks when MODEL_DIR has no healer-model.json
    model_revision: str = ""


def resolve_device(device: str) -> str:
    """`auto` → cuda when available, else cpu. Asking for cuda without one is an error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise EngineConfigError("DEVICE=cuda but no CUDA device is visible; use DEVICE=cpu or auto.")
    return device


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """bf16 on CUDA, float32 on CPU by default; float16 is refused (Gemma 3 overflows in fp16)."""
    if dtype in ("float16", "fp16", "half"):
        raise EngineConfigError(
            "DTYPE=float16 is refused: Gemma 3 activations overflow in fp16 (inf/NaN logits). "
            "Use DTYPE=bfloat16 on GPU (the default) or float32 on CPU."
        )
    if dtype == "auto":
        return torch.bfloat16 if device == "cuda" else torch.float32
    return {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float32": torch.float32}[dtype]


def quantization_config(quantization: str, device: str) -> Any | None:
    """A bitsandbytes config for 8bit|4bit with bf16 compute, or None. Needs CUDA and bitsandbytes."""
    if quantization in ("none", ""):
        return None
    if quantization not in ("8bit", "4bit"):
        raise EngineConfigError(f"QUANTIZATION={quantization!r}: expected none, 8bit or 4bit.")
    if device != "cuda":
        raise EngineConfigError(f"QUANTIZATION={quantization} needs a CUDA GPU (bitsandbytes); use none on CPU.")
    try:
        import bitsandbytes  # noqa: F401  (imported only to fail early with a clear message)
    except ImportError as exc:
        raise EngineConfigError(
            f"QUANTIZATION={quantization} needs bitsandbytes: pip install 'healer[gpu]' (or QUANTIZATION=none)."
        ) from exc
    from transformers import BitsAndBytesConfig

    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=torch.bfloat16,
        bnb_4bit_use_double_quant=True,
    )


def answer_token_ids(tokenizer: Any, words: Sequence[str]) -> list[int]:
    """Ids of the forms in `words` (and their "▁"-prefixed twins) that are single, known tokens."""
    ids: list[int] = []
    for word in (*words, *(" " + w for w in words)):
        encoded = tokenizer.encode(word, add_special_tokens=False)
        if len(encoded) == 1 and encoded[0] != tokenizer.unk_token_id and encoded[0] not in ids:
            ids.append(encoded[0])
    return ids


def thinking_token_ids(tokenizer: Any) -> list[int]:
    """The id of MedGemma 1.5's thinking opener (`<unused94>`) when it is one known token, else []."""
    token_id = tokenizer.convert_tokens_to_ids(THINKING_START)
    if isinstance(token_id, int) and token_id != tokenizer.unk_token_id:
        return [token_id]
    return []


def p_yes_from_logits(logits: torch.Tensor, yes_ids: Sequence[int], no_ids: Sequence[int]) -> list[float]:
    """Per row: P(yes) = softmax over the Yes/No answer tokens' logits (all forms pooled), in fp32."""
    logits = logits.float()
    yes = torch.logsumexp(logits[:, list(yes_ids)], dim=-1)
    no = torch.logsumexp(logits[:, list(no_ids)], dim=-1)
    return torch.sigmoid(yes - no).tolist()


@dataclass(frozen=True)
class PreparedImage:
    """One image after the processor's CPU work: pixel_values (1, 3, H, W) in the compute dtype."""

    pixel_values: torch.Tensor


class TransformersEngine:
    """An `Engine` over a Gemma 3 image-text model and its processor.

    `prepare` may run in any number of threads at once; `predict` runs one batch at a time.
    """

    def __init__(
        self,
        model: Any,
        processor: Any,
        info: ModelInfo,
        *,
        threshold: float = 0.5,
        band: float = 0.1,
        max_new_tokens: int = 48,
        vision_chunk: int = 8,
        report_max_new_tokens: int = 256,
        fast: FastPaths | None = None,
    ) -> None:
        self._model = model
        self._processor = processor
        self._info = info
        self._threshold = threshold
        self._band = band
        self._max_new_tokens = max_new_tokens
        self._vision_chunk = max(1, vision_chunk)
        self._report_max_new_tokens = report_max_new_tokens
        self._device = next(model.parameters()).device
        # Floating inputs (pixel_values) go in the compute dtype; quantized weights report int8.
        self._dtype = getattr(torch, info.dtype)
        self._lock = threading.Lock()
        tokenizer = processor.tokenizer
        tokenizer.padding_side = "left"  # the answer position is then the last column for every row
        self._yes_ids = answer_token_ids(tokenizer, YES_WORDS)
        self._no_ids = answer_token_ids(tokenizer, NO_WORDS)
        if not self._yes_ids or not self._no_ids:
            raise EngineConfigError("The tokenizer has no single-token Yes/No; p_yes cannot be computed.")
        # Generated text never opens a thinking trace: it would spend the whole token budget on it.
        # (p_yes is unaffected: it compares the Yes/No tokens only, from the raw logits.)
        self._suppress_ids = thinking_token_ids(tokenizer)
        self._prompt = processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT_TEXT}]}],
            add_generation_prompt=True,
            tokenize=False,
        )
        # Pan-and-scan gives each image its own number of crops (and so its own tokens): then every
        # batch goes through the whole processor. Otherwise the prompt's tokens are fixed.
        self._fixed_tokens = not getattr(processor.image_processor, "do_pan_and_scan", False)
        self._text_row: dict[str, torch.Tensor] = {}
        if self._fixed_tokens:
            row = processor(text=[self._prompt], images=[[PILImage.new("RGB", (8, 8))]], return_tensors="pt")
            self._text_row = {k: v for k, v in row.items() if k not in ("pixel_values", "num_crops")}
        self._probe = DeviceProbe(self._device)
        self._text_on_device: dict[int, dict[str, torch.Tensor]] = {}
        self._levers = LeverLog()
        self._vision: VisionLevers | None = None
        self._stager: PinnedStager | None = None
        self._decode = DecodeOptions()
        self._apply_fast_paths(fast or FastPaths())

    @classmethod
    def load(
        cls,
        options: LoadOptions,
        *,
        threshold: float = 0.5,
        band: float = 0.1,
        max_new_tokens: int = 48,
        vision_chunk: int = 8,
        report_max_new_tokens: int = 256,
        fast: FastPaths | None = None,
    ) -> TransformersEngine:
        """Load processor and model from a local directory only (works with HF_HUB_OFFLINE=1)."""
        from transformers import AutoModelForImageTextToText, AutoProcessor

        model_dir = Path(options.model_dir)
        if not (model_dir / "config.json").is_file():
            raise EngineConfigError(
                f"MODEL_DIR={model_dir} holds no model (no config.json): run `healer model download` "
                "or `make tiny-model`."
            )
        device = resolve_device(options.device)
        dtype = resolve_dtype(options.dtype, device)
        quant = quantization_config(options.quantization, device)
        kwargs: dict[str, Any] = {
            "dtype": dtype,
            "attn_implementation": options.attn_implementation,
            "local_files_only": True,
        }
        if quant is not None:
            kwargs["quantization_config"] = quant
            kwargs["device_map"] = {"": 0}  # bitsandbytes places the weights itself
        processor = AutoProcessor.from_pretrained(model_dir, local_files_only=True)
        model: Any = AutoModelForImageTextToText.from_pretrained(model_dir, **kwargs)
        if quant is None:
            model = model.to(device)
        model.eval()
        manifest = read_manifest(model_dir) or {}
        info = ModelInfo(
            model_id=str(manifest.get("model_id") or options.model_id or model_dir.name),
            model_revision=str(manifest.get("revision") or options.model_revision or ""),
            quantization=options.quantization if quant is not None else "none",
            prompt_version=PROMPT_VERSION,
            device=device,
            dtype=str(dtype).removeprefix("torch."),
        )
        return cls(
            model,
            processor,
            info,
            threshold=threshold,
            band=band,
            max_new_tokens=max_new_tokens,
            vision_chunk=vision_chunk,
            report_max_new_tokens=report_max_new_tokens,
            fast=fast,
        )

    @property
    def info(self) -> ModelInfo:
        """Provenance stored with every verdict."""
        return self._info

    @property
    def fast_paths(self) -> dict[str, str]:
        """Each speed lever asked for → "on: ..." or "off: <why it fell back>" (`fast_paths.py`)."""
        return self._levers.status()

    def _apply_fast_paths(self, fast: FastPaths) -> None:
        """Switch on the levers that apply here; each one that cannot is logged as off."""
        if not fast.any:
            return
        levers = self._levers
        try:
            attention = str(getattr(vision_tower(self._model).config, "_attn_implementation", "sdpa"))
        except ValueError:
            attention = "none"
        chosen = select(fast, self._device.type, attention, levers)
        if chosen.vision.any:
            try:
                self._vision = VisionLevers(self._model, chosen.vision, levers).install()
            except Exception as exc:  # e.g. a model without a SigLIP tower
                for lever in ("vision_sdpa_backend", "vision_patch_embed", "vision_compile"):
                    levers.fell_back(lever, describe(exc))
        if chosen.pinned_staging:
            try:
                self._stager = PinnedStager(self._device, self._dtype, levers)
            except Exception as exc:
                levers.fell_back("pinned_staging", describe(exc))
        decode = chosen.decode
        if decode.compile != "off":
            # Tried in a child process first: on the reference stack it died of SIGSEGV.
            reason = decode_compile_canary(decode.compile, self._device.type)
            if reason:
                levers.fell_back("explain_compile", reason)
                decode = replace(decode, compile="off")
        record_decode(decode, levers)
        self._decode = decode

    def check_fast_paths(self, images: Sequence[Image], tolerance: float = P_YES_TOLERANCE) -> float | None:
        """p_yes through the levers vs the eager path, on the same `images` and weights; levers
        whose p_yes differs by more than `tolerance` are switched off (logged). Returns the largest
        difference seen, or None when no lever is on. The loader runs it before warm-up."""
        vision, decode = self._vision, self._decode
        if vision is None and not decode.any:
            return None
        items = [self.prepare(im) for im in images]
        with self._lock, torch.inference_mode():
            inputs = self._encode(items)
            with vision.bypassed() if vision is not None else contextlib.nullcontext():
                reference = p_yes_from_logits(verdict_logits(self._model, inputs), self._yes_ids, self._no_ids)
            worst = 0.0
            if vision is not None:
                fast = p_yes_from_logits(self._forward(inputs), self._yes_ids, self._no_ids)
                delta = _largest_difference(reference, fast)
                worst = _worse(worst, delta)
                if not delta <= tolerance:
                    self._drop_vision(f"p_yes differs from the eager path by {delta:.3g} (> {tolerance:g})")
            if decode.any:
                logits, _ = self._generate(inputs)
                delta = _largest_difference(reference, p_yes_from_logits(logits, self._yes_ids, self._no_ids))
                worst = _worse(worst, delta)
                if not delta <= tolerance:
                    self._drop_decode(f"p_yes differs from the eager path by {delta:.3g} (> {tolerance:g})")
        return worst

    def _drop_vision(self, reason: str) -> None:
        if self._vision is not None:
            self._vision.remove()
            self._vision = None
        for lever in ("vision_sdpa_backend", "vision_patch_embed", "vision_compile"):
            if self._levers.active(lever):
                self._levers.fell_back(lever, reason)

    def _drop_decode(self, reason: str) -> None:
        for lever in ("explain_stop", "explain_cache", "explain_compile"):
            if self._levers.active(lever):
                self._levers.fell_back(lever, reason)
        self._decode = DecodeOptions()

    def prepare(self, image: Image) -> PreparedImage | Image:
        """The processor's CPU work for one image (RGB, resize, rescale, normalise). Thread-safe.

        With pan-and-scan on, the image is only converted to RGB; `predict` processes the batch.
        """
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        if not self._fixed_tokens:
            return rgb
        pixels = self._processor.image_processor(images=[rgb], return_tensors="pt")["pixel_values"]
        if pixels.shape[0] != 1:
            raise EngineConfigError(f"expected one crop per image, the image processor made {pixels.shape[0]}")
        if self._stager is not None:
            on_device = self._stager.upload(pixels)
            if on_device is not None:
                return PreparedImage(on_device)
        return PreparedImage(pixels.to(self._dtype))

    def predict(self, images: Sequence[PreparedImage | Image], explain: bool) -> list[EngineResult]:
        """One batch: verdicts (and, with `explain`, one-sentence explanations), in order.

        Items are PIL images or what `prepare` returned; raw images are prepared here, in the batch.
        """
        if not images:
            return []
        with self._lock, torch.inference_mode():
            start = time.perf_counter()
            inputs = self._encode([im if isinstance(im, PreparedImage) else self.prepare(im) for im in images])
            texts: list[str | None] = [None] * len(images)
            if explain:
                logits, generated = self._generate(inputs)
                texts = list(generated)
            else:
                logits = self._forward(inputs)
            p_values = p_yes_from_logits(logits, self._yes_ids, self._no_ids)
            elapsed_ms = (time.perf_counter() - start) * 1000.0
        results = []
        for p_yes, text in zip(p_values, texts, strict=True):
            finite = p_yes if math.isfinite(p_yes) else None
            parsed = parse_generated(text) if text is not None else None
            results.append(
                EngineResult(
                    answer=decide(finite, parsed, self._threshold, self._band),
                    p_yes=finite,
                    explanation=parsed.explanation if parsed is not None else "",
                    inference_ms=elapsed_ms,
                )
            )
        return results

    def probe(self) -> None:
        """A tiny sum on the model's device, waited for (see `DeviceProbe`). Thread-safe; no lock."""
        self._probe.run()

    def _encode(self, items: Sequence[PreparedImage | Image]) -> dict[str, torch.Tensor]:
        if self._fixed_tokens:
            # predict() ran every item through prepare(), which makes PreparedImage in this mode.
            pixels = torch.cat([cast(PreparedImage, item).pixel_values for item in items])
            inputs = dict(self._text_rows(len(items)))
            inputs["pixel_values"] = pixels.to(self._device, non_blocking=True)
            return inputs
        batch = self._processor(
            text=[self._prompt] * len(items),
            images=[[item] for item in items],
            return_tensors="pt",
            padding=True,
        )
        batch.pop("num_crops", None)
        inputs = {k: v.to(self._device) for k, v in batch.items()}
        inputs["pixel_values"] = inputs["pixel_values"].to(self._dtype)
        return inputs

    def _text_rows(self, batch: int) -> dict[str, torch.Tensor]:
        """The prompt's token rows for `batch` images, on the device (made once per batch size)."""
        rows = self._text_on_device.get(batch)
        if rows is None:
            rows = {k: v.repeat(batch, 1).to(self._device) for k, v in self._text_row.items()}
            self._text_on_device[batch] = rows
        return rows

    def _forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return verdict_logits(self._model, inputs)

    def _generate(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[str]]:
        decode = self._decode
        if decode.any:
            extra = generate_kwargs(decode)
            if decode.stop == "sentence":
                extra["stopping_criteria"] = [SentenceStop(self._processor.tokenizer, inputs["input_ids"].shape[1])]
            try:
                logits, new_tokens = explain_generate(
                    self._model, inputs, self._max_new_tokens, self._suppress_ids, extra=extra
                )
            except torch.cuda.OutOfMemoryError:
                raise
            except Exception as exc:
                self._drop_decode(describe(exc))
            else:
                return logits, self._processor.batch_decode(new_tokens, skip_special_tokens=True)
        logits, new_tokens = explain_generate(self._model, inputs, self._max_new_tokens, self._suppress_ids)
        texts = self._processor.batch_decode(new_tokens, skip_special_tokens=True)
        return logits, texts

    def report_slide(self, patches: Sequence[Image], max_new_tokens: int | None = None) -> SlideReport:
        """A short slide-level report from ONE prompt holding all `patches` (PIL images, in order).

        The prompt is built by the processor's chat template and tokenized by the processor; the
        vision tower runs over the patches `vision_chunk` at a time. Greedy, at most
        `max_new_tokens` (default: the engine's report budget). Serialised with `predict`.
        """
        if not patches:
            raise ValueError("a slide report needs at least one patch")
        rgb = [im if im.mode == "RGB" else im.convert("RGB") for im in patches]
        content = [{"type": "text", "text": REPORT_PROMPT_TEXT}, *({"type": "image"} for _ in rgb)]
        prompt = self._processor.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
        )
        chunk = self._vision_chunk
        if self._fixed_tokens:
            # One crop per image: the tokens do not depend on the pixels, so the processor tokenizes
            # the prompt with stand-in images and the real ones are preprocessed a chunk at a time
            # (host memory bounded too: 125 patches are 1.2 GB as one float32 tensor).
            placeholders = [PILImage.new("RGB", (8, 8))] * len(rgb)
            tokens = self._processor(text=[prompt], images=[placeholders], return_tensors="pt")
            chunks: Iterable[torch.Tensor] = (
                torch.cat([cast(PreparedImage, self.prepare(im)).pixel_values for im in rgb[i : i + chunk]])
                for i in range(0, len(rgb), chunk)
            )
        else:
            tokens = self._processor(text=[prompt], images=[rgb], return_tensors="pt")
            pixels = tokens["pixel_values"]
            chunks = (pixels[i : i + chunk] for i in range(0, pixels.shape[0], chunk))
        with self._lock, torch.inference_mode():
            start = time.perf_counter()
            new_tokens = report_generate(
                self._model,
                input_ids=tokens["input_ids"].to(self._device),
                attention_mask=tokens["attention_mask"].to(self._device),
                token_type_ids=tokens["token_type_ids"].to(self._device),
                pixel_chunks=chunks,
                max_new_tokens=max_new_tokens or self._report_max_new_tokens,
                suppress_tokens=self._suppress_ids,
            )
            elapsed_ms = (time.perf_counter() - start) * 1000.0
        row = new_tokens[0]
        return SlideReport(
            text=clean_report(self._processor.decode(row, skip_special_tokens=True)),
            patches=len(rgb),
            model_id=self._info.model_id,
            model_revision=self._info.model_revision,
            prompt_version=REPORT_PROMPT_VERSION,
            inference_ms=elapsed_ms,
            new_tokens=int(row.numel()),
        )


class DeviceProbe:
    """Readiness's health check on the model's device: sum 0..15 there and read the result back.

    Microseconds on a healthy device; a wedged GPU hangs (readiness bounds it with a timeout) and a
    broken one raises or answers wrong. On CUDA it runs on its own high-priority stream, which
    PyTorch creates non-blocking: the probe neither waits behind the batch on the default stream
    nor delays it. Its tensors are allocated once, so a probe never asks the allocator for memory.
    """

    SIZE = 16

    def __init__(self, device: torch.device) -> None:
        self._device = device
        self._stream = torch.cuda.Stream(device, priority=-1) if device.type == "cuda" else None
        self._input = torch.arange(self.SIZE, dtype=torch.float32, device=device)
        self._output = torch.zeros((), dtype=torch.float32, device=device)
        if self._stream is not None:
            torch.cuda.synchronize(device)  # the input is written before any probe stream reads it
        self._lock = threading.Lock()  # one probe at a time shares the preallocated output

    def run(self) -> None:
        """Raises DeviceProbeError on a wrong answer; whatever the device raises, unchanged."""
        expected = float(self.SIZE * (self.SIZE - 1) // 2)
        with self._lock:  # no grad to track: the probe's tensors never require it
            if self._stream is None:
                torch.sum(self._input, dim=0, out=self._output)
                value = self._output.item()
            else:
                with torch.cuda.stream(self._stream):
                    torch.sum(self._input, dim=0, out=self._output)
                    value = self._output.item()  # copies back on the probe stream and waits for it
        if value != expected:
            raise DeviceProbeError(f"device probe on {self._device}: the sum of 0..{self.SIZE - 1} came back {value}")


def _largest_difference(a: Sequence[float], b: Sequence[float]) -> float:
    """max |a - b| over the rows; NaN when either side has one (fails every `<=` check)."""
    deltas = [abs(x - y) for x, y in zip(a, b, strict=True)]
    return math.nan if any(math.isnan(d) for d in deltas) else max(deltas, default=0.0)


def _worse(a: float, b: float) -> float:
    return b if math.isnan(b) or b > a else a


def verdict_logits(model: Any, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Next-token logits at the last position of each left-padded row: shape (batch, vocab).

    Positions count only real tokens, so a padded row sees the same positions as it would alone.
    """
    mask = inputs["attention_mask"]
    position_ids = (mask.long().cumsum(-1) - 1).clamp(min=0)
    out = model(**inputs, position_ids=position_ids, logits_to_keep=1, use_cache=False)
    return out.logits[:, -1, :]


def explain_generate(
    model: Any,
    inputs: dict[str, torch.Tensor],
    max_new_tokens: int,
    suppress_tokens: Sequence[int] = (),
    extra: Mapping[str, Any] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy, bounded generation. Returns (first-step logits, new token ids).

    The first step's logits are the prefill's answer-position logits (raw, before `suppress_tokens`
    applies), so p_yes needs no second pass. `extra`: more `generate` arguments (the decode
    levers: `decode.generate_kwargs`, stopping criteria).
    """
    out = model.generate(
        **inputs,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        top_p=None,
        top_k=None,
        suppress_tokens=list(suppress_tokens) or None,
        output_logits=True,
        return_dict_in_generate=True,
        **(extra or {}),
    )
    prompt_len = inputs["input_ids"].shape[1]
    return out.logits[0], out.sequences[:, prompt_len:]


def image_features(model: Any, pixel_chunks: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
    """The projected image tokens, (images, tokens per image, hidden), one chunk of pixels at a time.

    `Gemma3ForConditionalGeneration.get_image_features` (vision tower + projector) runs per chunk,
    so the tower's activations (4096 patches x 1152 per 896 px image, in 27 layers) exist for one
    chunk only; what is kept is the 256 projected tokens per image.
    """
    parameter = next(model.parameters())
    dtype = parameter.dtype if parameter.is_floating_point() else torch.bfloat16
    for pixels in pixel_chunks:
        out = model.get_image_features(pixels.to(parameter.device, dtype, non_blocking=True))
        yield out.pooler_output if hasattr(out, "pooler_output") else out


def report_generate(
    model: Any,
    *,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    token_type_ids: torch.Tensor,
    pixel_chunks: Iterable[torch.Tensor],
    max_new_tokens: int,
    suppress_tokens: Sequence[int] = (),
) -> torch.Tensor:
    """Greedy generation over a multi-image prompt, the vision tower run chunk by chunk. Returns
    the new token ids, (1, new tokens).

    The image tokens computed chunk by chunk reach `generate` as `mm_encoder_outputs`, the
    pre-encoded images that `Gemma3Model.forward` merges in place of running the tower itself (its
    `get_placeholder_mask` + `masked_scatter`, in the prefill only); `token_type_ids` keep Gemma 3's
    bidirectional attention within each image. Needs transformers >= 5.18.
    """
    supports = getattr(model, "_supports_mm_encoder_outputs", None)  # absent before transformers 5.18
    if supports is None or not supports():
        import transformers

        raise EngineConfigError(
            f"The slide report needs transformers >= 5.18 (pre-encoded images); this is {transformers.__version__}."
        )
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    features = torch.cat(list(image_features(model, pixel_chunks)))
    out = model.generate(
        input_ids=input_ids,
        attention_mask=attention_mask,
        token_type_ids=token_type_ids,
        mm_encoder_outputs={"image": BaseModelOutputWithPooling(pooler_output=features)},
        max_new_tokens=max_new_tokens,
        do_sample=False,
        top_p=None,
        top_k=None,
        suppress_tokens=list(suppress_tokens) or None,
    )
    return out[:, input_ids.shape[1] :]
