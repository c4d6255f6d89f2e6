"""The audio layout (TiVA paper sec. 3.1, eq. 1; sec. 3.2.2, eq. 7).

t_a = Resize(Norm(mel_a); M, C): the log-mel [F = 64, T] becomes a coarse [M, C] = [102, 5] picture (time x
frequency) that T learns to predict from the video, and G gets it resized to the latent grid [h, w] as an
extra input channel. The paper leaves Norm and Resize open (sec. 3.1 names them only); our choices:

- Norm: a fixed map of the natural-log mel to [0, 1] over `LOG_MEL_BOUNDS` = (ln 1e-5, 4.0), clamped. The
  lower bound is AudioLDM2's silence floor; AudioLDM2 log-mels of peak-0.5 audio stay below about +3, so
  4.0 leaves headroom. Fixed bounds, not per-clip min-max, so a quiet clip keeps a dark layout and the L2 of
  eq. 8 has the same scale for every clip.
- Resize to [M, C]: area averaging (`adaptive_avg_pool2d`), the downsampling that keeps a short loud event
  visible at any ratio.
- Resize to the latent [h, w]: bilinear (time -> h, frequency -> w, as AudioLDM2's VAE maps [T, F] to [h, w]).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LOG_MEL_BOUNDS = (math.log(1e-5), 4.0)


def audio_layout(
    logmel: torch.Tensor, size: tuple[int, int] = (102, 5), bounds=LOG_MEL_BOUNDS
) -> torch.Tensor:
    """log-mel [B, F, T] -> layout [B, M, C] in [0, 1] (eq. 1)."""
    low, high = bounds
    normed = ((logmel - low) / (high - low)).clamp(0, 1)
    return F.adaptive_avg_pool2d(normed.transpose(1, 2)[:, None], tuple(size))[:, 0]


def layout_to_latent(layout: torch.Tensor, latent_hw: tuple[int, int]) -> torch.Tensor:
    """layout [B, M, C] -> the extra input channel of G, [B, 1, h, w] (eq. 7)."""
    return F.interpolate(layout[:, None], size=tuple(latent_hw), mode="bilinear", align_corners=False)
