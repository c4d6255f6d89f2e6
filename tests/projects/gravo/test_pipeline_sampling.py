"""GravoPipeline: windows cut as Im2Wav cuts them, sliding windows that keep what earlier windows produced,
per-item random streams, and audio of the asked length."""

import pytest
import torch

from projects.gravo.models import WaveVQVAE
from projects.gravo.models.pipeline import GravoPipeline, SamplingSettings, window_frames, window_starts
from projects.gravo.models.priors import LowPrior, UpPrior
from shared.transformer import item_generators


def tiny_pipeline(frame_attention: bool = False) -> GravoPipeline:
    torch.manual_seed(0)
    vqvae = WaveVQVAE(emb_width=8, l_bins=16, width=8, depth=1)
    low = LowPrior(16, 16, 32, 3, 1, 16, 32, 4, init_scale=1.0, frame_attention=frame_attention)
    up = UpPrior(16, 64, 32, 3, 1, 16, 32, 8, init_scale=1.0, cond_width=16, cond_depth=2)
    for codebook in vqvae.bottleneck.level_blocks:
        codebook.codebook.normal_()
    return GravoPipeline(vqvae, low, up).eval()


def test_window_starts_cover_the_total_and_end_at_it():
    assert window_starts(100, 40, 20) == [0, 20, 40, 60]
    assert window_starts(100, 40, 40) == [0, 40, 60]
    assert window_starts(30, 40, 20) == [0]
    assert window_starts(40, 40, 20) == [0]


def test_window_frames_are_im2wav_s_slice_with_the_last_frame_repeated():
    frames = torch.arange(300.0)[None, :, None]  # 10 s at 30 fps
    first = window_frames(frames, 0.0, 4.096, 30.0)
    assert first.shape[1] == 123  # int(4.096 * 30) + 1
    assert first[0, :, 0].tolist() == list(range(123))
    late = window_frames(frames, 8.0, 4.096, 30.0)
    assert late[0, 0, 0] == 240 and late[0, -1, 0] == 299  # past the end: the last frame again
    assert late.shape[1] == 123


@pytest.mark.parametrize("length", [300, 512])
def test_one_window_gives_audio_of_the_asked_length(length):
    pipeline = tiny_pipeline()
    frames = torch.randn(2, 20, 512)
    wave = pipeline.generate(frames, length, SamplingSettings(), item_generators(0, ["a", "b"]))
    assert wave.shape == (2, length) and torch.isfinite(wave).all()


def test_an_item_s_audio_does_not_depend_on_its_batch_mates():
    pipeline = tiny_pipeline(frame_attention=True)
    frames = torch.randn(3, 20, 512)
    together = pipeline.generate(frames, 512, SamplingSettings(), item_generators(0, ["a", "b", "c"]))
    alone = pipeline.generate(frames[1:2], 512, SamplingSettings(), item_generators(0, ["b"]))
    torch.testing.assert_close(together[1:2], alone, rtol=1e-4, atol=1e-4 * alone.abs().max().item())


def test_sliding_windows_keep_the_first_window_and_continue_it():
    """Audio of 2.5 windows: the first window's codes are those of a one-window generation with the same
    streams (the later windows only prime on them), and the whole length comes out."""
    pipeline = tiny_pipeline()
    frames = torch.randn(1, 60, 512)
    settings = SamplingSettings(top_k=1)  # greedy: the codes depend only on the conditions and the primes
    calls = []
    original = pipeline.low.sample

    def recording(*args, **kwargs):
        calls.append(kwargs.get("prime"))
        return original(*args, **kwargs)

    pipeline.low.sample = recording
    long = pipeline.generate(frames, 1280, settings)
    assert long.shape == (1, 1280)
    assert calls[0] is None and all(p is not None and p.shape[1] == 8 for p in calls[1:])  # half a window
    assert len(calls) == 4  # windows at 0, 256, 512, 768 samples (1280 rounded up to 32: last ends at 1280)
    pipeline.low.sample = original
    short = pipeline.generate(frames, 512, settings)
    # the first window's audio only depends on its own codes, up to the decoder's receptive field at its end
    torch.testing.assert_close(long[:, :384], short[:, :384], rtol=1e-4, atol=1e-4 * short.abs().max().item())
