"""Dilated 1-D residual stacks of Jukebox (arXiv:2005.00341), as Im2Wav (arXiv:2211.03089) uses them.

Im2Wav's waveform VQ-VAE encoder and decoder are built from these stacks, and so is the
Up prior's upsampling conditioner. The layout follows `RoySheffer/im2wav`, `models/vqvae/resnet.py`
(`ResConv1DBlock`, `Resnet1D`): each unit is ReLU -> Conv1d(k3, dilated) -> ReLU -> Conv1d(k1) added to
its input, and the sub-module names (`model.{unit}.model.{1,3}`) are the official ones, so the official
checkpoint keys of the VQ-VAE map without renaming. The official `zero_out` initialisation is off in every
Im2Wav configuration and left out. The official Up conditioner runs its stacks under gradient checkpointing
(`checkpoint_res`), which stores the units as `blocks.{unit}` instead of `model.{unit}`: a checkpoint
conversion renames that one word; the computation is the same.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class ResConv1DBlock(nn.Module):
    """One residual unit: x + res_scale * Conv1d_k1(ReLU(Conv1d_k3,dilated(ReLU(x))))."""

    def __init__(self, n_in: int, n_state: int, dilation: int = 1, res_scale: float = 1.0):
        super().__init__()
        self.model = nn.Sequential(
            nn.ReLU(),
            nn.Conv1d(n_in, n_state, kernel_size=3, stride=1, padding=dilation, dilation=dilation),
            nn.ReLU(),
            nn.Conv1d(n_state, n_in, kernel_size=1),
        )
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res_scale * self.model(x)


class Resnet1D(nn.Module):
    """`n_depth` residual units of width `n_in` with dilations growing geometrically.

    Unit d has dilation `dilation_growth_rate ** (d % dilation_cycle)` (no cycle: `** d`), so the VQ-VAE
    (depth 4, growth 3) sees dilations 1, 3, 9, 27 and the Up conditioner (depth 16, growth 3, cycle 8)
    repeats 1 ... 2187 twice. `reverse_dilation` reverses the order of the units (the VQ-VAE decoder);
    `res_scale` scales each residual branch by 1 / sqrt(n_depth).
    """

    def __init__(
        self,
        n_in: int,
        n_depth: int,
        m_conv: float = 1.0,
        dilation_growth_rate: int = 1,
        dilation_cycle: int | None = None,
        reverse_dilation: bool = False,
        res_scale: bool = False,
    ):
        super().__init__()
        scale = 1.0 / math.sqrt(n_depth) if res_scale else 1.0
        cycle = dilation_cycle or n_depth
        blocks = [
            ResConv1DBlock(
                n_in, int(m_conv * n_in), dilation=dilation_growth_rate ** (d % cycle), res_scale=scale
            )
            for d in range(n_depth)
        ]
        if reverse_dilation:
            blocks = blocks[::-1]
        self.model = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
