"""GRAVO's additions to Im2Wav (Ahn et al., Interspeech 2023, sec. 2.2-2.3, eqs. 1 and 3-6; no official code).

`FrameAttention` is the multi-head self-attention over the CLIP frame embeddings f_1..f_M (1 layer, 8 heads,
dropout 0.1) whose outputs f'_m condition the Low prior (eq. 1). Whether a residual connection surrounds it is
not said in the paper: off by default (the plain attention output), `residual=True` adds f.

The auxiliary losses guide it with w, the frozen Wav2CLIP embedding of the target audio (training only):

- L_w = -sum_m cos(w, f'_m) (eq. 3): every attention output pulled towards the audio embedding.
- NS_m = z-normalised s_m = cos(w, f_m) along the frames of one example; the relevant frames are
  R = {m : NS_m > gamma max NS}; f~ is the mean of the f_m in R; the target f^_m is f_m for m in R, f~ otherwise
  (eq. 5); L_f = sum_m ||f^_m - f'_m||^2 (eq. 4). The targets carry no gradient.
- L_GRAVO = L_Low + lambda_w L_w + lambda_f L_f (eq. 6), lambda_w = 1e-4, lambda_f = 1000, gamma = 0.9.

Sums run over the frames of an example (as written in eqs. 3-4); the batch is averaged, as the cross-entropy.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from projects.gravo.models.conditioning import CLIP_DIM

EQUAL_SCORES = 1e-6


class FrameAttention(nn.Module):
    """Self-attention over the frame embeddings [B, M, 512] -> f' [B, M, 512] (`nn.MultiheadAttention`,
    1,050,624 parameters at 512 / 8 heads)."""

    def __init__(self, dim: int = CLIP_DIM, n_head: int = 8, dropout: float = 0.1, residual: bool = False):
        super().__init__()
        self.attention = nn.MultiheadAttention(dim, n_head, dropout=dropout, batch_first=True)
        self.residual = residual

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        out, _ = self.attention(frames, frames, frames, need_weights=False)
        return frames + out if self.residual else out


def normalized_scores(w: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """NS (sec. 2.3): cos(w, f_m) z-normalised along the frames of each example; w [B, D], frames [B, M, D]
    -> [B, M]. Population std (ddof 0). An example whose scores are all equal (one frame, or a still image
    repeated) gets NS = 0 everywhere instead of 0 / 0; "equal" allows a spread of `EQUAL_SCORES` (cosines lie
    in [-1, 1]), since the mean of identical float32 scores can differ from them by round-off."""
    s = F.cosine_similarity(frames, w[:, None], dim=-1)
    centred = s - s.mean(dim=1, keepdim=True)
    std = s.std(dim=1, correction=0, keepdim=True)
    spread = std > EQUAL_SCORES
    return torch.where(spread, centred / std.clamp_min(EQUAL_SCORES), torch.zeros_like(centred))


def relevant_frames(scores: torch.Tensor, gamma: float = 0.9) -> torch.Tensor:
    """R as a mask [B, M]: NS_m > gamma max_m NS (eq. 5). All frames where every score is equal (the paper
    does not say; there no frame is more relevant than another, and the target is then f itself)."""
    top = scores.max(dim=1, keepdim=True).values
    return (scores > gamma * top) | (top <= 0)


def frame_targets(w: torch.Tensor, frames: torch.Tensor, gamma: float = 0.9) -> torch.Tensor:
    """f^ (eq. 5) [B, M, D]: f_m on the relevant frames, their mean f~ elsewhere; no gradient."""
    with torch.no_grad():
        relevant = relevant_frames(normalized_scores(w, frames), gamma)
        weights = relevant.to(frames.dtype)[..., None]
        mean_relevant = (frames * weights).sum(dim=1, keepdim=True) / weights.sum(dim=1, keepdim=True)
        return torch.where(relevant[..., None], frames, mean_relevant)


def audio_alignment_loss(w: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
    """L_w (eq. 3) = -sum_m cos(w, f'_m), averaged over the batch; w [B, D], attended f' [B, M, D]."""
    return -F.cosine_similarity(attended, w[:, None], dim=-1).sum(dim=1).mean()


def frame_regulariser_loss(targets: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
    """L_f (eq. 4) = sum_m ||f^_m - f'_m||^2, averaged over the batch; targets f^, attended f' [B, M, D]."""
    return (targets - attended).square().sum(dim=(1, 2)).mean()


@dataclass(frozen=True)
class GravoLossWeights:
    """Eq. 6's weights and eq. 5's threshold; lambda 0 switches a loss off (Table 2's ablations)."""

    lambda_w: float = 1e-4
    lambda_f: float = 1000.0
    gamma: float = 0.9


def auxiliary_losses(
    w: torch.Tensor, frames: torch.Tensor, attended: torch.Tensor, weights: GravoLossWeights
) -> dict[str, torch.Tensor]:
    """The terms of eq. 6 after L_Low: {"loss_w", "loss_f", "aux"} with aux = lambda_w L_w + lambda_f L_f.

    w [B, D] the target audio's Wav2CLIP embedding, frames f [B, M, D] the CLIP frames, attended f' [B, M, D].
    """
    loss_w = audio_alignment_loss(w, attended)
    loss_f = frame_regulariser_loss(frame_targets(w, frames, weights.gamma), attended)
    return {"loss_w": loss_w, "loss_f": loss_f, "aux": weights.lambda_w * loss_w + weights.lambda_f * loss_f}


def target_clip_score(w: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
    """tCS (sec. 3.3, Table 2): 100 cos(w, mean_m f'_m) per example [B], between the target audio's Wav2CLIP
    embedding w [B, D] and the mean of the attention outputs f' [B, M, D]."""
    return 100 * F.cosine_similarity(attended.mean(dim=1), w, dim=-1)
