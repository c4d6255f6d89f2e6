"""SpecVQGAN's evaluation metrics (`v-iashin/SpecVQGAN` `evaluation/metrics/{fid,kl,isc}.py`): FID, MKL, IS as
torchmetrics Metrics, with their bootstrap intervals."""

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from shared.metrics import (
    Bootstrap,
    FrechetDistance,
    InceptionScore,
    MeanKLDivergence,
    clip_key_ids,
    frechet_distance,
    inception_score,
    kl_divergence,
)

REAL = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
FAKE = torch.tensor([[1.0, 1.0, 0.0], [0.0, 2.0, -1.0]])


def test_kl_toy_of_the_official_code():
    # `evaluation/metrics/kl.py`'s own check: kl_div(log q, p, 'sum') with q uniform is 0.0853
    p = torch.tensor([[9 / 25, 12 / 25, 4 / 25]], dtype=torch.float64)
    q = torch.full((1, 3), 1 / 3, dtype=torch.float64)
    assert kl_divergence(p, q, eps=0.0).item() == pytest.approx(0.085300, abs=5e-7)
    assert kl_divergence(p, p, eps=0.0).item() == pytest.approx(0.0, abs=1e-15)
    # the official eps goes to p_fake only: a zero in p_real costs nothing, a zero in p_fake is finite
    assert torch.isfinite(kl_divergence(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]))).all()


def test_mkl_pairs_fakes_with_reals_by_key_whatever_the_order():
    mkl = MeanKLDivergence()
    mkl.update(FAKE[[1]], ["clip_b"], real=False)  # fakes may come before their reals
    mkl.update(REAL[[1, 0]], ["clip_b", "clip_a"], real=True)
    mkl.update(FAKE[[0]], ["clip_a"], real=False)
    assert mkl.compute().item() == pytest.approx(0.316977, abs=5e-7)


def test_mkl_averages_over_fakes_and_refuses_unpaired_or_repeated_clips():
    mkl = MeanKLDivergence()
    mkl.update(REAL, ["a", "b"], real=True)
    mkl.update(torch.cat([FAKE, REAL[[0]]]), ["a", "b", "a"], real=False)  # clip a: 2 samples, one exact
    kl = kl_divergence(REAL.double().softmax(1), FAKE.double().softmax(1))
    expected = (kl.sum() + kl_divergence(REAL[[0]].double().softmax(1), REAL[[0]].double().softmax(1))) / 3
    assert mkl.compute().item() == pytest.approx(expected.item(), abs=1e-12)
    lonely = MeanKLDivergence()
    lonely.update(REAL, ["a", "b"], real=True)
    lonely.update(FAKE, ["a", "c"], real=False)
    with pytest.raises(ValueError, match="1 of 2 fakes have no real clip"):
        lonely.compute()
    twice = MeanKLDivergence()
    twice.update(REAL, ["a", "a"], real=True)
    twice.update(FAKE, ["a", "a"], real=False)
    with pytest.raises(ValueError, match="more than once"):
        twice.compute()
    assert torch.equal(clip_key_ids(["a", "b", "a"])[[0, 2]], clip_key_ids(["a", "a"]))
    assert clip_key_ids(["a"]) != clip_key_ids(["b"])


def gaussian_with_exact_moments(mu: np.ndarray, sigma: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n rows whose np.mean is exactly mu and np.cov(rowvar=False) exactly sigma."""
    z = np.random.RandomState(seed).randn(n, len(mu))
    z -= z.mean(0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T  # whitened: cov = I
    return mu + z @ np.linalg.cholesky(sigma).T


def psd_sqrt(a: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(a)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def test_fid_of_two_gaussians_equals_the_closed_form():
    rng = np.random.RandomState(0)
    d = 6
    a, b = rng.randn(d, d), rng.randn(d, d)
    s1, s2 = a @ a.T + 0.5 * np.eye(d), b @ b.T + 0.1 * np.eye(d)  # not commuting
    m1, m2 = rng.randn(d), rng.randn(d)
    r1 = psd_sqrt(s1)
    closed = np.sum((m1 - m2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(psd_sqrt(r1 @ s2 @ r1))
    fid = FrechetDistance(num_features=d)
    fid.update(torch.from_numpy(gaussian_with_exact_moments(m1, s1, 200, 1)), real=True)
    fid.update(torch.from_numpy(gaussian_with_exact_moments(m2, s2, 300, 2)), real=False)
    assert fid.compute().item() == pytest.approx(closed, rel=1e-9)
    # one dimension by hand: N(0, 1) vs N(1, 4): (1 - 0)^2 + (2 - 1)^2 = 2
    assert frechet_distance(np.zeros(1), np.eye(1), np.ones(1), 4 * np.eye(1)) == pytest.approx(2.0)


def test_fid_of_a_set_with_itself_is_zero_even_when_the_covariance_is_singular():
    x = torch.randn(40, 8, generator=torch.Generator().manual_seed(0))
    fid = FrechetDistance(num_features=8)
    fid.update(x, real=True)
    fid.update(x, real=False)
    assert fid.compute().item() == pytest.approx(0.0, abs=1e-9)
    few = FrechetDistance(num_features=8)  # 3 rows in 8 dimensions: rank-2 covariances
    few.update(x[:3], real=True)
    few.update(x[:3], real=False)
    value = few.compute().item()
    assert np.isfinite(value) and abs(value) < 1e-3
    lone = FrechetDistance(num_features=8)
    lone.update(x[:1], real=True)
    lone.update(x, real=False)
    with pytest.raises(RuntimeError, match="at least 2 real"):
        lone.compute()
    with pytest.raises(ValueError, match=r"\[N, 8\]"):
        lone.update(x[:, :4], real=True)


def test_fid_can_keep_the_real_statistics_across_resets():
    x = torch.randn(30, 4, generator=torch.Generator().manual_seed(1))
    fid = FrechetDistance(num_features=4, reset_real_features=False)
    fid.update(x, real=True)
    fid.update(x + 1, real=False)
    assert fid.compute().item() == pytest.approx(4.0, rel=1e-6)  # a shift by 1 in 4 dimensions (float32)
    fid.reset()
    fid.update(x, real=False)
    assert fid.compute().item() == pytest.approx(0.0, abs=1e-9)


def test_inception_score_of_identical_rows_is_one_and_of_balanced_sharp_splits_the_class_count():
    metric = InceptionScore()
    metric.update(torch.tensor([[0.3, -1.0, 2.0, 0.0]]).repeat(50, 1))
    mean, std = metric.compute()
    assert mean.item() == pytest.approx(1.0, abs=1e-12) and std.item() == pytest.approx(0.0, abs=1e-12)
    # 100 sharp rows cycling over 5 classes: every split of rows [10 i, 10 i + 10) holds each class twice
    sharp = 60.0 * torch.eye(5)[torch.arange(100) % 5]
    mean, std = inception_score(sharp, splits=10, seed=None)
    assert mean.item() == pytest.approx(5.0, rel=1e-9) and std.item() == pytest.approx(0.0, abs=1e-9)
    assert inception_score(sharp, splits=10, seed=2020)[0].item() < 5.0  # shuffled splits are unbalanced
    with pytest.raises(ValueError, match="at least 10 rows"):
        inception_score(sharp[:9])


def test_inception_score_shuffles_with_the_official_permutation():
    logits = torch.randn(37, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    permuted = logits[torch.from_numpy(np.random.RandomState(2020).permutation(37))]
    assert torch.allclose(
        torch.stack(inception_score(logits, seed=2020)), torch.stack(inception_score(permuted, seed=None))
    )
    p = permuted.softmax(1).numpy()  # numpy by hand: splits at rows i * 37 // 10
    scores = []
    for i in range(10):
        part = p[i * 37 // 10 : (i + 1) * 37 // 10]
        scores.append(np.exp(np.mean(np.sum(part * (np.log(part) - np.log(part.mean(0))), 1))))
    mean, std = inception_score(logits)
    assert mean.item() == pytest.approx(np.mean(scores), rel=1e-12)
    assert std.item() == pytest.approx(np.std(scores), rel=1e-9)  # population std, as torch-fidelity


def metric_data() -> dict[str, torch.Tensor | list[str]]:
    g = torch.Generator().manual_seed(7)
    n_clips, samples = 11, 2
    return {
        "real": torch.randn(n_clips, 5, generator=g, dtype=torch.float64),
        "real_keys": [f"clip{i}" for i in range(n_clips)],
        "fake": torch.randn(n_clips * samples, 5, generator=g, dtype=torch.float64),
        "fake_keys": [f"clip{i}" for i in range(n_clips) for _ in range(samples)],
    }


def run_metrics(chunks: list[tuple[slice, slice]]) -> dict[str, float]:
    """Feed the data in the given (real rows, fake rows) chunks, one update each; features = logits here.
    The values, and the bounds of their bootstrap intervals (`fid_lo`, ...)."""
    data = metric_data()
    bootstrap = Bootstrap(resamples=200)
    fid = FrechetDistance(num_features=5, bootstrap=bootstrap)
    mkl, isc = MeanKLDivergence(bootstrap=bootstrap), InceptionScore(splits=4, bootstrap=bootstrap)
    for reals, fakes in chunks:
        if reals.stop > reals.start:
            fid.update(data["real"][reals], real=True, ids=data["real_keys"][reals])
            mkl.update(data["real"][reals], data["real_keys"][reals], real=True)
        fid.update(data["fake"][fakes], real=False, ids=data["fake_keys"][fakes])
        mkl.update(data["fake"][fakes], data["fake_keys"][fakes], real=False)
        isc.update(data["fake"][fakes], data["fake_keys"][fakes])
    mean, std = isc.compute()
    values = {
        "fid": fid.compute().item(),
        "mkl": mkl.compute().item(),
        "is": mean.item(),
        "is_std": std.item(),
    }
    for metric in (fid, mkl, isc):
        for name, (low, high) in metric.intervals().items():
            values |= {f"{name}_lo": low, f"{name}_hi": high}
    return values


def test_metrics_do_not_depend_on_how_the_data_is_split_into_updates():
    whole = run_metrics([(slice(0, 11), slice(0, 22))])
    # reals and their fakes in different calls, uneven pieces
    pieces = run_metrics(
        [(slice(0, 0), slice(0, 7)), (slice(0, 6), slice(7, 8)), (slice(6, 11), slice(8, 22))]
    )
    assert pieces == pytest.approx(whole, rel=1e-10)
    assert whole["fid"] > 0 and whole["mkl"] > 0 and whole["is"] > 1
    for name in ("fid", "mkl", "is"):
        assert whole[f"{name}_lo"] < whole[name] < whole[f"{name}_hi"]


def _ddp_metrics(rank: int, world: int, rdzv: str, out: str) -> None:
    torch.set_num_threads(1)  # a forked child must not reuse the parent's OpenMP pool
    dist.init_process_group("gloo", init_method=f"file://{rdzv}", rank=rank, world_size=world)
    # contiguous shards of uneven size; rank 1 holds the second sample of clip 4, whose real is on rank 0,
    # so MKL on rank 1's data alone would refuse to compute
    chunks = (
        [(slice(0, 3), slice(0, 5)), (slice(3, 7), slice(5, 9))]
        if rank == 0
        else [(slice(7, 11), slice(9, 22))]
    )
    torch.save(run_metrics(chunks), f"{out}.{rank}")
    dist.destroy_process_group()


def test_two_processes_give_the_one_process_values_and_intervals(tmp_path):
    single = run_metrics([(slice(0, 11), slice(0, 22))])
    # fork: the children need no second import of torch and torchmetrics (seconds each)
    args = (2, str(tmp_path / "rdzv"), str(tmp_path / "m"))
    mp.start_processes(_ddp_metrics, args=args, nprocs=2, join=True, start_method="fork")
    for rank in range(2):
        assert torch.load(tmp_path / f"m.{rank}") == pytest.approx(single, rel=1e-10)
