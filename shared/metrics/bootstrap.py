"""Confidence intervals of evaluation metrics: the percentile bootstrap over clips.

Efron & Tibshirani, "An Introduction to the Bootstrap" (1993): ch. 6 (the bootstrap), 10.2 (its estimate of
bias) and 13.3 (the percentile interval). The unit of resampling is the clip, not the row: the samples
generated for one clip share its condition, and a paired metric compares them with that clip's real audio,
so rows of one clip are not independent. A resample draws as many clips as were evaluated, with
replacement, and every row of a drawn clip (its real row and all its samples) comes along as often as the
clip was drawn. The metric is recomputed on each resample; the interval is the (1 - confidence) / 2 and
(1 + confidence) / 2 quantiles of the recomputed values, shifted by the bootstrap's estimate of the metric's
bias (`bootstrap_interval`), and is reported next to the metric of the evaluated clips (the point estimate).

`scipy.stats.bootstrap` draws the resamples (seeded: the same evaluation gives the same interval) and takes
the quantiles. A metric sees a resample as clip multiplicities, `counts[b, i]` = how often clip i was drawn in
resample b, and computes its values as weighted sums vectorised over resamples (`statistic(counts [B, n])
-> [B]`); all-ones counts are the evaluated set, where the statistic equals the plain metric.

Clips are named by int64 ids (`clip_key_ids`) and numbered in sorted id order, so a resample picks the same
clips whatever order the rows arrived in, on one process or gathered from many.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.stats
import torch


@dataclass(frozen=True)
class Bootstrap:
    """How an interval is drawn: `resamples` resamples of the clips, the `confidence` level, the `seed`."""

    resamples: int = 1000
    confidence: float = 0.95
    seed: int = 0

    def __post_init__(self):
        if self.resamples < 1 or not 0 < self.confidence < 1:
            raise ValueError(f"need resamples >= 1 and 0 < confidence < 1, got {self}")


BOOTSTRAP = Bootstrap()  # the default: 1000 resamples, 95 % intervals, seed 0


def clip_key_ids(keys: Sequence[str] | torch.Tensor) -> torch.Tensor:
    """Clip keys -> int64 ids (blake2b, 8 bytes): equal keys give equal ids in every process and run.

    Keys are strings, which torchmetrics cannot gather across processes; the ids are tensors it can."""
    if isinstance(keys, torch.Tensor):
        return keys.long().reshape(-1)
    if isinstance(keys, str):
        raise TypeError("expected a sequence of clip keys, got one string")
    return torch.tensor(
        [
            int.from_bytes(hashlib.blake2b(str(k).encode(), digest_size=8).digest(), "little", signed=True)
            for k in keys
        ],
        dtype=torch.long,
    )


def clip_indices(*ids: torch.Tensor) -> tuple[int, list[torch.Tensor]]:
    """(number of distinct clips, each id tensor as clip numbers 0..n-1 in sorted id order)."""
    unique, inverse = torch.unique(torch.cat(ids), return_inverse=True)
    return len(unique), list(inverse.split([len(i) for i in ids]))


def clip_sums(values: torch.Tensor, clips: torch.Tensor, n_clips: int) -> torch.Tensor:
    """Per-clip sums of row values: [N, ...] rows of clips [N] -> [n_clips, ...]."""
    out = values.new_zeros(n_clips, *values.shape[1:])
    return out.index_add_(0, clips, values)


def mean_statistic(
    values: torch.Tensor, clips: torch.Tensor, n_clips: int
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The statistic of a mean over rows (values [N] of clips [N]): counts [B, n_clips] -> the means [B]."""
    total = clip_sums(values.double(), clips, n_clips)
    rows = clip_sums(torch.ones(len(clips), dtype=torch.float64, device=clips.device), clips, n_clips)

    def mean(counts: torch.Tensor) -> torch.Tensor:
        counts = counts.to(total.device, torch.float64)
        return (counts @ total) / (counts @ rows)

    return mean


def bootstrap_interval(
    statistic: Callable[[torch.Tensor], torch.Tensor], n_clips: int, bootstrap: Bootstrap
) -> tuple[float, float]:
    """Bias-corrected percentile interval of `statistic(counts [B, n_clips]) -> [B]` over clip resamples.

    The quantiles of the resampled values, shifted by the bootstrap's estimate of the statistic's bias
    (the mean of the resampled values minus the value on the evaluated set; Efron & Tibshirani sec. 10.2).
    For a mean the shift is only Monte Carlo noise. For FID it is not: a resample holds about 63 % distinct
    clips, so its covariances are those of a smaller set, and FID, biased upwards in the number of rows,
    comes out larger, often by more than the spread of the resampled values; unshifted, the interval would
    miss the metric it belongs to. Shifted, it is an interval for the metric's expected value at this
    number of clips, which is what rows of one table, scored on the same clips, are compared by.
    NaN for fewer than two clips (nothing to resample), and where the statistic is undefined on a resample.
    """
    if n_clips < 2:
        return float("nan"), float("nan")

    def on_counts(counts: np.ndarray) -> np.ndarray:
        return statistic(torch.from_numpy(counts).double()).detach().double().cpu().numpy()

    def on_draws(drawn: np.ndarray, axis: int = -1) -> np.ndarray:
        drawn = np.atleast_2d(drawn)  # [B, n_clips]: the clip numbers drawn for each resample
        offsets = n_clips * np.arange(len(drawn))[:, None]
        return on_counts(np.bincount((drawn + offsets).ravel(), minlength=drawn.size).reshape(drawn.shape))

    result = scipy.stats.bootstrap(
        (np.arange(n_clips),),
        on_draws,
        n_resamples=bootstrap.resamples,
        vectorized=True,
        confidence_level=bootstrap.confidence,
        method="percentile",
        rng=np.random.default_rng(bootstrap.seed),
    )
    bias = result.bootstrap_distribution.mean() - on_counts(np.ones((1, n_clips)))[0]
    return float(result.confidence_interval.low - bias), float(result.confidence_interval.high - bias)


class ClipResampling:
    """Mixin for a torchmetrics `Metric` whose rows belong to clips: bootstrap intervals of its values.

    The metric sets `self.bootstrap` (a `Bootstrap`, or None for no intervals) and implements
    `clip_statistics()`: (number of clips, {name: statistic(counts [B, n_clips]) -> [B]}), on its current
    states. `intervals()` gathers the states of all processes first, as `compute()` does; a `compute()` that
    reports intervals itself calls `_intervals()`, its states being gathered already.
    """

    bootstrap: Bootstrap | None

    def clip_statistics(self) -> tuple[int, dict[str, Callable[[torch.Tensor], torch.Tensor]]]:
        raise NotImplementedError

    def _intervals(self) -> dict[str, tuple[float, float]]:
        if self.bootstrap is None:
            raise RuntimeError(f"{type(self).__name__} was made without a bootstrap: it has no intervals")
        n_clips, statistics = self.clip_statistics()
        return {name: bootstrap_interval(fn, n_clips, self.bootstrap) for name, fn in statistics.items()}

    def intervals(self) -> dict[str, tuple[float, float]]:
        """{name: (low, high)} on the states of all processes."""
        with self.sync_context(  # type: ignore[attr-defined]
            dist_sync_fn=self.dist_sync_fn,  # type: ignore[attr-defined]
            should_sync=self._to_sync,  # type: ignore[attr-defined]
            should_unsync=self._should_unsync,  # type: ignore[attr-defined]
        ):
            return self._intervals()


def with_intervals(
    values: dict[str, torch.Tensor], intervals: dict[str, tuple[float, float]]
) -> dict[str, torch.Tensor]:
    """`values` with `<name>_lo` and `<name>_hi` (float64 tensors) added for each interval."""
    out = dict(values)
    for name, (low, high) in intervals.items():
        out[f"{name}_lo"], out[f"{name}_hi"] = (torch.tensor(v, dtype=torch.float64) for v in (low, high))
    return out


def format_interval(value: float, low: float, high: float) -> str:
    """`value [low, high]`, with as many decimals as show the interval's width to two significant digits."""
    width = high - low
    if not math.isfinite(width) or width <= 0:
        return f"{value:.4g} [{low:.4g}, {high:.4g}]"
    decimals = min(6, max(0, 1 - math.floor(math.log10(width))))
    return f"{value:.{decimals}f} [{low:.{decimals}f}, {high:.{decimals}f}]"
