"""TiVA's networks as plain nn.Modules (paper sec. 3.1-3.2) and AudioLDM2's frozen parts."""

from projects.tiva.models.audioldm import (
    HiFiGanVocoder,
    decode_latents,
    encode_mel,
    load_vae,
    load_vocoder,
    load_vocoder_or_griffin_lim,
    mel_posterior,
    paper_vae_config,
    paper_vocoder_config,
    sample_latents,
)
from projects.tiva.models.generator import LayoutConditionedUNet, paper_unet_config
from projects.tiva.models.layout import LOG_MEL_BOUNDS, audio_layout, layout_to_latent
from projects.tiva.models.layout_predictor import LayoutPredictor, window_mask
from projects.tiva.models.semantic import SemanticEncoder

__all__ = [
    "LOG_MEL_BOUNDS",
    "HiFiGanVocoder",
    "LayoutConditionedUNet",
    "LayoutPredictor",
    "SemanticEncoder",
    "audio_layout",
    "decode_latents",
    "encode_mel",
    "layout_to_latent",
    "load_vae",
    "load_vocoder",
    "load_vocoder_or_griffin_lim",
    "mel_posterior",
    "paper_unet_config",
    "paper_vae_config",
    "paper_vocoder_config",
    "sample_latents",
    "window_mask",
]
