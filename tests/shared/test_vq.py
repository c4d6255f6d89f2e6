import math

import pytest
import torch

from shared.vq import CodebookUsage, EMAVectorQuantizer, VectorQuantizer, nearest_code

CODEBOOK = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
VECTORS = torch.tensor([[0.1, 0.2], [0.9, 0.1], [0.6, 0.7]])


def as_channel_first(rows: torch.Tensor) -> torch.Tensor:
    """[N, C] rows -> [1, C, N] (one sequence of N positions)."""
    return rows.t().unsqueeze(0)


def test_gradient_quantizer_matches_the_reference_toy():
    vq = VectorQuantizer(4, 2, beta=0.25)
    vq.embedding.weight.data.copy_(CODEBOOK)
    z = as_channel_first(VECTORS).requires_grad_(True)
    q = vq(z)
    assert q.indices.tolist() == [[0, 1, 3]]
    # mean squared distance 0.32 / 6; the loss weighs it 1 (commitment) + 0.25 (codebook)
    assert q.loss.item() == pytest.approx(1.25 * 0.32 / 6, abs=1e-6)
    assert q.loss.item() == pytest.approx(0.0666667, abs=1e-6)
    assert q.perplexity.item() == pytest.approx(3.0)
    assert q.counts.tolist() == [1, 1, 0, 1]
    q.z_q.sum().backward()  # straight-through: d(sum z_q)/dz = 1 everywhere
    assert torch.equal(z.grad, torch.ones_like(z))


def test_gradient_quantizer_sends_the_codebook_term_to_the_codebook():
    vq = VectorQuantizer(4, 2, beta=0.25)
    vq.embedding.weight.data.copy_(CODEBOOK)
    z = as_channel_first(VECTORS)
    vq(z).loss.backward()
    # d/de of 0.25 * mean((e - z)^2) over 6 numbers = 0.25 * 2 (e - z) / 6 for the chosen codes
    expected_row0 = 0.25 * 2 * (CODEBOOK[0] - VECTORS[0]) / 6
    assert torch.allclose(vq.embedding.weight.grad[0], expected_row0, atol=1e-7)
    assert torch.equal(vq.embedding.weight.grad[2], torch.zeros(2))  # unused code


def test_ties_go_to_the_lowest_index_and_lookup_inverts():
    assert nearest_code(torch.tensor([[0.5, 0.0]]), CODEBOOK).item() == 0
    vq = VectorQuantizer(4, 2)
    vq.embedding.weight.data.copy_(CODEBOOK)
    z = torch.randn(2, 2, 3, 5)
    q = vq(z)
    assert q.indices.shape == (2, 3, 5)
    assert torch.equal(vq.lookup(q.indices), q.z_q.detach())


def clustered_data(n: int, centres: torch.Tensor, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    pick = torch.randint(len(centres), (n,), generator=g)
    return centres[pick] + 0.05 * torch.randn(n, centres.shape[1], generator=g)


def test_ema_quantizer_learns_cluster_centres_and_restarts_dead_codes():
    centres = torch.tensor([[4.0, 0.0], [-4.0, 0.0], [0.0, 4.0], [0.0, -4.0]])
    vq = EMAVectorQuantizer(8, 2, decay=0.9, restart_threshold=1.0).train()
    for step in range(200):
        vq(as_channel_first(clustered_data(64, centres, step)))
    # every centre has a code within 0.05 of it
    distance = torch.cdist(centres, vq.codebook).min(dim=1).values
    assert distance.max() < 0.05
    # and no code is stranded far from the data: dead ones were restarted onto encoder outputs
    assert torch.cdist(vq.codebook, centres).min(dim=1).values.max() < 0.5
    assert vq.ema_count.sum().item() == pytest.approx(64, rel=0.05)


def test_ema_quantizer_is_frozen_in_eval_and_has_only_a_commitment_loss():
    vq = EMAVectorQuantizer(4, 2, commitment_weight=0.02)
    vq.train()(as_channel_first(VECTORS))
    before = vq.codebook.clone()
    vq.eval()
    vq.codebook.copy_(CODEBOOK)
    z = as_channel_first(VECTORS).requires_grad_(True)
    q = vq(z)
    assert torch.equal(vq.codebook, CODEBOOK) and not torch.equal(before, CODEBOOK)
    assert q.indices.tolist() == [[0, 1, 3]]
    assert q.loss.item() == pytest.approx(0.02 * 0.32 / 6, abs=1e-7)
    assert list(dict(vq.named_parameters())) == []  # nothing for an optimiser


def test_codebook_usage_accumulates_over_batches():
    usage = CodebookUsage(8)
    usage.update(torch.tensor([0, 1, 1, 2]))
    usage.update(torch.tensor([[3, 3], [0, 1]]))
    stats = usage.compute()
    assert stats["used_fraction"].item() == pytest.approx(4 / 8)
    probs = torch.tensor([2, 3, 1, 2]) / 8
    assert stats["perplexity"].item() == pytest.approx(
        math.exp(-(probs * probs.log()).sum().item()), rel=1e-5
    )


def test_unused_codes_are_restarted_onto_encoder_outputs():
    vq = VectorQuantizer(4, 2, restart_unused_after=3).train()
    vq.embedding.weight.data.copy_(CODEBOOK * 0.01)  # tiny codes, as the official initialisation makes them
    z = as_channel_first(torch.tensor([[5.0, 5.0], [5.0, 5.1], [-5.0, 5.0]]))
    for _ in range(2):
        vq(z)
    assert (vq.codebook.abs() < 0.02).all()  # not yet: unused for only 2 steps
    vq(z)
    rows = z[0].t()
    restarted = [c for c in vq.codebook if (c.abs() > 1).any()]
    # fewer rows than codes: the candidates are the rows tiled with a little noise
    assert len(restarted) >= 2 and all(torch.cdist(c[None], rows).min() < 0.1 for c in restarted)
    assert vq(z).counts.count_nonzero() >= 2  # the batch now spreads over several codes
    vq.eval()
    before = vq.codebook.clone()
    for _ in range(5):
        vq(as_channel_first(VECTORS))
    assert torch.equal(vq.codebook, before)  # no restarts outside training
    assert "steps_unused" not in VectorQuantizer(3, 2).state_dict()  # official layout keeps its keys
