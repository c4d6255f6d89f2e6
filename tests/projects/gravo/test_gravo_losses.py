"""GRAVO's frame attention and auxiliary losses (sec. 2.2-2.3, eqs. 3-6) on hand-checkable toy cases."""

from __future__ import annotations

import math

import pytest
import torch

from projects.gravo.models.gravo import (
    FrameAttention,
    GravoLossWeights,
    audio_alignment_loss,
    auxiliary_losses,
    frame_regulariser_loss,
    frame_targets,
    normalized_scores,
    relevant_frames,
    target_clip_score,
)


def toy(scores: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """w = (1, 0) and unit frames f_m = (s_m, sqrt(1 - s_m^2)), so that cos(w, f_m) = s_m; batch of one."""
    s = torch.tensor(scores, dtype=torch.float64)
    frames = torch.stack([s, (1 - s**2).sqrt()], dim=-1)[None]
    return torch.tensor([[1.0, 0.0]], dtype=torch.float64), frames


def z_scores(values: list[float]) -> list[float]:
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    return [(v - mean) / std for v in values]


FIRST = [0.5, 0.49, 0.1, 0.2]


def test_normalized_scores_are_z_scores_along_frames():
    w, frames = toy(FIRST)
    ns = normalized_scores(w, frames)[0]
    torch.testing.assert_close(ns, torch.tensor(z_scores(FIRST), dtype=torch.float64))
    torch.testing.assert_close(ns, torch.tensor([1.007828, 0.951049, -1.263333, -0.695543], dtype=torch.float64),
                               atol=1e-6, rtol=0)  # fmt: skip


def test_relevant_set_and_targets_of_the_first_toy():
    w, frames = toy(FIRST)
    relevant = relevant_frames(normalized_scores(w, frames), gamma=0.9)[0]
    assert relevant.tolist() == [True, True, False, False]  # 0.951 > 0.9 x 1.0078 = 0.907
    targets = frame_targets(w, frames, gamma=0.9)[0]
    mean_relevant = frames[0, :2].mean(dim=0)
    torch.testing.assert_close(mean_relevant, torch.tensor([0.495, 0.868874], dtype=torch.float64),
                               atol=1e-6, rtol=0)  # fmt: skip
    torch.testing.assert_close(targets[:2], frames[0, :2])
    torch.testing.assert_close(targets[2:], mean_relevant.expand(2, 2))


def test_losses_of_the_first_toy():
    w, frames = toy(FIRST)
    targets = frame_targets(w, frames)
    # f' = f: L_w = -sum s; L_f = the two irrelevant frames' squared distances to f~
    assert audio_alignment_loss(w, frames).item() == pytest.approx(-sum(FIRST), rel=1e-12)
    assert frame_regulariser_loss(targets, frames).item() == pytest.approx(0.271258, abs=1e-6)
    # f' = w on every frame: L_w = -M; L_f = sum ||f^_m - w||^2
    attended = w[:, None].expand_as(frames)
    assert audio_alignment_loss(w, attended).item() == pytest.approx(-4.0, rel=1e-12)
    assert frame_regulariser_loss(targets, attended).item() == pytest.approx(4.039934, abs=1e-6)


def test_second_toy_keeps_only_the_best_frame():
    w, frames = toy([0.1, 0.3, 0.2, 0.5])
    ns = normalized_scores(w, frames)
    assert ns.max().item() == pytest.approx(1.5213, abs=1e-4)
    assert relevant_frames(ns, gamma=0.9)[0].tolist() == [False, False, False, True]
    targets = frame_targets(w, frames)[0]
    torch.testing.assert_close(targets, frames[0, 3].expand(4, 2))


@pytest.mark.parametrize("n_frames", [1, 5])
def test_equal_scores_keep_every_frame(n_frames):
    """One frame, or a still image repeated: no frame is more relevant, the target is f itself."""
    frame = torch.nn.functional.normalize(torch.randn(1, 1, 512), dim=-1)
    frames, w = frame.expand(1, n_frames, 512).clone(), torch.randn(1, 512)
    ns = normalized_scores(w, frames)
    assert torch.isfinite(ns).all()
    assert relevant_frames(ns).all()
    torch.testing.assert_close(frame_targets(w, frames), frames)


def test_targets_carry_no_gradient_and_losses_reach_the_attention():
    torch.manual_seed(0)
    attention = FrameAttention(dim=16, n_head=4, dropout=0.0)
    frames = torch.nn.functional.normalize(torch.randn(3, 6, 16), dim=-1).requires_grad_()
    w = torch.randn(3, 16)
    attended = attention(frames)
    losses = auxiliary_losses(w, frames, attended, GravoLossWeights(lambda_w=0.5, lambda_f=2.0))
    torch.testing.assert_close(losses["aux"], 0.5 * losses["loss_w"] + 2.0 * losses["loss_f"])
    assert not frame_targets(w, frames).requires_grad
    losses["aux"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in attention.parameters())


def test_losses_average_the_batch():
    w1, f1 = toy(FIRST)
    w2, f2 = toy([0.1, 0.3, 0.2, 0.5])
    w, frames = torch.cat([w1, w2]), torch.cat([f1, f2])
    both = auxiliary_losses(w, frames, frames, GravoLossWeights())
    one = [auxiliary_losses(wi, fi, fi, GravoLossWeights()) for wi, fi in ((w1, f1), (w2, f2))]
    for name in ("loss_w", "loss_f", "aux"):
        torch.testing.assert_close(both[name], (one[0][name] + one[1][name]) / 2)


def test_frame_attention_size_and_residual():
    attention = FrameAttention()
    assert sum(p.numel() for p in attention.parameters()) == 1_050_624  # 4 x (512 x 512 + 512)
    attention.eval()
    frames = torch.randn(2, 7, 512)
    plain = attention(frames)
    attention.residual = True
    torch.testing.assert_close(attention(frames), frames + plain)
    one = attention(frames[:, :1])
    assert one.shape == (2, 1, 512)


def test_target_clip_score():
    w = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    attended = torch.tensor([[[1.0, 1.0], [1.0, -1.0]], [[1.0, 0.0], [1.0, 0.0]]])
    # mean f' = (1, 0) -> cos 1 with (1, 0); (1, 0) vs (0, 2) -> cos 0
    torch.testing.assert_close(target_clip_score(w, attended), torch.tensor([100.0, 0.0]))
