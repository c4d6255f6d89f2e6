"""Per-mel-bin input standardisation shared by SpecVQGAN's spectrogram classifiers.

VGGish-ish and Melception both see (x - mean_f) / std_f of the [0, 1] mel, with the 80 per-bin statistics
of the VGGSound training split (the official file of `v-iashin/SpecVQGAN`,
`specvqgan/modules/losses/vggishish/data/train_means_stds_melspec_10s_22050hz.txt`, one `mean std` row per
mel bin). The statistics are buffers named `mel_mean` / `mel_std`, so a checkpoint carries the statistics
its weights were trained with.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


class MelStandardization:
    """Mixin for an `nn.Module`: call `_init_mel_statistics(n_mels)` in `__init__` after `super().__init__()`."""

    mel_mean: torch.Tensor
    mel_std: torch.Tensor

    def _init_mel_statistics(self: nn.Module, n_mels: int) -> None:
        self.register_buffer("mel_mean", torch.zeros(n_mels))
        self.register_buffer("mel_std", torch.ones(n_mels))

    def set_mel_statistics(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mel_mean.copy_(mean)
        self.mel_std.copy_(std.clamp_min(1e-5))

    def standardize(self, mel01: torch.Tensor) -> torch.Tensor:
        """[B, 1, F, T] mel in [0, 1] -> per-bin standardised input."""
        return (mel01 - self.mel_mean.view(1, 1, -1, 1)) / self.mel_std.view(1, 1, -1, 1)


def read_mel_statistics(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The official statistics file (one `mean std` row per mel bin) -> (mean [F], std [F])."""
    rows = [line.split() for line in Path(path).read_text().splitlines() if line.strip()]
    if not rows or any(len(row) != 2 for row in rows):
        raise ValueError(f"{path}: expected one 'mean std' row per mel bin")
    stats = torch.tensor([[float(v) for v in row] for row in rows])
    return stats[:, 0], stats[:, 1]
