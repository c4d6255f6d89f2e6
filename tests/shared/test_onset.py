"""shared.metrics.onset: ODF, W-dis and DTW-dis (TiVA paper sec. 4.1.3)."""

import itertools

import numpy as np
import pytest
import scipy.signal
import scipy.stats
import torch

from shared.audio import load_audio
from shared.metrics import OnsetSyncMetrics, dtw_odf, onset_strength, wasserstein_odf

SR = 16_000


def click_train(shift_seconds: float = 0.0, n: int = 163_840) -> np.ndarray:
    """19 clicks every 0.5 s from 0.5 s (+ shift), 10.24 s at 16 kHz."""
    y = np.zeros(n)
    for k in range(19):
        y[round((0.5 + 0.5 * k + shift_seconds) * SR)] = 1.0
    return y


def peaks(odf: np.ndarray) -> np.ndarray:
    return scipy.signal.find_peaks(odf, height=0.5 * odf.max())[0]


def test_click_train_odf_has_one_peak_a_frame_after_each_click():
    odf = onset_strength(click_train())
    assert odf.shape == (1025,)
    click_frames = np.array([round((0.5 + 0.5 * k) * SR) // 160 for k in range(19)])
    found = peaks(odf)
    assert len(found) == 19
    assert np.all((found - click_frames >= 0) & (found - click_frames <= 1))  # within the 10-ms frame after
    with pytest.raises(ValueError, match="16000 Hz"):
        onset_strength(click_train(), sample_rate=22050)


@pytest.mark.parametrize("shift", [0.02, 0.1, 0.25])
def test_w_dis_measures_a_time_shift_in_seconds(shift):
    ref, gen = onset_strength(click_train()), onset_strength(click_train(shift))
    assert wasserstein_odf(ref, gen) == pytest.approx(shift, abs=0.011)  # within one 10-ms frame
    # the trap: ODF values as samples ignore time completely
    assert scipy.stats.wasserstein_distance(ref, gen) < 0.1 * shift
    assert wasserstein_odf(ref, ref) == 0.0


def test_shifting_a_real_recording_by_100_ms_raises_w_dis(demo_root):
    wave = load_audio(demo_root / "neural_audio_codec" / "music1" / "original.wav", SR, duration=8.0).numpy()
    shifted = np.concatenate([np.zeros(1600), wave[:-1600]])
    metric = OnsetSyncMetrics()
    metric.update(torch.from_numpy(np.stack([wave, shifted])), torch.from_numpy(np.stack([wave, wave])))
    w_same = wasserstein_odf(onset_strength(wave), onset_strength(wave))
    w_shift = wasserstein_odf(onset_strength(wave), onset_strength(shifted))
    assert w_same == 0.0 and w_shift > 0.05
    values = metric.compute()
    assert values["w_dis"].item() == pytest.approx((w_same + w_shift) / 2, rel=1e-9)


def test_dtw_dis_is_zero_for_identical_curves_symmetric_and_grows_with_distortion():
    rng = np.random.default_rng(0)
    a = np.abs(rng.standard_normal(300))
    assert dtw_odf(a, a) == 0.0
    b = a + 0.1 * np.abs(rng.standard_normal(300))
    c = a + 0.5 * np.abs(rng.standard_normal(300))
    assert dtw_odf(a, b) == pytest.approx(dtw_odf(b, a), rel=1e-9)
    assert 0 < dtw_odf(a, b) < dtw_odf(a, c)
    # unconstrained DTW absorbs a constant shift almost entirely; W-dis does not
    ref, late = onset_strength(click_train()), onset_strength(click_train(0.1))
    assert dtw_odf(ref, late) < 0.2 * dtw_odf(
        ref, onset_strength(np.random.default_rng(1).standard_normal(163_840))
    )


def test_silence_counts_as_a_uniform_distribution():
    ref = onset_strength(click_train())
    silent = np.zeros_like(ref)
    assert np.isfinite(wasserstein_odf(ref, silent)) and wasserstein_odf(ref, silent) > 0.1
    assert np.isfinite(dtw_odf(ref, silent))


def warping_paths(n: int, m: int):
    """Every DTW alignment of n and m frames: monotone paths from (0, 0) to (n - 1, m - 1) in steps (1, 0),
    (0, 1), (1, 1)."""
    if n == 1 and m == 1:
        yield [(0, 0)]
        return
    for di, dj in ((1, 0), (0, 1), (1, 1)):
        if n - di >= 1 and m - dj >= 1:
            for path in warping_paths(n - di, m - dj):
                yield [*path, (n - 1, m - 1)]


def along(path, a, b, p: int) -> float:
    """The p-norm of the differences of a and b aligned by `path`."""
    return float(np.sum(np.abs([a[i] - b[j] for i, j in path]) ** p) ** (1 / p))


def test_dtw_dis_is_the_least_euclidean_distance_over_all_alignments():
    """Sec. 4.1.3: align, then the Euclidean distance of the aligned curves. Aligning by one distance (the sum of
    |a_i - b_j|) and reporting another (the Euclidean one along that path) gives a larger number wherever the
    two distances prefer different paths; the curves below are drawn until they do."""
    rng = np.random.default_rng(0)
    for _ in itertools.count():
        a, b = rng.random(5), rng.random(6)
        a, b = a / a.max(), b / b.max()  # peak 1 already: dtw_odf's normalisation leaves them as they are
        paths = list(warping_paths(len(a), len(b)))
        least_l1_path = min(paths, key=lambda path: along(path, a, b, 1))
        euclidean = min(along(path, a, b, 2) for path in paths)
        if along(least_l1_path, a, b, 2) > euclidean * (1 + 1e-6):
            break
    assert len(paths) == 681  # the Delannoy number D(4, 5): the brute force sees every alignment
    assert dtw_odf(a, b) == pytest.approx(euclidean, rel=1e-9)
    assert dtw_odf(a, b) < along(least_l1_path, a, b, 2)
