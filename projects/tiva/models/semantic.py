"""The semantic encoder S (TiVA paper sec. 3.2.1, eq. 2): s_i = Linear(CLS token of CLIP layer 11 of frame i).

The sequence s = (s_1 .. s_N) is G's cross-attention context, so `context_dim` is the UNet's
`cross_attention_dim`. The input holds the CLS tokens of the L cached CLIP layers; `layer` picks which one
(the last of (4, 8, 11) by default).
"""

from __future__ import annotations

import torch
from torch import nn


class SemanticEncoder(nn.Module):
    def __init__(self, clip_dim: int = 768, context_dim: int = 768, layer: int = -1):
        super().__init__()
        self.layer = layer
        self.proj = nn.Linear(clip_dim, context_dim)

    def forward(self, cls: torch.Tensor) -> torch.Tensor:
        """cls [B, N, L, D] -> s [B, N, context_dim]."""
        return self.proj(cls[:, :, self.layer])
