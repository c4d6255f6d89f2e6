"""CS (`shared.metrics.CLIPScore`): 100 x cos(Wav2CLIP of the audio, CLIP of the condition), per-clip
values with bootstrap intervals, the same on two processes as on one."""

from __future__ import annotations

import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from shared.metrics import Bootstrap, CLIPScore, clip_score


def test_values_derived_by_hand():
    audio = torch.tensor([[1.0, 0.0], [2.0, 0.0], [1.0, 0.0], [0.0, -3.0]])
    image = torch.tensor([[0.0, 5.0], [3.0, 0.0], [0.5, math.sqrt(3) / 2], [0.0, 1.0]])
    # orthogonal, parallel (scales do not matter), 60 degrees, opposite
    assert clip_score(audio, image).tolist() == pytest.approx(
        [0.0, 100.0, 50.0, -100.0], abs=1e-5
    )  # float32 inputs


def test_a_video_condition_is_the_mean_of_its_frames():
    gen = torch.Generator().manual_seed(0)
    audio, frames = torch.randn(3, 8, generator=gen), torch.randn(3, 5, 8, generator=gen)
    mean = frames.mean(dim=1)
    expected = 100 * (audio * mean).sum(-1) / (audio.norm(dim=-1) * mean.norm(dim=-1))
    torch.testing.assert_close(clip_score(audio, frames).float(), expected, rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        clip_score(audio, frames[:, :, :4])


def run_cs(pieces: list[slice]) -> dict[str, float]:
    """CS over 12 samples of 6 clips (two per clip), fed in the given pieces."""
    gen = torch.Generator().manual_seed(1)
    audio, image = torch.randn(12, 16, generator=gen), torch.randn(12, 4, 16, generator=gen)
    image[:6] += 2 * audio[:6, None]  # half the samples match their condition
    ids = [f"clip{i // 2}" for i in range(12)]
    metric = CLIPScore(bootstrap=Bootstrap(resamples=200))
    for piece in pieces:
        metric.update(audio[piece], image[piece], ids[piece])
    return {k: float(v) for k, v in metric.compute().items()}


def test_mean_over_samples_with_an_interval_over_clips():
    values = run_cs([slice(0, 12)])
    gen = torch.Generator().manual_seed(1)
    audio, image = torch.randn(12, 16, generator=gen), torch.randn(12, 4, 16, generator=gen)
    image[:6] += 2 * audio[:6, None]
    assert values["cs"] == pytest.approx(clip_score(audio, image).mean().item(), rel=1e-12)
    assert values["cs_lo"] < values["cs"] < values["cs_hi"]
    assert run_cs([slice(0, 5), slice(5, 5), slice(5, 12)]) == pytest.approx(values, rel=1e-12)
    plain = CLIPScore(bootstrap=None)
    plain.update(audio, image, [str(i) for i in range(12)])
    assert set(plain.compute()) == {"cs"}


def _ddp_cs(rank: int, world: int, rdzv: str, out: str) -> None:
    torch.set_num_threads(1)  # a forked child must not reuse the parent's OpenMP pool
    dist.init_process_group("gloo", init_method=f"file://{rdzv}", rank=rank, world_size=world)
    # uneven shards; clip 2's two samples are split between the processes
    torch.save(run_cs([slice(0, 5)] if rank == 0 else [slice(5, 9), slice(9, 12)]), f"{out}.{rank}")
    dist.destroy_process_group()


def test_two_processes_give_the_one_process_values(tmp_path):
    single = run_cs([slice(0, 12)])
    args = (2, str(tmp_path / "rdzv"), str(tmp_path / "cs"))
    mp.start_processes(_ddp_cs, args=args, nprocs=2, join=True, start_method="fork")
    for rank in range(2):
        assert torch.load(tmp_path / f"cs.{rank}") == pytest.approx(single, rel=1e-10)
