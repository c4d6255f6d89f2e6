"""Audio I/O and front ends: `load_audio`, `save_audio`, `MelFrontEnd`, `GriffinLimVocoder`."""

from shared.audio.griffinlim import GriffinLimVocoder
from shared.audio.io import decode_audio, load_audio, save_audio
from shared.audio.mel import PRESETS, MelConfig, MelFrontEnd, audioldm_normalize
from shared.audio.picture import save_mel_picture

__all__ = [
    "PRESETS",
    "GriffinLimVocoder",
    "MelConfig",
    "MelFrontEnd",
    "audioldm_normalize",
    "decode_audio",
    "load_audio",
    "save_audio",
    "save_mel_picture",
]
