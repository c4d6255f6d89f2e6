"""Per-item processing of per-frame video features into the SpecVQGAN condition (arXiv:2110.08791
sec. 6.1.1; `v-iashin/SpecVQGAN`, `specvqgan/data/vggsound.py`: `VGGSoundFeats`, `CropFeats`,
`ResampleFrames`).

The official per-item chain, applied to a clip's cached frame features [T, D] (T about 215 at 21.5 fps):

1. `pad_or_trim(feats, feat_len)`: zero-pad at the end, or keep the first `feat_len` (215) rows;
2. `center_crop_frames(feats, crop_len)`: the centre 212 of 215, starting at row (215 - 212) // 2 = 1;
3. `resample_frames(feats, k)`: k rows at idx = int(linspace(0, 212, k, endpoint=False)) + 212 // (k + 1),
   i.e. k=1 -> [106], k=5 -> [35, 77, 119, 162, 204], k=53 -> 4i + 3, k=212 -> all.

`select_frames` runs the three; the model then sees (B, D, k) (features are not normalised). Why 212:
the mel is centre-cropped 860 -> 848 frames (paper sec. 6.1.1), the mel frame rate (22050 / 256 = 86.13 Hz)
is about 4 x 21.5 fps, so 848 mel frames <-> 212 video frames <-> 53 latent columns of 16 mel frames,
4 video frames per column. `frame_lengths` keeps that ratio for other clip lengths: the 2 s toy clips
have 43 frames at 21.5 fps (mel trimmed to 172 = 4 x 43) and a 160-frame mel crop (10 columns), so
feat_len 43, crop_len 40, the same offset 1 as the official 215 -> 212, and k = 10 gives one feature per
column as k = 53 does at full size.

`loop_frames` is the official tiling of short clips at extraction time (a 6 s clip's 129 frames repeated
to 215: the released ResNet-50 pickles of short VAS clips are periodic with exactly that period).
`no_feats` is the "No Feats" condition (paper sec. 6.1.4, Tab. 3): one uniformly random vector in place
of the visual features, drawn anew for every item.

Hand-written because these are a few lines of indexing that must match the official index arithmetic
exactly; they accept numpy arrays and torch tensors alike.
"""

from __future__ import annotations

import numpy as np
import torch

FPS = 21.5  # video frame rate of the official features
FEAT_LEN = 215  # frames of a 10 s clip at 21.5 fps
CROP_LEN = 212  # frames matching the 848-frame mel crop
MEL_FRAMES_PER_VIDEO_FRAME = 4


def pad_or_trim(feats, length: int):
    """Zero-pad at the end, or keep the first `length` rows: [T, ...] -> [length, ...] (official pad/trim)."""
    n = feats.shape[0]
    if n >= length:
        return feats[:length]
    if isinstance(feats, torch.Tensor):
        return torch.cat([feats, feats.new_zeros(length - n, *feats.shape[1:])])
    return np.concatenate([feats, np.zeros((length - n, *feats.shape[1:]), feats.dtype)])


def loop_frames(feats, length: int):
    """Repeat a short clip's frames from the start until there are `length`, or keep the first `length`.

    The official ResNet-50 extraction does this (crop-leftmost-or-tile) for videos shorter than 10 s, so
    [129, D] -> rows 0..128, 0..85.
    """
    n = feats.shape[0]
    if n == 0:
        raise ValueError("cannot loop zero frames")
    if n >= length:
        return feats[:length]
    reps = -(-length // n)
    if isinstance(feats, torch.Tensor):
        return feats.repeat(reps, *([1] * (feats.dim() - 1)))[:length]
    return np.tile(feats, (reps, *([1] * (feats.ndim - 1))))[:length]


def center_crop_frames(feats, length: int):
    """The centre `length` rows, starting at (T - length) // 2 (215 -> 212 starts at row 1)."""
    n = feats.shape[0]
    if n < length:
        raise ValueError(f"cannot centre-crop {n} frames to {length}; pad them to at least {length} first")
    start = (n - length) // 2
    return feats[start : start + length]


def resample_indices(n: int, k: int) -> np.ndarray:
    """The k rows of n that the official `ResampleFrames` keeps: int(linspace(0, n, k, endpoint=False)) + n // (k + 1)."""
    if not 1 <= k <= n:
        raise ValueError(f"cannot pick {k} of {n} frames (need 1 <= k <= n)")
    return np.linspace(0, n, k, endpoint=False).astype(np.int64) + n // (k + 1)


def resample_frames(feats, k: int):
    """k evenly spread rows of [T, ...] (see `resample_indices`) -> [k, ...]."""
    idx = resample_indices(feats.shape[0], k)
    return feats[torch.from_numpy(idx)] if isinstance(feats, torch.Tensor) else feats[idx]


def select_frames(feats, k: int, feat_len: int = FEAT_LEN, crop_len: int = CROP_LEN):
    """The whole official per-item chain: pad/trim to `feat_len`, centre crop to `crop_len`, pick k rows."""
    return resample_frames(center_crop_frames(pad_or_trim(feats, feat_len), crop_len), k)


def no_feats(dim: int = 2048, k: int = 1, rng: np.random.Generator | None = None) -> np.ndarray:
    """The "No Feats" condition: [k, dim] float32 uniform on [0, 1), fresh on every call (k = 1 in the paper).

    The official data code draws [feat_len, dim] uniform values per item and then resamples them to k rows,
    which has the same distribution as drawing k rows directly.
    """
    rng = rng if rng is not None else np.random.default_rng()
    return rng.random((k, dim), dtype=np.float32)


def frame_lengths(
    duration: float, mel_crop_frames: int, fps: float = FPS, mel_per_frame: int = MEL_FRAMES_PER_VIDEO_FRAME
) -> tuple[int, int]:
    """(feat_len, crop_len) matching a mel setting: 10 s with an 848-frame crop -> (215, 212); 2 s and 160 -> (43, 40)."""
    if mel_crop_frames % mel_per_frame:
        raise ValueError(f"mel crop of {mel_crop_frames} frames is not a multiple of {mel_per_frame}")
    feat_len = int(np.floor(duration * fps + 1e-6))
    crop_len = mel_crop_frames // mel_per_frame
    if crop_len > feat_len:
        raise ValueError(
            f"{crop_len} video frames for the mel crop, more than the {feat_len} of {duration} s"
        )
    return feat_len, crop_len
