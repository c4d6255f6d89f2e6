"""The toy stand-in for waveform metrics' networks: a Melception reading waveforms, and the spectrogram
classifier's input statistics streamed from a DataModule's training loader when it offers none."""

import pytest
import torch

from shared.classifier import SpectrogramClassifier
from shared.encoders import Melception, WaveMelception


class CroppingDataModule:
    """Whole clips from the loader, 1-s crops cut in `on_after_batch_transfer` (as GRAVO's DataModule does)."""

    def __init__(self, waves: torch.Tensor):
        self.waves = waves

    def train_dataloader(self):
        return [{"wave": self.waves[i : i + 2], "label": torch.zeros(2, dtype=torch.long)} for i in (0, 2)]

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        return batch | {"wave": batch["wave"][:, 1000:17000]}


def test_wave_melception_outputs():
    net = WaveMelception(n_classes=6).eval()
    wave = torch.randn(3, 16384) * 0.1
    assert net.mel(wave).shape[:3] == (3, 1, 80)
    assert net(wave).shape == net.logits(wave).shape == (3, 6)
    assert net.embed(wave).shape == (3, net.embedding_dim) == (3, 128)
    assert torch.allclose(net(wave), net.logits(wave))


def test_statistics_are_streamed_from_the_cropped_training_batches():
    waves = torch.randn(4, 20000, generator=torch.Generator().manual_seed(0)) * 0.2
    classifier = SpectrogramClassifier(WaveMelception(n_classes=6), input_key="wave")
    mean, std = classifier._training_mel_statistics(CroppingDataModule(waves))
    mel = classifier.net.mel(waves[:, 1000:17000]).double()  # [4, 1, 80, T]
    frames = mel[:, 0].permute(1, 0, 2).reshape(80, -1)
    assert torch.allclose(mean.double(), frames.mean(1), atol=1e-6)
    assert torch.allclose(std.double(), frames.std(1, correction=0), atol=1e-5)


def test_a_net_without_its_own_mel_needs_the_datamodule_s_statistics():
    classifier = SpectrogramClassifier(Melception(n_classes=6, width_divisor=16))
    with pytest.raises(ValueError, match="makes no mel of its own"):
        classifier._training_mel_statistics(CroppingDataModule(torch.zeros(4, 20000)))
