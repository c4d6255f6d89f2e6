"""AudioToken's data: 16 kHz audio windows of VGGSound (or VAS) clips with one video frame each (AudioToken,
arXiv:2305.13050, sec. 2.1 and 3; official code `guyyariv/AudioToken`, `data/dataloader.py`).

What the official reader does, and how it is done here:

* Audio: the clip's waveform tiled 10 times and cut to exactly 10 s (short clips loop), then the window
  [s x sr, (s + L) x sr): L = 5 s in training with s drawn from whole seconds 0 .. 10 - L - 1 (the official
  `np.random.randint(0, 10 - L)`, whose upper bound is exclusive: 0..4 for 5 s), L = 10 s and s = 0 in
  evaluation. The official code reads `audio/<clip>.wav` with `torchaudio.load` and no resampling, which
  silently assumes 16-kHz files; here every clip is resampled to 16 kHz on load (BEATs' rate). The
  16-kHz waveform of each clip is cached once (`shared.data.cache`); tiling and the window are cut per item.
* Frame: with T the video's frame count (OpenCV's `CAP_PROP_FRAME_COUNT`: the stream's `nb_frames`), the
  window's frames are [low, high] = [(T // 10) s, (T // 10) (s + L)], both inclusive, which assumes 10-s
  videos (on the 2-s toy clips the range is the same share of the video). With a best-frames JSON, a random
  candidate inside [low, high] is taken, else a random frame of [low, high]. `high` is clamped to T - 1:
  at L = 10 the official range ends one past the last frame. The frame is decoded by seeking to it
  (`read_frame`), resized bicubic to (W, H) = 512 x 320 without a crop and scaled to [-1, 1].
* Evaluation is deterministic: window (0, `eval_window_seconds`) and the best candidate of the JSON inside it
  (the first one listed), else the middle frame (low + high) // 2.
* Best frames (paper sec. 2.1: "the frame with the highest CLIP score to the VGGSound label"):
  `select_best_frames` scores every (or every n-th) frame of each training clip with a transformers
  `CLIPModel` against the caption of its label and writes the official JSON layout, clip -> [[frame numbers,
  best first], [their scores]] (the official reader uses element 0 only). Given `best_frames_clip`, the
  DataModule builds that file in its cache, in a folder named after every parameter that made it.
* Filter lists (`unmatch_videos`, `low_quality_videos`: the official pickled lists of YouTube ids), applied to
  the training split only, as officially; each list's count of removed clips is logged.

Training randomness: every item's window start and frame come from a generator seeded by (seed, epoch,
dataset index). The training sampler hands the dataset (epoch, index) keys (`EpochIndexSampler`); its
position and epoch are in every checkpoint (`shared.data.loaders`), so a resumed run draws what the
uninterrupted run would have, whatever the number of loader workers. Drawing in the main process after the
batch (as GRAVO crops its windows) does not fit here: the frame must be known before it is decoded.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from PIL import Image
from torch.utils.data import Dataset

from shared.data import DatasetIndex, FeatureCache, VGGSoundIndex, WaveFeature
from shared.data.cached_clips import CachedClips
from shared.data.indexes import AUDIO_SUFFIXES
from shared.data.loaders import EpochIndexSampler, SplitLoaders, split_records, train_loader
from shared.data.records import ClipRecord
from shared.encoders.official import load_pickle
from shared.files import atomic_path
from shared.media import MediaError, open_media
from shared.prepare import prepare_dataset
from shared.runs import UserError

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000  # BEATs' rate
CLIP_SECONDS = 10  # the official reader tiles every clip to 10 s and maps windows to frames by tenths
CAPTION = "a photo of a {}"


def tile_to(wave: np.ndarray, samples: int) -> np.ndarray:
    """The official `torch.tile(wav, (1, 10))[:, :sr * 10]` for any length: repeat, then cut to `samples`."""
    if wave.size == 0:
        raise ValueError("cannot tile an empty waveform")
    return np.tile(wave, -(-samples // wave.size))[:samples]


def youtube_id(clip_id: str) -> str:
    """A VGGSound clip's YouTube id: `<ytid>_<start_ms>_<end_ms>` -> `<ytid>` (ids may hold `_`)."""
    return clip_id.rsplit("_", 2)[0]


def window_frames(
    total_frames: int, start: int, window: int, clip_seconds: int = CLIP_SECONDS
) -> tuple[int, int]:
    """[low, high] (inclusive) of the frames of the window [start, start + window) s: the official
    (T // 10) x start and (T // 10) x (start + window), `high` clamped to the last frame."""
    per_second = total_frames // clip_seconds
    low = min(per_second * start, total_frames - 1)
    return low, max(low, min(per_second * (start + window), total_frames - 1))


def read_frame(path: str | Path, index: int) -> np.ndarray:
    """Frame `index` (0-based, presentation order) of a video as RGB uint8 [H, W, 3], past the end: the last.

    Seeks to the key frame before the frame's timestamp and decodes from there, as OpenCV's
    `CAP_PROP_POS_FRAMES` does, instead of decoding the video from its start.
    """
    with open_media(path) as container:
        if not container.streams.video:
            raise MediaError(path, "has no video stream")
        stream = container.streams.video[0]
        fps = stream.average_rate or stream.guessed_rate
        if not fps:
            raise MediaError(path, "video stream has no frame rate")
        ticks_per_frame = 1 / (fps * stream.time_base)
        target = (stream.start_time or 0) + round(index * ticks_per_frame)
        container.seek(target, stream=stream, backward=True, any_frame=False)
        chosen = None
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            if chosen is not None and frame.pts > target + ticks_per_frame / 2:
                break
            chosen = frame
            if frame.pts >= target - ticks_per_frame / 2:
                break
        if chosen is None:
            raise MediaError(path, f"no frame decodes at or before frame {index}")
        return chosen.to_ndarray(format="rgb24")


def to_image(rgb: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """RGB uint8 [H, W, 3] -> float32 [3, h, w] in [-1, 1], resized bicubic (PIL, as officially) to `size` =
    (w, h) without a crop."""
    resized = np.asarray(Image.fromarray(rgb).resize(tuple(size), resample=Image.Resampling.BICUBIC))
    return torch.from_numpy(resized.astype(np.float32) / 127.5 - 1.0).permute(2, 0, 1).contiguous()


class SeparateAudioWave(WaveFeature):
    """A clip's whole waveform at `sample_rate`, mono, read from `<audio_root>/<clip_id>.<wav|flac|...>`
    (VGGSound's official `audio/` folder beside `video/`) instead of the video's own track."""

    def __init__(self, sample_rate: int, audio_root: str | Path):
        super().__init__(sample_rate, duration=None, loop=False)
        self.audio_root = Path(audio_root)

    def params(self) -> dict:
        return {**super().params(), "audio_root": str(self.audio_root.resolve())}

    def __call__(self, record: ClipRecord) -> np.ndarray:
        for suffix in sorted(AUDIO_SUFFIXES):
            path = self.audio_root / f"{record.clip_id}{suffix}"
            if path.is_file():
                return super().__call__(
                    ClipRecord(path, record.label, record.label_id, record.split, record.clip_id)
                )
        raise FileNotFoundError(f"{self.audio_root / record.clip_id}.*: no audio file for this clip")


class VideoFrameCount:
    """A video's frame count as OpenCV reports it (the stream's `nb_frames`; counted packets when the container
    does not say), int64 [1], after checking that its first frame decodes (a broken video is skipped here,
    at preparation, not in the middle of training)."""

    threads = 1

    def params(self) -> dict:
        return {"frames": "nb_frames, else video packets", "check": "first frame decodes"}

    def __call__(self, record: ClipRecord) -> np.ndarray:
        with open_media(record.path) as container:
            if not container.streams.video:
                raise MediaError(record.path, "has no video stream")
            stream = container.streams.video[0]
            if next(iter(container.decode(stream)), None) is None:
                raise MediaError(record.path, "video stream contains no frames")
            frames = stream.frames
            if not frames:
                container.seek(0)
                frames = sum(1 for packet in container.demux(stream) if packet.size)
        return np.array([frames], np.int64)


def read_id_list(path: str | Path) -> set[str]:
    """An official filter list (`constants/unmatch_videos.pkl`, `low_quality_videos.pkl`: a pickled list of
    YouTube ids), read with the restricted unpickler; anything but strings is an error naming the file."""
    content = load_pickle(path)
    if not isinstance(content, list | tuple | set | frozenset) or not all(
        isinstance(x, str) for x in content
    ):
        raise UserError(
            f"{path}: expected a pickled list of video ids (strings), found {type(content).__name__}"
        )
    return set(content)


def read_best_frames(path: str | Path) -> dict[str, list[int]]:
    """The official best-frames JSON, clip -> [candidate frame numbers, ...] (element 0 of each entry)."""
    try:
        content = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"{path}: cannot read the best-frames JSON ({err})") from err
    if not isinstance(content, dict):
        raise UserError(
            f"{path}: expected {{clip: [[frame numbers, ...], ...]}}, found {type(content).__name__}"
        )
    candidates = {}
    for clip, entry in content.items():
        if not isinstance(entry, list) or not entry or not isinstance(entry[0], list):
            raise UserError(f"{path}: entry {clip!r} is not [[frame numbers, ...], ...]")
        candidates[clip] = [int(frame) for frame in entry[0]]
    return candidates


class WindowFrameDataset(Dataset):
    """Clips -> {"wave": [L x 16000], "image": [3, H, W], "label", "label_text", "caption", "clip_id",
    "window_start", "frame_index"} (module docstring). Training keys are (epoch, index) pairs (random window
    and frame from a generator seeded by (seed, epoch, index)); evaluation keys are indices (fixed window and
    frame)."""

    def __init__(
        self,
        records: list[ClipRecord],
        wave_cache: FeatureCache,
        frame_cache: FeatureCache,
        window_seconds: int,
        training: bool,
        image_size: tuple[int, int] | None,
        caption_template: str = CAPTION,
        best_frames: dict[str, list[int]] | None = None,
        seed: int = 0,
        youtube_ids: bool = False,
    ):
        if not 0 < window_seconds <= CLIP_SECONDS:
            raise ValueError(f"window_seconds must be in 1..{CLIP_SECONDS}, not {window_seconds}")
        self.records, self.wave_cache, self.frame_cache = records, wave_cache, frame_cache
        self.window, self.training = window_seconds, training
        self.image_size = None if image_size is None else tuple(image_size)
        self.caption_template, self.best_frames, self.seed = caption_template, best_frames or {}, seed
        self.youtube_ids = youtube_ids

    def __len__(self) -> int:
        return len(self.records)

    def candidates(self, record: ClipRecord) -> list[int]:
        found = self.best_frames.get(record.clip_id)
        if found is None and self.youtube_ids:
            found = self.best_frames.get(youtube_id(record.clip_id))
        return found or []

    def draw(self, record: ClipRecord, total_frames: int, rng: np.random.Generator | None) -> tuple[int, int]:
        """(window start in seconds, frame index): random with `rng`, else the fixed evaluation choice."""
        starts = max(1, CLIP_SECONDS - self.window)  # officially randint(0, 10 - L), and 0 at L = 10
        start = int(rng.integers(starts)) if rng is not None else 0
        low, high = window_frames(total_frames, start, self.window)
        inside = [frame for frame in self.candidates(record) if low <= frame <= high]
        if rng is None:
            return start, inside[0] if inside else (low + high) // 2
        return start, int(rng.choice(inside)) if inside else int(rng.integers(low, high + 1))

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        if self.training:
            epoch, index = key
            rng = np.random.default_rng([self.seed, epoch, index])
        else:
            index, rng = key, None
        record = self.records[index]
        total_frames = int(self.frame_cache.load(record.clip_id)[0])
        start, frame = self.draw(record, total_frames, rng)
        wave = tile_to(self.wave_cache.load(record.clip_id).astype(np.float32), CLIP_SECONDS * SAMPLE_RATE)
        wave = wave[start * SAMPLE_RATE : (start + self.window) * SAMPLE_RATE]
        item = {
            "wave": torch.from_numpy(np.ascontiguousarray(wave)),
            "label": record.label_id,
            "label_text": record.label,
            "caption": self.caption_template.format(record.label),
            "clip_id": record.clip_id,
            "window_start": start,
            "frame_index": frame,
        }
        if self.image_size is not None:  # a stage that needs only the audio does not decode frames
            item["image"] = to_image(read_frame(record.path, frame), self.image_size)
        return item


class AudioTokenVGGSoundDataModule(CachedClips, SplitLoaders, LightningDataModule):
    """VGGSound (or the toy set in its layout) as AudioToken trains and evaluates on it (module docstring).

    Batch keys: `wave` [B, L x 16000] float32, the window of the clip tiled to 10 s, at 16 kHz (80,000 samples
    in training, 160,000 in evaluation by default); `image` [B, 3, H, W] float32 in [-1, 1], the window's frame
    resized to `image_size` = (W, H) (no `image` with `image_size` None: the audio-only stages); `label` [B] int64 (index in the dataset's sorted labels); `label_text`,
    `caption` (`caption_template` of the label), `clip_id`: lists of B str; `window_start` [B] int64 seconds;
    `frame_index` [B] int64, the frame's number in the video. Splits train, valid, test (VAS: test falls back
    to valid). Clips whose audio or video does not decode are skipped and listed in
    `<cache_dir>/<dataset>_skipped.tsv`.

    `audio_dir`: folder under the dataset root with `<clip_id>.wav` files (VGGSound's official `audio/`); None
    reads the video's own audio track. `best_frames`: an official best-frames JSON; `best_frames_clip`: a
    transformers CLIPModel folder with which `prepare_data` builds one (`select_best_frames`, scoring every
    `best_frames_every`-th frame of the clips of `best_frames_splits`, keeping `best_frames_candidates`).
    `unmatch_videos`, `low_quality_videos`: the official filter lists, training only.
    """

    def __init__(
        self,
        dataset: DatasetIndex,
        cache_dir: str = "data/cache",
        audio_dir: str | None = "audio",
        train_window_seconds: int = 5,
        eval_window_seconds: int = 10,
        image_size: tuple[int, int] | None = (512, 320),
        caption_template: str = CAPTION,
        best_frames: str | None = None,
        best_frames_clip: str | None = None,
        best_frames_candidates: int = 10,
        best_frames_every: int = 1,
        best_frames_splits: tuple[str, ...] = ("train",),
        unmatch_videos: str | None = None,
        low_quality_videos: str | None = None,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        prepare_workers: int = 0,
        shuffle: bool = True,
        seed: int = 0,
        predict_split: str = "test",
    ):
        super().__init__()
        if best_frames is not None and best_frames_clip is not None:
            raise ValueError(
                "give best_frames (a JSON) or best_frames_clip (a CLIP folder to build one), not both"
            )
        self.dataset, self.cache_dir = dataset, Path(cache_dir)
        self.audio_dir = audio_dir
        self.train_window, self.eval_window = train_window_seconds, eval_window_seconds
        self.image_size = None if image_size is None else tuple(image_size)
        self.caption_template = caption_template
        self.best_frames, self.best_frames_clip = best_frames, best_frames_clip
        self.best_frames_candidates, self.best_frames_every = best_frames_candidates, best_frames_every
        self.best_frames_splits = tuple(best_frames_splits)
        self.filter_lists = {"unmatch_videos": unmatch_videos, "low_quality_videos": low_quality_videos}
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers, self.prepare_workers = num_workers, prepare_workers
        self.shuffle, self.seed, self.predict_split = shuffle, seed, predict_split
        self.filtered: dict[str, list[str]] = {}
        self._datasets: dict[str, WindowFrameDataset] = {}

    @property
    def features(self) -> dict[str, object]:
        wave = (
            SeparateAudioWave(SAMPLE_RATE, self.dataset.root / self.audio_dir)
            if self.audio_dir is not None
            else WaveFeature(SAMPLE_RATE, duration=None, loop=False)
        )
        return {"wave": wave, "video_frames": VideoFrameCount()}

    def video_id(self, record: ClipRecord) -> str:
        """What the official filter lists name: a VGGSound clip's YouTube id, else the clip id."""
        return youtube_id(record.clip_id) if isinstance(self.dataset, VGGSoundIndex) else record.clip_id

    def best_frames_cache(self) -> FeatureCache:
        """The folder of the JSON that `best_frames_clip` makes, named after every parameter that made it
        (the model folder's files with their sizes and times: a retrained model means a new file)."""
        folder = Path(self.best_frames_clip)
        files = {
            p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in sorted(folder.iterdir()) if p.is_file()
        }
        params = {
            "clip_model": str(folder.resolve()),
            "files": files,
            "candidates": self.best_frames_candidates,
            "every": self.best_frames_every,
            "splits": list(self.best_frames_splits),
            "caption_template": self.caption_template,
            **self.dataset.identity(),
        }
        return FeatureCache(self.cache_dir / self.dataset.name, "best_frames", params)

    def best_frames_path(self) -> Path | None:
        if self.best_frames_clip is not None:
            return self.best_frames_cache().dir / "best_frames.json"
        return Path(self.best_frames) if self.best_frames is not None else None

    def prepare_data(self) -> None:
        prepared = prepare_dataset(self.dataset, self.features, self.cache_dir, self.prepare_workers)
        path = self.best_frames_path()
        if self.best_frames_clip is not None and not path.is_file():
            usable = {r.clip_id for r in prepared["video_frames"]}
            records = [
                r for s in self.best_frames_splits for r in self.dataset.records(s) if r.clip_id in usable
            ]
            select_best_frames(
                records,
                self.best_frames_clip,
                path,
                candidates=self.best_frames_candidates,
                every=self.best_frames_every,
                caption_template=self.caption_template,
            )

    def filter_training(self, records: list[ClipRecord]) -> list[ClipRecord]:
        """Drop the clips of the official filter lists (training only); log how many each list removed."""
        for name, path in self.filter_lists.items():
            if path is None:
                continue
            listed = read_id_list(path)
            self.filtered[name] = [r.clip_id for r in records if self.video_id(r) in listed]
            records = [r for r in records if self.video_id(r) not in listed]
            log.info("%s (%s): removed %d training clips", name, path, len(self.filtered[name]))
        return records

    def split(self, split: str) -> WindowFrameDataset:
        if split not in self._datasets:
            waves, frames = self.cache("wave"), self.cache("video_frames")
            records = split_records(self.dataset, split, waves, frames)
            training = split == "train"
            if training:
                records = self.filter_training(records)
            if not records:
                raise RuntimeError(
                    f"{self.dataset}: no prepared clips in split {split!r} (see {self.report_path})"
                )
            path = self.best_frames_path()
            self._datasets[split] = WindowFrameDataset(
                records,
                waves,
                frames,
                self.train_window if training else self.eval_window,
                training,
                self.image_size,
                self.caption_template,
                read_best_frames(path) if path is not None else None,
                self.seed,
                youtube_ids=isinstance(self.dataset, VGGSoundIndex),
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


class AudioTokenVASDataModule(AudioTokenVGGSoundDataModule):
    """The same data over VAS (`shared.data.VASIndex`: 10-s videos in class folders, label = class), whose
    audio is the videos' own track; filter lists, if given, name clip ids (`<class>/video_XXXXX`)."""

    def __init__(self, dataset: DatasetIndex, audio_dir: str | None = None, **kwargs):
        super().__init__(dataset, audio_dir=audio_dir, **kwargs)


def _clip_inputs(folder: Path):
    """The model, its image processor and tokenizer from a transformers CLIP folder; a folder without a
    processor (the toy CLIP) gets CLIP's normalisation at its image size, the frame resized to a square as the
    toy CLIP saw its images, and SD 1.x's tokenizer (`shared.encoders.clip_tokenizer`)."""
    from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

    model = CLIPModel.from_pretrained(folder).eval()
    if (folder / "preprocessor_config.json").is_file():
        processor = CLIPImageProcessor.from_pretrained(folder)
    else:
        side = model.config.vision_config.image_size
        processor = CLIPImageProcessor(size={"height": side, "width": side}, do_center_crop=False)
    if (folder / "tokenizer_config.json").is_file() or (folder / "vocab.json").is_file():
        tokenizer = CLIPTokenizer.from_pretrained(folder)
    else:
        from shared.encoders.clip_tokenizer import clip_tokenizer

        tokenizer = clip_tokenizer()
    return model, processor, tokenizer


def _projected(features) -> torch.Tensor:
    """CLIP's projected embedding: transformers 5 returns it as `pooler_output` of an output, 4 as a tensor."""
    return features if isinstance(features, torch.Tensor) else features.pooler_output


@torch.no_grad()
def select_best_frames(
    records: DatasetIndex | Iterable[ClipRecord],
    clip_model_folder: str | Path,
    out_json: str | Path,
    candidates: int = 10,
    every: int = 1,
    caption_template: str = CAPTION,
    batch_size: int = 64,
    device: str = "cpu",
) -> dict[str, list]:
    """Score frames of each clip by CLIP similarity to its label's caption (AudioToken sec. 2.1: "the frame
    with the highest CLIP score to the VGGSound label") and write the official best-frames JSON: clip_id ->
    [[the `candidates` best frame numbers, best first], [their cosine similarities]]. Every `every`-th frame
    (0, every, 2 every, ...) is scored. A `DatasetIndex` gives its training clips. Returns what it wrote."""
    from shared.video import load_video

    folder = Path(clip_model_folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: not a transformers CLIPModel folder")
    model, processor, tokenizer = _clip_inputs(folder)
    model.to(device)
    records = list(records.records("train") if isinstance(records, DatasetIndex) else records)
    text_features = {}
    out = {}
    for record in records:
        if record.label not in text_features:
            ids = tokenizer(
                caption_template.format(record.label),
                padding="max_length",
                truncation=True,
                max_length=model.config.text_config.max_position_embeddings,
                return_tensors="pt",
            )
            text = model.get_text_features(input_ids=ids.input_ids.to(device))
            text_features[record.label] = torch.nn.functional.normalize(_projected(text), dim=-1)[0]
        frames = load_video(record.path)[::every]  # uint8 [N, 3, H, W]
        scores = []
        for chunk in frames.split(batch_size):
            pixels = processor(
                images=list(chunk.permute(0, 2, 3, 1).numpy()), return_tensors="pt"
            ).pixel_values
            image = torch.nn.functional.normalize(
                _projected(model.get_image_features(pixel_values=pixels.to(device))), dim=-1
            )
            scores.append(image @ text_features[record.label])
        scores = torch.cat(scores).cpu().numpy()
        order = np.argsort(-scores, kind="stable")[:candidates]
        out[record.clip_id] = [[int(i * every) for i in order], [round(float(scores[i]), 6) for i in order]]
    with atomic_path(out_json) as tmp:
        Path(tmp).write_text(json.dumps(out))
    log.info("best frames of %d clips written to %s", len(out), out_json)
    return out
