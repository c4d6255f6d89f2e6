"""Stable Diffusion 1.x's diffusers parts: loading a real folder, saving one, and building a toy one.

AudioToken (arXiv:2305.13050, sec. 2.1) adapts a frozen Stable Diffusion, the latent diffusion model of
arXiv:2112.10752 whose text encoder is CLIP ViT-L/14's text tower (arXiv:2103.00020); only the audio Embedder
trains. Its weights cannot be fetched here, so the toy pipeline builds the same diffusers / transformers classes
at toy sizes (`toy_stable_diffusion`), trains them on the toy frames and writes them in the diffusers layout
(`save_stable_diffusion`); the AudioToken stage then loads either folder through the same `load_stable_diffusion`.

The training noise schedule is the folder's own scheduler config read as a `DDPMScheduler`, as the official code
(`guyyariv/AudioToken`, `train.py`, after diffusers' textual-inversion example) does: for SD 1.4 that is 1000
steps, scaled-linear betas 0.00085-0.012, epsilon prediction.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    DDPMScheduler,
    PNDMScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from shared.encoders.clip_tokenizer import clip_tokenizer
from shared.files import atomic_folder
from shared.runs import UserError

SUBFOLDERS = ("tokenizer", "text_encoder", "vae", "unet", "scheduler")

# SD 1.4's `scheduler/scheduler_config.json` (CompVis/stable-diffusion-v1-4): its inference scheduler is PNDM
# (PLMS steps only); the same betas drive the DDPM training schedule.
SD14_SCHEDULE = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    prediction_type="epsilon",
    clip_sample=False,
)
SD14_PNDM_OPTIONS = dict(skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False)


@dataclass
class StableDiffusionParts:
    """The parts of a Stable Diffusion 1.x model that AudioToken uses (all frozen, eval mode).

    `noise_scheduler` is the training schedule (DDPM); latents are `vae.encode(x).latent_dist.sample()
    * scaling_factor` (0.18215 for SD 1.x, chosen so the latents have about unit variance).
    """

    tokenizer: CLIPTokenizer
    text_encoder: CLIPTextModel
    vae: AutoencoderKL
    unet: UNet2DConditionModel
    noise_scheduler: DDPMScheduler
    scaling_factor: float

    def modules(self) -> tuple[torch.nn.Module, ...]:
        return self.text_encoder, self.vae, self.unet


def freeze(parts: StableDiffusionParts) -> StableDiffusionParts:
    for module in parts.modules():
        module.requires_grad_(False).eval()
    return parts


def load_stable_diffusion(root: str | Path) -> StableDiffusionParts:
    """Load a diffusers Stable Diffusion 1.x folder (tokenizer/, text_encoder/, vae/, unet/, scheduler/), frozen."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(
            f"{root}: no such Stable Diffusion folder (expected the diffusers layout: {SUBFOLDERS})"
        )
    missing = [name for name in SUBFOLDERS if not (root / name).is_dir()]
    if missing:
        raise UserError(
            f"{root}: not a diffusers Stable Diffusion folder, missing {', '.join(f'{m}/' for m in missing)}"
        )
    vae = AutoencoderKL.from_pretrained(root, subfolder="vae")
    return freeze(
        StableDiffusionParts(
            tokenizer=CLIPTokenizer.from_pretrained(root, subfolder="tokenizer"),
            text_encoder=CLIPTextModel.from_pretrained(root, subfolder="text_encoder"),
            vae=vae,
            unet=UNet2DConditionModel.from_pretrained(root, subfolder="unet"),
            noise_scheduler=DDPMScheduler.from_pretrained(root, subfolder="scheduler"),
            scaling_factor=float(vae.config.scaling_factor),
        )
    )


def inference_pipeline(parts: StableDiffusionParts) -> StableDiffusionPipeline:
    """A `StableDiffusionPipeline` over `parts` with SD 1.4's PNDM inference scheduler and no safety checker."""
    return StableDiffusionPipeline(
        vae=parts.vae,
        text_encoder=parts.text_encoder,
        tokenizer=parts.tokenizer,
        unet=parts.unet,
        scheduler=PNDMScheduler.from_config(parts.noise_scheduler.config, **SD14_PNDM_OPTIONS),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def save_stable_diffusion(parts: StableDiffusionParts, folder: str | Path) -> Path:
    """Write `parts` as a diffusers SD 1.x folder (atomically), loadable by `load_stable_diffusion` and by
    `StableDiffusionPipeline.from_pretrained(folder, safety_checker=None)`; scheduler/ holds the PNDM config.
    """
    if parts.vae.config.scaling_factor != parts.scaling_factor:
        parts.vae.register_to_config(scaling_factor=parts.scaling_factor)
    folder = Path(folder)
    with atomic_folder(folder) as tmp:
        inference_pipeline(parts).save_pretrained(tmp, safe_serialization=True)
    return folder


def toy_text_config(vocab_size: int = 49408) -> CLIPTextConfig:
    """CLIP's text tower at toy size: SD 1.x's vocabulary and 77 positions, width 64."""
    return CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=77,
        projection_dim=64,
        hidden_act="quick_gelu",
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
    )


def toy_vae(scaling_factor: float = 0.18215) -> AutoencoderKL:
    """SD's AutoencoderKL at toy size: 3 levels (f = 4), 4 latent channels."""
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(16, 32, 32),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=64,
        scaling_factor=scaling_factor,
    )


def toy_unet(cross_attention_dim: int = 64, sample_size: int = 16) -> UNet2DConditionModel:
    """SD's UNet2DConditionModel at toy size: 2 levels, cross-attention on the text encoder's width.

    `sample_size` (latent side) x the VAE's factor 4 is the pipeline's default image side (64).
    """
    return UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=1,
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=8,
        norm_num_groups=8,
    )


def toy_stable_diffusion(
    text_encoder: CLIPTextModel | None = None, seed: int = 0, scaling_factor: float = 0.18215
) -> StableDiffusionParts:
    """The same classes as SD 1.x at toy sizes with random weights (the toy pipeline trains the VAE and UNet).

    `text_encoder` is the toy CLIP's text tower when given (as SD 1.x uses CLIP ViT-L/14's); else a random one.
    """
    torch.manual_seed(seed)
    if text_encoder is None:
        text_encoder = CLIPTextModel(toy_text_config())
    return freeze(
        StableDiffusionParts(
            tokenizer=clip_tokenizer(),
            text_encoder=text_encoder,
            vae=toy_vae(scaling_factor),
            unet=toy_unet(cross_attention_dim=text_encoder.config.hidden_size),
            noise_scheduler=DDPMScheduler(**SD14_SCHEDULE),
            scaling_factor=scaling_factor,
        )
    )
