"""The simplest audio embedding: per-band mean and standard deviation of a log-mel spectrogram.

A fixed function with no training, the non-learned row of a probe comparison (WavBriVL arXiv:2303.04585,
Table 1 compares learned embeddings under one classifier protocol; this row says what the protocol gets from
the spectral envelope alone). The front end is AudioLDM2's 16 kHz log-mel (`shared.audio.mel`, preset
`audioldm`: n_fft 1024, hop 160, 64 Slaney mels, ln(max(mel, 1e-5))); the embedding is
[mean over frames of each band, std over frames of each band], 2 x n_mels values.
"""

from __future__ import annotations

import torch
from torch import nn

from shared.audio.mel import MelFrontEnd


class MelStatisticsEmbedding(nn.Module):
    """`forward(wav [B, T] float at 16 kHz) -> [B, 2 * n_mels]` (128 for the preset): band means, then stds.

    Padding would count as silence: embed clips of one length together (as the probes do)."""

    def __init__(self, preset: str = "audioldm"):
        super().__init__()
        self.front_end = MelFrontEnd.from_preset(preset)
        self.sample_rate = self.front_end.sample_rate
        self.embed_dim = 2 * self.front_end.config.n_mels

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        if wav.dim() != 2:
            raise ValueError(f"expected waveforms [B, T], got shape {tuple(wav.shape)}")
        if wav.shape[1] < self.front_end.config.hop_length:
            raise ValueError(
                f"clips of {wav.shape[1]} samples are shorter than one mel hop ({self.front_end.config.hop_length})"
            )
        mel = self.front_end(wav)  # [B, F, frames]
        return torch.cat([mel.mean(dim=2), mel.std(dim=2, correction=0)], dim=1)
