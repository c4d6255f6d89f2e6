"""Codebook usage over a whole epoch or evaluation set, as a torchmetrics Metric (sums across processes)."""

from __future__ import annotations

import torch
from torchmetrics import Metric


class CodebookUsage(Metric):
    """Counts every chosen code; `compute()` gives the share of the codebook used and the perplexity.

    Per-batch perplexity understates usage on small batches; this accumulates over many batches.
    """

    full_state_update = False

    def __init__(self, n_codes: int, **kwargs):
        super().__init__(**kwargs)
        self.n_codes = n_codes
        self.add_state("counts", default=torch.zeros(n_codes, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, indices: torch.Tensor) -> None:
        self.counts += torch.bincount(indices.reshape(-1), minlength=self.n_codes).to(self.counts)

    def compute(self) -> dict[str, torch.Tensor]:
        probs = self.counts / self.counts.sum().clamp_min(1)
        entropy = -(probs * torch.log(probs.clamp_min(1e-12))).sum()
        return {"used_fraction": (self.counts > 0).float().mean(), "perplexity": entropy.exp().float()}
