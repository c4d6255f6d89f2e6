"""A frame classifier that stands in for ImageNet pre-training of the toy visual encoder (SpecVQGAN,
arXiv:2110.08791, sec. 6.1.1).

The paper's visual condition is an ImageNet-trained ResNet-50 applied to every frame. Those weights cannot be
downloaded here, and a random-weight ResNet separates the toy set's six classes poorly (its mean frame
features put 71 % of the clips next to their class centroid), so the sampler conditioned on them barely beats
"No Feats". This stage gives the toy pipeline what pre-training gives the real one, features in which the
objects on screen are told apart: the same torchvision ResNet the features come from, trained to tell the toy
classes from single video frames (cross-entropy; most toy frames show only the dark background, for which it
learns the class prior). At the end of training the trunk (everything but `fc`) is written in torchvision's
format to `<run>/frame_encoder.pt`, which `shared.encoders.ResNetFeature(weights=...)` loads (the file's hash
keys the feature cache). The paper configs keep the ImageNet weights.

Frames are decoded as the feature extractor decodes them (`ResNetFrameFeatures.load_frames`: 21.5 fps, shorter
side to `resize`) and cached once per clip as uint8; each training step takes one random frame of each clip,
drawn in the main process from torch's global generator (which checkpoints carry), and normalises it as the
extractor does (centre crop, ImageNet statistics).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningDataModule, LightningModule
from torch import nn
from torch.utils.data import Dataset
from torchmetrics.classification import MulticlassAccuracy

from shared.data import DatasetIndex, FeatureCache
from shared.data.loaders import SplitLoaders, split_records
from shared.data.records import ClipRecord
from shared.encoders import ResNetFrameFeatures, build_resnet, loop_frames
from shared.files import atomic_path
from shared.metrics import StageMeans
from shared.prepare import feature_cache, prepare_dataset


class FramesFeature:
    """A clip's frames as `ResNetFrameFeatures` decodes them (before crop and normalisation): uint8 [T, 3, H, W]."""

    name = "frames"

    def __init__(self, fps: float = 21.5, image_size: int = 64, duration: float = 2.0):
        self.extractor_args = {"fps": fps, "image_size": image_size, "duration": duration}

    def params(self) -> dict:
        return {
            **self.extractor_args,
            "resize": "224/256 of the crop",
            "frame_sampling": "ffmpeg-fps-near",
            "loop": True,
        }

    def __call__(self, record: ClipRecord) -> np.ndarray:
        extractor = ResNetFrameFeatures("resnet18", **self.extractor_args)  # decoding only; no weights used
        return loop_frames(
            extractor.load_frames(record.path), extractor.num_frames
        ).numpy()  # as features loop


class FrameDataset(Dataset):
    def __init__(self, records: list[ClipRecord], cache: FeatureCache):
        self.records, self.cache = records, cache

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict:
        record = self.records[i]
        return {"frames": torch.from_numpy(self.cache.load(record.clip_id)), "label": record.label_id}


class FrameDataModule(SplitLoaders, LightningDataModule):
    """Batch keys: `frames` [B, T, 3, H, W] uint8 (every frame of each clip), `label` [B]. The model picks the
    frames it trains on (see the module docstring). Splits as the other SpecVQGAN data modules."""

    def __init__(
        self,
        dataset: DatasetIndex,
        cache_dir: str = "data/cache",
        fps: float = 21.5,
        image_size: int = 64,
        duration: float = 2.0,
        batch_size: int = 32,
        num_workers: int = 0,
        shuffle: bool = True,
        seed: int = 0,
        predict_split: str = "test",
    ):
        super().__init__()
        self.dataset, self.cache_dir = dataset, Path(cache_dir)
        self.feature = FramesFeature(fps, image_size, duration)
        self.batch_size, self.num_workers = batch_size, num_workers
        self.shuffle, self.seed, self.predict_split = shuffle, seed, predict_split
        self._datasets: dict[str, FrameDataset] = {}

    @property
    def n_classes(self) -> int:
        return len(self.dataset.labels)

    @property
    def cache(self) -> FeatureCache:
        return feature_cache(self.cache_dir, self.dataset, self.feature.name, self.feature)

    def prepare_data(self) -> None:
        prepare_dataset(self.dataset, {self.feature.name: self.feature}, self.cache_dir)

    def split(self, split: str) -> FrameDataset:
        if split not in self._datasets:
            records = split_records(self.dataset, split, self.cache)
            if not records:
                raise RuntimeError(f"{self.dataset}: no prepared clips in split {split!r}")
            self._datasets[split] = FrameDataset(records, self.cache)
        return self._datasets[split]


class FrameClassifier(LightningModule):
    """Batch keys used: `frames` [B, T, 3, H, W] uint8, `label` [B]. Trains on one random frame per clip and
    evaluates on every frame of every clip (frame accuracy)."""

    def __init__(
        self,
        arch: str = "resnet18",
        n_classes: int = 6,
        image_size: int = 64,
        lr: float = 1e-3,
        seed: int = 0,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.preprocessor = ResNetFrameFeatures(
            arch, weights=None, image_size=image_size
        )  # crop + statistics
        self.preprocessor.net = nn.Identity()  # only its preprocessing is used; its trunk is `self.trunk`
        self.trunk = build_resnet(arch, weights=None, seed=seed)
        self.fc = nn.Linear(self.trunk.num_features, n_classes)
        self.accuracy = nn.ModuleDict(
            {s: MulticlassAccuracy(n_classes, average="micro") for s in ("val", "test")}
        )
        self.eval_means = StageMeans(["loss"])

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 frames [N, 3, H, W] -> logits [N, n_classes]."""
        return self.fc(self.trunk(self.preprocessor.preprocess(frames)))

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        frames = batch["frames"]
        pick = torch.randint(0, frames.shape[1], (frames.shape[0],)).to(frames.device)
        loss = F.cross_entropy(
            self(frames[torch.arange(frames.shape[0], device=frames.device), pick]), batch["label"]
        )
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def _evaluate(self, batch: dict, stage: str) -> None:
        frames = batch["frames"]
        logits = self(frames.flatten(0, 1))
        labels = batch["label"].repeat_interleave(frames.shape[1])
        self.eval_means.log(self, stage, {"loss": F.cross_entropy(logits, labels)}, len(logits))
        self.accuracy[stage].update(logits, labels)
        self.log(f"{stage}/acc", self.accuracy[stage], prog_bar=stage == "val")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def configure_optimizers(self):
        return torch.optim.Adam([*self.trunk.parameters(), *self.fc.parameters()], lr=self.hparams.lr)

    def on_train_end(self) -> None:
        """Write the trunk in torchvision's format (no `fc`) for `ResNetFeature(weights=...)`."""
        if self.trainer.is_global_zero:
            path = Path(self.trainer.default_root_dir) / "frame_encoder.pt"
            with atomic_path(path) as tmp:
                torch.save({k: v.detach().cpu() for k, v in self.trunk.state_dict().items()}, tmp)
