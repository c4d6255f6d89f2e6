"""CLIP's symmetric InfoNCE with a learnable temperature, and retrieval recall (`shared.contrastive`)."""

from __future__ import annotations

import math

import pytest
import torch

from shared.contrastive import SymmetricInfoNCE, class_retrieval, retrieval_recall


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
