"""Contrastive alignment of two embedding spaces: CLIP's symmetric InfoNCE loss with a learnable temperature,
and cross-modal retrieval recall (of the paired row, or of any row of the same class) to see what it learned.

The loss is CLIP's (Radford et al., arXiv:2103.00020, fig. 3): both batches L2-normalised, logits =
exp(logit_scale) x cosine similarity, cross-entropy of every row against its own column and of every column
against its own row, averaged. As Wav2CLIP trains it (arXiv:2110.11499; `descriptinc/lyrebird-wav2clip`,
`wav2clip/pre_training/loss.py`, `CLIPLoss1D`): `logit_scale` starts at log(1 / 0.07) and is learned without
CLIP's clamp. WavBriVL (arXiv:2303.04585) trains its audio tower against a frozen image tower the same way.
Written here because torch and torchmetrics have no InfoNCE loss with CLIP's learnable temperature.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every row of a [N, D] with every row of b [M, D] -> [N, M]."""
    return F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T


class SymmetricInfoNCE(nn.Module):
    """`forward(a [B, D], b [B, D]) -> loss`: row i of `a` and row i of `b` are the positive pair."""

    def __init__(self, temperature: float = 0.07, learnable: bool = True):
        super().__init__()
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / temperature)), requires_grad=learnable)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if a.shape != b.shape or a.dim() != 2:
            raise ValueError(
                f"expected two [B, D] batches of pairs, got {tuple(a.shape)} and {tuple(b.shape)}"
            )
        logits = self.logit_scale.exp() * similarity(a, b)
        targets = torch.arange(len(a), device=a.device)
        return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def retrieval_recall(queries: torch.Tensor, keys: torch.Tensor, k: int = 1) -> torch.Tensor:
    """Recall@k of cross-modal retrieval: the share of queries [N, D] whose own key (same row of keys [N, D])
    is among the k most cosine-similar keys; chance is k / N."""
    sims = similarity(queries, keys)
    own = sims.diagonal()
    rank = (sims > own[:, None]).sum(dim=1)  # keys strictly more similar than the query's own key
    return (rank < k).float().mean()


def class_retrieval(
    queries: torch.Tensor, keys: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(share of queries [N, D] whose most cosine-similar key [N, D] has the query's label, its chance level
    sum_c (n_c / N)^2: the same share for a key drawn at random)."""
    nearest = similarity(queries, keys).argmax(dim=1)
    counts = torch.bincount(labels).double()
    return (labels[nearest] == labels).float().mean(), ((counts / len(labels)) ** 2).sum()
