"""Per-clip features that dataset preparation caches (see `shared.data.cache`)."""

from __future__ import annotations

import numpy as np
import torch

from shared.audio import MelFrontEnd, load_audio
from shared.data.records import ClipRecord


class MelFeature:
    """A clip's audio as a compressed mel spectrogram, float32 [n_mels, frames], no cropping.

    The audio is cut, or looped (`loop=True`, as SpecVQGAN's preparation does) or zero-padded, to exactly
    `duration` seconds first, so every clip of a dataset gives the same number of frames.
    """

    threads = 1  # torch threads while preparing: a clip's work is small operations (`prepare_features`)

    def __init__(self, preset: str = "specvqgan", duration: float = 10.0, loop: bool = True):
        self.preset, self.duration, self.loop = preset, duration, loop
        self.front_end = MelFrontEnd.from_preset(preset)

    def params(self) -> dict:
        return {"front_end": self.front_end.params(), "duration": self.duration, "loop": self.loop}

    @torch.no_grad()
    def __call__(self, record: ClipRecord) -> np.ndarray:
        wave = load_audio(record.path, self.front_end.sample_rate, duration=self.duration, loop=self.loop)
        return self.front_end(wave.unsqueeze(0))[0].numpy().astype(np.float32)


class WaveFeature:
    """A clip's audio as a mono float32 waveform [round(duration * sample_rate)], cut, looped or padded as
    `MelFeature` does (the waveforms a vocoder trains on: SpecVQGAN's `<clip>_audio.npy`, written
    by `feature_extraction/extract_mel_spectrogram.py`)."""

    threads = 1  # torch threads while preparing: a clip's work is small operations (`prepare_features`)

    def __init__(self, sample_rate: int = 22050, duration: float = 10.0, loop: bool = True):
        self.sample_rate, self.duration, self.loop = sample_rate, duration, loop

    def params(self) -> dict:
        return {"sample_rate": self.sample_rate, "duration": self.duration, "loop": self.loop}

    def __call__(self, record: ClipRecord) -> np.ndarray:
        wave = load_audio(record.path, self.sample_rate, duration=self.duration, loop=self.loop)
        return wave.numpy().astype(np.float32)
