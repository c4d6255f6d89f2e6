"""Bootstrap intervals over clips (`shared.metrics.bootstrap`) of every evaluation metric."""

import numpy as np
import pytest
import torch

from shared.metrics import (
    BOOTSTRAP,
    Bootstrap,
    ClipMean,
    FrechetDistance,
    InceptionScore,
    MeanKLDivergence,
    OnsetSyncMetrics,
    bootstrap_interval,
)

SAMPLES = 3  # generated samples per clip


def clip_data(n_clips: int, seed: int = 0, dim: int = 4) -> dict:
    """Reals [n, dim] and fakes [n * SAMPLES, dim] (sample-major) of n clips, fakes shifted from the reals."""
    g = torch.Generator().manual_seed(seed)
    ids = [f"clip{i}" for i in range(n_clips)]
    real = torch.randn(n_clips, dim, generator=g, dtype=torch.float64)
    fake = real.repeat(SAMPLES, 1) + 0.7 * torch.randn(
        n_clips * SAMPLES, dim, generator=g, dtype=torch.float64
    )
    return {"ids": ids, "real": real, "fake": fake + 0.3, "fake_ids": ids * SAMPLES}


def fid_metric(data: dict, bootstrap: Bootstrap | None = BOOTSTRAP) -> FrechetDistance:
    metric = FrechetDistance(num_features=data["real"].shape[1], bootstrap=bootstrap)
    metric.update(data["real"], real=True, ids=data["ids"])
    metric.update(data["fake"], real=False, ids=data["fake_ids"])
    return metric


def mkl_metric(data: dict, bootstrap: Bootstrap | None = BOOTSTRAP) -> MeanKLDivergence:
    metric = MeanKLDivergence(bootstrap=bootstrap)
    metric.update(data["real"], data["ids"], real=True)
    metric.update(data["fake"], data["fake_ids"], real=False)
    return metric


def is_metric(data: dict, bootstrap: Bootstrap | None = BOOTSTRAP) -> InceptionScore:
    metric = InceptionScore(splits=4, bootstrap=bootstrap)
    metric.update(2 * data["fake"], data["fake_ids"])
    return metric


def mean_metric(data: dict, bootstrap: Bootstrap | None = BOOTSTRAP) -> ClipMean:
    metric = ClipMean("l2", bootstrap=bootstrap)
    metric.update(((data["fake"] - data["real"].repeat(SAMPLES, 1)) ** 2).mean(1), data["fake_ids"])
    return metric


def point_and_interval(make, data: dict, bootstrap: Bootstrap = BOOTSTRAP) -> tuple[float, float, float]:
    metric = make(data, bootstrap)
    value = metric.compute()
    if isinstance(value, tuple):  # IS: (mean, std)
        value = value[0]
    if isinstance(value, dict):  # ClipMean: its value and its interval
        return float(value["l2"]), float(value["l2_lo"]), float(value["l2_hi"])
    ((low, high),) = metric.intervals().values()
    return float(value), low, high


METRICS = {"fid": fid_metric, "mkl": mkl_metric, "is": is_metric, "mean": mean_metric}


@pytest.mark.parametrize("name", METRICS)
def test_all_ones_counts_give_the_plain_metric(name):
    metric = METRICS[name](clip_data(30))
    plain = metric.compute()
    plain = plain["l2"] if isinstance(plain, dict) else plain[0] if isinstance(plain, tuple) else plain
    n_clips, statistics = metric.clip_statistics()
    assert n_clips == 30
    (statistic,) = statistics.values()
    assert statistic(torch.ones(2, n_clips, dtype=torch.float64)).tolist() == pytest.approx(
        [float(plain)] * 2, rel=1e-10
    )


@pytest.mark.parametrize("name", METRICS)
def test_interval_holds_the_metric_shrinks_with_more_clips_and_is_reproducible(name):
    few_value, few_low, few_high = point_and_interval(METRICS[name], clip_data(40, seed=1))
    many_value, many_low, many_high = point_and_interval(METRICS[name], clip_data(640, seed=2))
    assert few_low < few_value < few_high and many_low < many_value < many_high
    # 16 times the clips: about a quarter of the width (1 / sqrt(16)); a half leaves room for noise
    assert many_high - many_low < 0.5 * (few_high - few_low)
    again = point_and_interval(METRICS[name], clip_data(40, seed=1))
    other_seed = point_and_interval(METRICS[name], clip_data(40, seed=1), Bootstrap(seed=1))
    assert again == (few_value, few_low, few_high)
    assert other_seed[0] == few_value and other_seed[1:] != (few_low, few_high)


def test_a_clip_brings_all_its_samples():
    data = clip_data(25, seed=3)
    one = ClipMean("v")
    one.update(data["real"][:, 0], data["ids"])
    # each clip's value given four times: every resample weighs the four copies alike, so nothing changes
    four = ClipMean("v")
    four.update(data["real"][:, 0].repeat(4), data["ids"] * 4)
    assert {k: float(v) for k, v in four.compute().items()} == pytest.approx(
        {k: float(v) for k, v in one.compute().items()}, rel=1e-12
    )


def test_reals_and_fakes_of_a_clip_are_drawn_together():
    # every fake is its clip's real: a resample that drew reals and fakes apart would have FID > 0
    data = clip_data(30, seed=4, dim=3)
    data["fake"], data["fake_ids"] = data["real"].clone(), data["ids"]
    value, low, high = point_and_interval(fid_metric, data)
    assert value == pytest.approx(0.0, abs=1e-9) and abs(low) < 1e-6 and abs(high) < 1e-6


def test_fid_interval_holds_the_metric_even_with_fewer_clips_than_dimensions():
    # resamples hold fewer distinct clips, so their FID is biased upwards; the interval corrects for it
    data = clip_data(24, seed=5, dim=32)
    value, low, high = point_and_interval(fid_metric, data)
    n_clips, statistics = fid_metric(data).clip_statistics()
    counts = torch.from_numpy(np.random.default_rng(0).multinomial(n_clips, [1 / n_clips] * n_clips, 200))
    raw = statistics["fid"](counts.double()).numpy()
    assert np.quantile(raw, 0.025) > value  # the unshifted percentile interval would miss the metric
    assert low < value < high


def test_onset_intervals_come_with_the_means():
    g = torch.Generator().manual_seed(6)
    clips = 8
    reference = torch.randn(clips, 8000, generator=g) * (torch.rand(clips, 1, generator=g) > 0.5)
    generated = reference.roll(160 * 5, dims=1) + 0.1 * torch.randn(clips, 8000, generator=g)
    metric = OnsetSyncMetrics(bootstrap=Bootstrap())
    metric.update(generated[:5], reference[:5], ids=[f"c{i}" for i in range(5)])
    metric.update(generated[5:], reference[5:], ids=[f"c{i}" for i in range(5, clips)])
    values = {k: float(v) for k, v in metric.compute().items()}
    assert set(values) == {"w_dis", "w_dis_lo", "w_dis_hi", "dtw_dis", "dtw_dis_lo", "dtw_dis_hi"}
    for name in ("w_dis", "dtw_dis"):
        assert values[f"{name}_lo"] <= values[name] <= values[f"{name}_hi"]
    plain = OnsetSyncMetrics()  # no bootstrap: the means alone, no ids needed
    plain.update(generated, reference)
    assert {k: float(v) for k, v in plain.compute().items()} == pytest.approx(
        {k: values[k] for k in ("w_dis", "dtw_dis")}, rel=1e-12
    )
    with pytest.raises(ValueError, match="clip id of every pair"):
        metric.update(generated, reference)


def test_misuse_and_degenerate_cases():
    assert all(np.isnan(bootstrap_interval(lambda counts: counts.sum(1), 1, Bootstrap())))
    with pytest.raises(ValueError, match="resamples >= 1"):
        Bootstrap(resamples=0)
    with pytest.raises(ValueError, match="0 < confidence < 1"):
        Bootstrap(confidence=1.0)
    with pytest.raises(ValueError, match="clip id of every row"):
        FrechetDistance(num_features=4, bootstrap=Bootstrap()).update(torch.zeros(3, 4), real=True)
    with pytest.raises(RuntimeError, match="without a bootstrap"):
        fid_metric(clip_data(5), bootstrap=None).intervals()
