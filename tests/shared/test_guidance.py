"""shared.guidance: classifier-free guidance (TiVA sec. 4.1.1: scale 5.0, 10 % of s zeroed)."""

import torch

from shared.guidance import batched_guidance, cfg_combine, drop_condition


def test_guidance_scales():
    eps_u, eps_c = torch.randn(2, 4, 3), torch.randn(2, 4, 3)
    assert torch.allclose(cfg_combine(eps_u, eps_c, 1.0), eps_c, atol=1e-6)
    assert torch.equal(cfg_combine(eps_u, eps_c, 0.0), eps_u)
    assert torch.allclose(cfg_combine(eps_u, eps_c, 5.0), eps_u + 5 * (eps_c - eps_u))


def test_batched_guidance_equals_two_separate_calls():
    weight = torch.randn(3, 3)
    calls = []

    def model(x, t, c):
        calls.append(x.shape[0])
        return x @ weight + c.mean(dim=(1, 2))[:, None] * t[:, None]

    x, t = torch.randn(4, 3), torch.full((4,), 7.0)
    cond, uncond = torch.randn(4, 5, 2), torch.zeros(4, 5, 2)
    guided = batched_guidance(model, cond, uncond, 5.0)(x, t)
    assert calls == [8]  # one forward with both branches
    expected = cfg_combine(model(x, t, uncond), model(x, t, cond), 5.0)
    assert torch.allclose(guided, expected, atol=1e-6)


def test_guidance_at_scale_0_or_1_runs_only_the_branch_it_returns():
    calls = []

    def model(x, t, c):
        calls.append(x.shape[0])
        return x * c.mean() + t[:, None]

    x, t = torch.randn(4, 3), torch.full((4,), 7.0)
    cond, uncond = torch.full((4, 5, 2), 2.0), torch.zeros(4, 5, 2)
    for scale, condition in ((0.0, uncond), (1.0, cond)):
        calls.clear()
        guided = batched_guidance(model, cond, uncond, scale)(x, t)
        assert calls == [4]  # one branch, at the batch's own size
        assert torch.equal(guided, model(x, t, condition))
        # the same output as both branches combined
        assert torch.allclose(guided, cfg_combine(model(x, t, uncond), model(x, t, cond), scale), atol=1e-6)


def test_condition_dropout_is_per_sample_with_the_given_rate():
    cond = torch.ones(100_000, 2, 3)
    dropped = drop_condition(cond, 0.1, generator=torch.Generator().manual_seed(0))
    zeroed = (dropped == 0).all(dim=(1, 2))
    kept = (dropped == 1).all(dim=(1, 2))
    assert bool((zeroed | kept).all())  # whole samples, never parts of one
    assert abs(zeroed.float().mean().item() - 0.1) < 0.003
    assert torch.equal(drop_condition(cond[:5], 0.0), cond[:5])
