"""Putting generated sound into a video: the input's video stream copied as is, plus a new AAC track.

The video packets are copied (no re-encoding, so no quality loss and no encoder needed) up to the end of
the generated audio, so the result is as long as the sound; PyAV (FFmpeg) writes the mp4.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from shared.files import atomic_path
from shared.media import MediaError, open_media


def mux_audio(
    video_path: str | Path, wave: torch.Tensor | np.ndarray, sample_rate: int, out_path: str | Path
) -> Path:
    """Write `out_path` (mp4): the video of `video_path`, cut to the audio's length, with `wave` [T] as sound."""
    wave = np.asarray(wave.detach().cpu() if isinstance(wave, torch.Tensor) else wave, dtype=np.float32)
    if wave.ndim != 1 or wave.size == 0:
        raise ValueError(f"expected a mono waveform [T], got shape {wave.shape}")
    seconds = wave.size / sample_rate
    with open_media(video_path) as source, atomic_path(out_path) as tmp:
        if not source.streams.video:
            raise MediaError(video_path, "has no video stream")
        video_in = source.streams.video[0]
        with av.open(str(tmp), "w", format="mp4") as out:
            video_out = out.add_stream_from_template(video_in)
            audio_out = out.add_stream("aac", rate=sample_rate)
            audio_out.layout = "mono"
            for packet in source.demux(video_in):
                if packet.dts is None:
                    continue
                if packet.pts is not None and packet.pts * video_in.time_base >= seconds:
                    break
                packet.stream = video_out
                out.mux(packet)
            frame = av.AudioFrame.from_ndarray(wave[None], format="flt", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = sample_rate, 0, Fraction(1, sample_rate)
            for packet in audio_out.encode(frame):
                out.mux(packet)
            for packet in audio_out.encode(None):
                out.mux(packet)
    return Path(out_path)
