"""Evaluation helpers: codebook quality (`evaluate_codebook`) and the Melception metrics of generated mels
(`MelceptionMetrics`, `spectrogram_metrics`: FID, MKL, IS as in paper sec. 3.4 / 6.1.7).

How good is a trained codebook? Reconstruction error against a trivial baseline, and codebook usage.
The baseline predicts the mean training spectrogram for every clip; a codebook that reconstructs far
better than it has learned something about each clip. Usage is the share of codes chosen at least once
on the evaluation split, and the perplexity of the code histogram (n_codes for perfectly even use).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader

from projects.specvqgan.data import SpectrogramDataModule
from projects.specvqgan.models import Melception, SpectrogramVQGAN
from shared.metrics import FrechetDistance, InceptionScore, MeanKLDivergence
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


class MelceptionMetrics(nn.Module):
    """FID, MKL and IS of generated mels against real ones through a frozen Melception (paper sec. 3.4, 6.1.7).

    Made for a LightningModule's `test_step` / `validation_step`: `update` per batch, `compute` at the epoch
    end (the values are reduced over all processes), then `reset`. Melception runs once per mel and feeds
    all three metrics (reference card sec. 8): FID on `'2048'` (fakes against reals), MKL on `'logits'`
    (each fake against the real clip with the same id), IS on the fakes' `'logits_unbiased'`. Mels are
    [B, 1, 80, T] in [0, 1]; they are clamped to [0, 1] first (the official evaluation does not clamp its
    samples, reference sec. 11). Give each real clip once per evaluation, and as many fakes per clip as you
    like (the paper: 10 per VGGSound test clip, 100 per VAS validation clip).

        metrics = MelceptionMetrics(load_melception(path, stats_file))
        metrics.update(real=batch["mel"], real_ids=batch["clip_id"], fake=samples, fake_ids=sample_clip_ids)
        values = metrics.compute()   # {"fid", "mkl", "is", "is_std"}, float64 tensors

    The Melception stays frozen and in eval mode whatever `train()` its parent calls. As a submodule of a
    LightningModule its weights are part of that module's checkpoints.
    """

    def __init__(self, melception: Melception, is_splits: int = 10, reset_real_features: bool = True):
        super().__init__()
        self.melception = melception.eval().requires_grad_(False)
        self.fid = FrechetDistance(melception.fc.in_features, reset_real_features=reset_real_features)
        self.mkl = MeanKLDivergence()
        self.inception_score = InceptionScore(splits=is_splits)

    def train(self, mode: bool = True) -> MelceptionMetrics:
        super().train(mode)
        self.melception.eval()
        return self

    @torch.no_grad()
    def update(
        self,
        real: torch.Tensor | None = None,
        real_ids: Sequence[str] | torch.Tensor | None = None,
        fake: torch.Tensor | None = None,
        fake_ids: Sequence[str] | torch.Tensor | None = None,
    ) -> None:
        """Add real and/or fake mels [B, 1, 80, T] in [0, 1] with their clip ids (strings or ints)."""
        for mel, ids, is_real in ((real, real_ids, True), (fake, fake_ids, False)):
            if mel is None:
                continue
            if ids is None or len(ids) != len(mel):
                raise ValueError(f"{len(mel)} {'real' if is_real else 'fake'} mels need as many clip ids")
            feats = self.melception.features(mel.float().clamp(0, 1))
            self.fid.update(feats["2048"], real=is_real)
            self.mkl.update(feats["logits"], ids, real=is_real)
            if not is_real:
                self.inception_score.update(feats["logits_unbiased"])

    def compute(self) -> dict[str, torch.Tensor]:
        is_mean, is_std = self.inception_score.compute()
        return {"fid": self.fid.compute(), "mkl": self.mkl.compute(), "is": is_mean, "is_std": is_std}

    def reset(self) -> None:
        for metric in (self.fid, self.mkl, self.inception_score):
            metric.reset()


@torch.no_grad()
def spectrogram_metrics(
    melception: Melception,
    real_mels: torch.Tensor,
    fake_mels: torch.Tensor,
    real_ids: Sequence[str] | torch.Tensor,
    fake_ids: Sequence[str] | torch.Tensor,
    batch_size: int = 32,
    is_splits: int = 10,
) -> dict[str, float]:
    """FID / MKL / IS of a set of fakes against a set of reals held in memory ([N, 1, 80, T] in [0, 1]).

    `real_ids[i]` names real clip i; `fake_ids[j]` names the real clip fake j was generated for.
    """
    metrics = MelceptionMetrics(melception, is_splits=is_splits).to(real_mels.device)
    for start in range(0, len(real_mels), batch_size):
        metrics.update(
            real=real_mels[start : start + batch_size], real_ids=real_ids[start : start + batch_size]
        )
    for start in range(0, len(fake_mels), batch_size):
        metrics.update(
            fake=fake_mels[start : start + batch_size], fake_ids=fake_ids[start : start + batch_size]
        )
    return {name: float(value) for name, value in metrics.compute().items()}
