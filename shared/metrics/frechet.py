"""Fréchet distance between two sets of features, as SpecVQGAN's official evaluation computes its FID.

SpecVQGAN paper sec. 3.4; reference card sec. 8: the features are Melception's pooled `'2048'` vectors of
real and generated mels; mean and covariance per set as `np.mean(x, 0)` / `np.cov(x, rowvar=False)`
(unbiased, N - 1); distance ||mu1 - mu2||^2 + tr S1 + tr S2 - 2 tr sqrtm(S1 S2) with scipy's matrix square
root, retried as sqrtm((S1 + 1e-6 I)(S2 + 1e-6 I)) when the first result is not finite, and refused when
the square root's diagonal has an imaginary part above 1e-3 (otherwise the real part is kept).

Built on torchmetrics' `FrechetInceptionDistance`, which already keeps what the distance needs as float64
sums (sum x, sum x x^T, N per set, reduced with "sum" across processes, so DDP gives the one-process
value) and can keep the real statistics across `reset()`. Its `update` runs a feature extractor; here the
extractor is the identity, because the evaluation runs Melception once per batch and shares the output
with MKL and IS (`projects/specvqgan/evaluate.py`) rather than once per metric. Its `compute` takes the
square root through `torch.linalg.eigvals` without the official non-finite fallback or imaginary-part
check, so `compute` is replaced by the official formula on scipy.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy import linalg
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance


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


class FrechetDistance(FrechetInceptionDistance):
    """FID on precomputed features: `update(features [N, D], real=bool)`, `compute()` -> float64 scalar.

    `reset_real_features=False` keeps the real statistics across `reset()` (a fixed real set, evaluated
    once). Each set needs at least two rows.
    """

    def __init__(self, num_features: int = 2048, reset_real_features: bool = True, **kwargs):
        super().__init__(
            feature=_GivenFeatures(num_features), reset_real_features=reset_real_features, **kwargs
        )
        self.num_features = num_features

    def update(self, features: torch.Tensor, real: bool) -> None:  # type: ignore[override]
        if features.dim() != 2 or features.shape[1] != self.num_features:
            raise ValueError(f"expected features [N, {self.num_features}], got {tuple(features.shape)}")
        super().update(features, real)

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
