"""CLIP (arXiv:2103.00020) image and text embeddings from a transformers `CLIPModel` folder, for the metrics of
AudioToken (arXiv:2305.13050, sec. 2.2: IIS compares CLIP image embeddings, AIC classifies zero-shot and
matches class names by their CLIP text similarity) and as a frozen image target (`shared.wav2clip_training`).

The folder is what `CLIPModel.save_pretrained` writes: the released `openai/clip-vit-base-patch32` and
`openai/clip-vit-large-patch14` have this layout, and so does a toy CLIP trained here. Its tokenizer is the
folder's own `CLIPTokenizer` when it has one, else SD 1.x's (`shared.encoders.clip_tokenizer`), which is
OpenAI CLIP's.

Images are preprocessed as CLIP's own transform does (`openai/CLIP`, `clip/clip.py`, `_transform`; transformers'
`CLIPImageProcessor` likewise), written with torch ops so that a batch on any device is preprocessed at once:
the shorter side resized to the model's image size (bicubic, antialiased as PIL's resize is, then clamped to
[0, 1] as PIL's 8-bit output is), the centre square cropped, then CLIP's mean and std. Images come in [-1, 1]
(what the generators and DataModules give), [B, 3, H, W] RGB.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPModel, CLIPTokenizer
from transformers.utils.constants import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from shared.encoders.clip_tokenizer import clip_tokenizer
from shared.runs import UserError


def resize_shorter_and_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """[B, 3, H, W] in [0, 1] -> [B, 3, size, size]: the shorter side to `size` (bicubic, antialiased,
    the longer one scaled alike and truncated, as torchvision's and transformers' resize compute it), then
    the centre square (the top-left corner rounded as torchvision's `center_crop`, which OpenAI's transform
    uses; transformers' `CLIPImageProcessor` floors it instead, one pixel apart when the margin is odd)."""
    height, width = images.shape[-2:]
    short, long = min(height, width), max(height, width)
    scaled = (size, int(size * long / short))
    out_size = scaled if height <= width else scaled[::-1]
    if (height, width) != out_size:
        images = F.interpolate(images, size=out_size, mode="bicubic", align_corners=False, antialias=True)
        images = images.clamp(0, 1)
    top = round((out_size[0] - size) / 2.0)
    left = round((out_size[1] - size) / 2.0)
    return images[..., top : top + size, left : left + size]


def resize_to_square(images: torch.Tensor, size: int) -> torch.Tensor:
    """[B, 3, H, W] in [0, 1] -> [B, 3, size, size], stretched (bicubic, antialiased): nothing is cut off."""
    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(
        images, size=(size, size), mode="bicubic", align_corners=False, antialias=True
    ).clamp(0, 1)


class CLIPImageText(nn.Module):
    """A frozen CLIP: `encode_images`, `encode_texts` (both L2-normalised [B, E]) and `zero_shot`.

    Eval mode for good: a parent's `.train()` does not reach it, and no parameter takes gradients.
    """

    def __init__(self, model: CLIPModel, tokenizer: CLIPTokenizer | None = None, crop: bool = True):
        super().__init__()
        self.crop = crop  # OpenAI's centre crop; False stretches to a square (as the toy CLIP was trained)
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer if tokenizer is not None else clip_tokenizer()
        self.image_size = model.config.vision_config.image_size
        self.max_length = min(
            self.tokenizer.model_max_length, model.config.text_config.max_position_embeddings
        )
        self.embed_dim = model.config.projection_dim
        self.register_buffer("mean", torch.tensor(OPENAI_CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(OPENAI_CLIP_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> CLIPImageText:
        return super().train(False)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in [-1, 1] -> CLIP's pixel values [B, 3, S, S]."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected RGB images [B, 3, H, W] in [-1, 1], got {tuple(images.shape)}")
        images = ((images.float() + 1) / 2).clamp(0, 1)
        square = resize_shorter_and_crop if self.crop else resize_to_square
        return (square(images, self.image_size) - self.mean) / self.std

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in [-1, 1] -> L2-normalised image embeddings [B, E]."""
        out = self.model.get_image_features(pixel_values=self.preprocess(images))
        return F.normalize(_features(out).float(), dim=-1)

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """Strings -> L2-normalised text embeddings [B, E] (each truncated to the model's positions)."""
        if isinstance(texts, str):
            raise TypeError("expected a sequence of texts, got one string")
        tokens = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.mean.device)
        out = self.model.get_text_features(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask)
        return F.normalize(_features(out).float(), dim=-1)

    def zero_shot(
        self, images: torch.Tensor, class_names: Sequence[str], template: str = "{}"
    ) -> torch.Tensor:
        """The index of each image's most similar class prompt (`template` filled with the class name) [B].

        The argmax of the cosines is that of CLIP's scaled logits, so the logit scale plays no part."""
        prompts = self.encode_texts([template.format(name) for name in class_names])
        return (self.encode_images(images) @ prompts.T).argmax(dim=-1)


def _features(out) -> torch.Tensor:
    """transformers < 5 returns the projected embeddings, 5.x an output whose pooler_output they are."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def load_clip_image_text(root: str | Path, crop: bool = True) -> CLIPImageText:
    """A frozen `CLIPImageText` from a `CLIPModel.save_pretrained` folder (local files only: no download)."""
    root = Path(root)
    if not (root / "config.json").is_file():
        raise UserError(
            f"{root}: not a CLIPModel folder (no config.json; expected what save_pretrained writes)"
        )
    try:
        model = CLIPModel.from_pretrained(root, local_files_only=True)
    except (OSError, ValueError) as error:
        raise UserError(f"{root}: cannot load a CLIPModel ({str(error).splitlines()[0]})") from error
    tokenizer = CLIPTokenizer.from_pretrained(root, local_files_only=True) if _has_tokenizer(root) else None
    return CLIPImageText(model, tokenizer, crop)


def _has_tokenizer(root: Path) -> bool:
    """A saved tokenizer: `tokenizer.json` (transformers 5) or the slow tokenizer's `vocab.json` + `merges.txt`."""
    return (root / "tokenizer.json").is_file() or (
        (root / "vocab.json").is_file() and (root / "merges.txt").is_file()
    )
