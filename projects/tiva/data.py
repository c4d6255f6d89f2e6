"""TiVA's data: 16 kHz waveforms and per-frame CLIP features of VGGSound, VAS or VEGAS clips (or the toy set).

What the paper prepares (sec. 4.1.1): audio at 16 kHz, processed as AudioLDM2 does, and video frames at
10 fps through CLIP. Both are cached once per clip: the waveform cut, or looped, to `duration` seconds
(10.24 s in the paper = the 1024 mel frames of AudioLDM2) and the CLIP CLS and patch tokens of the chosen
layers (`shared.encoders.CLIPFeature`), whose frames are looped like the sound: every frame of a batch is a
real frame, never padding, so the batch carries no frame mask. The AudioLDM2 log-mel, and the layout cut from it, are computed from
the waveform on the device by the models (`projects.tiva.models.AudioFrontEnd`): a mel cache would add disk
and nothing else, since the STFT costs far less than one UNet step.

ImageHear has no audio, so there is no ImageHear module here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import Dataset

from shared.data import DatasetIndex, FeatureCache, WaveFeature
from shared.data.cached_clips import CachedClips
from shared.data.loaders import SplitLoaders
from shared.data.records import ClipRecord
from shared.encoders import CLIPFeature, melception_inputs, split_clip_feature
from shared.files import atomic_path

SAMPLE_RATE = 16_000  # AudioLDM2's rate (paper sec. 4.1.1)


class VideoAudioDataset(Dataset):
    """Cached clips -> {"wave": [samples], "clip_cls": [N, L, D], "clip_patch": [N, L, D], "label", "clip_id"}."""

    def __init__(self, records: list[ClipRecord], wave_cache: FeatureCache, clip_cache: FeatureCache):
        self.records, self.wave_cache, self.clip_cache = records, wave_cache, clip_cache

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict:
        record = self.records[i]
        cls, patch = split_clip_feature(self.clip_cache.load(record.clip_id))
        return {
            "wave": torch.from_numpy(np.ascontiguousarray(self.wave_cache.load(record.clip_id), np.float32)),
            "clip_cls": torch.from_numpy(np.ascontiguousarray(cls, np.float32)),
            "clip_patch": torch.from_numpy(np.ascontiguousarray(patch, np.float32)),
            "label": record.label_id,
            "clip_id": record.clip_id,
        }


class TiVADataModule(CachedClips, SplitLoaders, LightningDataModule):
    """Waveforms and CLIP frame features of one dataset, prepared once into feature caches.

    Batch keys: `wave` [B, round(duration * 16000)] float at 16 kHz; `clip_cls`, `clip_patch` [B, N, L, D]
    (per frame at `clip.fps`, N = floor(duration * fps): the CLS token and the mean patch token of each of the
    L CLIP layers, sec. 3.2.1); `label` [B] int64; `clip_id` list of B str. With `melception_mel`, also `mel`
    [B, 1, 80, frames] in [0, 1]: the clip as Melception sees it (resampled to 22,050 Hz, SpecVQGAN's mel;
    `shared.encoders.melception_inputs`), for training the evaluation classifier on the same input path the
    metrics use. Splits: train, valid, test (valid stands in where a dataset has no test split); outside fit,
    evaluation gives each process its own clips. Clips that fail to decode are skipped and listed in
    `<cache_dir>/<dataset>_skipped.tsv`.
    """

    def __init__(
        self,
        dataset: DatasetIndex,
        clip: CLIPFeature,
        cache_dir: str = "data/cache",
        duration: float = 10.24,
        loop: bool = True,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        prepare_workers: int = 0,
        shuffle: bool = True,
        seed: int = 0,
        predict_split: str = "test",
        melception_mel: bool = False,
    ):
        super().__init__()
        if abs(clip.duration - duration) > 1e-9:
            raise ValueError(f"data.clip.duration {clip.duration} differs from data.duration {duration}")
        self.dataset, self.clip, self.cache_dir = dataset, clip, Path(cache_dir)
        self.duration = duration
        self.wave = WaveFeature(SAMPLE_RATE, duration=duration, loop=loop)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers, self.prepare_workers = num_workers, prepare_workers
        self.shuffle, self.seed, self.predict_split = shuffle, seed, predict_split
        self.melception_mel = melception_mel
        self._datasets: dict[str, VideoAudioDataset] = {}

    @property
    def n_frames(self) -> int:
        return self.clip.num_frames

    def split(self, split: str) -> VideoAudioDataset:
        if split not in self._datasets:
            self._datasets[split] = VideoAudioDataset(*self.prepared_split(split))
        return self._datasets[split]

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        if self.melception_mel:
            batch["mel"] = melception_inputs(batch["wave"], SAMPLE_RATE).unsqueeze(1)
        return batch

    @torch.no_grad()
    def mel_statistics(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-mel-bin mean and std of the training clips' Melception inputs (the classifier's normalisation),
        streamed over the clips once and stored beside the wave cache."""
        train = self.split("train")
        path = self.cache("wave").dir / "stats_train_melception.npy"
        if not path.is_file():
            total, count = 0.0, 0
            for i in range(len(train)):
                mel = melception_inputs(train[i]["wave"][None], SAMPLE_RATE)[0].double()
                total = total + torch.stack([mel.sum(1), (mel**2).sum(1)])
                count += mel.shape[1]
            mean = total[0] / count
            std = (total[1] / count - mean**2).clamp_min(0).sqrt()
            with atomic_path(path) as tmp, open(tmp, "wb") as f:
                np.save(f, torch.stack([mean, std]).float().numpy())
        mean, std = np.load(path)
        return torch.from_numpy(mean), torch.from_numpy(std)
