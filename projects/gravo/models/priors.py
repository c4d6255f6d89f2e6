"""Im2Wav's two sparse-transformer priors (arXiv:2211.03089, sec. 2.2-2.3) with GRAVO's frame attention on Low.

`LowPrior` (Im2Wav's `small_labelled_prior`, level 1, 500 tokens/s) models the VQ-VAE's hop-32 codes of a
window: start token `clip_map` of the mean frame embedding, token i conditioned on `video_map` of its aligned
frame plus the time signal (`LowConditioner`). GRAVO (Ahn et al., Interspeech 2023, eq. 1) first passes the
frames through `FrameAttention` and conditions on its outputs f' instead (`frame_attention=True`).
Classifier-free guidance (eq. 7): the null branch uses the learned nulls, both branches sampled in one batched
forward over one KV cache (`SparseTransformerLM.sample` with `Guidance`), eta = 3 by default. The nulls
replace the mapped conditions (Im2Wav's placement, 1024-d, which keeps its checkpoints usable); GRAVO's paper
words it as a learned null f^theta in place of f'_m, before the mapping: a null after the mapping can take
any value that one would give.

`UpPrior` (Im2Wav's `small_upsampler`, level 0, 2000 tokens/s) models the hop-8 codes given the Low codes of
the same window (`Upsampler`: one condition vector per Up token) and `clip_map` of the mean of the original
CLIP frames as start token (GRAVO eq. 2: Up never sees the attention outputs); no time signal, no guidance.

At the paper's sizes (width 1024, depth 48, 1 head, attention width 256, MLP width 1024, init scale 0.7, block
32 / 128, n_ctx 2048 / 8192) Low has 157,344,768 parameters and Up 203,056,640 (the tied output counted once),
those of Im2Wav's `low.tar` and `up.tar`; GRAVO's Low adds the attention's 1,050,624.

Official checkpoint names (`RoySheffer/im2wav`, `models/prior/prior.py`, `SimplePrior`) -> ours: `prior.*` ->
`prior.*` (the transformer: see `shared.transformer.sparse`), `y_emb.{clip_map,video_map,null_CLIP,
null_video_CLIP}` -> `conditioner.*` on Low and `y_emb.clip_map` -> `clip_map` on Up,
`y_emb.{total_length,absolute_pos,relative_pos}_emb.emb` -> `conditioner.time_signal.*`,
`conditioner_blocks.0.*` -> `upsampler.*` (with the checkpointed `blocks` of its Resnet1D -> `model`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from projects.gravo.models.conditioning import (
    DEFAULT_TOTAL_LENGTH,
    ClipMap,
    LowConditioner,
    PriorCondition,
    Upsampler,
)
from projects.gravo.models.gravo import FrameAttention
from shared.transformer import Guidance, SparseTransformerLM, TokenSampling

Generators = torch.Generator | Sequence[torch.Generator] | None


def _per_example(value: float | torch.Tensor, batch: int, device: torch.device) -> torch.Tensor:
    """A scalar or [B] tensor of sample counts -> float32 [B] on `device`."""
    value = torch.as_tensor(value, dtype=torch.float32, device=device)
    return value.expand(batch) if value.dim() == 0 else value.to(torch.float32)


class LowPrior(nn.Module):
    """The Low prior over hop-`hop` codes of an `n_ctx`-token window, optionally with GRAVO's frame attention."""

    def __init__(
        self,
        n_codes: int = 2048,
        n_ctx: int = 2048,
        width: int = 1024,
        depth: int = 48,
        n_head: int = 1,
        attn_width: int = 256,
        mlp_width: int = 1024,
        block_ctx: int = 32,
        attn_order: int = 2,
        dropout: float = 0.0,
        init_scale: float = 0.7,
        hop: int = 32,
        n_time_bins: int = 64,
        frame_attention: bool = False,
        frame_attention_heads: int = 8,
        frame_attention_dropout: float = 0.1,
        frame_attention_residual: bool = False,
    ):
        super().__init__()
        self.n_ctx, self.hop = n_ctx, hop
        self.prior = SparseTransformerLM(
            n_codes,
            n_ctx,
            width,
            depth,
            n_head,
            attn_width,
            mlp_width,
            block_ctx,
            attn_order,
            dropout,
            init_scale,
        )
        self.conditioner = LowConditioner(width, n_time_bins, init_scale)
        self.frame_attention = (
            FrameAttention(
                n_head=frame_attention_heads,
                dropout=frame_attention_dropout,
                residual=frame_attention_residual,
            )
            if frame_attention
            else None
        )

    def attend(self, clip: torch.Tensor) -> torch.Tensor:
        """The frames the prior is conditioned on: f' = attention(f) with GRAVO, f itself with Im2Wav."""
        return clip if self.frame_attention is None else self.frame_attention(clip)

    def condition(
        self,
        frames: torch.Tensor,
        n_tokens: int,
        offset: float | torch.Tensor = 0.0,
        total_length: float | torch.Tensor = DEFAULT_TOTAL_LENGTH,
        null: bool = False,
        null_prob: float = 0.0,
    ) -> PriorCondition:
        """Start token and x_cond of `n_tokens` positions from the window's (attended) frames [B, F, 512];
        the window starts `offset` samples into a clip of `total_length` samples and spans hop x n_tokens."""
        batch, device = frames.shape[0], frames.device
        length = torch.full((batch,), float(self.hop * n_tokens), device=device)
        return self.conditioner(
            frames,
            n_tokens,
            _per_example(total_length, batch, device),
            _per_example(offset, batch, device),
            length,
            null=null,
            null_prob=null_prob,
        )

    def forward(
        self,
        codes: torch.Tensor,
        clip: torch.Tensor,
        offset: float | torch.Tensor = 0.0,
        total_length: float | torch.Tensor = DEFAULT_TOTAL_LENGTH,
        null_prob: float = 0.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced logits [B, L, n_codes] of codes [B, L] and the frames it was conditioned on (f' with
        the frame attention, for GRAVO's losses); `null_prob`: classifier-free guidance's training drop."""
        frames = self.attend(clip)
        condition = self.condition(frames, codes.shape[1], offset, total_length, null_prob=null_prob)
        return self.prior(codes, condition.start, condition.x_cond), frames

    def logits(self, codes_low: torch.Tensor, clip: torch.Tensor) -> torch.Tensor:
        """The conditional branch's teacher-forced logits [B, L, n_codes] for codes [B, L] and the window's CLIP
        frames [B, F, 512], with Im2Wav's inference time signal (total length 160,000, offset 0)."""
        return self(codes_low, clip)[0]

    @torch.no_grad()
    def sample(
        self,
        clip: torch.Tensor,
        sampling: TokenSampling = TokenSampling(),  # noqa: B008 (frozen dataclass)
        *,
        guidance_scale: float = 3.0,
        generators: Generators = None,
        prime: torch.Tensor | None = None,
        offset: float | torch.Tensor = 0.0,
        total_length: float | torch.Tensor = DEFAULT_TOTAL_LENGTH,
    ) -> torch.Tensor:
        """A window of n_ctx Low codes [B, n_ctx] for the window's CLIP frames [B, F, 512]: `prime` [B, P] (a
        sliding window's overlap) is kept and n_ctx - P codes follow it. Guidance (eq. 7): logits
        l_null + scale (l_cond - l_null), both branches in one batched forward; scale 1 is conditional only.
        Call it in eval mode."""
        n_prime = 0 if prime is None else prime.shape[1]
        frames = self.attend(clip)
        cond = self.condition(frames, self.n_ctx, offset, total_length)
        null = self.condition(frames, self.n_ctx, offset, total_length, null=True)
        tokens = self.prior.sample(
            cond.start,
            cond.x_cond,
            self.n_ctx - n_prime,
            sampling,
            prime=prime,
            guidance=Guidance(guidance_scale, null.start, null.x_cond),
            generators=generators,
        )
        return tokens if prime is None else torch.cat([prime, tokens], dim=1)


class UpPrior(nn.Module):
    """The Up prior over hop-8 codes of an `n_ctx`-token window, given the window's Low codes."""

    def __init__(
        self,
        n_codes: int = 2048,
        n_ctx: int = 8192,
        width: int = 1024,
        depth: int = 48,
        n_head: int = 1,
        attn_width: int = 256,
        mlp_width: int = 1024,
        block_ctx: int = 128,
        attn_order: int = 2,
        dropout: float = 0.0,
        init_scale: float = 0.7,
        cond_width: int = 512,
        cond_depth: int = 16,
        cond_dilation_growth_rate: int = 3,
        cond_dilation_cycle: int | None = 8,
        n_up: int = 2,
    ):
        super().__init__()
        self.n_ctx = n_ctx
        self.prior = SparseTransformerLM(
            n_codes,
            n_ctx,
            width,
            depth,
            n_head,
            attn_width,
            mlp_width,
            block_ctx,
            attn_order,
            dropout,
            init_scale,
        )
        self.clip_map = ClipMap(width)
        self.upsampler = Upsampler(
            n_codes,
            width,
            cond_width,
            n_up,
            cond_depth,
            cond_dilation_growth_rate,
            cond_dilation_cycle,
            init_scale,
        )

    def condition(self, codes_low: torch.Tensor, clip: torch.Tensor) -> PriorCondition:
        """Start token from the mean of the CLIP frames [B, F, 512]; x_cond [B, 4L, W] from the Low codes [B, L]."""
        return PriorCondition(start=self.clip_map(clip.mean(dim=1)), x_cond=self.upsampler(codes_low))

    def forward(self, codes_up: torch.Tensor, codes_low: torch.Tensor, clip: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits [B, 4L, n_codes] of the Up codes [B, 4L] given the Low codes [B, L] and the
        window's CLIP frames [B, F, 512] (only their mean enters)."""
        condition = self.condition(codes_low, clip)
        return self.prior(codes_up, condition.start, condition.x_cond)

    def logits(self, codes_up: torch.Tensor, codes_low: torch.Tensor, clip: torch.Tensor) -> torch.Tensor:
        return self(codes_up, codes_low, clip)

    @torch.no_grad()
    def sample(
        self,
        codes_low: torch.Tensor,
        clip: torch.Tensor,
        sampling: TokenSampling = TokenSampling(),  # noqa: B008 (frozen dataclass)
        *,
        generators: Generators = None,
        prime: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The Up codes [B, 4L] of a window from its Low codes [B, L] (4L = n_ctx) and CLIP frames [B, F, 512];
        `prime` [B, P] is kept and 4L - P codes follow it. Call it in eval mode."""
        condition = self.condition(codes_low, clip)
        n_positions = condition.x_cond.shape[1]
        if n_positions != self.n_ctx:
            raise ValueError(
                f"{codes_low.shape[1]} Low codes give {n_positions} Up positions, not n_ctx={self.n_ctx}"
            )
        n_prime = 0 if prime is None else prime.shape[1]
        tokens = self.prior.sample(
            condition.start,
            condition.x_cond,
            n_positions - n_prime,
            sampling,
            prime=prime,
            generators=generators,
        )
        return tokens if prime is None else torch.cat([prime, tokens], dim=1)
