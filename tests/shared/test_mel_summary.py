"""The mel-statistics baseline embedding: shape, what its numbers mean, batch independence."""

from __future__ import annotations

import math

import pytest
import torch

from shared.encoders import MelStatisticsEmbedding

SR = 16_000


def _tone(hz: float, seconds: float = 1.0, amplitude: float = 0.1) -> torch.Tensor:
    t = torch.arange(int(seconds * SR)) / SR
    return amplitude * torch.sin(2 * math.pi * hz * t)


def test_shape_and_the_loudest_band_follows_the_tone():
    embed = MelStatisticsEmbedding()
    out = embed(torch.stack([_tone(300.0), _tone(3000.0)]))
    assert out.shape == (2, 128) and embed.embed_dim == 128
    low, high = out[:, :64].argmax(dim=1).tolist()
    assert low < high
    assert (out[:, 64:] >= 0).all()


def test_a_louder_clip_shifts_the_means_by_the_log_gain_and_keeps_the_stds():
    gen = torch.Generator().manual_seed(0)
    wav = 0.05 * torch.randn(1, SR, generator=gen)
    embed = MelStatisticsEmbedding()
    quiet, loud = embed(wav), embed(10 * wav)
    # a magnitude mel scales with the signal, so its natural log moves by ln(10) (well above the 1e-5 floor)
    torch.testing.assert_close(
        loud[:, :64] - quiet[:, :64], torch.full((1, 64), math.log(10)), rtol=0, atol=1e-3
    )
    torch.testing.assert_close(loud[:, 64:], quiet[:, 64:], rtol=0, atol=1e-3)


def test_a_gated_tone_varies_more_over_time_than_a_steady_one():
    steady = _tone(1000.0)
    gated = steady * (torch.arange(SR) // 1600 % 2)  # 0.1-s on, 0.1-s off
    embed = MelStatisticsEmbedding()
    out = embed(torch.stack([steady, gated]))
    band = out[0, :64].argmax()
    assert out[1, 64 + band] > 5 * out[0, 64 + band]


def test_embeddings_do_not_depend_on_the_batch():
    gen = torch.Generator().manual_seed(1)
    wav = torch.randn(3, 8000, generator=gen)
    embed = MelStatisticsEmbedding()
    torch.testing.assert_close(embed(wav)[1:2], embed(wav[1:2]), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        embed(wav[0])
