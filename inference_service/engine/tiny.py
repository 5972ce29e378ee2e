"""A tiny, randomly initialised Gemma 3 checkpoint built from the real transformers classes.

It lets the whole engine path (processor, chat template, image tokens, left-padded batches,
logits and generate) run offline and in CI in seconds. Its answers are meaningless, and its
manifest says so, so every verdict it produces carries that warning in `model_id`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inference_service.engine.manifest import write_manifest

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

TINY_MODEL_ID = "healer/tiny-random-gemma3 (NOT MedGemma: answers are meaningless)"
TINY_REVISION = "tiny-v2"  # v2: MedGemma 1.5's thinking markers in the vocabulary
TINY_IMAGE_SIZE = 224
TINY_IMAGE_SEQ_LENGTH = 16  # 224 px / patch 14 = 16x16 patches, pooled 4x4 into 16 soft tokens
VOCAB_SIZE = 1024
SEED = 1234
PROJECTOR_STD = 1.0

# Gemma 3's special tokens; the first five take the real vocabulary's ids (pad 0, eos 1, bos 2...).
SPECIAL_TOKENS = [
    "<pad>",
    "<eos>",
    "<bos>",
    "<unk>",
    "<mask>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<start_of_image>",
    "<end_of_image>",
    "<image_soft_token>",
]

# MedGemma 1.5 may open a thinking trace with `<unused94>` (closed by `<unused95>`): ordinary
# tokens of Gemma's vocabulary, not special ones (they survive `skip_special_tokens`). The tiny
# vocabulary has them too, so the engine's handling of them runs in the tests.
THINKING_TOKENS = ["<unused94>", "<unused95>"]

# Enough histopathology words that a random model's greedy output decodes to readable tokens,
# and "Yes"/"No" become single tokens, as they are in Gemma's real vocabulary.
CORPUS = [
    "Yes. No. Yes, No, yes no YES NO Answer: Yes. Answer: No.\n\n",
    "user\nmodel\n",
    "Does this image show colorectal cancer? Answer Yes or No, then explain in one sentence.",
    "You are an expert pathologist reading a colorectal histopathology patch stained with H&E.",
    "Yes. The tissue shows irregular crowded glands with enlarged hyperchromatic nuclei.",
    "No. The tissue shows normal colon mucosa with regular crypts and preserved architecture.",
    "No. The patch shows adipose tissue, debris, lymphocytes, smooth muscle, mucus or background.",
    "Yes, invasive adenocarcinoma with necrosis, atypia and mitoses is visible in the stroma.",
    "No, the epithelium is benign and well differentiated without malignant features.",
    "The image is consistent with carcinoma because the cells are pleomorphic and disorganized.",
    "The features suggest a benign tumour; inflammation and fat are seen but no cancer.",
]


# Gemma 3's chat template, reduced to what one user turn with an image needs. The real MedGemma
# snapshot ships its own template; the engine relies only on `apply_chat_template`.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- for message in messages -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\n' }}"
    "{%- if message['content'] is string -%}{{ message['content'] | trim }}"
    "{%- else -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{{ '<start_of_image>' }}"
    "{%- elif item['type'] == 'text' -%}{{ item['text'] | trim }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{ '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)


def _tokenizer() -> PreTrainedTokenizerBase:
    """Gemma's own tokenizer pipeline (BPE, "▁" for spaces, byte fallback) over a tiny trained vocab.

    transformers 5 rebuilds `GemmaTokenizer` from the vocab and merges in tokenizer.json, so a BPE
    vocabulary (unlike a WordLevel one) tokenizes the same text the same way after a reload.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GemmaTokenizer  # transformers 5's GemmaTokenizerFast is this class

    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    # Metaspace keeps merges inside words, so they also apply under Gemma's whole-string pipeline.
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never")
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE, special_tokens=SPECIAL_TOKENS, min_frequency=1, show_progress=False
    )
    backend.train_from_iterator(CORPUS * 4, trainer)
    trained = json.loads(backend.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in trained["merges"]]
    tokenizer = GemmaTokenizer(
        vocab=trained["vocab"],
        merges=merges,  # type: ignore[arg-type]  # pairs, as the BPE model takes them (annotated as str)
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        mask_token="<mask>",
        padding_side="left",
        extra_special_tokens={
            "boi_token": "<start_of_image>",
            "eoi_token": "<end_of_image>",
            "image_token": "<image_soft_token>",
        },
        chat_template=CHAT_TEMPLATE,
    )
    # Registered as special so the turn and image markers are never split into characters.
    tokenizer.add_tokens(SPECIAL_TOKENS[5:], special_tokens=True)
    tokenizer.add_tokens(THINKING_TOKENS)
    return tokenizer


def _config(tokenizer: PreTrainedTokenizerBase):  # -> Gemma3Config
    from transformers import Gemma3Config, Gemma3TextConfig, SiglipVisionConfig

    ids: dict[str, int] = {}
    for token in SPECIAL_TOKENS:
        token_id = tokenizer.convert_tokens_to_ids(token)
        assert isinstance(token_id, int)
        ids[token] = token_id
    text = Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        query_pre_attn_scalar=16,
        max_position_embeddings=1024,
        sliding_window=64,
        layer_types=["sliding_attention", "full_attention"],  # both kinds, as in Gemma 3's 5:1 pattern
        pad_token_id=ids["<pad>"],
        eos_token_id=[ids["<eos>"], ids["<end_of_turn>"]],
        bos_token_id=ids["<bos>"],
    )
    vision = SiglipVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=TINY_IMAGE_SIZE,
        patch_size=14,
        vision_use_head=False,
    )
    return Gemma3Config(
        text_config=text,
        vision_config=vision,
        mm_tokens_per_image=TINY_IMAGE_SEQ_LENGTH,
        boi_token_index=ids["<start_of_image>"],
        eoi_token_index=ids["<end_of_image>"],
        image_token_index=ids["<image_soft_token>"],
    )


def build_processor(image_size: int = TINY_IMAGE_SIZE, image_seq_length: int = TINY_IMAGE_SEQ_LENGTH) -> Any:
    """A `Gemma3Processor` (the tiny tokenizer, Gemma 3's image processor at `image_size` px, the
    chat template). `make bench-gpu` uses it at MedGemma's 896 px / 256 image tokens."""
    from transformers import Gemma3ImageProcessor, Gemma3Processor

    image_processor = Gemma3ImageProcessor(
        size={"height": image_size, "width": image_size},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    return Gemma3Processor(
        image_processor=image_processor,
        tokenizer=_tokenizer(),
        chat_template=CHAT_TEMPLATE,
        image_seq_length=image_seq_length,
    )


def build_tiny_checkpoint(out_dir: str | Path) -> Path:
    """Write a deterministic tiny random Gemma 3 checkpoint (model, processor, manifest) to `out_dir`.

    It reloads with `AutoProcessor` / `AutoModelForImageTextToText`; under 1 MB, seconds on CPU.
    """
    import torch
    from transformers import Gemma3ForConditionalGeneration

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    processor = build_processor()
    tokenizer = processor.tokenizer
    config = _config(tokenizer)
    torch.manual_seed(SEED)
    model = Gemma3ForConditionalGeneration(config).eval()
    with torch.no_grad():
        # transformers zero-initialises the image projector (to be trained later), which would make
        # a random model blind to its image; random weights let every image move p_yes.
        projector = model.model.multi_modal_projector.mm_input_projection_weight
        projector.normal_(0.0, PROJECTOR_STD)
    gen = model.generation_config
    gen.pad_token_id = config.text_config.pad_token_id
    gen.eos_token_id = config.text_config.eos_token_id
    gen.bos_token_id = config.text_config.bos_token_id
    gen.do_sample = False
    model.save_pretrained(out)
    processor.save_pretrained(out)
    write_manifest(out, model_id=TINY_MODEL_ID, revision=TINY_REVISION, source="generated")
    return out
