"""TiVA's networks as plain nn.Modules (paper sec. 3.1-3.2), AudioLDM2's frozen parts, and inference in one module."""

from projects.tiva.models.audioldm import (
    FROZEN_PARTS_KEY,
    HOP,
    VOCODERS,
    HiFiGanVocoder,
    decode_latents,
    encode_mel,
    frozen_parts_from_state,
    frozen_parts_state,
    load_frozen_parts,
    load_vae,
    load_vocoder,
    mel_posterior,
    paper_vae_config,
    paper_vocoder_config,
    sample_latents,
)
from projects.tiva.models.generator import LayoutConditionedUNet, paper_unet_config
from projects.tiva.models.layout import LOG_MEL_BOUNDS, audio_layout, layout_to_latent
from projects.tiva.models.layout_predictor import LayoutPredictor, padding_mask, window_mask
from projects.tiva.models.pipeline import SamplingSettings, TiVAPipeline, load_parts
from projects.tiva.models.semantic import SemanticEncoder

__all__ = [
    "FROZEN_PARTS_KEY",
    "HOP",
    "LOG_MEL_BOUNDS",
    "VOCODERS",
    "HiFiGanVocoder",
    "LayoutConditionedUNet",
    "LayoutPredictor",
    "SamplingSettings",
    "SemanticEncoder",
    "TiVAPipeline",
    "audio_layout",
    "decode_latents",
    "encode_mel",
    "frozen_parts_from_state",
    "frozen_parts_state",
    "layout_to_latent",
    "load_frozen_parts",
    "load_parts",
    "load_vae",
    "load_vocoder",
    "mel_posterior",
    "padding_mask",
    "paper_unet_config",
    "paper_vae_config",
    "paper_vocoder_config",
    "sample_latents",
    "window_mask",
]
