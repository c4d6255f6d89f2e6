"""The spectrogram codebook as a neural audio codec (SpecVQGAN, arXiv:2110.08791, sec. 6.2 "Spectrogram VQGAN
as a Neural Audio Codec"; Table 1 for the reconstructions).

A waveform becomes its mel spectrogram, then F' x W codebook indices (W = frames / 16), each worth
log2(n_codes) bits: 5 x 53 codes x 10 bits over 9.845 s is 0.27 kbps for the VGGSound codebook (1024 codes),
0.19 kbps for the VAS one (128). Decoding looks the codes up, runs the decoder and a vocoder.

    codec = SpectrogramCodec(load_codebook("codebook.ckpt")[0], load_vocoder("vocoder.ckpt"))
    codes = codec.encode(wave)          # [T] at 22,050 Hz -> [F', W] int64
    wave_hat = codec.decode(codes)      # -> [W * 16 * 256] samples
"""

from __future__ import annotations

import math

import torch
from torch import nn

from projects.specvqgan.models import SpectrogramVQGAN
from shared.audio import MelFrontEnd


class SpectrogramCodec(nn.Module):
    def __init__(self, codebook: SpectrogramVQGAN, vocoder: nn.Module, preset: str = "specvqgan"):
        super().__init__()
        self.codebook, self.vocoder = codebook.eval(), vocoder
        self.front_end = MelFrontEnd.from_preset(preset)

    @property
    def sample_rate(self) -> int:
        return self.front_end.sample_rate

    @property
    def samples_per_column(self) -> int:
        return self.codebook.downsampling * self.front_end.config.hop_length

    def bitrate(self) -> float:
        """Bits per second: F' codes of log2(n_codes) bits per latent column."""
        rows = self.front_end.config.n_mels // self.codebook.downsampling
        seconds_per_column = self.samples_per_column / self.sample_rate
        return rows * math.log2(self.codebook.n_codes) / seconds_per_column

    @torch.no_grad()
    def encode(self, wave: torch.Tensor) -> torch.Tensor:
        """Waveform [T] -> codes [F', W]; the mel is cut to a whole number of latent columns (W = frames // 16)."""
        mel = self.front_end(wave[None])
        frames = mel.shape[-1] // self.codebook.downsampling * self.codebook.downsampling
        if frames == 0:
            raise ValueError(f"{wave.shape[-1]} samples are shorter than one latent column")
        _, indices = self.codebook.encode(mel[:, None, :, :frames] * 2 - 1)
        return indices[0]

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes [F', W] -> waveform [W * samples_per_column] (with a `projects.specvqgan.vocoder.load_vocoder` vocoder)."""
        mel = (self.codebook.decode_indices(codes[None]) + 1) / 2
        return self.vocoder(mel[:, 0].clamp(0, 1))[0]
