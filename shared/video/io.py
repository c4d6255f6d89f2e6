"""Video decoding with PyAV: RGB frames at a target frame rate and size.

Frames are resampled in time the way a player shows them: output frame k (time k / fps) is the last
source frame whose timestamp is at or before k / fps (the first source frame for earlier times). With
`rounding="near"` the choice is instead the one FFmpeg's `fps` filter makes by default (`round=near`):
each source timestamp is rounded to the nearest output slot, and slot k shows the last source frame whose
timestamp is before (k + 1/2) / fps, half an output frame later. Datasets prepared by re-encoding with
`ffmpeg -vf fps=...` (SpecVQGAN/RegNet's 21.5 fps videos) were sampled that way. Each
frame is scaled by FFmpeg's swscale while decoding, so a long high-resolution video never sits in memory
at full size; only the scaled frames are kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from shared.media import MediaError, open_media


@dataclass(frozen=True)
class VideoInfo:
    fps: float
    duration: float
    width: int
    height: int


def video_info(path: str | Path) -> VideoInfo:
    with open_media(path) as container:
        if not container.streams.video:
            raise MediaError(path, "has no video stream")
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0.0)
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        else:
            duration = float(container.duration or 0) / 1e6
        return VideoInfo(fps=fps, duration=duration, width=stream.width, height=stream.height)


def load_video(
    path: str | Path,
    fps: float | None = None,
    size: tuple[int, int] | None = None,
    max_seconds: float | None = None,
    rounding: str = "down",
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> torch.Tensor:
    """Decode RGB frames as uint8 [N, 3, H, W].

    fps: output frame rate (None keeps every source frame); size: (height, width) to scale to (None keeps
    the source size); max_seconds: stop after this much video; rounding: which source frame fills an
    output slot when `fps` is given, "down" (the one on screen at k / fps) or "near" (FFmpeg's `fps`
    filter, see the module docstring); transform: applied to each decoded frame, uint8 [H, W, 3] ->
    uint8 [H', W', 3], as it is decoded (a resize: only its outputs are kept in memory).
    """
    if rounding not in ("down", "near"):
        raise ValueError(f"rounding must be 'down' or 'near', not {rounding!r}")
    with open_media(path) as container:
        if not container.streams.video:
            raise MediaError(path, "has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        height, width = size if size is not None else (stream.height, stream.width)
        frames: list[np.ndarray] = []
        times: list[float] = []
        end_time = 0.0
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            t = float(frame.pts * frame.time_base)
            if max_seconds is not None and t >= max_seconds:
                break
            frame_duration = float(frame.duration * frame.time_base) if frame.duration else 0.0
            end_time = max(end_time, t + frame_duration)
            times.append(t)
            rgb = frame.to_ndarray(format="rgb24", width=width, height=height)
            frames.append(transform(rgb) if transform is not None else rgb)
    if not times:
        raise MediaError(path, "video stream contains no frames (zero length)")
    if fps is None:
        return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()
    duration = max(end_time, times[-1])
    if max_seconds is not None:
        duration = min(duration, max_seconds)
    return _resample(frames, times, fps, duration, rounding)


def load_image(path: str | Path) -> torch.Tensor:
    """Decode a still image (jpg, png, ...) as RGB uint8 [1, 3, H, W], one frame of a video."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with Image.open(path) as image:
            rgb = np.asarray(image.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as err:  # PIL's UnidentifiedImageError is an OSError
        raise MediaError(path, f"cannot be decoded as an image (corrupt or not an image): {err}") from err
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).unsqueeze(0).contiguous()


def _resample(
    frames: list[np.ndarray], times: list[float], fps: float, duration: float, rounding: str = "down"
) -> torch.Tensor:
    n_out = max(1, int(np.floor(duration * fps + 1e-6)))
    # "near": time t rounds into slot k iff t * fps < k + 1/2 (FFmpeg rounds halves up)
    shift = 0.5 / fps - 1e-7 if rounding == "near" else 1e-6
    targets = np.arange(n_out) / fps + shift
    idx = np.searchsorted(np.asarray(times), targets, side="right") - 1
    idx = np.clip(idx, 0, len(frames) - 1)
    return torch.from_numpy(np.stack([frames[i] for i in idx])).permute(0, 3, 1, 2).contiguous()
