"""`avgen generate --project tiva`'s windows over a whole video (the end-to-end run is in test_stages.py)."""

import pytest
import torch

from projects.tiva.generate import end_to_end, windows
from shared.runs import UserError


def test_windows_follow_the_video_in_time_and_the_last_one_loops_its_own_frames():
    feats = torch.arange(60.0)[:, None]  # 6.0 s of frames at 10 fps, each holding its index
    out = windows(feats, n_windows=4, frames_per_window=19.2, n_frames=19)  # 1.92-s clips: 19.2 frames each
    assert out.shape == (4, 19, 1)
    assert [int(w[0, 0]) for w in out] == [round(k * 19.2) for k in range(4)]  # no drift: 0, 19, 38, 58
    assert out[1, :, 0].tolist() == list(range(19, 38))
    assert out[3, :, 0].tolist() == [58.0, 59.0] * 9 + [58.0]  # frames 58, 59, looped from 58
    # a window that starts at or past the last frame (a video a hair longer than its windows) repeats it
    assert windows(feats, 5, 19.2, 19)[4, :, 0].eq(59).all()


def test_windows_are_put_end_to_end_per_sample_and_cut():
    parts = torch.arange(24.0).view(6, 1, 4)  # 2 samples x 3 windows of 4 values, sample-major
    out = end_to_end(parts, samples=2, length=10)
    assert out.shape == (2, 1, 10)
    assert out[0, 0].tolist() == list(range(10))
    assert out[1, 0].tolist() == list(range(12, 22))


def test_asking_for_a_missing_gpu_is_a_user_error(tmp_path, monkeypatch):
    from projects.tiva.generate import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="--device cuda: no CUDA device"):
        main(
            ["--video", "v.mp4", "--out", str(tmp_path / "o.mp4"), "--run", str(tmp_path), "--device", "cuda"]
        )
