"""Mel-spectrogram front ends, one preset per paper, as torch modules.

The STFT and the mel filterbank are torchaudio's; what differs between papers is the parameters and the
amplitude compression, kept here as named presets so that a cached feature records exactly what made it.

`specvqgan` reproduces the official SpecVQGAN features (arXiv:2110.08791 sec. 6.1.1; `v-iashin/SpecVQGAN`,
`feature_extraction/extract_mel_spectrogram.py`):
22,050 Hz, magnitude STFT with n_fft 1024, hop 256, periodic Hann, reflect padding (librosa 0.8's
default, which the released features used), 80 Slaney mels over 125-7600 Hz, then
x = clip(0.8 + 0.2 * log10(max(mel, 1e-5)), 0, 1).

`audioldm` is AudioLDM2's front end, which TiVA uses (TiVA, doi:10.1145/3664647.3681027, sec. 4.1.1;
`haoheliu/AudioLDM2`, `audioldm2/utilities/data/dataset.py` and `audioldm2/utilities/audio/stft.py`):
16 kHz, magnitude STFT with n_fft 1024, hop 160, periodic Hann, reflect padding, 64 Slaney mels over
0-8000 Hz, x = ln(max(mel, 1e-5)), and AudioLDM2's crop to T // hop frames (163,840 samples -> 1024).
AudioLDM2 also normalises the waveform first (`audioldm_normalize`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torchaudio
from torch import nn


@dataclass(frozen=True)
class MelConfig:
    sample_rate: int
    n_fft: int
    hop_length: int
    win_length: int
    n_mels: int
    f_min: float
    f_max: float
    power: float
    pad_mode: str
    compression: str  # key of COMPRESSIONS
    drop_last_frame: bool = False  # keep T // hop frames of the 1 + T // hop that centred framing gives


def _specvqgan_compress(mel: torch.Tensor) -> torch.Tensor:
    return (0.8 + 0.2 * torch.log10(mel.clamp_min(1e-5))).clamp(0.0, 1.0)


def _specvqgan_expand(x: torch.Tensor) -> torch.Tensor:
    return torch.pow(10.0, 5.0 * x - 4.0)  # inverse of 0.8 + 0.2 log10(mel) inside the clip range


def _log_compress(mel: torch.Tensor) -> torch.Tensor:
    return torch.log(mel.clamp_min(1e-5))


COMPRESSIONS = {"specvqgan": (_specvqgan_compress, _specvqgan_expand), "log": (_log_compress, torch.exp)}

PRESETS = {
    "specvqgan": MelConfig(
        sample_rate=22050,
        n_fft=1024,
        hop_length=256,
        win_length=1024,
        n_mels=80,
        f_min=125.0,
        f_max=7600.0,
        power=1.0,
        pad_mode="reflect",
        compression="specvqgan",
    ),
    "audioldm": MelConfig(
        sample_rate=16000,
        n_fft=1024,
        hop_length=160,
        win_length=1024,
        n_mels=64,
        f_min=0.0,
        f_max=8000.0,
        power=1.0,
        pad_mode="reflect",
        compression="log",
        drop_last_frame=True,
    ),
}


def audioldm_normalize(wave: torch.Tensor) -> torch.Tensor:
    """AudioLDM2's waveform normalisation, per clip over the last axis: remove the mean, scale to a peak of 0.5."""
    wave = wave - wave.mean(dim=-1, keepdim=True)
    return 0.5 * wave / (wave.abs().amax(dim=-1, keepdim=True) + 1e-8)


class MelFrontEnd(nn.Module):
    """Waveforms [B, T] (or [T]) at `sample_rate` -> compressed mel spectrograms [B, n_mels, 1 + T // hop]
    (T // hop with `drop_last_frame`, as AudioLDM2 crops).

    No other cropping happens here: 220,500 samples at 22,050 Hz give 862 frames; datasets trim and crop.
    """

    def __init__(self, config: MelConfig):
        super().__init__()
        if config.compression not in COMPRESSIONS:
            raise ValueError(f"unknown compression {config.compression!r}; known: {sorted(COMPRESSIONS)}")
        self.config = config
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=config.sample_rate,
            n_fft=config.n_fft,
            win_length=config.win_length,
            hop_length=config.hop_length,
            f_min=config.f_min,
            f_max=config.f_max,
            n_mels=config.n_mels,
            power=config.power,
            center=True,
            pad_mode=config.pad_mode,
            norm="slaney",
            mel_scale="slaney",
        )
        self._compress, self._expand = COMPRESSIONS[config.compression]

    @classmethod
    def from_preset(cls, name: str) -> MelFrontEnd:
        if name not in PRESETS:
            raise ValueError(f"unknown mel preset {name!r}; known: {sorted(PRESETS)}")
        return cls(PRESETS[name])

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    def params(self) -> dict:
        """Everything that determines the output, for feature-cache keys."""
        return asdict(self.config)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        mel = self._compress(self.mel(wave.float()))
        return mel[..., : wave.shape[-1] // self.config.hop_length] if self.config.drop_last_frame else mel

    def to_linear(self, x: torch.Tensor) -> torch.Tensor:
        """Undo the compression: compressed mel -> linear-magnitude mel (values at the clip floor stay there)."""
        return self._expand(x)
