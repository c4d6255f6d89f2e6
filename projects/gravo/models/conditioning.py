"""The conditions of Im2Wav's two priors (arXiv:2211.03089, sec. 2.2-2.3), as GRAVO keeps them (eqs. 1-2).

Low prior (level 1, 500 tokens/s), `LowConditioner`: the start token is `clip_map` of the mean CLIP frame
embedding; token i adds `video_map` of frame `token_to_frame(L, F)[i]` and the time signal (three learned range
embeddings: the clip's total length, the token's absolute position and its position relative to the total
length). Classifier-free guidance replaces both mapped conditions of an example by learned nulls (`null_CLIP`,
`null_video_CLIP`) after the mapping, the time signal kept.

Up prior (level 0, 2000 tokens/s): the start token is `clip_map` of the mean CLIP frame embedding (no time
signal, no per-frame path, no null), and `Upsampler` turns the Low codes into one condition vector per Up token.

Layout, sizes and initialisation follow `RoySheffer/im2wav`, `models/prior/conditioners.py` (`MLPLayers`,
`RangeEmbedding`, `LabelConditioner`, `Conditioner`) and `models/vqvae/encdec.py` (`DecoderConvBock`), with the
official sub-module names, so the checkpoint keys map by a prefix (`y_emb.` -> `conditioner.` and
`conditioner_blocks.0.` -> `upsampler.`; see `projects.gravo.models.priors`). Written here because no library
has these pieces.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from projects.gravo.models.vqvae import DecoderConvBlock
from shared.guidance import drop_condition

SAMPLE_RATE = 16_000
CLIP_DIM = 512
# Im2Wav's inference-time total length (`models/hparams.py`, VIDEO_TOTAL_LENGTHS): a 10-s VGGSound clip
DEFAULT_TOTAL_LENGTH = 160_000


class ClipMap(nn.Module):
    """MLP 512 -> 512 -> out (Linear, ReLU, Dropout 0.1, Linear): the official `MLPLayers([512, 512, out])`."""

    def __init__(
        self, out_width: int, in_width: int = CLIP_DIM, hidden: int = CLIP_DIM, dropout: float = 0.1
    ):
        super().__init__()
        self.sequential = nn.Sequential(
            nn.Linear(in_width, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, out_width)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sequential(x)


def token_to_frame(n_tokens: int, n_frames: int) -> torch.Tensor:
    """Frame index of each token [n_tokens]: round(linspace(0, 1, n_tokens) * (n_frames - 1)).

    Im2Wav's map (`models/prior/prior.py`, `get_x_cond`), computed with numpy as there: its float64 linspace and
    round-half-to-even give the same indices bit for bit (2048 tokens over the 123 frames of 4.096 s at 30 fps).
    """
    return torch.from_numpy(np.round(np.linspace(0, 1, num=n_tokens) * (n_frames - 1)).astype(np.int64))


class RangeEmbedding(nn.Module):
    """A learned embedding of a scalar binned over [low, high): bin = floor(n_bins (x - low) / (high - low)).

    As the official `RangeEmbedding`, except that values outside the range fall into the end bins instead of
    failing an assertion: the toy clips (1.6-2 s) are shorter than Im2Wav's lower bound of 2.05 s.
    """

    def __init__(self, n_bins: int, low: float, high: float, width: int, init_std: float):
        super().__init__()
        self.n_bins, self.low, self.high = n_bins, low, high
        self.emb = nn.Embedding(n_bins, width)
        nn.init.normal_(self.emb.weight, std=init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x float32 [...] -> [..., width]."""
        normalised = (x - self.low) / (self.high - self.low)
        bins = (self.n_bins * normalised).floor().long().clamp(0, self.n_bins - 1)
        return self.emb(bins)


class TimeSignal(nn.Module):
    """Im2Wav's time signal (`LabelConditioner` with `include_time_signal`): the sum of three range embeddings.

    Total length over [2.05 s, 600 s); token i's absolute position offset + length * i / n over [0, 600 s); its
    relative position (offset + length * i / n) / total_length over [0, 1] (the window's end clamped to the
    total length). With length = 32 n this is (offset + 32 i) / total_length: the token's sample over the clip,
    not i / (n - 1) over the window. Positions are computed in float32 in the official order of operations,
    so the bins agree with the official code.
    """

    def __init__(
        self,
        width: int,
        n_bins: int = 64,
        min_duration: float = 2.05,
        max_duration: float = 600.0,
        sample_rate: int = SAMPLE_RATE,
        init_scale: float = 1.0,
    ):
        super().__init__()
        std = 0.01 * init_scale
        max_samples = max_duration * sample_rate
        self.total_length_emb = RangeEmbedding(n_bins, min_duration * sample_rate, max_samples, width, std)
        self.absolute_pos_emb = RangeEmbedding(n_bins, 0.0, max_samples, width, std)
        self.relative_pos_emb = RangeEmbedding(n_bins, 0.0, 1.0, width, std)

    def forward(
        self, total_length: torch.Tensor, offset: torch.Tensor, length: torch.Tensor, n_tokens: int
    ) -> torch.Tensor:
        """total_length, offset, length [B] in samples -> [B, n_tokens, width]."""
        total_length, start = total_length.float()[:, None], offset.float()[:, None]
        end = start + length.float()[:, None]
        fraction = torch.arange(n_tokens, dtype=torch.float32, device=start.device)[None] / n_tokens
        absolute = start + (end - start) * fraction
        relative_start, relative_end = start / total_length, (end / total_length).clamp(0.0, 1.0)
        relative = relative_start + (relative_end - relative_start) * fraction
        return (
            self.total_length_emb(total_length)
            + self.absolute_pos_emb(absolute)
            + self.relative_pos_emb(relative)
        )


@dataclass
class PriorCondition:
    """What a sparse transformer prior is conditioned on: its start token [B, W] and x_cond [B, T, W]."""

    start: torch.Tensor
    x_cond: torch.Tensor


class LowConditioner(nn.Module):
    """The Low prior's conditions from per-frame embeddings [B, F, 512] (Im2Wav's `LabelConditioner` with
    `clip_emb`, `video_clip_emb` and the time signal; GRAVO eq. 1 feeds it the frame attention's outputs)."""

    def __init__(self, width: int, n_time_bins: int = 64, init_scale: float = 1.0, dropout: float = 0.1):
        super().__init__()
        self.clip_map = ClipMap(width, dropout=dropout)
        self.video_map = ClipMap(width, dropout=dropout)
        # official names (checkpoint keys); init N(0, 0.01 * init_scale) as there
        self.null_CLIP = nn.Parameter(torch.randn(width) * (0.01 * init_scale))
        self.null_video_CLIP = nn.Parameter(torch.randn(width) * (0.01 * init_scale))
        self.time_signal = TimeSignal(width, n_bins=n_time_bins, init_scale=init_scale)

    def forward(
        self,
        frames: torch.Tensor,
        n_tokens: int,
        total_length: torch.Tensor,
        offset: torch.Tensor,
        length: torch.Tensor,
        null: bool = False,
        null_prob: float = 0.0,
    ) -> PriorCondition:
        """frames [B, F, 512]; total_length, offset, length [B] in samples.

        `null`: every example gets the nulls (the unconditional branch of guidance); `null_prob`: each example
        independently, with that probability (classifier-free guidance training, p = 0.5 in Im2Wav and GRAVO).
        """
        batch, n_frames = frames.shape[:2]
        if null:
            start = self.null_CLIP.expand(batch, -1)
            per_frame = self.null_video_CLIP.expand(batch, n_frames, -1)
        else:
            start, per_frame = self.clip_map(frames.mean(dim=1)), self.video_map(frames)
        if null_prob > 0 and not null:
            # start token and frames as one [B, 1 + F, W] tensor, so that both are dropped for the same examples
            nulls = torch.cat([self.null_CLIP[None], self.null_video_CLIP[None].expand(n_frames, -1)])
            mapped = drop_condition(torch.cat([start[:, None], per_frame], dim=1), null_prob, null=nulls)
            start, per_frame = mapped[:, 0], mapped[:, 1:]
        index = token_to_frame(n_tokens, n_frames).to(frames.device)
        x_cond = per_frame[:, index] + self.time_signal(total_length, offset, length, n_tokens)
        return PriorCondition(start=start, x_cond=x_cond)


class Upsampler(nn.Module):
    """The Up prior's x_cond from the Low codes (Im2Wav's `Conditioner`): Embedding(n_codes, width) ->
    Conv1d(width -> hidden, k3) -> n_up x [Resnet1D -> ConvTranspose1d(k4, s2, p1)] (the last back to width) ->
    LayerNorm; codes [B, L] -> [B, 2^n_up L, width].

    Im2Wav's `small_upsampler`: width 1024, hidden 512, 2 upsamplings, Resnet1D depth 16 with dilations 3^(d mod 8)
    in the official (not reversed) order, no residual scaling; the embedding is initialised N(0, 0.02 init_scale).
    """

    def __init__(
        self,
        n_codes: int,
        width: int,
        hidden: int = 512,
        n_up: int = 2,
        depth: int = 16,
        dilation_growth_rate: int = 3,
        dilation_cycle: int | None = 8,
        init_scale: float = 1.0,
    ):
        super().__init__()
        self.factor = 2**n_up
        self.x_emb = nn.Embedding(n_codes, width)
        nn.init.normal_(self.x_emb.weight, std=0.02 * init_scale)
        # the official `DecoderConvBock` with stride 2, dilations in order (`model.0`, `model.{1..n_up}.{0,1}`)
        self.cond = DecoderConvBlock(
            width,
            n_up,
            stride_t=2,
            reverse_dilation=False,
            n_in=hidden,
            n_depth=depth,
            dilation_growth_rate=dilation_growth_rate,
            dilation_cycle=dilation_cycle,
        )
        self.ln = nn.LayerNorm(width)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        x = self.cond(self.x_emb(codes).transpose(1, 2))
        return self.ln(x.transpose(1, 2))
