"""WavBriVL's data: 16 kHz audio of a clip with one video frame of it (WavBriVL, arXiv:2303.04585, sec. 3).

What the paper says and how it is done here:

* "VGGSound ... the audio is sampled at 16 kHz ... one random frame per video ... 20,000 clips for training,
  another part for evaluation": the clip's audio, resampled to 16 kHz on load and cut or zero-padded at the
  end to `audio_seconds` (`lengths` = the valid samples, for WavLM's attention mask); one frame drawn
  uniformly from the clip's frames in training, the middle one in evaluation; `train_subset` = 20000 keeps a
  seeded subset of that many training clips (None: all).
* "frames cropped to 480 x 480": each frame's shorter side is scaled to `image_size` and the centre square
  kept (the image tower resizes to its own input size and normalises with its own mean and std).
* Frames are decoded once, at `frame_fps` frames per second, and cached per clip as uint8 [N, 3, S, S]
  (`FrameFeature`); a training item reads only its one frame from the cached array (memory-mapped).
  `frame_index` is the frame's position in that array (its time is frame_index / frame_fps).
* `frames: salient` (a choice of ours, not the paper's; default `all`) draws the frame among the clip's
  salient frames instead of all of them: a frame's salience is the standard deviation of its pixel values
  (its contrast), and the salient frames are those at least half-way from the clip's least to its most
  salient frame (evaluation: the most salient frame). The toy clips show their
  class only for 0.3 s after each sound event, so most of their frames are empty background that no image
  tower can tell apart; real VGGSound frames nearly always show their scene, and the paper draws uniformly.
* Training randomness: the frame of clip i in epoch e comes from a generator seeded by (seed, e, i); the
  training sampler hands the dataset (epoch, index) keys (`shared.data.loaders.EpochIndexSampler`), and its
  position and epoch are in every checkpoint, so a resumed run draws the frames the uninterrupted run would
  have, whatever the number of worker processes.
* VEGAS (Zhou et al., 2018), the set-up of the paper's Table 3 (sec. 4.3: "trained using the same training
  set up as S2I, including five categories in VEGAS"): S2I (`leofanzeres/s2i`, `values.py`,
  `VEGAS_CLASSES_INDEXES`) uses the five classes Baby cry, Dog, Rail transport, Fireworks and Water flowing
  (`S2I_VEGAS_CLASSES`; `classes` selects them). S2I's clip split is not in its code (its data come as
  pre-built binary batches), so the VEGAS index's split is used (`shared.data.VEGASIndex`).

Clips whose audio or video does not decode are skipped and listed in `<cache_dir>/<dataset>_skipped.tsv`.
"""

from __future__ import annotations

import dataclasses
import random
import re
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from lightning.pytorch import LightningDataModule
from torch.utils.data import Dataset

from shared.data import DatasetIndex, FeatureCache, WaveFeature
from shared.data.cached_clips import CachedClips
from shared.data.loaders import EpochIndexSampler, SplitLoaders, train_loader
from shared.data.records import ClipRecord
from shared.runs import UserError
from shared.video.io import load_video

SAMPLE_RATE = 16_000  # WavLM's rate (WavBriVL sec. 3: VGGSound audio at 16 kHz)

# S2I's five VEGAS classes (`leofanzeres/s2i`, `values.py`, `VEGAS_CLASSES_INDEXES`), in its order
S2I_VEGAS_CLASSES = ("Baby cry", "Dog", "Rail transport", "Fireworks", "Water flowing")


class FrameFeature:
    """A clip's video frames for the feature cache: uint8 [N, 3, S, S], N = the frames shown at `fps`
    (the frame on screen at each k / fps), each with its shorter side scaled to S = `image_size`
    (antialiased) and the centre square kept."""

    name = "frames"
    threads = 1  # per-frame small operations (see `shared.data.cache.prepare_features`)

    def __init__(self, fps: float = 1.0, image_size: int = 224):
        self.fps, self.image_size = float(fps), int(image_size)

    def params(self) -> dict:
        return {
            "fps": self.fps, "image_size": self.image_size, "frame_sampling": "on-screen",
            "resize": "shorter side, antialias", "crop": "centre square", "dtype": "uint8",
        }  # fmt: skip

    def fit(self, rgb: np.ndarray) -> np.ndarray:
        """One decoded frame uint8 [H, W, 3] -> [S, S, 3], applied while decoding (no full-size video is
        held in memory)."""
        frame = torch.from_numpy(rgb).permute(2, 0, 1)
        frame = TF.resize(frame, [self.image_size], antialias=True)
        frame = TF.center_crop(frame, [self.image_size, self.image_size])
        return frame.permute(1, 2, 0).numpy()

    def __call__(self, record: ClipRecord) -> np.ndarray:
        return load_video(record.path, fps=self.fps, transform=self.fit).numpy()


def subset_records(records: list[ClipRecord], size: int | None, seed: int) -> list[ClipRecord]:
    """`size` of `records` drawn by `random.Random(seed)` from their clip-id order (all when size is None or
    at least their number): the same clips on every machine, whatever the order of the index."""
    ordered = sorted(records, key=lambda r: r.clip_id)
    if size is None or size >= len(ordered):
        return ordered
    if size <= 0:
        raise ValueError(f"train_subset must be positive, not {size}")
    return sorted(random.Random(seed).sample(ordered, size), key=lambda r: r.clip_id)


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def match_classes(wanted: list[str] | tuple[str, ...], labels: list[str], root: Path) -> list[str]:
    """The dataset labels that the names in `wanted` select: a label matches a name when its lower-case
    alphanumeric words start with the name's (`Baby cry` selects `Baby_cry_infant_cry`); each name must
    select exactly one label."""
    chosen = []
    for name in wanted:
        hits = [label for label in labels if _slug(label) == _slug(name)]
        hits = hits or [label for label in labels if _slug(label).startswith(_slug(name) + "_")]
        if len(hits) != 1:
            found = "no class" if not hits else f"several classes ({', '.join(hits)})"
            raise UserError(f"{root}: class {name!r} selects {found}; the classes are {', '.join(labels)}")
        chosen.append(hits[0])
    return chosen


class SelectedClips(DatasetIndex):
    """A view of a dataset index: the chosen classes only (label ids renumbered in their sorted order) and,
    in the train split, a seeded subset of `train_subset` clips. Its caches are the underlying index's (the
    same identity): selecting fewer clips computes nothing new, and preparation does only the selected
    ones."""

    def __init__(
        self,
        index: DatasetIndex,
        classes: list[str] | tuple[str, ...] | None = None,
        train_subset: int | None = None,
        subset_seed: int = 0,
    ):
        self.index, self.name, self.root, self.report = index, index.name, index.root, index.report
        self.classes, self.train_subset, self.subset_seed = classes, train_subset, subset_seed

    def identity(self) -> dict[str, str]:
        return self.index.identity()

    def _scan(self) -> tuple[list[ClipRecord], list[str]]:
        labels = self.index.labels
        if self.classes is not None:
            labels = sorted(match_classes(self.classes, labels, self.index.root))
        label_id = {label: i for i, label in enumerate(labels)}
        records = [
            dataclasses.replace(r, label_id=label_id[r.label])
            for r in self.index.all_records
            if r.label in label_id
        ]
        train = subset_records(
            [r for r in records if r.split == "train"], self.train_subset, self.subset_seed
        )
        return train + [r for r in records if r.split != "train"], labels

    def __repr__(self) -> str:
        return f"SelectedClips({self.index!r}, classes={self.classes}, train_subset={self.train_subset})"


FRAME_CHOICES = ("all", "salient")


def check_frame_choice(frames: str) -> None:
    if frames not in FRAME_CHOICES:
        raise ValueError(f"frames={frames!r}: expected one of {FRAME_CHOICES}")


def salience(frames: np.ndarray) -> np.ndarray:
    """[N] the standard deviation of each frame's pixel values, uint8 [N, 3, S, S] -> [N]. (A frame's difference
    from the clip's median frame would not do: where the shape is on screen in most frames, the median shows
    it and the empty frames stand out.)"""
    return frames.reshape(frames.shape[0], -1).astype(np.float32).std(axis=1)


class ClipFrameDataset(Dataset):
    """Cached clips -> {"wave": [T], "lengths", "image": [3, S, S] float in [0, 1], "label", "label_text",
    "clip_id", "frame_index", "index"}. Training keys are (epoch, index) pairs (a random frame from a generator
    seeded by (seed, epoch, index)); evaluation keys are indices (the middle frame). `frames`: "all" or
    "salient" (module docstring)."""

    def __init__(
        self,
        records: list[ClipRecord],
        wave_cache: FeatureCache,
        frame_cache: FeatureCache,
        samples: int,
        training: bool,
        seed: int = 0,
        frames: str = "all",
    ):
        check_frame_choice(frames)
        self.records, self.wave_cache, self.frame_cache = records, wave_cache, frame_cache
        self.samples, self.training, self.seed, self.frames = samples, training, seed, frames

    def __len__(self) -> int:
        return len(self.records)

    def frame_choice(self, frames: np.ndarray, key: int | tuple[int, int]) -> int:
        """The index of the item's frame among `frames` uint8 [N, 3, S, S]."""
        if self.frames == "salient":
            score = salience(frames)
            candidates = np.flatnonzero(score >= (score.min() + score.max()) / 2)
            if not self.training:
                return int(score.argmax())
        else:
            candidates = np.arange(frames.shape[0])
            if not self.training:
                return frames.shape[0] // 2
        epoch, index = key
        return int(candidates[np.random.default_rng([self.seed, epoch, index]).integers(len(candidates))])

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        index = key[1] if self.training else key
        record = self.records[index]
        frames = np.load(self.frame_cache.path(record.clip_id), mmap_mode="r")
        wave = self.wave_cache.load(record.clip_id)
        if frames.ndim != 4 or frames.shape[0] == 0 or wave.ndim != 1 or wave.size == 0:
            raise ValueError(
                f"{record.path}: cached frames {frames.shape} / wave {wave.shape} are not [N, 3, S, S] / "
                f"[samples] (caches {self.frame_cache.dir}, {self.wave_cache.dir})"
            )
        frame = self.frame_choice(frames, key)
        length = min(wave.size, self.samples)
        padded = np.zeros(self.samples, np.float32)
        padded[:length] = wave[:length]
        return {
            "wave": torch.from_numpy(padded),
            "lengths": length,
            "image": torch.from_numpy(np.array(frames[frame], np.float32)) / 255.0,
            "label": record.label_id,
            "label_text": record.label,
            "clip_id": record.clip_id,
            "frame_index": frame,
            "index": index,
        }


class WavBriVLDataModule(CachedClips, SplitLoaders, LightningDataModule):
    """Clips of a dataset as WavBriVL trains and evaluates on them (module docstring).

    Batch keys: `wave` [B, T] float32, the clip's mono audio at 16 kHz cut or zero-padded at the end to
    T = round(audio_seconds x 16000); `lengths` [B] int64, its valid samples; `image` [B, 3, S, S] float32
    in [0, 1], one frame (random in training, the middle one in evaluation; `frames: salient`: among the
    salient frames, the most salient in evaluation), S = `image_size`; `label` [B]
    int64 (index in the sorted labels of the selected classes); `label_text`, `clip_id`: lists of B str;
    `frame_index` [B] int64, the frame's position among the clip's frames at `frame_fps`; `index` [B] int64,
    the item's position in its split (an evaluation split's item `index` is `split(name)[index]`). Splits
    train, valid, test (a dataset without test, as VAS: valid). `classes`: names of the classes to keep
    (None: all); `train_subset`: that many training clips, drawn by `subset_seed` (None: all).
    """

    def __init__(
        self,
        dataset: DatasetIndex,
        cache_dir: str = "data/cache",
        audio_seconds: float = 10.0,
        image_size: int = 224,
        frame_fps: float = 1.0,
        frames: str = "all",
        classes: list[str] | None = None,
        train_subset: int | None = None,
        subset_seed: int = 0,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        prepare_workers: int = 0,
        shuffle: bool = True,
        seed: int = 0,
        predict_split: str = "test",
    ):
        super().__init__()
        self.dataset = SelectedClips(dataset, classes, train_subset, subset_seed)
        self.cache_dir = Path(cache_dir)
        self.samples = round(audio_seconds * SAMPLE_RATE)
        self.image_size = int(image_size)
        self.wave = WaveFeature(SAMPLE_RATE, duration=None, loop=False)
        self.clip = FrameFeature(frame_fps, image_size)  # the per-frame cache feature (`CachedClips`)
        check_frame_choice(frames)
        self.frame_choice = frames
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers, self.prepare_workers = num_workers, prepare_workers
        self.shuffle, self.seed, self.predict_split = shuffle, seed, predict_split
        self._datasets: dict[str, ClipFrameDataset] = {}

    @property
    def labels(self) -> list[str]:
        return self.dataset.labels

    def split(self, split: str) -> ClipFrameDataset:
        if split not in self._datasets:
            records, waves, frames = self.prepared_split(split)
            self._datasets[split] = ClipFrameDataset(
                records, waves, frames, self.samples, split == "train", self.seed, self.frame_choice
            )
        return self._datasets[split]

    def train_dataloader(self):
        return train_loader(
            self.split("train"),
            self.batch_size,
            self.num_workers,
            self.shuffle,
            self.seed,
            sampler_class=EpochIndexSampler,
        )


class WavBriVLVGGSoundDataModule(WavBriVLDataModule):
    """VGGSound (`shared.data.VGGSoundIndex`, real or toy layout) for WavBriVL: see `WavBriVLDataModule`;
    `train_subset: 20000` is the paper's training set size."""


class WavBriVLVEGASDataModule(WavBriVLDataModule):
    """VEGAS (`shared.data.VEGASIndex`, real or toy layout) for WavBriVL: see `WavBriVLDataModule`;
    `classes: [Baby cry, Dog, Rail transport, Fireworks, Water flowing]` (`S2I_VEGAS_CLASSES`) is the
    five-class set-up of the paper's Table 3; a class name selects the class folder whose name starts with
    it, in lower-case words (`Baby cry` -> `Baby_cry_infant_cry`)."""
