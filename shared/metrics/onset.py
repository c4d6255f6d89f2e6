"""Synchronisation metrics of TiVA (paper sec. 4.1.3): W-dis and DTW-dis between onset-detection-function curves.

The ODF (Bello et al. 2005, IEEE TSAP 13(5), sec. III-A.2, spectral flux) is librosa's spectral-flux onset
strength with every parameter pinned (its defaults, 22.05 kHz, n_fft 2048, hop 512, are too coarse for 16-kHz
audio): 16 kHz, n_fft 1024, hop 160 (a 10-ms grid), 64 mel bands up to 8 kHz, log power, lag 1, mean over bands. The paper fixes neither these nor the distances'
normalisation; our choices, recorded here:

- **W-dis** (`wasserstein_odf`): each ODF is a distribution over time, the frame times are the values and the
  ODF the weights (`scipy.stats.wasserstein_distance(times, times, odf_ref, odf_gen)`), in seconds. Feeding the
  ODF values as samples (`scipy.stats.wasserstein_distance(odf_ref, odf_gen)`) ignores time altogether. An
  all-zero ODF (silence) carries no timing, so it counts as a uniform distribution over the clip.
- **DTW-dis** (`dtw_odf`), as sec. 4.1.3 defines it: "a dynamic programming algorithm" aligns the two sequences,
  one frame may match many, then the point-by-point Euclidean distance of the aligned sequences. Each ODF is
  first scaled to a peak of 1 (the metric is about timing, not loudness). The alignment is unconstrained DTW
  (librosa.sequence.dtw, steps (1,1), (0,1), (1,0)) on the squared differences (a_i - b_j)², so the path it
  finds is the one of least Euclidean distance, and DTW-dis = sqrt(its accumulated cost) is that distance:
  the path and the reported distance are the same measure. Unconstrained DTW absorbs constant shifts by
  design; W-dis is the metric that sees them.
"""

from __future__ import annotations

from collections.abc import Sequence

import librosa
import numpy as np
import scipy.stats
import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from shared.metrics.bootstrap import (
    Bootstrap,
    ClipResampling,
    clip_indices,
    clip_key_ids,
    mean_statistic,
    with_intervals,
)

SAMPLE_RATE, N_FFT, HOP, N_MELS, F_MAX = 16_000, 1024, 160, 64, 8000.0


def onset_strength(wave: np.ndarray | torch.Tensor, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """ODF of a mono waveform [T] at 16 kHz: float64 [1 + T // 160], one value per 10 ms."""
    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"the ODF parameters are pinned for {SAMPLE_RATE} Hz audio, got {sample_rate} Hz")
    y = (
        wave.detach().cpu().double().numpy()
        if isinstance(wave, torch.Tensor)
        else np.asarray(wave, np.float64)
    )
    return librosa.onset.onset_strength(
        y=y, sr=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS, fmax=F_MAX, lag=1, max_size=1,
        center=True, aggregate=np.mean,
    )  # fmt: skip


def wasserstein_odf(
    odf_ref: np.ndarray, odf_gen: np.ndarray, hop_seconds: float = HOP / SAMPLE_RATE
) -> float:
    """W-dis in seconds between two ODFs seen as distributions over their frame times."""
    n = min(len(odf_ref), len(odf_gen))
    times = np.arange(n) * hop_seconds
    weights = [
        np.ones(n) if not np.any(odf[:n] > 0) else np.clip(odf[:n], 0, None) for odf in (odf_ref, odf_gen)
    ]
    return float(scipy.stats.wasserstein_distance(times, times, weights[0], weights[1]))


def dtw_odf(odf_ref: np.ndarray, odf_gen: np.ndarray) -> float:
    """DTW-dis: the least Euclidean distance between two peak-normalised ODFs over all DTW alignments."""
    a, b = (odf / odf.max() if odf.max() > 0 else odf for odf in (np.asarray(odf_ref), np.asarray(odf_gen)))
    cost = librosa.sequence.dtw(X=a[None], Y=b[None], metric="sqeuclidean", backtrack=False)
    return float(np.sqrt(cost[-1, -1]))


class OnsetSyncMetrics(ClipResampling, Metric):
    """Mean W-dis and DTW-dis of generated against reference clips, paired by position (TiVA sec. 4.1.3).

    `update(generated [B, T], reference [B, T], ids=None)` at 16 kHz; `compute()` -> {"w_dis", "dtw_dis"} over
    the pairs of all processes, and with `bootstrap` their intervals `w_dis_lo`, `w_dis_hi`, `dtw_dis_lo`,
    `dtw_dis_hi` over clips (`shared.metrics.bootstrap`; `ids` names the clip of each pair, so the samples of
    one clip are drawn together).
    """

    full_state_update = False

    def __init__(self, sample_rate: int = SAMPLE_RATE, bootstrap: Bootstrap | None = None, **kwargs):
        super().__init__(**kwargs)
        self.sample_rate, self.bootstrap = sample_rate, bootstrap
        for name in ("w_dis", "dtw_dis", "ids"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(
        self,
        generated: torch.Tensor,
        reference: torch.Tensor,
        ids: Sequence[str] | torch.Tensor | None = None,
    ) -> None:
        if generated.shape[0] != reference.shape[0]:
            raise ValueError(f"{generated.shape[0]} generated clips for {reference.shape[0]} references")
        if self.bootstrap is not None and (ids is None or len(ids) != len(generated)):
            raise ValueError("onset metrics with a bootstrap need the clip id of every pair (ids=...)")
        w_dis, dtw_dis = [], []
        for gen, ref in zip(generated, reference, strict=True):
            odf_gen, odf_ref = onset_strength(gen, self.sample_rate), onset_strength(ref, self.sample_rate)
            w_dis.append(wasserstein_odf(odf_ref, odf_gen))
            dtw_dis.append(dtw_odf(odf_ref, odf_gen))
        self.w_dis.append(torch.tensor(w_dis, dtype=torch.float64, device=self.device))
        self.dtw_dis.append(torch.tensor(dtw_dis, dtype=torch.float64, device=self.device))
        if ids is not None:
            self.ids.append(clip_key_ids(ids).to(self.device))

    def compute(self) -> dict[str, torch.Tensor]:
        values = {"w_dis": dim_zero_cat(self.w_dis).mean(), "dtw_dis": dim_zero_cat(self.dtw_dis).mean()}
        return values if self.bootstrap is None else with_intervals(values, self._intervals())

    def clip_statistics(self) -> tuple[int, dict]:
        n_clips, (clips,) = clip_indices(dim_zero_cat(self.ids))
        return n_clips, {
            name: mean_statistic(dim_zero_cat(getattr(self, name)), clips, n_clips)
            for name in ("w_dis", "dtw_dis")
        }
