"""Im2Wav's prior conditions (arXiv:2211.03089; `RoySheffer/im2wav`, `models/prior/conditioners.py`)."""

from __future__ import annotations

import torch

from projects.gravo.models.conditioning import LowConditioner, TimeSignal, Upsampler, token_to_frame


def test_token_to_frame_rounds_half_to_even():
    # linspace(0, 1, 5) * 2 = [0, 0.5, 1, 1.5, 2]: halves go to the even neighbour, as numpy.round
    assert token_to_frame(5, 3).tolist() == [0, 0, 1, 2, 2]
    index = token_to_frame(2048, 123)  # 4.096 s at 30 fps
    assert index[0] == 0 and index[-1] == 122 and (index.diff() >= 0).all()
    counts = torch.bincount(index)  # 2047 / 122 = 16.8 tokens per frame, half of that at both ends (rounding)
    assert counts[1:-1].min() >= 16 and counts[1:-1].max() <= 17 and counts[0] == counts[-1] == 9


def bin_reader(width: int = 3) -> TimeSignal:
    """A time signal whose output channel c is the bin of embedding c (total length, absolute, relative)."""
    signal = TimeSignal(width)
    for channel, range_embedding in enumerate(
        (signal.total_length_emb, signal.absolute_pos_emb, signal.relative_pos_emb)
    ):
        weight = torch.zeros(64, width)
        weight[:, channel] = torch.arange(64, dtype=torch.float32)
        range_embedding.emb.weight.data.copy_(weight)
    return signal


def time_bins(total_length: float, offset: float, length: float, n_tokens: int) -> torch.Tensor:
    signal = bin_reader()
    with torch.no_grad():
        out = signal(torch.tensor([total_length]), torch.tensor([offset]), torch.tensor([length]), n_tokens)
    return out[0].round().long()  # [n_tokens, 3]


def test_time_signal_of_a_window_at_the_start_of_a_10_s_clip():
    bins = time_bins(160_000, 0, 65_536, 2048)
    i = torch.arange(2048)
    assert (bins[:, 0] == 0).all()  # 10 s in [2.05 s, 600 s): bin floor(64 x 0.013) = 0
    assert (bins[:, 1] == 0).all()  # < 4.1 s of 600 s
    # relative position: token i's sample over the clip, (0 + 32 i) / 160,000, not i / 2047 over the window
    assert bins[:, 2].tolist() == (64 * 32 * i // 160_000).tolist()
    assert bins[-1, 2] == 26  # 65,504 / 160,000 = 0.41 of the clip


def test_time_signal_clamps_the_relative_end_and_bins_the_range():
    # window [150,000, 215,536) of a 160,000-sample clip: relative end clamped to 1 -> bins 60 + floor(4 i / n)
    bins = time_bins(160_000, 150_000, 65_536, 64)
    assert bins[:, 2].tolist() == [60 + (4 * i) // 64 for i in range(64)]
    assert (bins[:, 1] == 1).all()  # 150,000 / 9,600,000 x 64 = 1.0 up to 1.44
    # 300 s total: floor(64 (4,800,000 - 32,800) / (9,600,000 - 32,800)) = 31
    assert (time_bins(4_800_000, 0, 65_536, 8)[:, 0] == 31).all()
    # a toy clip of 2 s, shorter than the 2.05-s lower bound: the first bin, not an error
    assert (time_bins(32_000, 0, 16_384, 8)[:, 0] == 0).all()


def low_conditioner() -> LowConditioner:
    torch.manual_seed(0)
    return LowConditioner(width=16).eval()


def test_low_condition_maps_the_mean_and_the_aligned_frames():
    conditioner = low_conditioner()
    frames = torch.randn(2, 5, 512)
    total, offset, length = (
        torch.tensor([160_000.0, 32_000.0]),
        torch.tensor([0.0, 8_000.0]),
        torch.full((2,), 256.0),
    )
    with torch.no_grad():
        condition = conditioner(frames, 8, total, offset, length)
        time = conditioner.time_signal(total, offset, length, 8)
        torch.testing.assert_close(condition.start, conditioner.clip_map(frames.mean(dim=1)))
        expected = conditioner.video_map(frames)[:, token_to_frame(8, 5)] + time
    assert condition.x_cond.shape == (2, 8, 16)
    torch.testing.assert_close(condition.x_cond, expected)


def test_low_condition_nulls_replace_start_and_frames_together_and_keep_time():
    conditioner = low_conditioner()
    frames = torch.randn(200, 3, 512)
    total, offset, length = torch.full((200,), 160_000.0), torch.zeros(200), torch.full((200,), 128.0)
    with torch.no_grad():
        time = conditioner.time_signal(total, offset, length, 4)
        null = conditioner(frames, 4, total, offset, length, null=True)
        torch.testing.assert_close(null.start, conditioner.null_CLIP.expand(200, -1))
        torch.testing.assert_close(null.x_cond, conditioner.null_video_CLIP + time)
        full = conditioner(frames, 4, total, offset, length)
        torch.manual_seed(1)
        mixed = conditioner(frames, 4, total, offset, length, null_prob=0.5)
    start_dropped = (mixed.start == null.start).all(dim=1)
    frames_dropped = (mixed.x_cond == null.x_cond).all(dim=(1, 2))
    kept = (mixed.start == full.start).all(dim=1) & (mixed.x_cond == full.x_cond).all(dim=(1, 2))
    assert (start_dropped == frames_dropped).all() and (start_dropped ^ kept).all()
    assert 70 <= int(start_dropped.sum()) <= 130  # Binomial(200, 0.5): mean 100, sd 7


def test_upsampler_layout_at_im2wav_size():
    up = Upsampler(n_codes=2048, width=1024)
    names = dict(up.named_parameters())
    assert names["cond.model.0.weight"].shape == (512, 1024, 3)
    assert names["cond.model.1.1.weight"].shape == (512, 512, 4)
    assert names["cond.model.2.1.weight"].shape == (512, 1024, 4)
    assert names["cond.model.2.0.model.15.model.3.weight"].shape == (512, 512, 1)
    dilations = [unit.model[1].dilation[0] for unit in up.cond.model[1][0].model]
    assert dilations == [3 ** (d % 8) for d in range(16)]  # not reversed
    res_unit = 512 * 512 * 3 + 512 + 512 * 512 + 512
    expected = (
        2048 * 1024  # code embedding
        + (1024 * 512 * 3 + 512)  # input conv
        + 2 * 16 * res_unit  # two Resnet1D of depth 16
        + (512 * 512 * 4 + 512)
        + (512 * 1024 * 4 + 1024)  # transposed convs
        + 2 * 1024  # LayerNorm
    )
    assert sum(p.numel() for p in up.parameters()) == expected


def test_upsampler_quadruples_the_length():
    up = Upsampler(n_codes=32, width=24, hidden=8, depth=2, dilation_cycle=None).eval()
    codes = torch.randint(0, 32, (3, 10))
    with torch.no_grad():
        out = up(codes)
    assert out.shape == (3, 40, 24)
    torch.testing.assert_close(out.mean(-1), torch.zeros(3, 40), atol=1e-5, rtol=0)  # LayerNorm at init
