"""Evaluation helpers: codebook quality (`evaluate_codebook`). The Melception metrics of generated mels
(FID, MKL, IS as in paper sec. 3.4 / 6.1.7) are `shared.metrics.MelceptionMetrics` and `spectrogram_metrics`.

How good is a trained codebook? Reconstruction error against a trivial baseline, and codebook usage.
The baseline predicts the mean training spectrogram for every clip; a codebook that reconstructs far
better than it has learned something about each clip. Usage is the share of codes chosen at least once
on the evaluation split, and the perplexity of the code histogram (n_codes for perfectly even use).
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from projects.specvqgan.data import SpectrogramDataModule
from projects.specvqgan.models import SpectrogramVQGAN
from shared.vq import CodebookUsage


@torch.no_grad()
def mean_spectrogram(datamodule: SpectrogramDataModule) -> torch.Tensor:
    """Element-wise mean of the training mels, [1, F, T] in [0, 1]."""
    total, count = 0.0, 0
    for batch in DataLoader(datamodule.split("train"), batch_size=datamodule.batch_size):
        total = total + batch["mel"].sum(0)
        count += batch["mel"].shape[0]
    return total / count


@torch.no_grad()
def evaluate_codebook(
    model: SpectrogramVQGAN, datamodule: SpectrogramDataModule, split: str = "valid"
) -> dict:
    model.eval()
    baseline = mean_spectrogram(datamodule)
    usage = CodebookUsage(model.n_codes)
    l1_model = l1_baseline = 0.0
    n = 0
    loader = datamodule.val_dataloader() if split == "valid" else datamodule.test_dataloader()
    for batch in loader:
        mel = batch["mel"]
        recon, q = model(mel * 2 - 1)
        recon = ((recon + 1) / 2).clamp(0, 1)
        l1_model += (recon - mel).abs().mean(dim=(1, 2, 3)).sum().item()
        l1_baseline += (baseline - mel).abs().mean(dim=(1, 2, 3)).sum().item()
        usage.update(q.indices)
        n += mel.shape[0]
    stats = usage.compute()
    return {
        "clips": n,
        "l1_reconstruction": l1_model / n,
        "l1_mean_spectrogram": l1_baseline / n,
        "codes_used": float(stats["used_fraction"]),
        "perplexity": float(stats["perplexity"]),
        "n_codes": model.n_codes,
    }
