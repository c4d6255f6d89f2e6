"""SpecVQGAN's data: mel spectrograms of VGGSound, VAS or VEGAS clips (or the toy set in those layouts).

Preparation follows the official pipeline (arXiv:2110.08791, sec. 6.1.1; official
`feature_extraction/extract_mel_spectrogram.py`): each clip's audio is
looped to `duration` seconds, turned into the 22.05 kHz / 80-mel SpecVQGAN spectrogram, kept to its first
`trim_frames` frames (the official TrimSpec, 860 for 10 s) and centre-cropped to `crop_frames` (848, a
multiple of 16 so the codebook grid is whole). ImageHear has no audio, so there is no ImageHear module here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import Dataset

from shared.data import DatasetIndex, FeatureCache, MelFeature
from shared.data.loaders import SplitLoaders, random_windows, split_records
from shared.data.records import ClipRecord
from shared.encoders import OfficialFeatureFiles, ResNetFeature
from shared.encoders.frames import select_frames
from shared.files import atomic_path
from shared.prepare import feature_cache, prepare_dataset


class MelClipDataset(Dataset):
    """Cached mels -> {"mel": [1, 80, width] in [0, 1], "label": int, "clip_id": str} (+ "frame_feats" [k, D]).

    `width` is `crop_frames` (the centre crop), or with `random_crop` the whole `trim_frames` window, which
    `shared.data.loaders.random_windows` then cuts at step time. With a visual feature cache, each clip's frame features go
    through the official chain (`shared.encoders.frames.select_frames`: pad/trim to `feat_len`, centre crop
    to `feat_crop`, k = `n_feats` evenly spread frames).
    """

    def __init__(
        self,
        records: list[ClipRecord],
        cache: FeatureCache,
        trim_frames: int,
        crop_frames: int,
        random_crop: bool = False,
        visual_cache: FeatureCache | None = None,
        frames: tuple[int, int, int] = (212, 215, 212),
    ):
        self.records, self.cache = records, cache
        self.trim_frames, self.crop_frames, self.random_crop = trim_frames, crop_frames, random_crop
        self.visual_cache, self.frames = visual_cache, frames

    def __len__(self) -> int:
        return len(self.records)

    def crop(self, mel: np.ndarray, clip_id: str) -> np.ndarray:
        mel = mel[:, : self.trim_frames]
        needed = self.trim_frames if self.random_crop else self.crop_frames
        if mel.shape[1] < needed:
            raise ValueError(
                f"{self.cache.path(clip_id)}: {mel.shape[1]} mel frames, fewer than the {needed} needed "
                f"(trim_frames={self.trim_frames}, crop_frames={self.crop_frames}; is `duration` long enough?)"
            )
        if self.random_crop:
            return mel
        start = (mel.shape[1] - self.crop_frames) // 2
        return mel[:, start : start + self.crop_frames]

    def __getitem__(self, i: int) -> dict:
        record = self.records[i]
        mel = self.crop(self.cache.load(record.clip_id), record.clip_id)
        item = {
            "mel": torch.from_numpy(np.ascontiguousarray(mel, dtype=np.float32)).unsqueeze(0),
            "label": record.label_id,
            "clip_id": record.clip_id,
        }
        if self.visual_cache is not None:
            n_feats, feat_len, feat_crop = self.frames
            feats = select_frames(self.visual_cache.load(record.clip_id), n_feats, feat_len, feat_crop)
            item["frame_feats"] = torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32))
        return item


class SpectrogramDataModule(SplitLoaders, LightningDataModule):
    """Mel spectrograms and labels of one dataset, prepared once into a feature cache.

    Batch keys: `mel` [B, 1, 80, crop_frames] float in [0, 1] (the official feature scale; models rescale
    it), `label` [B] int64 (index in the dataset's sorted label list), `clip_id` list of B str; with
    `visual` (a per-frame video feature such as `shared.encoders.ResNetFeature`, or the official feature
    files through `shared.encoders.OfficialFeatureFiles`), also `frame_feats` [B, n_feats, D].
    Splits: train, valid, and test (VAS has none, so test falls back to valid as the official code does);
    `predict` reads `predict_split`. Training resumes mid-epoch on exactly the batches it would have seen.
    Random crops (`random_crop`, training only) are cut in the main process just before each step, from
    torch's global generator, whose state every checkpoint carries (`RNGStateCheckpoint`): a resumed run
    crops as the uninterrupted one would, which crops drawn inside the dataset (prefetched, in workers
    seeded anew each epoch) would not.
    outside fit, evaluation and prediction give each process its own clips, each clip once
    (`shared.data.loaders`).
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
        shuffle: bool = True,
        seed: int = 0,
        predict_split: str = "test",
        visual: ResNetFeature | OfficialFeatureFiles | None = None,
        n_feats: int = 212,
        feat_len: int = 215,
        feat_crop: int = 212,
    ):
        super().__init__()
        self.dataset = dataset
        self.cache_dir = Path(cache_dir)
        self.feature = MelFeature("specvqgan", duration=duration, loop=loop)
        self.trim_frames, self.crop_frames, self.random_crop = trim_frames, crop_frames, random_crop
        self.batch_size, self.num_workers, self.prepare_workers = batch_size, num_workers, prepare_workers
        self.shuffle, self.seed, self.predict_split = shuffle, seed, predict_split
        self.visual, self.frames = visual, (n_feats, feat_len, feat_crop)
        self._datasets: dict[str, MelClipDataset] = {}

    @property
    def cache(self) -> FeatureCache:
        return feature_cache(self.cache_dir, self.dataset, "mel", self.feature)

    @property
    def n_classes(self) -> int:
        return len(self.dataset.labels)

    @property
    def report_path(self) -> Path:
        return self.cache_dir / f"{self.dataset.name}_skipped.tsv"

    @property
    def features(self) -> dict[str, object]:
        return {"mel": self.feature} | ({self.visual.name: self.visual} if self.visual is not None else {})

    @property
    def visual_cache(self) -> FeatureCache | None:
        if self.visual is None:
            return None
        return feature_cache(self.cache_dir, self.dataset, self.visual.name, self.visual)

    def prepare_data(self) -> None:
        prepare_dataset(self.dataset, self.features, self.cache_dir, self.prepare_workers)

    def split(self, split: str) -> MelClipDataset:
        if split not in self._datasets:
            cache = self.cache
            visual = self.visual_cache
            available = split_records(self.dataset, split, cache, *([visual] if visual is not None else []))
            if not available:
                raise RuntimeError(
                    f"{self.dataset}: no prepared clips in split {split!r} (see {self.report_path})"
                )
            random_crop = self.random_crop and split == "train"
            self._datasets[split] = MelClipDataset(
                available, cache, self.trim_frames, self.crop_frames, random_crop, visual, self.frames
            )
        return self._datasets[split]

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        if self.random_crop and self.trainer is not None and self.trainer.training:
            batch["mel"] = random_windows(batch["mel"], self.crop_frames)
        return batch

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
