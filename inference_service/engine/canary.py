"""A child process that tries a compiled decode (static KV cache + `torch.compile`) before the
service does: on the reference stack that combination in reduce-overhead mode died of a
segmentation fault, which no `try` in the service could have caught.

The child builds a tiny Gemma 3 (both attention kinds, a prompt longer than its sliding window,
an image) on the same device, stack and mode, and generates with it twice (compile, then replay).
If it dies, hangs or fails, `decode_compile_canary` says why and the lever stays off; the service
itself never runs the combination untried. A stack that crashes only at MedGemma's shapes would
still crash the service at warm-up, before `/readyz` turns 200: so the lever stays opt-in.

    python -m inference_service.engine.canary --mode reduce-overhead --device cuda
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

CANARY_TIMEOUT_S = 600.0
_ROOT = Path(__file__).resolve().parents[2]  # the directory holding inference_service/


def decode_compile_canary(
    mode: str, device: str = "cuda", timeout_s: float = CANARY_TIMEOUT_S, command: Sequence[str] | None = None
) -> str:
    """Run the canary (or `command`) in a child process: "" when it finished cleanly, else why not."""
    child = [sys.executable, "-m", "inference_service.engine.canary", "--mode", mode, "--device", device]
    argv = list(command or child)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(_ROOT), os.environ.get("PYTHONPATH")]))}
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, env=env, check=False)
    except subprocess.TimeoutExpired:
        return f"the canary of static cache + compile ({mode}) did not finish within {timeout_s:g} s"
    if done.returncode < 0:
        try:
            name = signal.Signals(-done.returncode).name
        except ValueError:
            name = f"signal {-done.returncode}"
        return f"the canary of static cache + compile ({mode}) died of {name}"
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        last = lines[-1][:200] if lines else "no message"
        return f"the canary of static cache + compile ({mode}) failed (exit {done.returncode}): {last}"
    return ""


def run(mode: str, device: str) -> None:
    """The child's work: a tiny Gemma 3 generating with a static cache, compiled in `mode`."""
    import torch
    from transformers import (
        CompileConfig,
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3TextConfig,
        SiglipVisionConfig,
    )

    text = Gemma3TextConfig(
        vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=16, sliding_window=16,
        layer_types=["sliding_attention", "full_attention"], max_position_embeddings=512,
    )  # fmt: skip
    vision = SiglipVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=56,
        patch_size=14, vision_use_head=False,
    )  # fmt: skip
    config = Gemma3Config(
        text_config=text, vision_config=vision, mm_tokens_per_image=4, image_token_index=500,
        boi_token_index=498, eoi_token_index=499,
    )  # fmt: skip
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    torch.manual_seed(0)
    model: Any = Gemma3ForConditionalGeneration(config)
    model = model.to(device=device, dtype=dtype).eval()
    batch, before, after = 2, 10, 30  # 45 prompt tokens: longer than the sliding window of 16
    ids = torch.cat(
        [
            torch.full((batch, 1), 2),
            torch.randint(10, 400, (batch, before)),
            torch.full((batch, 1), 498),
            torch.full((batch, 4), 500),
            torch.full((batch, 1), 499),
            torch.randint(10, 400, (batch, after)),
        ],
        dim=1,
    ).to(device)
    inputs = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "token_type_ids": (ids == 500).long(),
        "pixel_values": torch.randn(batch, 3, 56, 56, device=device, dtype=dtype),
    }
    compile_config = CompileConfig(mode=mode, fullgraph=False, dynamic=False)
    compile_config._compile_all_devices = device != "cuda"  # type: ignore[assignment]  # the CPU rehearses it
    with torch.inference_mode():
        for _ in range(2):  # the first call compiles (and records the graphs), the second replays
            model.generate(
                **inputs,
                max_new_tokens=8,
                min_new_tokens=8,
                do_sample=False,
                pad_token_id=0,
                cache_implementation="static",
                compile_config=compile_config,
                disable_compile=False,
            )
    if device == "cuda":
        torch.cuda.synchronize()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the child process; exit status 0 means the combination ran."""
    parser = argparse.ArgumentParser(description="try static cache + compiled decode on a tiny Gemma 3")
    parser.add_argument("--mode", default="reduce-overhead")
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args(argv)
    run(args.mode, args.device)
    return 0  # the parent reads the exit status only


if __name__ == "__main__":
    sys.exit(main())
