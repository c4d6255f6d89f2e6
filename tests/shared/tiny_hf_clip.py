"""A tiny random-weight transformers `CLIPModel` saved as a folder (the layout of openai/clip-vit-base-patch32)."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import CLIPConfig, CLIPModel

from shared.encoders.clip_tokenizer import clip_tokenizer


def tiny_clip_model(image_size: int = 32, projection_dim: int = 16, seed: int = 0) -> CLIPModel:
    torch.manual_seed(seed)
    small = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
    config = CLIPConfig(
        text_config=small | {"max_position_embeddings": 77, "vocab_size": 49408},
        vision_config=small | {"image_size": image_size, "patch_size": 8},
        projection_dim=projection_dim,
    )
    return CLIPModel(config).eval()


def save_tiny_clip(folder: Path, with_tokenizer: bool = True, **kwargs) -> Path:
    """`tiny_clip_model(**kwargs)` saved with save_pretrained (and SD 1.x's CLIP tokenizer beside it)."""
    tiny_clip_model(**kwargs).save_pretrained(folder)
    if with_tokenizer:
        clip_tokenizer().save_pretrained(folder)
    return folder
