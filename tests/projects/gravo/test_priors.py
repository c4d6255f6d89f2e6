"""Im2Wav's Low and Up priors (arXiv:2211.03089) and GRAVO's attended Low prior (eq. 1), at tiny sizes."""

from __future__ import annotations

import pytest
import torch

from projects.gravo.models.priors import LowPrior, UpPrior
from shared.transformer import TokenSampling

TINY = dict(n_codes=24, width=32, depth=3, attn_width=16, mlp_width=32, block_ctx=4, init_scale=1.0)


def low_prior(**kwargs) -> LowPrior:
    torch.manual_seed(0)
    return LowPrior(n_ctx=16, **TINY, **kwargs).eval()


def up_prior() -> UpPrior:
    torch.manual_seed(0)
    return UpPrior(n_ctx=16, **TINY, cond_width=8, cond_depth=2, cond_dilation_cycle=None).eval()


def clip_frames(batch: int, n_frames: int = 7) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.randn(batch, n_frames, 512), dim=-1)


def test_paper_sizes_have_the_official_parameter_counts():
    with torch.device("meta"):
        low, up, gravo = LowPrior(), UpPrior(), LowPrior(frame_attention=True)
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731 (the tied head once)
    assert count(low) == 157_344_768
    assert count(up) == 203_056_640
    assert count(gravo) == 157_344_768 + 1_050_624
    assert low.prior.x_out.weight is low.prior.x_emb.weight


def test_low_logits_are_teacher_forced_and_use_the_inference_time_signal():
    prior = low_prior()
    codes, clip = torch.randint(0, 24, (2, 16)), clip_frames(2)
    with torch.no_grad():
        logits = prior.logits(codes, clip)
        assert logits.shape == (2, 16, 24)
        torch.testing.assert_close(logits, prior(codes, clip, offset=0, total_length=160_000)[0])
        # the window's place in its clip enters through the time signal
        assert not torch.allclose(logits, prior(codes, clip, offset=100_000, total_length=160_000)[0])
        changed = codes.clone()
        changed[:, 9] = (codes[:, 9] + 1) % 24
        other = prior.logits(changed, clip)
    torch.testing.assert_close(other[:, :10], logits[:, :10])  # position i sees only tokens before i
    assert not torch.allclose(other[:, 10:], logits[:, 10:])


def test_gravo_low_prior_is_conditioned_on_the_attention_outputs():
    prior = low_prior(frame_attention=True)
    codes, clip = torch.randint(0, 24, (2, 16)), clip_frames(2)
    with torch.no_grad():
        logits, frames = prior(codes, clip)
        torch.testing.assert_close(frames, prior.frame_attention(clip))
        condition = prior.condition(frames, 16)
        torch.testing.assert_close(logits, prior.prior(codes, condition.start, condition.x_cond))
    assert low_prior()(codes, clip)[1] is clip  # Im2Wav: the CLIP frames themselves


def greedy_reference(next_logits, n_tokens: int, prime: torch.Tensor) -> torch.Tensor:
    """Greedy decoding with full teacher-forced forwards: next_logits(tokens [B, n_ctx]) -> logits [B, n_ctx, V]."""
    tokens = torch.cat([prime, torch.zeros(prime.shape[0], n_tokens, dtype=torch.long)], dim=1)
    for i in range(prime.shape[1], tokens.shape[1]):
        tokens[:, i] = next_logits(tokens)[:, i].argmax(-1)
    return tokens


@pytest.mark.parametrize("n_prime", [0, 5])
def test_low_sampling_with_guidance_follows_the_guided_logits(n_prime):
    prior = low_prior(frame_attention=True)
    clip, scale = clip_frames(2), 3.0
    prime = torch.randint(0, 24, (2, n_prime))
    with torch.no_grad():
        frames = prior.attend(clip)
        cond = prior.condition(frames, 16, offset=16_000, total_length=64_000)
        null = prior.condition(frames, 16, offset=16_000, total_length=64_000, null=True)

        def guided(tokens):
            uncond = prior.prior(tokens, null.start, null.x_cond)
            return uncond + scale * (prior.prior(tokens, cond.start, cond.x_cond) - uncond)

        expected = greedy_reference(guided, 16 - n_prime, prime)
        sampled = prior.sample(
            clip,
            TokenSampling(top_k=1),
            guidance_scale=scale,
            prime=prime if n_prime else None,
            offset=16_000,
            total_length=64_000,
        )
    assert sampled.shape == (2, 16)
    assert torch.equal(sampled, expected)


def test_up_logits_see_the_clip_only_through_its_mean():
    prior = up_prior()
    codes_up, codes_low, clip = torch.randint(0, 24, (2, 16)), torch.randint(0, 24, (2, 4)), clip_frames(2, 6)
    with torch.no_grad():
        logits = prior.logits(codes_up, codes_low, clip)
        assert logits.shape == (2, 16, 24)
        mean_only = clip.mean(dim=1, keepdim=True).expand_as(clip)
        torch.testing.assert_close(prior.logits(codes_up, codes_low, mean_only), logits)
        torch.testing.assert_close(prior.logits(codes_up, codes_low, clip.flip(1)), logits)
        other_low = codes_low.clone()
        other_low[:, 2] = (codes_low[:, 2] + 1) % 24
        assert not torch.allclose(prior.logits(codes_up, other_low, clip), logits)


def test_up_sampling_follows_the_logits_and_checks_the_window():
    prior = up_prior()
    codes_low, clip, prime = torch.randint(0, 24, (2, 4)), clip_frames(2), torch.randint(0, 24, (2, 3))
    with torch.no_grad():
        condition = prior.condition(codes_low, clip)
        expected = greedy_reference(
            lambda tokens: prior.prior(tokens, condition.start, condition.x_cond), 13, prime
        )
        sampled = prior.sample(codes_low, clip, TokenSampling(top_k=1), prime=prime)
        assert torch.equal(sampled, expected)
        with pytest.raises(ValueError, match="n_ctx=16"):
            prior.sample(codes_low[:, :2], clip)
