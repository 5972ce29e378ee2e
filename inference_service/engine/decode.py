"""The explanation's decode levers, as arguments to transformers' `generate`.

A decode step reads the weights once (1.8 ms on an H200) but took 53-64 ms: launch and Python
overhead (docs/BENCHMARKS.md). Two ways to spend less on it, each a lever (`DecodeOptions`):

- fewer steps: `stop="sentence"` ends each row once its answer word and first sentence are written
  (`explanation_complete`): what is stored is then the same as with the whole token budget, and
  the batch ends when its last row does;
- cheaper steps: `cache="static"` preallocates the KV cache (shapes fixed from step to step), and
  `compile` compiles the decode step on it (`reduce-overhead`: CUDA graphs). transformers compiles
  on its own whenever the cache is static on CUDA, in reduce-overhead mode, which is the
  combination that segfaulted on the reference stack: here a static cache alone is run with
  `disable_compile=True`, and compiling is a separate, opt-in lever that a child process tries
  first (`canary.py`).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import StoppingCriteria

from inference_service.engine.fast_paths import DecodeOptions
from inference_service.engine.prompt import explanation_complete


def generate_kwargs(options: DecodeOptions) -> dict[str, Any]:
    """The `generate` arguments for the cache and compile levers ({} for the defaults)."""
    if options.cache != "static":
        return {}
    kwargs: dict[str, Any] = {"cache_implementation": "static"}
    if options.compile == "off":
        kwargs["disable_compile"] = True
        return kwargs
    from transformers import CompileConfig

    # dynamic=False: one graph per batch size (warm-up runs each of the batcher's sizes).
    kwargs["compile_config"] = CompileConfig(mode=options.compile, fullgraph=False, dynamic=False)
    kwargs["disable_compile"] = False
    return kwargs


class SentenceStop(StoppingCriteria):
    """Per row: done once the text generated so far is a complete answer word + first sentence.

    Decodes each row's new tokens at every step (a few ms at batch 64 with the fast tokenizer,
    against a decode step of tens of ms); rows already done stay done (transformers pads them).
    """

    def __init__(self, tokenizer: Any, prompt_len: int) -> None:
        self._tokenizer = tokenizer
        self._prompt_len = prompt_len

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        texts = self._tokenizer.batch_decode(input_ids[:, self._prompt_len :].tolist(), skip_special_tokens=True)
        done = torch.tensor([explanation_complete(text) for text in texts], dtype=torch.bool)
        return done.to(input_ids.device)  # type: ignore[return-value]
