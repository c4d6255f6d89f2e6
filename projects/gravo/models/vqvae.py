"""Im2Wav's two-level waveform VQ-VAE (Im2Wav, arXiv:2211.03089), which GRAVO reuses unchanged (GRAVO paper,
Interspeech 2023, secs. 2.1 and 3.2: "5 convolutional layers with stride 2", downsampling 8 and 32,
2048 codes of size 128 per level).

A Jukebox-style (arXiv:2005.00341) hierarchical VQ-VAE on raw 16 kHz audio, hparam set
`small_multi_level_vqvae` of `RoySheffer/im2wav`, `models/hparams.py`: level 0 ("Up") downsamples by 8
(2000 tokens/s), level 1 ("Low") by 32 (500 tokens/s); each level has its own encoder, its own decoder and
its own 2048 x 128 EMA codebook. The two levels are separate autoencoders that share nothing; at generation
only level 0's decoder runs (the Up prior turns Low codes into level-0 codes first).

The module tree follows `models/vqvae/vqvae.py` and `models/vqvae/encdec.py` of the official code, so its
parameter names are the official ones: `encoders.{level}.level_blocks.{i}.model.*`,
`decoders.{level}.level_blocks.{i}.model.*`, `decoders.{level}.out.*`. Only the codebooks differ: the official
buffer `bottleneck.level_blocks.{level}.k` is `bottleneck.level_blocks.{level}.codebook` here, next to the
EMA statistics of `shared.vq.EMAVectorQuantizer` (the official block keeps them as plain attributes).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from projects.gravo.models.resnet1d import Resnet1D
from shared.vq import EMAVectorQuantizer, Quantized, nearest_code


class EncoderConvBlock(nn.Module):
    """`down_t` x [Conv1d(k = 2 stride, stride) -> Resnet1D], then Conv1d(width -> out_width, k3)."""

    def __init__(self, in_width: int, out_width: int, down_t: int, stride_t: int, **resnet):
        super().__init__()
        width = resnet["n_in"]
        steps = [
            nn.Sequential(
                nn.Conv1d(in_width if i == 0 else width, width, 2 * stride_t, stride_t, stride_t // 2),
                Resnet1D(**resnet),
            )
            for i in range(down_t)
        ]
        self.model = nn.Sequential(*steps, nn.Conv1d(width, out_width, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class DecoderConvBlock(nn.Module):
    """Conv1d(in_width -> width, k3), then `down_t` x [Resnet1D (dilations reversed) -> ConvTranspose1d].

    The last transposed convolution goes back to `in_width` channels (the official `DecoderConvBock`). The
    Up prior's conditioner builds the same block with the dilations in order (`reverse_dilation=False`).
    """

    def __init__(self, in_width: int, down_t: int, stride_t: int, reverse_dilation: bool = True, **resnet):
        super().__init__()
        width = resnet["n_in"]
        steps = [
            nn.Sequential(
                Resnet1D(**resnet, reverse_dilation=reverse_dilation),
                nn.ConvTranspose1d(
                    width, in_width if i == down_t - 1 else width, 2 * stride_t, stride_t, stride_t // 2
                ),
            )
            for i in range(down_t)
        ]
        self.model = nn.Sequential(nn.Conv1d(in_width, width, 3, 1, 1), *steps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class Encoder(nn.Module):
    """The encoder of one level: the blocks of every level up to it, in order ([B, 1, T] -> [B, emb, T / hop])."""

    def __init__(self, emb_width: int, downs_t: list[int], strides_t: list[int], **resnet):
        super().__init__()
        self.level_blocks = nn.ModuleList(
            EncoderConvBlock(1 if level == 0 else emb_width, emb_width, down_t, stride_t, **resnet)
            for level, (down_t, stride_t) in enumerate(zip(downs_t, strides_t, strict=True))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.level_blocks:
            x = block(x)
        return x


class Decoder(nn.Module):
    """The decoder of one level: its blocks in reverse order, then Conv1d(emb -> 1, k3) (`out`)."""

    def __init__(self, emb_width: int, downs_t: list[int], strides_t: list[int], **resnet):
        super().__init__()
        self.level_blocks = nn.ModuleList(
            DecoderConvBlock(emb_width, down_t, stride_t, **resnet)
            for down_t, stride_t in zip(downs_t, strides_t, strict=True)
        )
        self.out = nn.Conv1d(emb_width, 1, 3, 1, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        for block in reversed(self.level_blocks):
            z = block(z)
        return self.out(z)


class Bottleneck(nn.Module):
    """One EMA codebook per level (the official `Bottleneck`, its `BottleneckBlock`s as `EMAVectorQuantizer`s)."""

    def __init__(self, levels: int, **quantizer):
        super().__init__()
        self.level_blocks = nn.ModuleList(
            EMAVectorQuantizer(**quantizer, seed=level) for level in range(levels)
        )

    def forward(self, zs: list[torch.Tensor]) -> list[Quantized]:
        return [quantize(z) for quantize, z in zip(self.level_blocks, zs, strict=True)]


@dataclass
class WaveVQVAEOutput:
    """What a training/evaluation pass returns; every list is indexed by level (0 = hop 8, 1 = hop 32)."""

    reconstructions: list[torch.Tensor]  # [B, T] float: each level's decoder applied to its own codes
    codes: list[torch.Tensor]  # [B, T / hop] int64
    commit_losses: list[torch.Tensor]  # scalars, already weighted by the quantiser's commitment weight
    perplexities: list[torch.Tensor]  # scalars: exp(entropy) of this batch's code histogram


class WaveVQVAE(nn.Module):
    """Multi-level waveform VQ-VAE; defaults are Im2Wav's `small_multi_level_vqvae` (448,770 parameters).

    Level l downsamples by prod_{j <= l} strides_t[j] ** downs_t[j] (8 and 32 by default). The codebooks are
    EMA k-means (decay `l_mu`) initialised from random encoder outputs of the first training batch, and a
    code whose EMA count falls below `restart_threshold` is replaced by a random encoder output at every
    training step (`shared.vq.EMAVectorQuantizer`); the commitment loss is `commit` x MSE, as the official
    `BottleneckBlock` computes it. Waveforms are [B, T] float32 in [-1, 1].
    """

    def __init__(
        self,
        downs_t: tuple[int, ...] = (3, 2),
        strides_t: tuple[int, ...] = (2, 2),
        emb_width: int = 128,
        l_bins: int = 2048,
        l_mu: float = 0.99,
        commit: float = 0.02,
        restart_threshold: float = 1.0,
        width: int = 32,
        depth: int = 4,
        m_conv: float = 1.0,
        dilation_growth_rate: int = 3,
        dilation_cycle: int | None = None,
    ):
        super().__init__()
        if len(downs_t) != len(strides_t):
            raise ValueError(f"downs_t {downs_t} and strides_t {strides_t} need one entry per level each")
        self.levels, self.l_bins = len(downs_t), l_bins
        hops, hop = [], 1
        for down_t, stride_t in zip(downs_t, strides_t, strict=True):
            hop *= stride_t**down_t
            hops.append(hop)
        self.hop_lengths = hops
        resnet = dict(
            n_in=width,
            n_depth=depth,
            m_conv=m_conv,
            dilation_growth_rate=dilation_growth_rate,
            dilation_cycle=dilation_cycle,
        )
        self.encoders = nn.ModuleList(
            Encoder(emb_width, downs_t[: level + 1], strides_t[: level + 1], **resnet)
            for level in range(self.levels)
        )
        self.decoders = nn.ModuleList(
            Decoder(emb_width, downs_t[: level + 1], strides_t[: level + 1], **resnet)
            for level in range(self.levels)
        )
        self.bottleneck = Bottleneck(
            self.levels,
            n_codes=l_bins,
            dim=emb_width,
            decay=l_mu,
            commitment_weight=commit,
            restart_threshold=restart_threshold,
        )

    def _check_wave(self, wav: torch.Tensor) -> torch.Tensor:
        if wav.dim() != 2:
            raise ValueError(f"expected a waveform batch [B, T], got shape {tuple(wav.shape)}")
        if wav.shape[1] % self.hop_lengths[-1]:
            raise ValueError(
                f"waveform length {wav.shape[1]} is not a multiple of the largest hop {self.hop_lengths[-1]}"
            )
        return wav.float().unsqueeze(1)

    def _encode_levels(self, wav: torch.Tensor) -> list[torch.Tensor]:
        x = self._check_wave(wav)
        return [encoder(x) for encoder in self.encoders]

    @torch.no_grad()
    def encode(self, wav: torch.Tensor) -> list[torch.Tensor]:
        """[B, T] -> codes of every level, level 0 first: [B, T / 8] and [B, T / 32] (int64 in [0, l_bins))."""
        codes = []
        for quantize, z in zip(self.bottleneck.level_blocks, self._encode_levels(wav), strict=True):
            rows = z.transpose(1, 2).reshape(-1, z.shape[1])
            codes.append(nearest_code(rows, quantize.codebook).view(z.shape[0], z.shape[2]))
        return codes

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, level: int = 0) -> torch.Tensor:
        """Codes [B, T / hop] of `level` (level 0 by default, as at generation) -> waveform [B, T]."""
        if codes.dim() != 2:
            raise ValueError(f"expected codes [B, L], got shape {tuple(codes.shape)}")
        z = self.bottleneck.level_blocks[level].lookup(codes)
        return self.decoders[level](z).squeeze(1)

    def forward(self, wav: torch.Tensor) -> WaveVQVAEOutput:
        """Encode, quantise (updating the codebooks in training mode) and decode every level."""
        quantized = self.bottleneck(self._encode_levels(wav))
        return WaveVQVAEOutput(
            reconstructions=[
                decoder(q.z_q).squeeze(1) for decoder, q in zip(self.decoders, quantized, strict=True)
            ],
            codes=[q.indices for q in quantized],
            commit_losses=[q.loss for q in quantized],
            perplexities=[q.perplexity for q in quantized],
        )
