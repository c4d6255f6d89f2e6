"""Tiny TiVA parts for fast tests: S, T, G, an AudioLDM2-format folder with a small VAE and vocoder, a batch."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL
from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

from projects.tiva.models import LayoutConditionedUNet, LayoutPredictor, SemanticEncoder

N_FRAMES, LAYOUT, CLIP_DIM, CONTEXT = 12, (12, 5), 8, 12
WAVE = 32 * 160  # 32 mel frames: a latent of 8 x 16 under the x4 VAE


def tiny_predictor(**kw) -> LayoutPredictor:
    args = dict(
        clip_dim=CLIP_DIM,
        n_layers=3,
        n_frames=N_FRAMES,
        layout_size=LAYOUT,
        width=16,
        heads=2,
        enc_depth=1,
        dec_depth=1,
        window=3,
    )
    return LayoutPredictor(**(args | kw)).eval()


def tiny_unet_config() -> dict:
    return {
        "sample_size": (16, 8), "in_channels": 5, "out_channels": 5,
        "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
        "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
        "block_out_channels": (16, 32), "layers_per_block": 1, "cross_attention_dim": CONTEXT,
        "attention_head_dim": 4, "norm_num_groups": 8,
    }  # fmt: skip


def tiny_networks(**predictor) -> dict:
    torch.manual_seed(0)
    return {
        "semantic": SemanticEncoder(clip_dim=CLIP_DIM, context_dim=CONTEXT),
        "layout_predictor": tiny_predictor(**predictor),
        "generator": LayoutConditionedUNet(tiny_unet_config()),
    }


def save_tiny_audioldm(root: Path, vocoder: bool = True) -> tuple[AutoencoderKL, SpeechT5HifiGan]:
    """A small VAE (x4 down, 4 latent channels) and HiFi-GAN in `root/vae`, `root/vocoder` (diffusers' layout)."""
    torch.manual_seed(0)
    vae = AutoencoderKL(
        in_channels=1, out_channels=1, down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3, block_out_channels=(8, 8, 8), layers_per_block=1,
        latent_channels=4, norm_num_groups=4, scaling_factor=0.5,
    )  # fmt: skip
    hifigan = SpeechT5HifiGan(
        SpeechT5HifiGanConfig(
            model_in_dim=64, upsample_initial_channel=64, upsample_rates=[5, 4, 2, 2, 2],
            upsample_kernel_sizes=[10, 8, 4, 4, 4], resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1]],
            normalize_before=False,
        )
    )  # fmt: skip
    vae.save_pretrained(root / "vae")
    if vocoder:
        hifigan.save_pretrained(root / "vocoder")
    return vae.eval(), hifigan.eval()


def tiny_tiva(root: Path, stage: str = "joint", predictor: dict | None = None, **kwargs):
    from projects.tiva.models import SamplingSettings
    from projects.tiva.module_tiva import TiVA

    kwargs.setdefault(
        "sampling", SamplingSettings(steps=2, layout="none" if stage == "no_layout" else "predicted")
    )
    return TiVA(
        **tiny_networks(**(predictor or {})),
        audioldm_root=str(root),
        stage=stage,
        layout_size=LAYOUT,
        **kwargs,
    )


def tiny_batch(n: int = 2, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(WAVE) / 16000
    bursts = (torch.rand(n, 1, generator=generator) * 0.2 + 0.05 < t) & (t < 0.25)
    wave = 0.5 * torch.sin(2 * torch.pi * 440 * t) * bursts + 0.01 * torch.randn(n, WAVE, generator=generator)
    return {
        "wave": wave,
        "clip_cls": torch.randn(n, N_FRAMES, 3, CLIP_DIM, generator=generator),
        "clip_patch": torch.randn(n, N_FRAMES, 3, CLIP_DIM, generator=generator),
        "clip_id": [f"clip{i}" for i in range(n)],
    }


def assert_close_to_scale(actual: torch.Tensor, expected: torch.Tensor, rel: float = 1e-5) -> None:
    """Equal up to `rel` times the largest magnitude of `expected`: float32 sums taken in another order (another
    batch size, another kernel) differ by a few ulps of the largest terms, whatever the values' scale."""
    torch.testing.assert_close(actual, expected, rtol=0, atol=rel * expected.abs().max().item())


def differ_at_scale(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-3) -> bool:
    """Whether a and b differ by more than `rel` times the largest magnitude of `b` somewhere."""
    return (a - b).abs().max().item() > rel * b.abs().max().item()
