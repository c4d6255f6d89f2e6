"""The toy CLIP (arXiv:2103.00020): a transformers `CLIPModel` at toy size, the stand-in for CLIP ViT-L/14.

AudioToken (arXiv:2305.13050) meets CLIP ViT-L/14 twice: Stable Diffusion 1.x's text encoder is its text tower,
and the metrics (sec. 2.2: zero-shot class agreement, image-image similarity, the best-frame choice) use its image
tower. The toy pipeline trains one small CLIP on the toy frames and uses it in both places, so the toy SD's text
encoder is `text_encoder_from_clip(clip)`.

Images enter as the toy pipeline's frames ([B, 3, H, W] in [-1, 1]) through `clip_pixel_values`: a bicubic
resize to the vision tower's square side (the toy frames' 64 x 40 are stretched, not cropped: a centre crop
would cut the toy shapes near the edges) and CLIP's mean / std normalisation.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import CLIPConfig, CLIPModel, CLIPTextModel, CLIPVisionConfig

from projects.audiotoken.models.stable_diffusion import toy_text_config
from shared.runs import UserError

# OpenAI CLIP's image normalisation (`openai/CLIP`, `clip/clip.py`, `_transform`)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def toy_clip_model(seed: int = 0, layers: int = 2) -> CLIPModel:
    """CLIP at toy size: ViT on 64 x 64 images with 8 x 8 patches, width 64; the toy SD's text tower (width 64,
    SD 1.x's vocabulary and 77 positions); a 64-d joint embedding."""
    torch.manual_seed(seed)
    vision = CLIPVisionConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=layers,
        num_attention_heads=2,
        image_size=64,
        patch_size=8,
        hidden_act="quick_gelu",
    )
    text = toy_text_config()
    text.num_hidden_layers = layers
    config = CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=64)
    return CLIPModel(config)


def load_clip(folder: str | Path) -> CLIPModel:
    """A `save_pretrained` CLIPModel folder (the toy CLIP stage's `<run>/clip/`, or a real one), frozen."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise UserError(f"{folder}: not a CLIPModel folder (no config.json); train the toy CLIP stage first")
    return CLIPModel.from_pretrained(folder).requires_grad_(False).eval()


def text_encoder_from_clip(clip: CLIPModel) -> CLIPTextModel:
    """CLIP's text tower as the `CLIPTextModel` Stable Diffusion uses (a copy; `last_hidden_state` conditions
    the UNet)."""
    encoder = CLIPTextModel(clip.config.text_config)
    encoder.load_state_dict(clip.text_model.state_dict())
    return encoder


def clip_pixel_values(image: torch.Tensor, size: int) -> torch.Tensor:
    """Images [B, 3, H, W] in [-1, 1] -> CLIP's normalised pixel values [B, 3, size, size]."""
    pixels = (image.float() + 1) / 2
    if pixels.shape[-2:] != (size, size):
        pixels = F.interpolate(pixels, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
    mean = pixels.new_tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = pixels.new_tensor(CLIP_STD).view(1, 3, 1, 1)
    return (pixels.clamp(0, 1) - mean) / std


def class_prompts(class_names: list[str], template: str = "a photo of a {}") -> list[str]:
    return [template.format(name) for name in class_names]


@torch.no_grad()
def zero_shot_logits(clip: CLIPModel, tokenizer, image: torch.Tensor, prompts: list[str]) -> torch.Tensor:
    """CLIP's zero-shot classifier (arXiv:2103.00020, sec. 3.1.2): cosine similarity x logit scale [B, C]."""
    ids = tokenizer(prompts, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    pixels = clip_pixel_values(image, clip.config.vision_config.image_size)
    out = clip(input_ids=ids.input_ids.to(image.device), pixel_values=pixels.to(image.device))
    return out.logits_per_image
