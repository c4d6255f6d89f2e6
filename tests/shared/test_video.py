from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from shared.media import MediaError
from shared.video import load_video, video_info


def write_counting_video(path: Path, fps: int, n_frames: int, size: int = 64) -> None:
    """Frame i is a flat grey of value 6 * i (far enough apart to read the index back after YUV)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"crf": "0"})
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(n_frames):
            image = np.full((size, size, 3), 6 * i, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))


def frame_index(frames) -> list[int]:
    return [round(f.float().mean().item() / 6) for f in frames]


def test_frames_are_resampled_in_time_and_scaled(tmp_path):
    path = tmp_path / "count.mp4"
    write_counting_video(path, fps=20, n_frames=40)  # 2 s
    info = video_info(path)
    assert info.fps == pytest.approx(20) and info.duration == pytest.approx(2.0, abs=0.06)
    frames = load_video(path, fps=10, size=(24, 32))
    assert frames.shape == (20, 3, 24, 32) and frames.dtype.is_floating_point is False
    # output frame k shows the source frame on screen at k / 10 s: source index 2k
    assert frame_index(frames) == [2 * k for k in range(20)]
    upsampled = load_video(path, fps=40)
    assert upsampled.shape[0] == 80
    assert frame_index(upsampled)[:6] == [0, 0, 1, 1, 2, 2]  # each source frame shown twice
    assert load_video(path).shape == (40, 3, 64, 64)
    assert load_video(path, fps=10, max_seconds=1.0).shape[0] == 10


def test_near_rounding_picks_frames_as_ffmpegs_fps_filter(tmp_path):
    path = tmp_path / "count.mp4"
    write_counting_video(path, fps=20, n_frames=40)
    # 20 -> 15 fps; slot k: "down" shows the last frame at or before k/15 s, "near" the last one whose
    # time rounds to slot <= k, i.e. before (k + 1/2)/15 s (FFmpeg's fps filter, round=near)
    assert frame_index(load_video(path, fps=15))[:7] == [0, 1, 2, 4, 5, 6, 8]
    assert frame_index(load_video(path, fps=15, rounding="near"))[:7] == [0, 1, 3, 4, 5, 7, 8]
    # an exact half (source frame 2 at 0.1 s = slot 1/2 at 5 fps) rounds up, into the later slot
    assert frame_index(load_video(path, fps=5, rounding="near"))[:3] == [1, 5, 9]
    with pytest.raises(ValueError, match="rounding"):
        load_video(path, fps=15, rounding="up")


def test_bad_videos_raise_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        load_video(tmp_path / "nope.mp4")
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x01garbage" * 100)
    with pytest.raises(MediaError, match="broken.mp4: cannot be opened"):
        load_video(tmp_path / "broken.mp4")
    sf.write(tmp_path / "sound.wav", np.zeros(1000, np.float32), 16000)
    with pytest.raises(MediaError, match="sound.wav: has no video stream"):
        load_video(tmp_path / "sound.wav")


def test_generated_sound_is_muxed_into_the_video_cut_to_its_length(demo_root, tmp_path):
    import torch

    from shared.audio import load_audio
    from shared.video import mux_audio

    source = sorted((demo_root / "vas" / "videos").rglob("*.mp4"))[0]
    t = torch.arange(3 * 22050) / 22050
    wave = 0.3 * torch.sin(2 * torch.pi * 440 * t)
    out = mux_audio(source, wave, 22050, tmp_path / "with_sound.mp4")
    info = video_info(out)
    assert (info.width, info.height) == (video_info(source).width, video_info(source).height)
    assert 2.9 < info.duration <= 3.0  # the 10-s video is cut to the 3 s of sound
    back = load_audio(out, 22050)
    assert abs(back.shape[0] - wave.shape[0]) < 2048  # AAC adds at most a frame of priming
    spectrum = torch.fft.rfft(back[4096:-4096]).abs()
    assert abs(int(spectrum.argmax()) * 22050 / (back.shape[0] - 8192) - 440) < 5  # the tone survived AAC
    with pytest.raises(ValueError, match="mono waveform"):
        mux_audio(source, torch.zeros(2, 100), 22050, tmp_path / "bad.mp4")
    assert not (tmp_path / "bad.mp4").exists()
