"""The Melception metrics: FID, MKL and IS of generated mels on SpecVQGAN's Melception (SpecVQGAN, arXiv:2110.08791,
sec. 3.4; TiVA's "mel." FAD, KL and IS, TiVA sec. 4.1.3, are the same three numbers), each with a bootstrap
interval over clips (`shared.metrics.bootstrap`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from shared.encoders.melception import Melception
from shared.metrics.bootstrap import BOOTSTRAP, Bootstrap, with_intervals
from shared.metrics.frechet import FrechetDistance
from shared.metrics.inception_score import InceptionScore
from shared.metrics.kl import MeanKLDivergence


class MelceptionMetrics(nn.Module):
    """FID, MKL and IS of generated mels against real ones through a frozen Melception (paper sec. 3.4, 6.1.7).

    Made for a LightningModule's `test_step` / `validation_step`: `update` per batch, `compute` at the epoch
    end (the values are reduced over all processes), then `reset`. Melception runs once per mel and feeds
    all three metrics, as the official `evaluate.py` of `v-iashin/SpecVQGAN` extracts the three feature
    layers once: FID on `'2048'` (fakes against reals), MKL on `'logits'` (each fake against the real clip
    with the same id), IS on the fakes' `'logits_unbiased'`. Mels are [B, 1, 80, T] in [0, 1]; they are
    clamped to [0, 1] first (the official `evaluate.py` does not clamp its samples, so a sampler's overshoot
    would reach Melception). Give each real clip once per evaluation, and as many fakes per clip as you like
    (the paper: 10 per VGGSound test clip, 100 per VAS validation clip).

        metrics = MelceptionMetrics(load_melception(path, stats_file))
        metrics.update(real=batch["mel"], real_ids=batch["clip_id"], fake=samples, fake_ids=sample_clip_ids)
        values = metrics.compute()   # {"fid", "mkl", "is", "is_std", "fid_lo", "fid_hi", ...}, float64 tensors

    With `bootstrap` (the default: 1000 resamples of the clips, 95 %), `compute` adds `<name>_lo` and
    `<name>_hi` for FID, MKL and IS; the resamples draw each clip's real mel and samples together.
    `bootstrap=None` leaves them out (and keeps no per-row features for FID).

    The Melception stays frozen and in eval mode whatever `train()` its parent calls. As a submodule of a
    LightningModule its weights are part of that module's checkpoints.
    """

    def __init__(
        self,
        melception: Melception,
        is_splits: int = 10,
        reset_real_features: bool = True,
        bootstrap: Bootstrap | None = BOOTSTRAP,
    ):
        super().__init__()
        self.melception = melception.eval().requires_grad_(False)
        self.fid = FrechetDistance(
            melception.fc.in_features, reset_real_features=reset_real_features, bootstrap=bootstrap
        )
        self.mkl = MeanKLDivergence(bootstrap=bootstrap)
        self.inception_score = InceptionScore(splits=is_splits, bootstrap=bootstrap)
        self.bootstrap = bootstrap

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
            self.fid.update(feats["2048"], real=is_real, ids=ids)
            self.mkl.update(feats["logits"], ids, real=is_real)
            if not is_real:
                self.inception_score.update(feats["logits_unbiased"], ids)

    def compute(self) -> dict[str, torch.Tensor]:
        is_mean, is_std = self.inception_score.compute()
        values = {"fid": self.fid.compute(), "mkl": self.mkl.compute(), "is": is_mean, "is_std": is_std}
        if self.bootstrap is None:
            return values
        intervals = {}
        for metric in (self.fid, self.mkl, self.inception_score):
            intervals |= metric.intervals()
        return with_intervals(values, intervals)

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
    bootstrap: Bootstrap | None = BOOTSTRAP,
) -> dict[str, float]:
    """FID / MKL / IS (and their intervals, with `bootstrap`) of a set of fakes against a set of reals held in
    memory ([N, 1, 80, T] in [0, 1]).

    `real_ids[i]` names real clip i; `fake_ids[j]` names the real clip fake j was generated for.
    """
    metrics = MelceptionMetrics(melception, is_splits=is_splits, bootstrap=bootstrap).to(real_mels.device)
    for start in range(0, len(real_mels), batch_size):
        metrics.update(
            real=real_mels[start : start + batch_size], real_ids=real_ids[start : start + batch_size]
        )
    for start in range(0, len(fake_mels), batch_size):
        metrics.update(
            fake=fake_mels[start : start + batch_size], fake_ids=fake_ids[start : start + batch_size]
        )
    return {name: float(value) for name, value in metrics.compute().items()}
