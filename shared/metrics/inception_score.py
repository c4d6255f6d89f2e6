"""Inception Score on Melception logits, as SpecVQGAN's official evaluation computes it.

Salimans et al. 2016, as used in SpecVQGAN paper sec. 3.4; reference card sec. 8 for the official
evaluation's choices (it follows torch-fidelity): Melception `'logits_unbiased'` (pooled features @ W^T,
without the fc bias) in float64; the rows are permuted with `np.random.RandomState(2020).permutation(N)`
and cut into 10 splits at rows i N // 10; per split exp(mean_x KL(p(y|x) || p(y))) with p(y) the split's
mean distribution; the result is the mean of the split scores and their population standard deviation.

Written here rather than reusing torchmetrics' `InceptionScore`: that metric shuffles with `torch.randperm`
(a different permutation per call and per generator state), splits with `torch.chunk` (other boundaries)
and reports the sample standard deviation, so it cannot give the official number for the same logits. It
also insists on running its own feature extractor per update, where the evaluation shares one Melception
pass between FID, MKL and IS. The logits are a "cat" state; the permutation acts on the rows in the order
they were given (processes in rank order), so a sharded evaluation whose shards are contiguous in dataset
order (`ShardedEvalSampler`) gives the one-process value.
"""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat


def inception_score(
    logits: torch.Tensor, splits: int = 10, seed: int | None = 2020
) -> tuple[torch.Tensor, torch.Tensor]:
    """[N, C] logits -> (mean, std) of the per-split scores, float64. `seed=None` keeps the row order."""
    n = logits.shape[0]
    if n < splits:
        raise ValueError(f"Inception Score with {splits} splits needs at least {splits} rows, got {n}")
    logits = logits.double()
    if seed is not None:
        logits = logits[torch.from_numpy(np.random.RandomState(seed).permutation(n)).to(logits.device)]
    log_p = logits.log_softmax(dim=1)
    scores = []
    for i in range(splits):
        part = log_p[i * n // splits : (i + 1) * n // splits]
        log_marginal = part.exp().mean(dim=0, keepdim=True).log()
        scores.append((part.exp() * (part - log_marginal)).sum(dim=1).mean().exp())
    scores = torch.stack(scores)
    return scores.mean(), scores.std(correction=0)


class InceptionScore(Metric):
    """`update(logits_unbiased [N, C])`; `compute()` -> (mean, std), float64."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, splits: int = 10, seed: int | None = 2020, **kwargs):
        super().__init__(**kwargs)
        self.splits, self.seed = splits, seed
        self.add_state("logits", default=[], dist_reduce_fx="cat")

    def update(self, logits: torch.Tensor) -> None:
        if logits.dim() != 2:
            raise ValueError(f"expected logits [N, C], got {tuple(logits.shape)}")
        self.logits.append(logits.detach().double())

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(self.logits, list) and not self.logits:
            raise RuntimeError("Inception Score: update() was never called")
        return inception_score(dim_zero_cat(self.logits), self.splits, self.seed)
