"""Cross-modal retrieval MRR (`shared.metrics.retrieval`): the hand-derived toy case, chance and perfect
embeddings, class-level relevance, pieces and two processes giving the one-process values."""

from __future__ import annotations

import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torchmetrics.retrieval import RetrievalMRR

from shared.metrics.bootstrap import Bootstrap
from shared.metrics.retrieval import CrossModalMRR, chance_mrr, reciprocal_ranks


def _angles(degrees: list[float]) -> torch.Tensor:
    rad = torch.tensor(degrees, dtype=torch.float64) * math.pi / 180
    return torch.stack([rad.cos(), rad.sin()], dim=1)


def test_first_relevant_ranks_1_2_4_give_0_5833():
    # one query direction; the candidates at 0, 30, 60, 90 degrees rank in that order
    queries = _angles([0.0, 0.0, 0.0])
    candidates = _angles([0.0, 30.0, 60.0, 90.0])
    relevant = torch.zeros(3, 4, dtype=torch.bool)
    relevant[0, 0] = relevant[1, 1] = relevant[2, 3] = True  # ranks 1, 2, 4
    rr = reciprocal_ranks(queries, candidates, relevant)
    assert rr.tolist() == pytest.approx([1.0, 0.5, 0.25])
    assert rr.mean().item() == pytest.approx((1 + 0.5 + 0.25) / 3, rel=1e-12)
    scores = queries @ candidates.T
    indexes = torch.arange(3)[:, None].expand(3, 4)
    plain = RetrievalMRR()(scores.reshape(-1), relevant.reshape(-1), indexes=indexes.reshape(-1))
    assert plain.item() == pytest.approx(0.58333, abs=1e-5)


def test_relevant_candidates_of_negative_cosine_still_rank():
    # candidates at 120, 150, 180 degrees from the query: cosines -0.5, -0.87, -1; ranks 1, 2, 3
    queries = _angles([0.0, 0.0, 0.0])
    candidates = _angles([120.0, 150.0, 180.0])
    relevant = torch.eye(3, dtype=torch.bool)
    assert reciprocal_ranks(queries, candidates, relevant).tolist() == pytest.approx([1.0, 1 / 2, 1 / 3])


def test_chance_level_formula():
    n = 50
    harmonic = sum(1 / r for r in range(1, n + 1))
    assert chance_mrr(torch.ones(7), n).item() == pytest.approx(harmonic / n, rel=1e-12)
    assert chance_mrr(torch.full((3,), n), n).item() == pytest.approx(1.0, rel=1e-12)
    # K = M - 1 relevant: rank 1 unless the one irrelevant candidate comes first (then rank 2)
    assert chance_mrr(torch.tensor([n - 1]), n).item() == pytest.approx((n - 1) / n + 0.5 / n, rel=1e-12)
    # a mixture of counts is the mean over queries
    both = chance_mrr(torch.tensor([1, n]), n).item()
    assert both == pytest.approx((harmonic / n + 1.0) / 2, rel=1e-12)


def test_random_embeddings_sit_at_chance_and_perfect_ones_at_one():
    gen = torch.Generator().manual_seed(0)
    n, trials = 64, 25
    harmonic = sum(1 / r for r in range(1, n + 1))
    values = []
    for _ in range(trials):
        metric = CrossModalMRR(bootstrap=None)
        labels = torch.arange(n) % 8
        metric.update(torch.randn(n, 32, generator=gen), torch.randn(n, 32, generator=gen), labels, range(n))
        values.append(metric.compute())
    for name in ("mrr_a2i", "mrr_i2a"):
        mean = sum(float(v[name]) for v in values) / trials
        # 1,600 queries: the standard error of the mean reciprocal rank is about 0.004
        assert mean == pytest.approx(harmonic / n, abs=0.015)
        assert float(values[0][f"{name}_chance"]) == pytest.approx(harmonic / n, rel=1e-12)
        class_mean = sum(float(v[f"{name}_class"]) for v in values) / trials
        assert class_mean == pytest.approx(float(values[0][f"{name}_class_chance"]), abs=0.03)
    # class chance with 8 relevant of 64 is far above instance chance
    assert float(values[0]["mrr_a2i_class_chance"]) > 3 * harmonic / n

    perfect = CrossModalMRR(bootstrap=None)
    emb = torch.randn(n, 32, generator=gen)
    perfect.update(emb, 3 * emb, torch.arange(n) % 8, [f"c{i}" for i in range(n)])
    out = perfect.compute()
    for name in ("mrr_a2i", "mrr_i2a", "mrr_a2i_class", "mrr_i2a_class"):
        assert float(out[name]) == pytest.approx(1.0, rel=1e-12)


def test_class_level_counts_any_clip_of_the_class():
    # audio of clip 0 is closest to the image of clip 1 (same class) and only then to its own image
    audio = _angles([0.0, 90.0])
    image = _angles([20.0, 10.0])
    metric = CrossModalMRR(bootstrap=None)
    metric.update(audio, image, torch.tensor([5, 5]), ["a", "b"])
    out = metric.compute()
    # A->I: clip a ranks b (10 deg) then a (20 deg): 1/2; clip b (90 deg) ranks a (70 deg) then b (80 deg): 1/2
    assert float(out["mrr_a2i"]) == pytest.approx(0.5)
    assert float(out["mrr_a2i_class"]) == pytest.approx(1.0)
    assert float(out["mrr_a2i_class_chance"]) == pytest.approx(1.0)


def run_mrr(pieces: list[slice]) -> dict[str, float]:
    gen = torch.Generator().manual_seed(1)
    audio, image = torch.randn(12, 16, generator=gen), torch.randn(12, 16, generator=gen)
    image[:6] += 2 * audio[:6]  # half the clips match their own frame
    labels, ids = torch.arange(12) % 3, [f"clip{i}" for i in range(12)]
    metric = CrossModalMRR(bootstrap=Bootstrap(resamples=200))
    for piece in pieces:
        metric.update(audio[piece], image[piece], labels[piece], ids[piece])
    return {k: float(v) for k, v in metric.compute().items()}


def test_pieces_give_the_whole_and_intervals_hold_the_value():
    values = run_mrr([slice(0, 12)])
    assert run_mrr([slice(0, 5), slice(5, 5), slice(5, 12)]) == pytest.approx(values, rel=1e-12)
    for name in ("mrr_a2i", "mrr_i2a", "mrr_a2i_class", "mrr_i2a_class"):
        assert values[f"{name}_lo"] <= values[name] <= values[f"{name}_hi"]
        assert values[name] > values[f"{name}_chance"]


def _ddp_mrr(rank: int, world: int, rdzv: str, out: str) -> None:
    torch.set_num_threads(1)  # a forked child must not reuse the parent's OpenMP pool
    dist.init_process_group("gloo", init_method=f"file://{rdzv}", rank=rank, world_size=world)
    torch.save(run_mrr([slice(0, 5)] if rank == 0 else [slice(5, 9), slice(9, 12)]), f"{out}.{rank}")
    dist.destroy_process_group()


def test_two_processes_rank_against_all_candidates(tmp_path):
    single = run_mrr([slice(0, 12)])
    args = (2, str(tmp_path / "rdzv"), str(tmp_path / "mrr"))
    mp.start_processes(_ddp_mrr, args=args, nprocs=2, join=True, start_method="fork")
    for rank in range(2):
        assert torch.load(tmp_path / f"mrr.{rank}") == pytest.approx(single, rel=1e-10)
