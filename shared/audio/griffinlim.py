"""Griffin-Lim vocoder for any mel front end: the fallback when no neural vocoder checkpoint is given.

Follows SpecVQGAN's inversion (`v-iashin/SpecVQGAN`, `feature_extraction/extract_mel_spectrogram.py`,
`inv_transforms`): undo the compression, map mel back to a linear-frequency magnitude, then 32 Griffin-Lim
iterations with momentum 0.99. The mel inversion is torchaudio's least-squares `InverseMelScale` (librosa uses
NNLS; both clamp at zero), so it runs on tensors in batches.
"""

from __future__ import annotations

import torch
import torchaudio
from torch import nn

from shared.audio.mel import MelFrontEnd


class GriffinLimVocoder(nn.Module):
    """Compressed mel [B, n_mels, frames] from `front_end` -> waveform [B, hop * (frames - 1)]."""

    def __init__(self, front_end: MelFrontEnd, n_iter: int = 32, momentum: float = 0.99):
        super().__init__()
        cfg = front_end.config
        self.front_end = front_end
        self.inverse_mel = torchaudio.transforms.InverseMelScale(
            n_stft=cfg.n_fft // 2 + 1,
            n_mels=cfg.n_mels,
            sample_rate=cfg.sample_rate,
            f_min=cfg.f_min,
            f_max=cfg.f_max,
            norm="slaney",
            mel_scale="slaney",
        )
        self.griffin_lim = torchaudio.transforms.GriffinLim(
            n_fft=cfg.n_fft,
            n_iter=n_iter,
            win_length=cfg.win_length,
            hop_length=cfg.hop_length,
            power=cfg.power,
            momentum=momentum,
            rand_init=False,  # deterministic output for the same mel
        )

    @property
    def sample_rate(self) -> int:
        return self.front_end.sample_rate

    @torch.no_grad()
    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        linear = self.inverse_mel(self.front_end.to_linear(mel.float()))
        return self.griffin_lim(linear).clamp(-1.0, 1.0)
