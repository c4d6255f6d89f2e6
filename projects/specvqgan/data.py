"""SpecVQGAN's data: mel spectrograms of VGGSound, VAS or VEGAS clips (or the toy set in those layouts).

Preparation follows the official pipeline (paper sec. 6.1.1, reference card sec. 1): each clip's audio is
looped to `duration` seconds, turned into the 22.05 kHz / 80-mel SpecVQGAN spectrogram, kept to its first
`trim_frames` frames (the official TrimSpec, 860 for 10 s) and centre-cropped to `crop_frames` (848, a
multiple of 16 so the codebook grid is whole). ImageHear has no audio, so there is no ImageHear module here.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from shared.data import DatasetIndex, FeatureCache, MelFeature, prepare_features
from shared.data.records import ClipRecord
from shared.files import atomic_path

log = logging.getLogger(__name__)


class MelClipDataset(Dataset):
    """Cached mels -> {"mel": [1, 80, crop_frames] in [0, 1], "label": int, "clip_id": str}."""

    def __init__(
        self,
        records: list[ClipRecord],
        cache: FeatureCache,
        trim_frames: int,
        crop_frames: int,
        random_crop: bool = False,
    ):
        self.records, self.cache = records, cache
        self.trim_frames, self.crop_frames, self.random_crop = trim_frames, crop_frames, random_crop

    def __len__(self) -> int:
        return len(self.records)

    def crop(self, mel: np.ndarray, clip_id: str) -> np.ndarray:
        mel = mel[:, : self.trim_frames]
        if mel.shape[1] < self.crop_frames:
            raise ValueError(
                f"{self.cache.path(clip_id)}: {mel.shape[1]} mel frames after trimming, fewer than "
                f"crop_frames={self.crop_frames} (is `duration` long enough?)"
            )
        spare = mel.shape[1] - self.crop_frames
        start = np.random.randint(0, spare + 1) if self.random_crop else spare // 2
        return mel[:, start : start + self.crop_frames]

    def __getitem__(self, i: int) -> dict:
        record = self.records[i]
        mel = self.crop(self.cache.load(record.clip_id), record.clip_id)
        return {
            "mel": torch.from_numpy(np.ascontiguousarray(mel, dtype=np.float32)).unsqueeze(0),
            "label": record.label_id,
            "clip_id": record.clip_id,
        }


class SpectrogramDataModule(LightningDataModule):
    """Mel spectrograms and labels of one dataset, prepared once into a feature cache.

    Batch keys: `mel` [B, 1, 80, crop_frames] float in [0, 1] (the official feature scale; models rescale
    it), `label` [B] int64 (index in the dataset's sorted label list), `clip_id` list of B str.
    Splits: train, valid, and test (VAS has none, so test falls back to valid as the official code does).
    Clips that fail to decode are skipped and listed in `<cache_dir>/<dataset>_skipped.tsv`.
    """

    def __init__(
        self,
        dataset: DatasetIndex,
        cache_dir: str = "data/cache",
        duration: float = 10.0,
        loop: bool = True,
        trim_frames: int = 860,
        crop_frames: int = 848,
        random_crop: bool = False,
        batch_size: int = 8,
        num_workers: int = 0,
        prepare_workers: int = 0,
    ):
        super().__init__()
        self.dataset = dataset
        self.cache_dir = Path(cache_dir)
        self.feature = MelFeature("specvqgan", duration=duration, loop=loop)
        self.trim_frames, self.crop_frames, self.random_crop = trim_frames, crop_frames, random_crop
        self.batch_size, self.num_workers, self.prepare_workers = batch_size, num_workers, prepare_workers
        self._datasets: dict[str, MelClipDataset] = {}

    @property
    def cache(self) -> FeatureCache:
        params = {
            **self.feature.params(),
            "dataset": repr(self.dataset),
            "root": str(self.dataset.root.resolve()),
        }
        return FeatureCache(self.cache_dir / self.dataset.name, "mel", params)

    @property
    def n_classes(self) -> int:
        return len(self.dataset.labels)

    @property
    def report_path(self) -> Path:
        return self.cache_dir / f"{self.dataset.name}_skipped.tsv"

    def prepare_data(self) -> None:
        records = self.dataset.records()
        report = self.dataset.report
        prepare_features(
            records, self.cache, self.feature, report, self.prepare_workers, desc="mel spectrograms"
        )
        report.write(self.report_path)
        log.info(report.summary(len(records) + len(self.dataset.report), self.report_path))

    def split(self, split: str) -> MelClipDataset:
        if split not in self._datasets:
            cache = self.cache
            records = self.dataset.records(split)
            if not records and split == "test":
                records = self.dataset.records("valid")
            available = [r for r in records if cache.has(r.clip_id)]
            if not available:
                raise RuntimeError(
                    f"{self.dataset}: no prepared clips in split {split!r} (see {self.report_path})"
                )
            random_crop = self.random_crop and split == "train"
            self._datasets[split] = MelClipDataset(
                available, cache, self.trim_frames, self.crop_frames, random_crop
            )
        return self._datasets[split]

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.split(split),
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            drop_last=shuffle,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("valid", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def mel_statistics(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-mel-bin mean and std over the training clips (the classifiers' input normalisation).

        Streamed over the clips and stored beside the cache, so a large dataset is read once.
        """
        train = self.split("train")
        path = self.cache.dir / f"stats_train_{train.trim_frames}_{train.crop_frames}.npy"
        if not path.is_file():
            total = np.zeros((2, self.cache.load(train.records[0].clip_id).shape[0]))
            count = 0
            for i in range(len(train)):
                mel = train[i]["mel"][0].numpy().astype(np.float64)
                total += np.stack([mel.sum(axis=1), (mel**2).sum(axis=1)])
                count += mel.shape[1]
            mean = total[0] / count
            std = np.sqrt(np.maximum(total[1] / count - mean**2, 0.0))
            with atomic_path(path) as tmp, open(tmp, "wb") as f:
                np.save(f, np.stack([mean, std]).astype(np.float32))
        mean, std = np.load(path)
        return torch.from_numpy(mean), torch.from_numpy(std)
