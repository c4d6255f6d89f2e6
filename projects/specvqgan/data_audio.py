"""Waveforms for SpecVQGAN's MelGAN vocoder (arXiv:2110.08791, sec. 6.1.5; official
`vocoder/mel2wav/dataset.py`).

The official vocoder trains on each clip's 10-s waveform (`<clip>_audio.npy`: mono 22,050 Hz, looped to
10 s like the mel features, sec. 6.1.1), scaled to a peak of 0.95 (`0.95 * librosa.util.normalize`), times
a random gain drawn from U(0.3, 1.0), cut to a random 8192-sample segment. Here the waveform is prepared
once into a feature cache (`shared.data.WaveFeature`; `avgen prepare --features wave` fills the same
cache), the peak scaling happens when a clip is read, and the random gain and segment are drawn on the
batch just before each training step, from torch's global generator, whose state every checkpoint
carries: a resumed run cuts and scales exactly as the uninterrupted one would have.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import Dataset

from shared.data import DatasetIndex, FeatureCache, WaveFeature
from shared.data.loaders import SplitLoaders, random_windows, split_records
from shared.data.records import ClipRecord
from shared.prepare import feature_cache, prepare_dataset


class WaveClipDataset(Dataset):
    """Cached waveforms -> {"wave": float32 [samples], "clip_id": str}, scaled to a peak of `peak`."""

    def __init__(self, records: list[ClipRecord], cache: FeatureCache, peak: float | None = 0.95):
        self.records, self.cache, self.peak = records, cache, peak

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict:
        record = self.records[i]
        wave = self.cache.load(record.clip_id).astype(np.float32)
        if self.peak is not None:
            top = float(np.abs(wave).max(initial=0.0))
            if top > np.finfo(np.float32).tiny:  # silence stays silence (librosa.util.normalize's rule)
                wave = wave * np.float32(self.peak / top)
        return {"wave": torch.from_numpy(np.ascontiguousarray(wave)), "clip_id": record.clip_id}


def random_gains(n: int, low: float, high: float, device: torch.device) -> torch.Tensor:
    """n gains from U(low, high), drawn from torch's global generator (on the CPU, so every device agrees)."""
    return (low + (high - low) * torch.rand(n)).to(device)


class WaveformDataModule(SplitLoaders, LightningDataModule):
    """Waveforms of one dataset (VGGSound, VAS, VEGAS or the toy set), prepared once into a feature cache.

    Batch keys: `wave` [B, samples] float in [-1, 1] at `sample_rate`, `clip_id` list of B str.
    Training batches hold a random `segment_length`-sample window of each clip times a random gain from
    U(*gain) (both cut just before the step; see the module docstring); validation, test and prediction
    batches hold whole clips (`duration` seconds, `eval_batch_size` of them). Every clip is first scaled to
    a peak of `peak` (0.95; None keeps the level). Splits: train, valid, test (falls back to valid where a
    dataset has no test split, as VAS); `predict` reads `predict_split`. Training resumes mid-epoch on
    exactly the batches it would have seen; outside fit, evaluation gives each process its own clips, each
    once (`shared.data.loaders`). Clips that fail to decode are skipped and listed in
    `<cache_dir>/<dataset>_skipped.tsv`.
    """

    def __init__(
        self,
        dataset: DatasetIndex,
        cache_dir: str = "data/cache",
        sample_rate: int = 22050,
        duration: float = 10.0,
        loop: bool = True,
        segment_length: int = 8192,
        gain: tuple[float, float] | None = (0.3, 1.0),
        peak: float | None = 0.95,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        prepare_workers: int = 0,
        shuffle: bool = True,
        seed: int = 0,
        predict_split: str = "test",
    ):
        super().__init__()
        if segment_length > round(duration * sample_rate):
            raise ValueError(
                f"segment_length {segment_length} is longer than a {duration}-s clip at {sample_rate} Hz"
            )
        if gain is not None and not 0 < gain[0] <= gain[1]:
            raise ValueError(f"gain {gain}: need 0 < low <= high")
        self.dataset = dataset
        self.cache_dir = Path(cache_dir)
        self.feature = WaveFeature(sample_rate, duration=duration, loop=loop)
        self.segment_length, self.gain, self.peak = segment_length, gain, peak
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers, self.prepare_workers = num_workers, prepare_workers
        self.shuffle, self.seed, self.predict_split = shuffle, seed, predict_split
        self._datasets: dict[str, WaveClipDataset] = {}

    @property
    def sample_rate(self) -> int:
        return self.feature.sample_rate

    @property
    def cache(self) -> FeatureCache:
        return feature_cache(self.cache_dir, self.dataset, "wave", self.feature)

    @property
    def report_path(self) -> Path:
        return self.cache_dir / f"{self.dataset.name}_skipped.tsv"

    def prepare_data(self) -> None:
        prepare_dataset(self.dataset, {"wave": self.feature}, self.cache_dir, self.prepare_workers)

    def split(self, split: str) -> WaveClipDataset:
        if split not in self._datasets:
            cache = self.cache
            available = split_records(self.dataset, split, cache)
            if not available:
                raise RuntimeError(
                    f"{self.dataset}: no prepared clips in split {split!r} (see {self.report_path})"
                )
            self._datasets[split] = WaveClipDataset(available, cache, self.peak)
        return self._datasets[split]

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        if self.trainer is not None and self.trainer.training:
            wave = random_windows(batch["wave"], self.segment_length)
            if self.gain is not None:
                wave = wave * random_gains(len(wave), *self.gain, wave.device)[:, None]
            batch["wave"] = wave
        return batch
