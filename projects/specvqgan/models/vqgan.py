"""Spectrogram VQGAN: the perceptually-rich spectrogram codebook (SpecVQGAN, arXiv:2110.08791, sec. 3.1 and
6.1.2; official `specvqgan/models/vqgan.py`).

Encoder E: 2D conv stack with residual blocks and GroupNorm, self-attention at the lowest resolution;
codebook Z (eq. 1, straight-through, loss eq. 2); decoder G symmetric to E with nearest-neighbour
upsampling before each conv. This is the taming-transformers VQGAN architecture that the official code
uses, and diffusers' `Encoder`/`Decoder` implement exactly that architecture (same blocks, GroupNorm
eps 1e-6, padded stride-2 downsampling, single-head spatial attention, no output tanh), so we build on
them; `projects.specvqgan.convert` maps the official key names onto them.

Paper sizes: ch 128, ch_mult (1, 1, 2, 2, 4), 2 residual blocks per level, attention at the last level,
z_channels = embed_dim = 256; an 80 x 848 mel gives a 5 x 53 grid; 1024 codes (VGGSound, 72,137,089
parameters) or 128 codes (VAS, 71,907,713).
"""

from __future__ import annotations

import torch
from diffusers.models.autoencoders.vae import Decoder, Encoder
from torch import nn

from shared.vq import Quantized, VectorQuantizer


class SpectrogramVQGAN(nn.Module):
    """Mel [B, 1, F, T] in [-1, 1] -> codes on an (F / 2^L) x (T / 2^L) grid -> mel, L = len(ch_mult) - 1."""

    def __init__(
        self,
        n_codes: int = 1024,
        embed_dim: int = 256,
        ch: int = 128,
        ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4),
        num_res_blocks: int = 2,
        z_channels: int = 256,
        attention_levels: tuple[int, ...] | None = None,
        in_channels: int = 1,
        norm_groups: int = 32,
        beta: float = 0.25,
        restart_unused_after: int | None = None,
    ):
        super().__init__()
        levels = len(ch_mult)
        attention_levels = (levels - 1,) if attention_levels is None else tuple(attention_levels)
        channels = [ch * m for m in ch_mult]
        down = [
            "AttnDownEncoderBlock2D" if i in attention_levels else "DownEncoderBlock2D" for i in range(levels)
        ]
        # diffusers lists decoder blocks from the lowest resolution up
        up = [
            "AttnUpDecoderBlock2D" if i in attention_levels else "UpDecoderBlock2D"
            for i in reversed(range(levels))
        ]
        self.downsampling = 2 ** (levels - 1)
        self.encoder = Encoder(
            in_channels=in_channels,
            out_channels=z_channels,
            down_block_types=down,
            block_out_channels=channels,
            layers_per_block=num_res_blocks,
            norm_num_groups=norm_groups,
            double_z=False,
        )
        self.decoder = Decoder(
            in_channels=z_channels,
            out_channels=in_channels,
            up_block_types=up,
            block_out_channels=channels,
            layers_per_block=num_res_blocks,
            norm_num_groups=norm_groups,
        )
        self.quant_conv = nn.Conv2d(z_channels, embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, z_channels, 1)
        self.quantize = VectorQuantizer(n_codes, embed_dim, beta, restart_unused_after)

    @property
    def n_codes(self) -> int:
        return self.quantize.n_codes

    def grid_shape(self, n_mels: int, frames: int) -> tuple[int, int]:
        return n_mels // self.downsampling, frames // self.downsampling

    def quantize_input(self, mel: torch.Tensor) -> Quantized:
        return self.quantize(self.quant_conv(self.encoder(mel)))

    def encode(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(quantised latents [B, embed_dim, H, W], code indices [B, H, W])."""
        q = self.quantize_input(mel)
        return q.z_q, q.indices

    def decode(self, quantized: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(quantized))

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Code indices [B, H, W] (row-major: H = frequency) -> mel [B, 1, F, T]."""
        return self.decode(self.quantize.lookup(indices))

    def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor, Quantized]:
        q = self.quantize_input(mel)
        return self.decode(q.z_q), q
