"""Melception reading waveforms: the toy stand-in for the audio networks of waveform metrics.

GRAVO (Interspeech 2023, sec. 3.3) scores 16 kHz audio with VGGish (FAD) and PaSST (KL, ACC), networks trained
on AudioSet that know nothing of the toy clips. On the toy set both are replaced, as TiVA and SpecVQGAN
replace theirs, by a Melception (`shared.encoders.Melception`, SpecVQGAN arXiv:2110.08791 sec. 6.1.6) trained
on the toy clips' labels: its pooled features are the FAD embedding and its logits the KL and ACC outputs.

The network turns audio into SpecVQGAN's mel itself (`melception_inputs`: resampled to 22,050 Hz), so it trains
on a DataModule's `wave` batches (`shared.classifier.SpectrogramClassifier` with `input_key: wave`) and scores
audio through `shared.metrics.AudioGenerationMetrics` (`embed`, `logits`, `sample_rate`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from shared.encoders.melception import Melception, melception_inputs
from shared.runs import UserError


class WaveMelception(nn.Module):
    """`forward(wave [B, T] at sample_rate)` -> logits [B, n_classes]; `embed` -> pooled features
    [B, embedding_dim]; `mel` -> the [B, 1, 80, frames] input in [0, 1] Melception standardises."""

    def __init__(
        self, n_classes: int, sample_rate: int = 16000, width_divisor: int = 16, dropout: float = 0.5
    ):
        super().__init__()
        self.melception = Melception(n_classes=n_classes, width_divisor=width_divisor, dropout=dropout)
        self.sample_rate, self.n_classes = sample_rate, n_classes
        self.embedding_dim = self.melception.fc.in_features

    def mel(self, wave: torch.Tensor) -> torch.Tensor:
        return melception_inputs(wave, self.sample_rate).unsqueeze(1)

    def set_mel_statistics(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.melception.set_mel_statistics(mean, std)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.melception(self.mel(wave))

    def logits(self, wave: torch.Tensor) -> torch.Tensor:
        return self.melception.features(self.mel(wave), ("logits",))["logits"]

    def embed(self, wave: torch.Tensor) -> torch.Tensor:
        return self.melception.features(self.mel(wave), ("2048",))["2048"]


def load_wave_melception(path: str | Path) -> WaveMelception:
    """A `SpectrogramClassifier` checkpoint of a `WaveMelception` (e.g. GRAVO's `toy_classifier` stage) -> the
    network, frozen and in eval mode, with the input statistics it was trained with."""
    from shared.classifier import (
        SpectrogramClassifier,
    )  # Lightning is imported only when a checkpoint is read

    net = SpectrogramClassifier.load_from_checkpoint(path, map_location="cpu", weights_only=True).net
    if not isinstance(net, WaveMelception):
        raise UserError(f"{path}: a classifier checkpoint, but of {type(net).__name__}, not WaveMelception")
    return net.eval().requires_grad_(False)
