"""GRAVO's data: 16 kHz audio windows of VGGSound clips with their 30-fps CLIP frame embeddings, and ImageHear
images as still clips (GRAVO, Interspeech 2023, sec. 3.1; on Im2Wav, arXiv:2211.03089, `RoySheffer/im2wav`).

What the paper says and how it is done here:

* "We follow the same training and testing split as the original VGG-Sound. The training set is divided
  into 0.9 and 0.1 ratios": the index's `split_dir=None, valid_fraction=0.1` (`shared.data.VGGSoundIndex`,
  `train_valid_split`: whole YouTube videos, deterministic by seed, drawn over the CSV).
* "During training, we randomly crop 4 seconds ... For evaluation, we use only the initial 4 seconds": a
  window of `window_seconds` (Im2Wav's 65,536 samples = 4.096 s, a multiple of the VQ-VAE's hop 32) starts
  at a uniformly random sample in training and at 0 in evaluation. Training windows are cut in the main
  process just before the step (`on_after_batch_transfer`), from torch's global generator, which every
  checkpoint carries: a resumed run crops as the uninterrupted one would.
* Clips shorter than the window are zero-padded at the end (not looped: looped audio would play sounds
  the frames at those times do not show), and their `total_length` is the padded length.
* Frames: each clip's CLIP embeddings at 30 fps (`shared.encoders.CLIPEmbeddingFeature`). A window at
  `offset` samples takes frames [s, s + F) with s = floor(offset x 30 / 16000) and F = floor(window x 30 /
  16000) + 1 (123 for 4.096 s, 31 for 1.024 s): the official `clip_emb[start:end + 1]`, start =
  int(offset_in_sec x 30), end = int(start + length_in_sec x 30) (`models/data/files_dataset.py`), computed
  in integers. Frames past a video's end repeat its last frame (GRAVO's padding), so every window has F.
* ImageHear: "every single image as a 4-second video clip", 120 generations per class: an image's one
  embedding repeated over the window's F frames; the images of a class are taken in turn as Im2Wav's
  sampler does (`models/sample.py`: indices tiled to 120, sorted), named `<k>_<Class>_<index>` as its
  output files are.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import Dataset

from shared.data import DatasetIndex, FeatureCache, WaveFeature
from shared.data.cached_clips import CachedClips
from shared.data.loaders import SplitLoaders, eval_loader, train_loader
from shared.data.records import ClipRecord
from shared.encoders.clip_embeddings import CLIPEmbeddingFeature, Im2WavCLIPFiles, pad_with_last
from shared.encoders.official import load_pickle
from shared.prepare import feature_cache, prepare_dataset

SAMPLE_RATE = 16_000  # Im2Wav's and GRAVO's audio rate
FPS = 30.0  # frame rate of the CLIP features (Im2Wav's `VIDEO_FPS`)


def window_samples(window_seconds: float, sample_rate: int = SAMPLE_RATE) -> int:
    return round(window_seconds * sample_rate)


def window_frame_count(samples: int, sample_rate: int = SAMPLE_RATE, fps: float = FPS) -> int:
    """Frames of a `samples`-long window: floor(samples x fps / rate) + 1 (65,536 -> 123; 16,384 -> 31)."""
    return math.floor(samples * fps / sample_rate) + 1


def first_frames(offsets: torch.Tensor, sample_rate: int = SAMPLE_RATE, fps: float = FPS) -> torch.Tensor:
    """The first frame of windows starting at `offsets` samples: floor(offset x fps / rate), exactly."""
    return torch.floor(offsets.double() * fps / sample_rate).long()


def cut_windows(
    wave: torch.Tensor,
    feats: torch.Tensor,
    offsets: torch.Tensor,
    samples: int,
    sample_rate: int = SAMPLE_RATE,
    fps: float = FPS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows of `samples` starting at `offsets` [B]: wave [B, T] -> [B, samples]; feats [B, N, D] ->
    [B, F, D], F = `window_frame_count(samples)`, frame indices past N - 1 repeating the last frame."""
    if int((offsets + samples).max()) > wave.shape[1]:
        raise ValueError(
            f"a window of {samples} samples at {offsets.tolist()} runs past {wave.shape[1]} samples"
        )
    index = offsets[:, None] + torch.arange(samples, device=wave.device)
    starts = first_frames(offsets, sample_rate, fps).to(feats.device)
    frames = starts[:, None] + torch.arange(
        window_frame_count(samples, sample_rate, fps), device=feats.device
    )
    frames = frames.clamp(max=feats.shape[1] - 1)
    return (
        torch.gather(wave, 1, index),
        torch.gather(feats, 1, frames[..., None].expand(-1, -1, feats.shape[2])),
    )


class VideoClipDataset(Dataset):
    """Cached clips -> windows (`whole=False`: the first window, with "offset" 0) or whole clips for the
    training loader to crop (`whole=True`: no "offset"; the wave zero-padded to `total_length`, the frames
    padded with the last one to cover the last window).

    Item: {"wave": [T], "clip_feats": [N, D], "total_length": int, "label": int, "clip_id": str}.
    """

    def __init__(
        self,
        records: list[ClipRecord],
        wave_cache: FeatureCache,
        clip_cache: FeatureCache,
        samples: int,
        whole: bool,
        fps: float = FPS,
    ):
        self.records, self.wave_cache, self.clip_cache = records, wave_cache, clip_cache
        self.samples, self.whole, self.fps = samples, whole, fps

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict:
        record = self.records[i]
        wave = torch.from_numpy(np.ascontiguousarray(self.wave_cache.load(record.clip_id), np.float32))
        feats = torch.from_numpy(np.ascontiguousarray(self.clip_cache.load(record.clip_id), np.float32))
        if wave.ndim != 1 or wave.numel() == 0 or feats.ndim != 2 or feats.shape[0] == 0:
            raise ValueError(
                f"{record.path}: cached wave {tuple(wave.shape)} / frames {tuple(feats.shape)} are not a "
                f"clip's [samples] / [frames, dim] (caches {self.wave_cache.dir}, {self.clip_cache.dir})"
            )
        total = max(wave.numel(), self.samples)
        wave = torch.nn.functional.pad(wave, (0, total - wave.numel()))
        item = {"total_length": total, "label": record.label_id, "clip_id": record.clip_id}
        if self.whole:
            last_window = torch.tensor([total - self.samples])
            needed = int(first_frames(last_window, SAMPLE_RATE, self.fps)) + self.frames
            return item | {"wave": wave, "clip_feats": pad_with_last(feats, needed)}
        offset = torch.zeros(1, dtype=torch.long)
        wave, feats = cut_windows(wave[None], feats[None], offset, self.samples, SAMPLE_RATE, self.fps)
        return item | {"wave": wave[0], "clip_feats": feats[0], "offset": 0}

    @property
    def frames(self) -> int:
        return window_frame_count(self.samples, SAMPLE_RATE, self.fps)


def collate_whole_clips(items: list[dict]) -> dict:
    """Whole clips of different lengths into one batch: waves zero-padded, frames padded with their last."""
    length = max(item["wave"].numel() for item in items)
    frames = max(item["clip_feats"].shape[0] for item in items)
    return {
        "wave": torch.stack(
            [torch.nn.functional.pad(it["wave"], (0, length - it["wave"].numel())) for it in items]
        ),
        "clip_feats": torch.stack([pad_with_last(it["clip_feats"], frames) for it in items]),
        "total_length": torch.tensor([it["total_length"] for it in items]),
        "label": torch.tensor([it["label"] for it in items]),
        "clip_id": [it["clip_id"] for it in items],
    }


class GravoVGGSoundDataModule(CachedClips, SplitLoaders, LightningDataModule):
    """VGGSound (or the toy set in its layout) as GRAVO trains and evaluates on it (module docstring).

    Batch keys: `wave` [B, W] float32, the window's mono audio at 16 kHz, W = round(window_seconds x 16000);
    `clip_feats` [B, F, D] float32, the window's per-frame CLIP embeddings (unit norm, D = 512 for ViT-B/32),
    F = floor(W x 30 / 16000) + 1; `offset` [B] int64, the window's first sample in the clip (random in
    training, 0 in evaluation) and `total_length` [B] int64, the clip's length in samples (at least W):
    the Low prior's time signal; `label` [B] int64, the class index in the dataset's sorted label list;
    `clip_id` list of B str. Splits train, valid, test; outside fit, evaluation gives each process its own
    clips. Batches of the training loader hold whole clips (no `offset`) until `on_after_batch_transfer`
    cuts their windows. Clips that fail to decode are skipped and listed in `<cache_dir>/<dataset>_skipped.tsv`.

    `clip`: the frame feature, computed (`CLIPEmbeddingFeature`) or Im2Wav's released pickles
    (`Im2WavCLIPFiles`); `avgen prepare --features wave,clip_emb --sample-rate 16000 --duration full
    --no-loop` fills the same caches.
    """

    def __init__(
        self,
        dataset: DatasetIndex,
        clip: CLIPEmbeddingFeature | Im2WavCLIPFiles,
        cache_dir: str = "data/cache",
        window_seconds: float = 4.096,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        prepare_workers: int = 0,
        shuffle: bool = True,
        seed: int = 0,
        predict_split: str = "test",
    ):
        super().__init__()
        self.dataset, self.clip, self.cache_dir = dataset, clip, Path(cache_dir)
        self.fps = getattr(clip, "fps", FPS)
        self.window_samples = window_samples(window_seconds)
        self.wave = WaveFeature(SAMPLE_RATE, duration=None, loop=False)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers, self.prepare_workers = num_workers, prepare_workers
        self.shuffle, self.seed, self.predict_split = shuffle, seed, predict_split
        self._datasets: dict[str, VideoClipDataset] = {}

    @property
    def n_frames(self) -> int:
        """Frames per window (123 for 4.096 s)."""
        return window_frame_count(self.window_samples, SAMPLE_RATE, self.fps)

    def split(self, split: str) -> VideoClipDataset:
        if split not in self._datasets:
            self._datasets[split] = VideoClipDataset(
                *self.prepared_split(split), self.window_samples, whole=split == "train", fps=self.fps
            )
        return self._datasets[split]

    def train_dataloader(self):
        return train_loader(
            self.split("train"),
            self.batch_size,
            self.num_workers,
            self.shuffle,
            self.seed,
            collate_whole_clips,
        )

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        if "offset" not in batch:
            batch = self.random_windows(batch)
        return batch

    def random_windows(self, batch: dict) -> dict:
        """Cut a batch of whole clips to windows at uniformly random offsets (torch's global generator, CPU)."""
        room = batch["total_length"].cpu() - self.window_samples + 1
        offsets = (torch.rand(room.shape, dtype=torch.float64) * room).long().to(batch["wave"].device)
        wave, feats = cut_windows(
            batch["wave"], batch["clip_feats"], offsets, self.window_samples, SAMPLE_RATE, self.fps
        )
        return batch | {"wave": wave, "clip_feats": feats, "offset": offsets}


class StillImageDataset(Dataset):
    """Items of ImageHear generation: one image embedding [D] repeated over `frames` frames."""

    def __init__(self, items: list[tuple[str, int, str, np.ndarray]], frames: int, total_length: int):
        self.items, self.frames, self.total_length = items, frames, total_length

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        clip_id, label, class_name, embedding = self.items[i]
        feats = torch.from_numpy(np.ascontiguousarray(embedding, np.float32))
        return {
            "clip_feats": feats[None].expand(self.frames, -1).clone(),
            "offset": 0,
            "total_length": self.total_length,
            "label": label,
            "class_name": class_name,
            "clip_id": clip_id,
        }


def image_turns(n_images: int, generations: int) -> list[int]:
    """Which image each of a class's generations uses: Im2Wav's `list(range(n)) * ceil(g / n)`, cut to g,
    sorted (4 images, 6 generations -> [0, 0, 1, 1, 2, 3])."""
    return sorted((list(range(n_images)) * math.ceil(generations / n_images))[:generations])


class GravoImageHearDataModule(LightningDataModule):
    """ImageHear as GRAVO evaluates on it: each image a still clip, `generations_per_class` items per class.

    Batch keys: `clip_feats` [B, F, D] float32, one image's CLIP embedding repeated over the window's F
    frames (F = floor(W x 30 / 16000) + 1, W = round(window_seconds x 16000)); `offset` [B] int64 (0);
    `total_length` [B] int64 (`total_seconds` x 16000, the window's length by default; Im2Wav's sampler
    passes 160,000, a 10-s clip); `label` [B] int64, the class's index in the sorted class list;
    `class_name` list of B str; `clip_id` list of B str, `<k>_<Class>_<image index>`. No `wave`: ImageHear
    has no audio. `test` and `predict` give the same items.

    Embeddings: computed from `dataset`'s images by `clip` (cached like every feature; an image that
    does not decode stops with an error naming it), or read from Im2Wav's `image_CLIP/CLIP.pickle`
    (`official_clip`, {"image": {Class: (n, 512)}}, written by `Data/preprocess/collect_image_CLIP.py`),
    which then also gives the classes and images, as in Im2Wav's sampler.
    """

    def __init__(
        self,
        dataset: DatasetIndex | None = None,
        clip: CLIPEmbeddingFeature | None = None,
        official_clip: str | None = None,
        cache_dir: str = "data/cache",
        window_seconds: float = 4.096,
        total_seconds: float | None = None,
        generations_per_class: int = 120,
        batch_size: int = 16,
        num_workers: int = 0,
        prepare_workers: int = 0,
    ):
        super().__init__()
        if (official_clip is None) == (dataset is None or clip is None):
            raise ValueError("give either `dataset` and `clip` (computed embeddings) or `official_clip`")
        self.dataset, self.clip, self.cache_dir = dataset, clip, Path(cache_dir)
        self.official_clip = Path(official_clip) if official_clip is not None else None
        self.fps = clip.fps if clip is not None else FPS
        self.window_samples = window_samples(window_seconds)
        self.total_length = (
            window_samples(total_seconds) if total_seconds is not None else self.window_samples
        )
        self.generations_per_class = generations_per_class
        self.batch_size, self.num_workers, self.prepare_workers = batch_size, num_workers, prepare_workers
        self._dataset: StillImageDataset | None = None

    @property
    def n_frames(self) -> int:
        return window_frame_count(self.window_samples, SAMPLE_RATE, self.fps)

    @property
    def report_path(self) -> Path:
        return self.cache_dir / "imagehear_skipped.tsv"

    def prepare_data(self) -> None:
        if self.official_clip is None:
            prepare_dataset(self.dataset, {self.clip.name: self.clip}, self.cache_dir, self.prepare_workers)

    def class_embeddings(self) -> dict[str, np.ndarray]:
        """Class name -> its images' embeddings [n, D], in the class's image order."""
        if self.official_clip is not None:
            content = load_pickle(self.official_clip)
            classes = content.get("image") if isinstance(content, dict) else None
            if not isinstance(classes, dict) or not classes:
                raise ValueError(f"{self.official_clip}: expected {{'image': {{Class: (n, 512)}}}}")
            return {name: np.asarray(classes[name], np.float32) for name in sorted(classes)}
        cache = feature_cache(self.cache_dir, self.dataset, self.clip.name, self.clip)
        by_class: dict[str, list[np.ndarray]] = {}
        for record in self.dataset.records("test"):
            if not cache.has(record.clip_id, record.path):
                raise RuntimeError(
                    f"{record.path}: no CLIP embedding in {cache.dir} (see {self.report_path}); "
                    "every ImageHear image is needed"
                )
            by_class.setdefault(record.label, []).append(cache.load(record.clip_id).reshape(-1))
        return {name: np.stack(rows) for name, rows in sorted(by_class.items())}

    def items(self) -> StillImageDataset:
        if self._dataset is None:
            items = []
            for label, (name, embeddings) in enumerate(self.class_embeddings().items()):
                for index in image_turns(embeddings.shape[0], self.generations_per_class):
                    items.append((f"{len(items)}_{name}_{index}", label, name, embeddings[index]))
            self._dataset = StillImageDataset(items, self.n_frames, self.total_length)
        return self._dataset

    def test_dataloader(self):
        return eval_loader(self.items(), self.batch_size, self.num_workers, sharded=True)

    def predict_dataloader(self):
        return self.test_dataloader()
