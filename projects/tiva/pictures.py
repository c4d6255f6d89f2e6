"""Pictures of TiVA's mels and layouts on one scale, for TensorBoard and `avgen generate`'s PNG.

Every picture is [rows, time] in [0, 1] with row 0 the lowest frequency (as `shared.audio.save_mel_picture`
and `shared.callbacks.ExampleLogger` draw mels): a log-mel through the layout's fixed bounds (eq. 1's Norm,
`projects.tiva.models.LOG_MEL_BOUNDS`), a layout [M, C] stretched to a mel's size, so that an event sits at
the same place in both.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from projects.tiva.models import LOG_MEL_BOUNDS

GAP = 2  # rows or columns of white between two pictures


def mel_picture(logmel: torch.Tensor) -> torch.Tensor:
    """log-mel [F, T] -> [F, T] in [0, 1]."""
    low, high = LOG_MEL_BOUNDS
    return ((logmel.float() - low) / (high - low)).clamp(0, 1)


def layout_picture(layout: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """layout [M, C] (time x frequency) -> [F, T] = `size`, nearest-neighbour stretched."""
    return F.interpolate(layout.float().T[None, None], size=tuple(size), mode="nearest")[0, 0].clamp(0, 1)


def beside(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """Two pictures of the same height side by side, a white gap between them."""
    return torch.cat([left, left.new_ones(left.shape[0], GAP), right], dim=1)


def above(top: torch.Tensor, bottom: torch.Tensor) -> torch.Tensor:
    """Two pictures of the same width, `top` drawn above `bottom` (row 0 is the bottom), a white gap between."""
    return torch.cat([bottom, bottom.new_ones(GAP, bottom.shape[1]), top], dim=0)
