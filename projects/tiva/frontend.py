"""The audio side of TiVA's inputs: AudioLDM2's log-mel and the audio layout cut from it (paper sec. 3.1, 4.1.1).

`AudioFrontEnd` turns 16 kHz waveforms into what the VAE encodes (AudioLDM2's peak-0.5 waveform normalisation,
then `MelFrontEnd.from_preset("audioldm")`: [B, 64, T // 160] natural-log mels) and the ground-truth audio
layout t_a = Resize(Norm(mel); M, C) of eq. 1 (`projects.tiva.models.audio_layout`). It has no weights; it is a
module so that it moves to the device with the model.
"""

from __future__ import annotations

import torch
from torch import nn

from projects.tiva.models import audio_layout
from shared.audio import MelFrontEnd, audioldm_normalize


class AudioFrontEnd(nn.Module):
    def __init__(self, layout_size: tuple[int, int] = (102, 5)):
        super().__init__()
        self.mel = MelFrontEnd.from_preset("audioldm")
        self.layout_size = tuple(layout_size)

    @property
    def sample_rate(self) -> int:
        return self.mel.sample_rate

    @torch.no_grad()
    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """wave [B, samples] at 16 kHz -> log-mel [B, 64, samples // 160]."""
        return self.mel(audioldm_normalize(wave))

    def layout(self, logmel: torch.Tensor) -> torch.Tensor:
        """log-mel [B, 64, T] -> ground-truth layout t_a [B, M, C] (eq. 1)."""
        return audio_layout(logmel, self.layout_size)
