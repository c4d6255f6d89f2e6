"""Fréchet distance between two sets of features, as SpecVQGAN's official evaluation computes its FID.

FID: Heusel et al. 2017 (arXiv:1706.08500), sec. 3, on Melception features as SpecVQGAN (arXiv:2110.08791)
sec. 3.4 defines it; FAD (Kilgour et al., arXiv:1812.08466) is the same distance on another network's
features. The official code, `v-iashin/SpecVQGAN` `evaluation/metrics/fid.py` (called by `evaluate.py`
with `fid_cfg.feat_layer_name: '2048'`, `evaluation/configs/eval_melception_vggsound.yaml`): Melception's
pooled `'2048'` vectors of real and generated mels; mean and covariance per set as `np.mean(x, 0)` /
`np.cov(x, rowvar=False)` (unbiased, N - 1); distance ||mu1 - mu2||^2 + tr S1 + tr S2 - 2 tr sqrtm(S1 S2)
with scipy's matrix square root, retried as sqrtm((S1 + 1e-6 I)(S2 + 1e-6 I)) when the first result is not
finite, and refused when the square root's diagonal has an imaginary part above 1e-3 (otherwise the real
part is kept).

Built on torchmetrics' `FrechetInceptionDistance`, which already keeps what the distance needs as float64
sums (sum x, sum x x^T, N per set, reduced with "sum" across processes, so DDP gives the one-process
value) and can keep the real statistics across `reset()`. Its `update` runs a feature extractor; here the
extractor is the identity, because the evaluation runs Melception once per batch and shares the output
with MKL and IS (`shared.metrics.MelceptionMetrics`) rather than once per metric. Its `compute` takes the
square root through `torch.linalg.eigvals` without the official non-finite fallback or imaginary-part
check, so `compute` is replaced by the official formula on scipy.

With a `Bootstrap`, the rows are also kept with their clip ids ("cat" states) for `intervals()`
(`shared.metrics.bootstrap`): a resample weights each row by how often its clip was drawn, reals and fakes
of a clip alike. The weighted means and covariances are those of the resample's rows, and tr sqrtm(S1 S2)
is taken as the sum of the square roots of the eigenvalues of S1^1/2 S2 S1^1/2 (the same trace, as S1 S2
and S1^1/2 S2 S1^1/2 are similar), two symmetric eigendecompositions per resample, batched. The cost per
resample is O(N D^2 + D^3): for the paper's 2048-d features of 145K samples, run it on a GPU or use fewer
resamples (or none).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from scipy import linalg
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.utilities import dim_zero_cat

from shared.metrics.bootstrap import Bootstrap, ClipResampling, clip_indices, clip_key_ids


class _GivenFeatures(nn.Identity):
    """The 'feature extractor' for features computed elsewhere; torchmetrics reads `num_features`."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr sqrtm(S1 S2), float64, with the official fallbacks."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"feature sizes differ: means {mu1.shape} vs {mu2.shape}")
    diff = mu1 - mu2
    with warnings.catch_warnings():  # an ill-conditioned product is handled just below
        warnings.simplefilter("ignore")
        covmean = linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        imaginary = np.abs(np.diagonal(covmean).imag).max()
        if imaginary > 1e-3:
            raise ValueError(f"sqrtm(S1 S2) has an imaginary component {imaginary:.3g}")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


class FrechetDistance(ClipResampling, FrechetInceptionDistance):
    """FID on precomputed features: `update(features [N, D], real=bool, ids=None)`, `compute()` -> float64
    scalar; with `bootstrap`, `intervals()` -> {"fid": (low, high)} (then give each row's clip id).

    `reset_real_features=False` keeps the real statistics across `reset()` (a fixed real set, evaluated
    once). Each set needs at least two rows.
    """

    def __init__(
        self,
        num_features: int = 2048,
        reset_real_features: bool = True,
        bootstrap: Bootstrap | None = None,
        **kwargs,
    ):
        super().__init__(
            feature=_GivenFeatures(num_features), reset_real_features=reset_real_features, **kwargs
        )
        self.num_features, self.bootstrap = num_features, bootstrap
        for kind in ("real", "fake"):
            self.add_state(f"{kind}_rows", default=[], dist_reduce_fx="cat")
            self.add_state(f"{kind}_ids", default=[], dist_reduce_fx="cat")

    def update(  # type: ignore[override]
        self, features: torch.Tensor, real: bool, ids: Sequence[str] | torch.Tensor | None = None
    ) -> None:
        if features.dim() != 2 or features.shape[1] != self.num_features:
            raise ValueError(f"expected features [N, {self.num_features}], got {tuple(features.shape)}")
        super().update(features, real)
        if self.bootstrap is not None:
            if ids is None or len(ids) != len(features):
                raise ValueError("FID with a bootstrap needs the clip id of every row (ids=...)")
            kind = "real" if real else "fake"
            getattr(self, f"{kind}_rows").append(features.detach())
            getattr(self, f"{kind}_ids").append(clip_key_ids(ids).to(features.device))

    def reset(self) -> None:
        kept = {
            name: getattr(self, name) for name in ("real_rows", "real_ids") if not self.reset_real_features
        }
        super().reset()
        for name, value in kept.items():
            setattr(self, name, value)

    def _statistics(self, real: bool) -> tuple[np.ndarray, np.ndarray]:
        kind = "real" if real else "fake"
        n = int(getattr(self, f"{kind}_features_num_samples"))
        if n < 2:
            raise RuntimeError(f"FID needs at least 2 {kind} feature vectors, got {n}")
        total = getattr(self, f"{kind}_features_sum").cpu().numpy()
        outer = getattr(self, f"{kind}_features_cov_sum").cpu().numpy()
        mu = total / n
        return mu, (outer - n * np.outer(mu, mu)) / (n - 1)

    def compute(self) -> torch.Tensor:
        value = frechet_distance(*self._statistics(True), *self._statistics(False))
        return torch.tensor(value, dtype=torch.float64, device=self.real_features_sum.device)

    def clip_statistics(self) -> tuple[int, dict]:
        rows = {kind: dim_zero_cat(getattr(self, f"{kind}_rows")).double() for kind in ("real", "fake")}
        ids = [dim_zero_cat(getattr(self, f"{kind}_ids")) for kind in ("real", "fake")]
        n_clips, (real_clips, fake_clips) = clip_indices(*ids)
        centre = rows["real"].mean(0)  # moments about a common centre: no cancellation in x x^T - mu mu^T
        real, fake = rows["real"] - centre, rows["fake"] - centre
        # resamples per batch: the [B, N, D] weighted rows and [B, D, D] covariances stay within 128 MB each
        d, n = self.num_features, max(len(real), len(fake))
        chunk = max(1, 2**24 // max(d * d, n * d))

        def fid(counts: torch.Tensor) -> torch.Tensor:
            counts = counts.to(real.device, torch.float64)
            return torch.cat(
                [
                    _weighted_frechet(real, part[:, real_clips], fake, part[:, fake_clips])
                    for part in counts.split(chunk)
                ]
            )

        return n_clips, {"fid": fid}


def _weighted_moments(rows: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Means [B, D] and unbiased covariances [B, D, D] of rows [N, D] under integer row weights [B, N]."""
    n = weights.sum(1)
    mean = weights @ rows / n[:, None]
    outer = (weights[:, :, None] * rows).transpose(1, 2) @ rows
    cov = (outer - n[:, None, None] * mean[:, :, None] * mean[:, None, :]) / (n - 1)[:, None, None]
    return mean, cov


def _psd_sqrt(a: torch.Tensor) -> torch.Tensor:
    w, v = torch.linalg.eigh(a)
    return (v * w.clamp_min(0).sqrt()[..., None, :]) @ v.transpose(-1, -2)


def _weighted_frechet(
    real: torch.Tensor, real_weights: torch.Tensor, fake: torch.Tensor, fake_weights: torch.Tensor
) -> torch.Tensor:
    """The Fréchet distance of each resample [B] (see the module docstring); NaN with fewer than 2 rows."""
    mu1, s1 = _weighted_moments(real, real_weights)
    mu2, s2 = _weighted_moments(fake, fake_weights)
    root = _psd_sqrt(s1)
    tr_covmean = torch.linalg.eigvalsh(root @ s2 @ root).clamp_min(0).sqrt().sum(-1)
    trace = torch.diagonal(s1, dim1=-2, dim2=-1).sum(-1) + torch.diagonal(s2, dim1=-2, dim2=-1).sum(-1)
    return ((mu1 - mu2) ** 2).sum(-1) + trace - 2 * tr_covmean
