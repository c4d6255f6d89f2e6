"""The layout predictor T (TiVA paper sec. 3.2.1, eqs. 3-4; the final design of Table 4).

From the CLIP features of N video frames, T predicts the audio layout t_v [M, C]:

- encoder (eq. 3): c_i^patch = Pooling(Concat[patch^4, patch^8, patch^11]) per frame. The patch tokens are
  averaged over the image when the features are cached (`shared.encoders.CLIPFeature`), and the concatenated
  L x D vector is projected to the model width; then `enc_depth` blocks of global self-attention followed by
  windowed self-attention over adjacent frames (Table 4: SA + WA is better than either alone);
- decoder (eq. 4): queries c_i^query = Proj(Concat[CLS^4, CLS^8, CLS^11]) + q_i with learnable q_i; `dec_depth`
  blocks of [self-attention, cross-attention (queries -> encoder output), windowed self-attention];
- output: t_v = Linear(Concat[c_1^out .. c_N^out]) -> [M, C]: one Linear over all frames, as eq. 4 writes it,
  which fixes N (`n_frames`, 102 for 10.24 s at 10 fps; longer inputs are cut, shorter ones padded).

Padding: the frames T adds to a shorter input are masked out of every attention (no real frame attends to
them; each padded frame attends to the real ones and to itself, so no attention row is empty) and their outputs
are zeroed before the final Linear, so t_v does not depend on what the padding holds. The data never pads
(`projects.tiva.data`: a clip shorter than `duration` is looped, frames and sound alike), so this guards inputs
of another length than the model's, e.g. a config whose `n_frames` exceeds the cached frames.

Each attention and MLP sub-layer is pre-norm with a residual connection (GPT-style), and the encoder output is
layer-normed before the decoder attends to it. The paper gives no widths, depths, heads or window (sec. 3.2.1
names the blocks only); the defaults are ours.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def window_mask(n: int, window: int, device=None) -> torch.Tensor:
    """[n, n] bool, True where attention is NOT allowed: frames further apart than window // 2."""
    index = torch.arange(n, device=device)
    return (index[:, None] - index[None, :]).abs() > window // 2


def padding_mask(valid: torch.Tensor) -> torch.Tensor:
    """valid [n] bool -> [n, n] bool, True where attention is NOT allowed: from any frame to a padded one,
    except a padded frame to itself (a row with every key masked would give NaN)."""
    return ~valid[None, :] & ~torch.eye(len(valid), dtype=torch.bool, device=valid.device)


class AttentionLayer(nn.Module):
    """x + MHA(LN(x), context) (self-attention when context is None), optionally masked."""

    def __init__(self, width: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)

    def forward(self, x, context=None, mask=None):
        h = self.norm(x)
        kv = h if context is None else context
        return x + self.attn(h, kv, kv, attn_mask=mask, need_weights=False)[0]


class MLP(nn.Module):
    def __init__(self, width: int, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(width),
            nn.Linear(width, 4 * width),
            nn.GELU(),
            nn.Linear(4 * width, width),
            nn.Dropout(dropout),
        )

    def forward(self, x):
        return x + self.net(x)


class EncoderBlock(nn.Module):
    """Global self-attention, windowed self-attention, MLP."""

    def __init__(self, width: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.global_attn = AttentionLayer(width, heads, dropout)
        self.window_attn = AttentionLayer(width, heads, dropout)
        self.mlp = MLP(width, dropout)

    def forward(self, x, window_mask, padding_mask=None):
        return self.mlp(self.window_attn(self.global_attn(x, mask=padding_mask), mask=window_mask))


class DecoderBlock(nn.Module):
    """Self-attention, cross-attention to the encoded patch features, windowed self-attention, MLP (eq. 4)."""

    def __init__(self, width: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.self_attn = AttentionLayer(width, heads, dropout)
        self.cross_attn = AttentionLayer(width, heads, dropout)
        self.window_attn = AttentionLayer(width, heads, dropout)
        self.mlp = MLP(width, dropout)

    def forward(self, x, memory, window_mask, padding_mask=None):
        x = self.cross_attn(self.self_attn(x, mask=padding_mask), context=memory, mask=padding_mask)
        return self.mlp(self.window_attn(x, mask=window_mask))


class LayoutPredictor(nn.Module):
    def __init__(
        self,
        clip_dim: int = 768,
        n_layers: int = 3,
        n_frames: int = 102,
        layout_size: tuple[int, int] = (102, 5),
        width: int = 512,
        heads: int = 8,
        enc_depth: int = 2,
        dec_depth: int = 2,
        window: int = 5,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.n_frames, self.layout_size, self.window = n_frames, tuple(layout_size), window
        self.patch_proj = nn.Linear(n_layers * clip_dim, width)
        self.cls_proj = nn.Linear(n_layers * clip_dim, width)
        self.position = nn.Parameter(torch.zeros(n_frames, width))
        self.queries = nn.Parameter(torch.randn(n_frames, width) * 0.02)
        self.encoder = nn.ModuleList(EncoderBlock(width, heads, dropout) for _ in range(enc_depth))
        self.decoder = nn.ModuleList(DecoderBlock(width, heads, dropout) for _ in range(dec_depth))
        self.memory_norm = nn.LayerNorm(width)  # pre-norm blocks leave the residual stream unnormalised
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(n_frames * width, self.layout_size[0] * self.layout_size[1])

    def _frames(self, x: torch.Tensor) -> torch.Tensor:
        """[B, N, L, D] -> [B, n_frames, L * D], zero-padded or cut in time."""
        x = x.flatten(2)[:, : self.n_frames]
        return F.pad(x, (0, 0, 0, self.n_frames - x.shape[1]))

    def forward(self, cls: torch.Tensor, patch: torch.Tensor) -> torch.Tensor:
        """cls, patch [B, N, L, D] -> t_v [B, M, C] (frames N.. padded and masked when N < n_frames)."""
        valid = torch.arange(self.n_frames, device=cls.device) < cls.shape[1]
        window = window_mask(self.n_frames, self.window, cls.device)
        padded = None  # no mask at all where nothing is padded: the common case stays the unmasked kernel
        if not valid.all():
            padded = padding_mask(valid)
            window = window | padded
        memory = self.patch_proj(self._frames(patch)) + self.position
        for block in self.encoder:
            memory = block(memory, window, padded)
        memory = self.memory_norm(memory)
        x = self.cls_proj(self._frames(cls)) + self.queries
        for block in self.decoder:
            x = block(x, memory, window, padded)
        x = self.norm(x).masked_fill(~valid[:, None], 0.0)
        return self.out(x.flatten(1)).view(-1, *self.layout_size)
