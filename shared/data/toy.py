"""The embedded toy dataset: a small, deterministic, synthetic audio-visual dataset for CPU runs.

Every project's toy config trains on it instead of VGGSound, VAS, ImageHear or VEGAS. It is real data in
the sense that matters: mp4 files (H.264 video + AAC audio), 16-bit wav and jpg, written in the real
datasets' layouts, so the same readers load it as the real datasets. What is seen is tied to what is heard,
in kind and in time, so semantic relevance and temporal synchrony can both be learned and measured:

| label                | slug          | picture                   | sound                                              |
| -------------------- | ------------- | ------------------------- | -------------------------------------------------- |
| `red circle sine`    | red_circle    | red filled circle         | sine ~660 Hz, exponential decay                    |
| `green square buzz`  | green_square  | green filled square       | band-limited square wave (odd harmonics) ~220 Hz   |
| `blue triangle hiss` | blue_triangle | blue filled triangle      | noise burst band-passed to ~3-7 kHz                |
| `yellow star chirp`  | yellow_star   | yellow 5-point star       | upward chirp ~400 -> 1600 Hz                       |
| `magenta ring drum`  | magenta_ring  | magenta ring (annulus)    | kick drum: sine falling ~160 -> 50 Hz, fast decay  |
| `cyan cross, bell`   | cyan_cross    | cyan plus sign            | bell: partials 1, 2.76, 5.40 x ~520 Hz, long decay |

The comma in the last label is on purpose: it exercises CSV quoting in the VGGSound index.

Each clip lasts 2.0 s (every 7th 1.6 s, so that looping short clips is exercised) and holds 2-4 events.
At each event onset the class sound starts (sharp attack, mostly decayed within 0.3 s; the bell rings
longer) and the class shape appears at full brightness on the first video frame at or after the onset
(96x96 RGB, 25 fps), then fades out over 0.3 s; between events only a dark, lightly textured background is
visible. Audio has a faint noise floor (about -90 dBFS, so the mel background is at the compression floor and
reconstruction errors measure the events) and a peak of about 0.7; even clip indices are
44.1 kHz, odd ones 48 kHz, and every 3rd clip is stereo, so resampling and downmixing are exercised
downstream. Pitch (+-5 %), shape position and size, and the number and times of events vary per clip,
drawn from a generator seeded by (seed, clip index): the same seed gives the same arrays and, with the
same PyAV/FFmpeg build, the same files.

Layout under `out` (one mp4 per clip, hard-linked into the VGGSound, VAS and VEGAS trees)::

    vggsound/vggsound.csv                  no header; rows `ytid,start_seconds,label,split` (split: train|test,
                                           valid clips count as train, as in the official CSV)
    vggsound/vggsound_{train,valid,test}.txt   SpecVQGAN split lists, one `<ytid>_<start_ms>_<end_ms>` a line
    vggsound/video/<ytid>_<start_ms>_<end_ms>.mp4
    vggsound/audio/<ytid>_<start_ms>_<end_ms>.wav
    vas/videos/<slug>/video_XXXXX.mp4      XXXXX: the 5-digit global clip index
    vas/vas_train.txt, vas/vas_valid.txt   lines `<slug>/video_XXXXX`; valid also holds the test clips
    imagehear/<slug>/<NN>.jpg              up to 4 event frames per class, from test clips
    vegas/<slug>/video_XXXXX.mp4
    vegas/{train,valid,test}.txt           lines `<slug>/video_XXXXX`
    events.csv                             clip_index,clip_id,label,split,duration,onsets (seconds, spaces)
    README.md
    .toy_dataset                           written first: marks the folder as ours, so a rerun may clear it
    .complete                              written last: the dataset is complete

Splits, per class: 20 train, 4 valid and 4 + `EXTRA_TEST` test clips by default. The extra test clips come
after all the others, so the train and valid clips (and the first 4 test clips) are those of the earlier
4-test-clip layout: training is unchanged, while the test split is large enough for the summary tables'
confidence intervals (`projects/tiva/README.md`, "Toy pipeline"). `.complete` records the seed, the sizes and a
hash of this file; a dataset made otherwise, or by another version of this file, is regenerated.

Run `python -m shared.data.toy --out data/toy` (what `make data` does).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import soundfile as sf
from PIL import Image, ImageDraw
from scipy import signal

from shared.data.records import SPLITS
from shared.files import atomic_path

FPS = 25
SIZE = 96
FADE_SECONDS = 0.3
MIN_GAP_SECONDS = 0.3
NOISE_DBFS = -90.0  # near the 16-bit floor: the mel background sits at the clip floor, events dominate
PEAK = 0.7
IMAGES_PER_CLASS = 4
YTID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
MARKER = ".toy_dataset"  # written first, so a later run knows the folder's contents are ours to replace
# Test clips per class beyond the first `n_test` (see `_assign_clips`): the summary tables' metrics (FAD on
# Melception features, KL, W-dis) need far more test clips than training needs valid clips: 50 per class, 300
# in all, which a TiVA summary row generates once each (its evaluation cost grows linearly with them).
EXTRA_TEST = 46


@dataclass(frozen=True)
class ToyClass:
    """A class: the VGGSound-style label, its folder name, what is seen and what is heard.

    recipe names a sound function in `_SOUNDS`, hz is its base frequency before the per-clip +-5 %, and
    sound says in words what it makes.
    """

    label: str
    slug: str
    shape: str
    colour: tuple[int, int, int]
    recipe: str
    hz: float
    sound: str


# fmt: off
TOY_CLASSES = [
    ToyClass("red circle sine", "red_circle", "circle", (235, 45, 45),
             "sine", 660.0, "sine ~660 Hz, exponential decay"),
    ToyClass("green square buzz", "green_square", "square", (45, 205, 60),
             "buzz", 220.0, "band-limited square wave ~220 Hz"),
    ToyClass("blue triangle hiss", "blue_triangle", "triangle", (50, 90, 250),
             "hiss", 3000.0, "noise burst band-passed to ~3-7 kHz"),
    ToyClass("yellow star chirp", "yellow_star", "star", (240, 220, 40),
             "chirp", 400.0, "upward chirp ~400 -> 1600 Hz"),
    ToyClass("magenta ring drum", "magenta_ring", "ring", (230, 50, 230),
             "kick", 160.0, "kick drum: sine falling ~160 -> 50 Hz"),
    ToyClass("cyan cross, bell", "cyan_cross", "cross", (40, 220, 230),
             "bell", 520.0, "bell: partials 1, 2.76, 5.40 x ~520 Hz"),
]
# fmt: on


@dataclass(frozen=True)
class ToyClip:
    """One clip. clip_id: the VGGSound-style `<ytid>_<start_ms>_<end_ms>`; vas_id: `<slug>/video_XXXXX`."""

    index: int
    clip_id: str
    vas_id: str
    label: str
    slug: str
    split: str
    duration: float
    sample_rate: int
    channels: int
    onsets: tuple[float, ...]

    @property
    def ytid(self) -> str:
        return self.clip_id[:11]

    @property
    def start_seconds(self) -> int:
        return int(self.clip_id.rsplit("_", 2)[1]) // 1000


# ---------------------------------------------------------------------------------------------- sounds
# Each recipe maps (time axis t, base frequency, sample rate, rng) to one event's sound, starting at t = 0.


def _sine(t: np.ndarray, hz: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    return np.sin(2 * np.pi * hz * t) * np.exp(-t / 0.07)


def _buzz(t: np.ndarray, hz: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    # A sum of odd harmonics stopped below Nyquist: a naive square wave would alias.
    harmonics = np.arange(1, int(0.45 * sr / hz) + 1, 2)
    wave = sum(np.sin(2 * np.pi * k * hz * t) / k for k in harmonics)
    return wave * np.exp(-t / 0.08)


def _hiss(t: np.ndarray, hz: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    band = signal.butter(4, [hz, hz * 7 / 3], btype="bandpass", fs=sr, output="sos")
    return signal.sosfilt(band, rng.standard_normal(len(t))) * np.exp(-t / 0.07)


def _chirp(t: np.ndarray, hz: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    # Exponential sweep over two octaves in 0.25 s at full level (a decay would hide its top), 30 ms release.
    sweep = 0.25
    rate = np.log(4.0) / sweep
    phase = 2 * np.pi * hz * np.expm1(rate * np.minimum(t, sweep)) / rate
    return np.sin(phase) * np.clip((sweep - t) / 0.03, 0, 1)


def _kick(t: np.ndarray, hz: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    # Pitch glides from hz to 50 Hz; the phase is the integral of that frequency.
    low, tau = 50.0, 0.04
    phase = 2 * np.pi * (low * t + (hz - low) * tau * (1 - np.exp(-t / tau)))
    return np.sin(phase) * np.exp(-t / 0.08)


def _bell(t: np.ndarray, hz: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    partials = ((1.0, 1.0, 0.6), (2.76, 0.9, 0.45), (5.40, 0.8, 0.3))  # (ratio, amplitude, decay s)
    return sum(a * np.sin(2 * np.pi * r * hz * t) * np.exp(-t / tau) for r, a, tau in partials)


_SOUNDS = {"sine": _sine, "buzz": _buzz, "hiss": _hiss, "chirp": _chirp, "kick": _kick, "bell": _bell}
# How long an event is rendered (at most to the clip end): every other recipe is below -60 dB by 0.6 s, but
# cutting the bell short would click like a new onset, so it rings to the end of the clip.
_SOUND_SECONDS = {"bell": 2.0}


def _event_sound(cls: ToyClass, hz: float, sr: int, seconds: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    sound = _SOUNDS[cls.recipe](t, hz, sr, rng)
    sound = sound * np.minimum(t / 0.001, 1.0)  # 1 ms attack: sharp, but no click
    return sound / np.abs(sound).max()


def _render_audio(
    cls: ToyClass, onsets: np.ndarray, n_samples: int, sr: int, channels: int, rng: np.random.Generator
) -> np.ndarray:
    hz = cls.hz * rng.uniform(0.95, 1.05)
    mix = np.zeros(n_samples)
    for onset in onsets:
        start = round(onset * sr)
        seconds = min(_SOUND_SECONDS.get(cls.recipe, 0.6), (n_samples - start) / sr)
        sound = _event_sound(cls, hz, sr, seconds, rng)
        mix[start : start + len(sound)] += sound
    gains = rng.uniform(0.85, 1.0, size=(channels, 1)) if channels > 1 else np.ones((1, 1))
    audio = gains * mix
    audio *= PEAK / np.abs(audio).max()
    audio += rng.standard_normal(audio.shape) * 10 ** (NOISE_DBFS / 20)
    return audio.astype(np.float32)


# ---------------------------------------------------------------------------------------------- pictures


def _shape_mask(shape: str, cx: float, cy: float, r: float) -> np.ndarray:
    """Coverage in [0, 1] of a shape of radius r centred at (cx, cy); drawn 4x larger for smooth edges."""
    s = 4
    image = Image.new("L", (SIZE * s, SIZE * s), 0)
    draw = ImageDraw.Draw(image)
    cx, cy, r = cx * s, cy * s, r * s

    def polygon(radii: list[float], start_deg: float) -> list[tuple[float, float]]:
        angles = np.deg2rad(start_deg + np.arange(len(radii)) * 360 / len(radii))
        return [(cx + q * np.cos(a), cy + q * np.sin(a)) for q, a in zip(radii, angles, strict=True)]

    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        draw.ellipse(box, fill=255)
    elif shape == "square":
        h = 0.85 * r
        draw.rectangle((cx - h, cy - h, cx + h, cy + h), fill=255)
    elif shape == "triangle":
        draw.polygon(polygon([r] * 3, -90), fill=255)
    elif shape == "star":
        draw.polygon(polygon([r, 0.45 * r] * 5, -90), fill=255)
    elif shape == "ring":
        draw.ellipse(box, fill=255)
        q = 0.6 * r
        draw.ellipse((cx - q, cy - q, cx + q, cy + q), fill=0)
    elif shape == "cross":
        w = 0.3 * r
        draw.rectangle((cx - r, cy - w, cx + r, cy + w), fill=255)
        draw.rectangle((cx - w, cy - r, cx + w, cy + r), fill=255)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    small = image.resize((SIZE, SIZE), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32) / 255


def _background(rng: np.random.Generator) -> np.ndarray:
    # Smooth blotches rather than per-pixel noise: a little texture that H.264 still compresses well.
    coarse = rng.uniform(36, 52, size=(12, 12)).astype(np.float32)
    fine = np.asarray(Image.fromarray(coarse, mode="F").resize((SIZE, SIZE), Image.Resampling.BILINEAR))
    return np.repeat(fine[:, :, None], 3, axis=2)


def event_frames(onsets: tuple[float, ...] | np.ndarray) -> list[int]:
    """The video frame each event appears on: the first frame whose time is at or after the onset."""
    return [int(np.ceil(round(onset * FPS, 6))) for onset in onsets]


def _render_frames(cls: ToyClass, onsets: np.ndarray, n_frames: int, rng: np.random.Generator) -> np.ndarray:
    r = rng.uniform(20, 30)
    cx, cy = rng.uniform(r + 4, SIZE - r - 4, size=2)
    mask = _shape_mask(cls.shape, cx, cy, r)[:, :, None]
    background = _background(rng)
    times = np.arange(n_frames) / FPS
    alpha = np.zeros(n_frames)
    for first in event_frames(onsets):
        since = times - first / FPS
        alpha = np.maximum(alpha, np.where(since >= 0, np.clip(1 - since / FADE_SECONDS, 0, 1), 0))
    cover = alpha.astype(np.float32)[:, None, None, None] * mask
    frames = background * (1 - cover) + np.asarray(cls.colour, dtype=np.float32) * cover
    return np.round(frames).astype(np.uint8)


# ---------------------------------------------------------------------------------------------- clips


def clip_duration(index: int) -> float:
    return 1.6 if index % 7 == 6 else 2.0


def _ytid(rng: np.random.Generator, index: int) -> str:
    chars = "".join(YTID_CHARS[i] for i in rng.integers(0, len(YTID_CHARS), size=11))
    # Real ids can start with '-' (`--0PQM4-hqg`), which trips up naive command lines and parsers.
    return "-" + chars[1:] if index % 4 == 1 else chars


def _onsets(rng: np.random.Generator, duration: float) -> np.ndarray:
    """2-4 onsets in [0.1, duration - 0.25], at least MIN_GAP_SECONDS apart.

    Sorted uniform draws over the span left after reserving the gaps, then the gaps added back: every
    allowed arrangement is reachable without rejection sampling.
    """
    first, last = 0.1, duration - 0.25
    fits = 1 + int((last - first) // MIN_GAP_SECONDS) if last >= first else 0
    if fits < 2:
        raise ValueError(f"a {duration} s clip has no room for 2 events {MIN_GAP_SECONDS} s apart")
    n = int(rng.integers(2, min(4, fits) + 1))
    slack = last - first - (n - 1) * MIN_GAP_SECONDS
    onsets = first + np.sort(rng.uniform(0, slack, size=n)) + np.arange(n) * MIN_GAP_SECONDS
    return np.round(onsets, 6)  # what events.csv stores is then exactly what was rendered


def synthesize_clip(
    index: int, label_index: int, split: str, seed: int = 0, duration: float | None = None
) -> tuple[ToyClip, np.ndarray, np.ndarray]:
    """Make clip `index` of class TOY_CLASSES[label_index]: (clip, audio [C, T] float32, frames [N, 96, 96, 3] uint8).

    Pure: the same arguments always give the same arrays. duration defaults to `clip_duration(index)`.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    cls = TOY_CLASSES[label_index]
    duration = clip_duration(index) if duration is None else duration
    sample_rate = 44100 if index % 2 == 0 else 48000
    channels = 2 if index % 3 == 0 else 1
    rng = np.random.default_rng([seed, index])
    ytid = _ytid(rng, index)
    start_ms = int(rng.integers(0, 291)) * 1000
    onsets = _onsets(rng, duration)
    audio = _render_audio(cls, onsets, round(duration * sample_rate), sample_rate, channels, rng)
    frames = _render_frames(cls, onsets, round(duration * FPS), rng)
    clip = ToyClip(
        index=index,
        clip_id=f"{ytid}_{start_ms}_{start_ms + round(duration * 1000)}",
        vas_id=f"{cls.slug}/video_{index:05d}",
        label=cls.label,
        slug=cls.slug,
        split=split,
        duration=duration,
        sample_rate=sample_rate,
        channels=channels,
        onsets=tuple(float(o) for o in onsets),
    )
    return clip, audio, frames


# ---------------------------------------------------------------------------------------------- writing


def _write_mp4(path: Path, frames: np.ndarray, audio: np.ndarray, sample_rate: int) -> None:
    layout = "stereo" if audio.shape[0] == 2 else "mono"
    with atomic_path(path) as tmp, av.open(str(tmp), "w") as container:
        # Fixed settings, one thread, and no macroblock-tree rate control: with it, x264 now and then gave
        # different bytes for the same frames (seen in 1 to 50 % of repeated encodes); without it, never.
        x264 = {"crf": "26", "preset": "medium", "x264-params": "no-mbtree=1"}
        video = container.add_stream("libx264", rate=FPS, options=x264)
        video.codec_context.thread_count = 1
        video.width = video.height = SIZE
        video.pix_fmt = "yuv420p"
        sound = container.add_stream("aac", rate=sample_rate, layout=layout, options={"aac_coder": "fast"})
        sound.bit_rate = 64000 * audio.shape[0]
        for k, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = k
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio), format="fltp", layout=layout)
        chunk.sample_rate = sample_rate
        chunk.pts = 0
        container.mux(sound.encode(chunk))
        container.mux(sound.encode(None))  # flush: the encoder holds back the last frames until told


def _write_jpg(path: Path, rgb: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(rgb).save(tmp, format="JPEG", quality=90)


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _write_lines(path: Path, lines: list[str]) -> None:
    _write_text(path, "".join(f"{line}\n" for line in lines))


def _write_csv(path: Path, rows: list[list[str]]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        csv.writer(f).writerows(rows)


def _link(src: Path, dst: Path) -> None:
    """Hard-link src to dst (a copy where the file system cannot link), replacing dst atomically."""
    with atomic_path(dst) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)


def _assign_clips(
    n_train: int, n_valid: int, n_test: int, n_extra_test: int = 0
) -> list[tuple[int, int, str]]:
    """(clip index, label index, split) for every clip: class by class, then the extra test clips class by class.

    Class-major order keeps sample rate (index parity) and channel count (index mod 3) independent of the
    class, so neither can give the label away (for the extra block, when `n_extra_test` is a multiple of 6).
    The extra test clips are indexed after all the others, and a clip's content depends only on (seed, index),
    so they enlarge the test split without changing any train, valid or first-`n_test` test clip.
    """
    splits = ["train"] * n_train + ["valid"] * n_valid + ["test"] * n_test
    pairs = [(label, split) for label in range(len(TOY_CLASSES)) for split in splits]
    pairs += [(label, "test") for label in range(len(TOY_CLASSES)) for _ in range(n_extra_test)]
    return [(index, label, split) for index, (label, split) in enumerate(pairs)]


def _write_clip(out: Path, clip: ToyClip, audio: np.ndarray, frames: np.ndarray) -> None:
    mp4 = out / "vggsound" / "video" / f"{clip.clip_id}.mp4"
    _write_mp4(mp4, frames, audio, clip.sample_rate)
    _link(mp4, out / "vas" / "videos" / f"{clip.vas_id}.mp4")
    _link(mp4, out / "vegas" / f"{clip.vas_id}.mp4")
    with atomic_path(out / "vggsound" / "audio" / f"{clip.clip_id}.wav") as tmp:
        sf.write(tmp, audio.T, clip.sample_rate, subtype="PCM_16", format="WAV")


def _write_imagehear(out: Path, test_frames: dict[str, list[list[np.ndarray]]]) -> None:
    # Round-robin over test clips (first events first), so the images differ in position and size.
    for slug, per_clip in test_frames.items():
        rounds = max((len(frames) for frames in per_clip), default=0)
        images = [frames[k] for k in range(rounds) for frames in per_clip if k < len(frames)]
        for n, rgb in enumerate(images[:IMAGES_PER_CLASS]):
            _write_jpg(out / "imagehear" / slug / f"{n:02d}.jpg", rgb)


def _write_indexes(out: Path, clips: list[ToyClip]) -> None:
    by_split = {split: [c for c in clips if c.split == split] for split in SPLITS}
    vgg = out / "vggsound"
    _write_csv(
        vgg / "vggsound.csv",
        [[c.ytid, str(c.start_seconds), c.label, "test" if c.split == "test" else "train"] for c in clips],
    )
    for split, members in by_split.items():
        _write_lines(vgg / f"vggsound_{split}.txt", [c.clip_id for c in members])
        _write_lines(out / "vegas" / f"{split}.txt", [c.vas_id for c in members])
    _write_lines(out / "vas" / "vas_train.txt", [c.vas_id for c in by_split["train"]])
    _write_lines(out / "vas" / "vas_valid.txt", [c.vas_id for c in by_split["valid"] + by_split["test"]])
    header = ["clip_index", "clip_id", "label", "split", "duration", "onsets"]
    rows = [
        [str(c.index), c.clip_id, c.label, c.split, str(c.duration), " ".join(f"{o:.6f}" for o in c.onsets)]
        for c in clips
    ]
    _write_csv(out / "events.csv", [header, *rows])


def _stamp(seed: int, n_train: int, n_valid: int, n_test: int, n_extra_test: int) -> str:
    """What `.complete` holds: the seed and sizes that made the dataset and a hash of this file, so that a
    dataset made by another version of the generator is regenerated, never reused."""
    source = hashlib.sha1(Path(__file__).read_bytes()).hexdigest()[:12]
    return (
        f"seed={seed} train={n_train} valid={n_valid} test={n_test} extra_test={n_extra_test} "
        f"generator={source}\n"
    )


def _readme(seed: int, n_train: int, n_valid: int, n_test: int, n_extra_test: int, n_clips: int) -> str:
    classes = "\n".join(
        f"| `{c.label}` | {c.slug} | {c.shape}, RGB {c.colour} | {c.sound} |" for c in TOY_CLASSES
    )
    return f"""# Embedded toy audio-visual dataset

Synthetic stand-in for VGGSound, VAS, ImageHear and VEGAS, small enough to train on a CPU. Each class ties
a shape and colour to a timbre; each visual event (the shape flashing up, then fading) starts on the first
video frame at or after an audio onset. Onsets are listed in `events.csv`.

Made with seed {seed}, {n_train}/{n_valid}/{n_test + n_extra_test} train/valid/test clips per class ({n_clips} clips), by

    python -m shared.data.toy --out <this folder> --seed {seed} --train {n_train} --valid {n_valid} \\
        --test {n_test} --extra-test {n_extra_test}

The same seed (and PyAV build) gives the same files. `shared/data/toy.py` documents the recipes and layout.

| label | slug | picture | sound |
| --- | --- | --- | --- |
{classes}
"""


def _clear_previous(out: Path) -> None:
    """Remove an earlier generation's files (only where our marker shows they are ours), `.complete` first."""
    (out / ".complete").unlink(missing_ok=True)
    if (out / MARKER).exists():
        for name in ("vggsound", "vas", "imagehear", "vegas"):
            shutil.rmtree(out / name, ignore_errors=True)


def generate_toy_dataset(
    out: str | Path,
    seed: int = 0,
    n_train: int = 20,
    n_valid: int = 4,
    n_test: int = 4,
    n_extra_test: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write the toy dataset under `out` and return `out`; do nothing if `out/.complete` says it was made by
    this version of this file with these arguments (unless overwrite).

    `n_extra_test` test clips per class are added after all the others (`_assign_clips`): they leave every
    other clip as it is. A folder without `.complete`, or whose `.complete` names another version, seed or
    sizes, is regenerated: a killed run leaves only whole files, and `.complete` is written last.
    """
    if min(n_train, n_valid, n_test, n_extra_test) < 0:
        raise ValueError(
            f"clip counts must be >= 0, got train={n_train} valid={n_valid} test={n_test} "
            f"extra_test={n_extra_test}"
        )
    out = Path(out)
    stamp = _stamp(seed, n_train, n_valid, n_test, n_extra_test)
    done = out / ".complete"
    if done.is_file() and done.read_text() == stamp and not overwrite:
        return out
    began = time.perf_counter()
    _clear_previous(out)
    _write_text(out / MARKER, "written by shared.data.toy: a rerun replaces its subfolders\n")
    clips: list[ToyClip] = []
    test_frames: dict[str, list[list[np.ndarray]]] = {c.slug: [] for c in TOY_CLASSES}
    for index, label, split in _assign_clips(n_train, n_valid, n_test, n_extra_test):
        clip, audio, frames = synthesize_clip(index, label, split, seed)
        _write_clip(out, clip, audio, frames)
        # ImageHear from each class's first n_test test clips: the extra ones leave it unchanged
        if split == "test" and len(test_frames[clip.slug]) < n_test:
            test_frames[clip.slug].append([frames[k] for k in event_frames(clip.onsets)])
        clips.append(clip)
    _write_imagehear(out, test_frames)
    _write_indexes(out, clips)
    _write_text(out / "README.md", _readme(seed, n_train, n_valid, n_test, n_extra_test, len(clips)))
    _write_text(done, stamp)
    print(f"toy dataset: {len(clips)} clips written to {out} in {time.perf_counter() - began:.1f} s")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Generate the embedded toy audio-visual dataset.")
    parser.add_argument("--out", required=True, type=Path, help="folder to write (e.g. data/toy)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", type=int, default=20, help="train clips per class")
    parser.add_argument("--valid", type=int, default=4, help="valid clips per class")
    parser.add_argument("--test", type=int, default=4, help="test clips per class, among the class's clips")
    parser.add_argument(
        "--extra-test", type=int, default=EXTRA_TEST, help="more test clips per class, after all the others"
    )
    parser.add_argument("--overwrite", action="store_true", help="regenerate even if the dataset is complete")
    args = parser.parse_args(argv)
    generate_toy_dataset(
        args.out, args.seed, args.train, args.valid, args.test, args.extra_test, overwrite=args.overwrite
    )


if __name__ == "__main__":
    main()
