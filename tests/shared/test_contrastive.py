"""CLIP's symmetric InfoNCE with a learnable temperature, BriVL's cross-modal MoCo loss, and retrieval recall
(`shared.contrastive`)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from shared.contrastive import MoCoCrossModal, SymmetricInfoNCE, class_retrieval, retrieval_recall


def test_temperature_starts_at_one_over_0_07_and_is_learned():
    loss = SymmetricInfoNCE()
    assert loss.logit_scale.exp().item() == pytest.approx(1 / 0.07)
    a, b = torch.randn(4, 8, requires_grad=True), torch.randn(4, 8)
    loss(a, b).backward()
    assert loss.logit_scale.grad is not None and a.grad is not None
    assert not SymmetricInfoNCE(learnable=False).logit_scale.requires_grad


def test_value_on_a_case_derived_by_hand():
    # matched unit pairs, orthogonal across pairs, scale 2: logits 2 I, every row and column gives log(1 + e^-2)
    loss = SymmetricInfoNCE()
    with torch.no_grad():
        loss.logit_scale.fill_(math.log(2.0))
    value = loss(torch.eye(2) * 3.0, torch.eye(2))
    assert value.item() == pytest.approx(math.log1p(math.exp(-2.0)), rel=1e-6)


def test_matches_the_official_two_matrix_form():
    """`CLIPLoss1D` (descriptinc/lyrebird-wav2clip) builds image->text and text->image logits separately."""
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 16, generator=gen), torch.randn(6, 16, generator=gen)
    loss = SymmetricInfoNCE()
    with torch.no_grad():
        loss.logit_scale.fill_(1.7)
    an, bn = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    scale, target = math.exp(1.7), torch.arange(6)
    ce = torch.nn.functional.cross_entropy
    expected = (ce(scale * an @ bn.t(), target) + ce(scale * bn @ an.t(), target)) / 2
    torch.testing.assert_close(loss(a, b), expected)


def test_shape_errors():
    with pytest.raises(ValueError, match="pairs"):
        SymmetricInfoNCE()(torch.randn(3, 4), torch.randn(2, 4))


def test_retrieval_recall():
    keys = torch.eye(4)
    queries = torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0.4, 1.0], [0, 0, 0.5, 1.0]])
    # rows 0, 1, 3 find their own key first; row 2 finds key 3 first and its own second
    assert retrieval_recall(queries, keys, k=1).item() == pytest.approx(3 / 4)
    assert retrieval_recall(queries, keys, k=2).item() == 1.0


def test_class_retrieval():
    keys = torch.eye(4)
    queries = torch.tensor([[1.0, 0, 0, 0], [1.0, 0.1, 0, 0], [0, 0, 0, 1.0], [0, 0, 1.0, 0]])
    labels = torch.tensor([0, 0, 1, 2])
    # nearest keys 0, 0, 3, 2: query 1 finds a key of its class (not its own), 2 and 3 do not
    share, chance = class_retrieval(queries, keys, labels)
    assert share.item() == pytest.approx(2 / 4)
    assert chance.item() == pytest.approx((2 / 4) ** 2 + 2 * (1 / 4) ** 2)


def unit(*shape: int) -> torch.Tensor:
    return F.normalize(torch.randn(*shape), dim=-1)


def test_moco_at_random_init_costs_about_two_ln_one_plus_k():
    # BriVL's K = 9600, D = 2048: random unit vectors give logits of std s = 1 / (sqrt(D) tau) around 0, so each
    # direction costs E[logsumexp] - E[positive] = ln(1 + K) + s^2 / 2 (lognormal mean), 2 ln(9601) = 18.34 in all
    torch.manual_seed(0)
    dim, queue, tau, batch = 2048, 9600, 0.07, 64
    moco = MoCoCrossModal(dim, queue_size=queue, temperature=tau)
    assert moco.queue_a.shape == moco.queue_b.shape == (dim, queue)
    out = moco(unit(batch, dim), unit(batch, dim), unit(batch, dim), unit(batch, dim))
    assert 2 * math.log(1 + queue) == pytest.approx(18.34, abs=0.005)
    expected = 2 * (math.log(1 + queue) + 1 / (dim * tau**2) / 2)
    assert out["loss"].item() == pytest.approx(expected, rel=2e-3)
    assert out["loss"].item() == pytest.approx(2 * math.log(1 + queue), rel=0.01)
    assert out["loss"].item() == pytest.approx((out["a2b"] + out["b2a"]).item())


def test_moco_direction_is_cross_entropy_at_the_positive_over_positive_and_queue():
    torch.manual_seed(1)
    moco = MoCoCrossModal(8, queue_size=12, temperature=0.5)
    qa, ka, qb, kb = (unit(4, 8) for _ in range(4))
    out = moco(qa, ka, qb, kb, enqueue=False)
    logits = torch.cat([(qa * kb).sum(-1, keepdim=True), qa @ moco.queue_b], dim=1) / 0.5
    assert out["a2b"].item() == pytest.approx(
        F.cross_entropy(logits, torch.zeros(4, dtype=torch.long)).item()
    )
    logits = torch.cat([(qb * ka).sum(-1, keepdim=True), qb @ moco.queue_a], dim=1) / 0.5
    assert out["b2a"].item() == pytest.approx(
        F.cross_entropy(logits, torch.zeros(4, dtype=torch.long)).item()
    )


def test_moco_gradient_reaches_the_queries_only():
    moco = MoCoCrossModal(8, queue_size=8)
    qa, ka, qb, kb = (unit(4, 8).requires_grad_() for _ in range(4))
    moco(qa, ka, qb, kb)["loss"].backward()
    assert qa.grad is not None and qb.grad is not None and ka.grad is None and kb.grad is None


def test_moco_queue_is_a_fifo_of_the_keys():
    moco = MoCoCrossModal(3, queue_size=8)
    before = moco.queue_a.clone()
    keys = [(unit(4, 3), unit(4, 3)) for _ in range(3)]
    moco.enqueue(*keys[0])
    assert int(moco.queue_ptr) == 4
    assert torch.equal(moco.queue_a[:, :4], keys[0][0].T) and torch.equal(moco.queue_b[:, :4], keys[0][1].T)
    assert torch.equal(moco.queue_a[:, 4:], before[:, 4:])
    moco.enqueue(*keys[1])
    assert int(moco.queue_ptr) == 0
    moco.enqueue(*keys[2])  # the oldest keys go first
    assert torch.equal(moco.queue_a[:, :4], keys[2][0].T) and torch.equal(moco.queue_a[:, 4:], keys[1][0].T)
    assert torch.equal(moco.queue_b[:, 4:], keys[1][1].T)


def test_moco_forward_enqueues_only_when_asked():
    moco = MoCoCrossModal(3, queue_size=8)
    before = moco.queue_a.clone()
    batch = [unit(2, 3) for _ in range(4)]
    moco(*batch, enqueue=False)
    assert torch.equal(moco.queue_a, before) and int(moco.queue_ptr) == 0
    moco(*batch)
    assert torch.equal(moco.queue_a[:, :2], batch[1].T) and int(moco.queue_ptr) == 2


def test_moco_queue_must_be_a_multiple_of_the_global_batch():
    moco = MoCoCrossModal(3, queue_size=10)
    with pytest.raises(ValueError, match="not a multiple of the global batch 4"):
        moco(*(unit(4, 3) for _ in range(4)))
    moco.check_batch(5)
    with pytest.raises(ValueError, match="multiple"):
        moco.check_batch(3)


def test_moco_queues_are_checkpointed_and_restored():
    moco = MoCoCrossModal(3, queue_size=4)
    moco.enqueue(unit(2, 3), unit(2, 3))
    state = moco.state_dict()
    assert set(state) == {"queue_a", "queue_b", "queue_ptr"}
    restored = MoCoCrossModal(3, queue_size=4)
    restored.load_state_dict(state)
    assert torch.equal(restored.queue_a, moco.queue_a) and int(restored.queue_ptr) == 2


def test_moco_momentum_update():
    moco = MoCoCrossModal(3, queue_size=4, momentum=0.9)
    online, copy = nn.Linear(2, 2), nn.Linear(2, 2)
    expected = [
        0.9 * c.detach() + 0.1 * o.detach()
        for o, c in zip(online.parameters(), copy.parameters(), strict=True)
    ]
    moco.update_momentum_copy(online, copy)
    for param, value in zip(copy.parameters(), expected, strict=True):
        assert torch.allclose(param, value)
