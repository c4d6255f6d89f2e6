"""Synchronisation metrics of TiVA (paper sec. 4.1.3): W-dis and DTW-dis between onset-detection-function curves.

The ODF (Bello et al. 2005) is librosa's spectral-flux onset strength with every parameter pinned (its defaults,
22.05 kHz, n_fft 2048, hop 512, are too coarse for 16-kHz audio): 16 kHz, n_fft 1024, hop 160 (a 10-ms grid),
64 mel bands up to 8 kHz, log power, lag 1, mean over bands. The paper fixes neither these nor the distances'
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

import librosa
import numpy as np
import scipy.stats
import torch
from torchmetrics import Metric

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


class OnsetSyncMetrics(Metric):
    """Mean W-dis and DTW-dis of generated against reference clips, paired by position (TiVA sec. 4.1.3).

    `update(generated [B, T], reference [B, T])` at 16 kHz; `compute()` -> {"w_dis", "dtw_dis"}, summed and
    counted over all processes.
    """

    full_state_update = False

    def __init__(self, sample_rate: int = SAMPLE_RATE, **kwargs):
        super().__init__(**kwargs)
        self.sample_rate = sample_rate
        for name in ("w_sum", "dtw_sum", "count"):
            self.add_state(name, torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, generated: torch.Tensor, reference: torch.Tensor) -> None:
        if generated.shape[0] != reference.shape[0]:
            raise ValueError(f"{generated.shape[0]} generated clips for {reference.shape[0]} references")
        for gen, ref in zip(generated, reference, strict=True):
            odf_gen, odf_ref = onset_strength(gen, self.sample_rate), onset_strength(ref, self.sample_rate)
            self.w_sum += wasserstein_odf(odf_ref, odf_gen)
            self.dtw_sum += dtw_odf(odf_ref, odf_gen)
            self.count += 1

    def compute(self) -> dict[str, torch.Tensor]:
        return {"w_dis": self.w_sum / self.count, "dtw_dis": self.dtw_sum / self.count}
