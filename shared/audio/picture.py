"""A spectrogram as a PNG picture (low frequencies at the bottom), with no plotting library.

Generated files' pictures are made without matplotlib (only the evaluation's figures use it): a mel in [0, 1]
maps through a fixed black-purple-orange-yellow ramp (close to matplotlib's "magma") by linear interpolation
between five colours.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from shared.files import atomic_path

_RAMP = np.array(
    [[0, 0, 4], [81, 18, 124], [183, 55, 121], [252, 137, 97], [252, 253, 191]], dtype=np.float32
)


def save_mel_picture(mel: torch.Tensor | np.ndarray, path: str | Path, scale: int = 2) -> Path:
    """mel [F, T] in [0, 1] -> RGB PNG of size (T * scale) x (F * scale)."""
    mel = np.asarray(mel.detach().cpu() if isinstance(mel, torch.Tensor) else mel, dtype=np.float32)
    if mel.ndim != 2:
        raise ValueError(f"expected a mel [F, T], got shape {mel.shape}")
    position = np.clip(mel[::-1], 0, 1) * (len(_RAMP) - 1)
    low = np.minimum(position.astype(np.int64), len(_RAMP) - 2)
    weight = (position - low)[..., None]
    rgb = (_RAMP[low] * (1 - weight) + _RAMP[low + 1] * weight).round().astype(np.uint8)
    image = Image.fromarray(rgb).resize((mel.shape[1] * scale, mel.shape[0] * scale), Image.NEAREST)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return Path(path)
