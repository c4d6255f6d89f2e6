"""AudioLDM2's frozen parts that TiVA reuses: the mel VAE and the HiFi-GAN vocoder (paper sec. 4.1.1), loaded
through diffusers / transformers from a local folder in the layout of diffusers' `cvssp/audioldm2` snapshot
(`<root>/vae`, `<root>/vocoder`), never downloaded.

    vae, vocoder = load_frozen_parts("/models/audioldm2", vocoder="hifigan")
    z = encode_mel(vae, logmel)          # [B, 64, 1024] -> [B, 8, 256, 16], times scaling_factor
    logmel = decode_latents(vae, z)      # and back
    wave = vocoder(logmel)               # [B, 163,840] at 16 kHz

The VAE sees the log-mel as a one-channel image with time as its height, [B, 1, T, 64], and its latent is
scaled by the `scaling_factor` of its config (`cvssp/audioldm2` `vae/config.json`: 0.4110932946205139, the
latent-diffusion `scale_by_std` rule; the toy VAE stores its own). The vocoder (`audioldm2/hifigan/models_v2.py`; transformers' `SpeechT5HifiGan`) takes time-major mels
[B, T, 64] and gives 160 samples per frame plus 32, cut here to T x 160. The vocoder is chosen, never guessed:
"hifigan" needs `<root>/vocoder` and fails naming the folder when it is missing; "griffin_lim" (the toy
configs, whose stand-in VAE comes without a vocoder) inverts AudioLDM2's mel with Griffin-Lim.

`frozen_parts_state` / `frozen_parts_from_state` put both parts (configs and weights) into a checkpoint and
back, so that a run whose VAE is a stand-in trained by an earlier stage carries it (`TiVA.bundle_frozen_parts`).
`paper_vae_config()` / `paper_vocoder_config()` build random-weight parts of AudioLDM2's sizes for tests and
parameter counts.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from torch import nn
from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

from shared.audio import GriffinLimVocoder, MelFrontEnd
from shared.runs import UserError

HOP = 160
VOCODERS = ("hifigan", "griffin_lim")
FROZEN_PARTS_KEY = "tiva_frozen_parts"  # where a checkpoint carries them (`frozen_parts_state`)


def paper_vae_config() -> dict:
    return {
        "in_channels": 1,
        "out_channels": 1,
        "down_block_types": ("DownEncoderBlock2D",) * 3,
        "up_block_types": ("UpDecoderBlock2D",) * 3,
        "block_out_channels": (128, 256, 512),
        "layers_per_block": 2,
        "latent_channels": 8,
        "norm_num_groups": 32,
        "sample_size": 1024,
        "scaling_factor": 0.4110932946205139,  # as in AudioLDM2's vae/config.json; loading reads the file's
        "force_upcast": True,
    }


def paper_vocoder_config() -> SpeechT5HifiGanConfig:
    return SpeechT5HifiGanConfig(
        model_in_dim=64,
        sampling_rate=16000,
        upsample_initial_channel=1024,
        upsample_rates=[5, 4, 2, 2, 2],
        upsample_kernel_sizes=[16, 16, 8, 4, 4],
        resblock_kernel_sizes=[3, 7, 11],
        resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5], [1, 3, 5]],
        leaky_relu_slope=0.1,
        normalize_before=False,
    )


def _subfolder(root: str | Path, name: str, fix: str = "") -> Path:
    folder = Path(root) / name
    if not (folder / "config.json").is_file():
        raise UserError(
            f"{folder}: no config.json; `audioldm_root` ({root}) must be a local snapshot of cvssp/audioldm2 "
            f"with {name}/ in it{fix}"
        )
    return folder


def load_vae(root: str | Path) -> AutoencoderKL:
    _subfolder(root, "vae")
    vae = AutoencoderKL.from_pretrained(str(root), subfolder="vae", local_files_only=True)
    return vae.requires_grad_(False).eval()


class HiFiGanVocoder(nn.Module):
    """AudioLDM2's vocoder on our mel layout: log-mel [B, 64, T] -> waveform [B, T * 160]."""

    def __init__(self, hifigan: SpeechT5HifiGan):
        super().__init__()
        self.hifigan = hifigan.requires_grad_(False).eval()

    @torch.no_grad()
    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        return self.hifigan(logmel.transpose(1, 2))[..., : logmel.shape[-1] * HOP]


def load_vocoder(root: str | Path) -> HiFiGanVocoder:
    _subfolder(root, "vocoder", fix=" (or set `vocoder: griffin_lim` to invert the mel with Griffin-Lim)")
    return HiFiGanVocoder(
        SpeechT5HifiGan.from_pretrained(str(root), subfolder="vocoder", local_files_only=True)
    )


def griffin_lim_vocoder() -> GriffinLimVocoder:
    return GriffinLimVocoder(MelFrontEnd.from_preset("audioldm"))


def load_frozen_parts(root: str | Path, vocoder: str = "hifigan") -> tuple[AutoencoderKL, nn.Module]:
    """The frozen VAE of `<root>/vae` and the vocoder: AudioLDM2's HiFi-GAN of `<root>/vocoder` ("hifigan") or
    Griffin-Lim on AudioLDM2's mel ("griffin_lim")."""
    if vocoder not in VOCODERS:
        raise ValueError(f"vocoder must be one of {VOCODERS}, got {vocoder!r}")
    return load_vae(root), load_vocoder(root) if vocoder == "hifigan" else griffin_lim_vocoder()


def frozen_parts_state(vae: AutoencoderKL, vocoder: nn.Module) -> dict:
    """Configs and weights of the VAE and the vocoder, as plain containers and tensors (for a checkpoint)."""
    state = {"vae": {"config": dict(vae.config), "state_dict": vae.state_dict()}}
    if isinstance(vocoder, HiFiGanVocoder):
        config = vocoder.hifigan.config.to_dict()
        state["vocoder"] = {"kind": "hifigan", "config": config, "state_dict": vocoder.state_dict()}
    elif isinstance(vocoder, GriffinLimVocoder):
        state["vocoder"] = {"kind": "griffin_lim"}
    else:
        raise TypeError(f"cannot store a {type(vocoder).__name__} vocoder")
    return state


def frozen_parts_from_state(state: dict) -> tuple[AutoencoderKL, nn.Module]:
    """The VAE and vocoder that `frozen_parts_state` stored, frozen and in eval mode."""
    vae = AutoencoderKL.from_config(state["vae"]["config"])
    vae.load_state_dict(state["vae"]["state_dict"])
    vocoder_state = state["vocoder"]
    if vocoder_state["kind"] == "griffin_lim":
        vocoder = griffin_lim_vocoder()
    else:
        vocoder = HiFiGanVocoder(SpeechT5HifiGan(SpeechT5HifiGanConfig.from_dict(vocoder_state["config"])))
        vocoder.load_state_dict(vocoder_state["state_dict"])
    return vae.requires_grad_(False).eval(), vocoder


def mel_posterior(vae: AutoencoderKL, logmel: torch.Tensor) -> DiagonalGaussianDistribution:
    """log-mel [B, F, T] -> the VAE's posterior over unscaled latents [B, c, T / 4, F / 4]."""
    down = 2 ** (len(vae.config.block_out_channels) - 1)
    if logmel.shape[-1] % down or logmel.shape[-2] % down:
        # the VAE would floor the odd frames away and decode a shorter mel than it was given
        raise ValueError(f"log-mel of {tuple(logmel.shape[-2:])} (mels, frames): both must divide by {down}")
    return vae.encode(logmel.transpose(1, 2)[:, None].to(vae.dtype)).latent_dist


def sample_latents(
    vae: AutoencoderKL, posterior: DiagonalGaussianDistribution, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A scaled latent sample of the posterior (AudioLDM2 trains on posterior samples, not means)."""
    return posterior.sample(generator) * vae.config.scaling_factor


def encode_mel(
    vae: AutoencoderKL, logmel: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """log-mel [B, F, T] -> scaled latent sample [B, c, T / 4, F / 4]."""
    return sample_latents(vae, mel_posterior(vae, logmel), generator)


def decode_latents(vae: AutoencoderKL, z: torch.Tensor) -> torch.Tensor:
    """scaled latent [B, c, h, w] -> log-mel [B, F, T]."""
    return vae.decode(z.to(vae.dtype) / vae.config.scaling_factor).sample[:, 0].transpose(1, 2).float()
