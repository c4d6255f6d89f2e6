"""Inception Score on Melception logits, as SpecVQGAN's official evaluation computes it.

Salimans et al. 2016 (arXiv:1606.03498), sec. 4: exp(E_x KL(p(y|x) || p(y))), used by SpecVQGAN
(arXiv:2110.08791) sec. 3.4 on Melception. The official code, `v-iashin/SpecVQGAN` `evaluation/metrics/isc.py`
(`calculate_isc`, which follows torch-fidelity) with `isc_cfg` of `evaluation/configs/eval_melception_vggsound.yaml`
(`feat_layer_name: 'logits_unbiased'`, `splits: 10`, `samples_shuffle: True`, `rng_seed: 2020`): Melception
`'logits_unbiased'` (pooled features @ W^T, without the fc bias) in float64; the rows are permuted with
`np.random.RandomState(2020).permutation(N)` and cut into 10 splits at rows i N // 10; per split
exp(mean_x KL(p(y|x) || p(y))) with p(y) the split's mean distribution; the result is the mean of the split
scores and their population standard deviation (`np.std`).

Written here rather than reusing torchmetrics' `InceptionScore`: that metric shuffles with `torch.randperm`
(a different permutation per call and per generator state), splits with `torch.chunk` (other boundaries)
and reports the sample standard deviation, so it cannot give the official number for the same logits. It
also insists on running its own feature extractor per update, where the evaluation shares one Melception
pass between FID, MKL and IS. The logits are a "cat" state; the permutation acts on the rows in the order
they were given (processes in rank order), so a sharded evaluation whose shards are contiguous in dataset
order (`ShardedEvalSampler`) gives the one-process value.

With a `Bootstrap` (and the clip id of every row), `intervals()` resamples clips (`shared.metrics.bootstrap`)
as row weights: each split keeps its rows, weighted by how often their clip was drawn, and its score is the
weighted form of the same formula (p(y) the weighted mean, the KL averaged with the weights), all splits and
resamples in a few matrix products. All-ones weights give the official score.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from shared.metrics.bootstrap import Bootstrap, ClipResampling, clip_indices, clip_key_ids


def inception_score(
    logits: torch.Tensor, splits: int = 10, seed: int | None = 2020
) -> tuple[torch.Tensor, torch.Tensor]:
    """[N, C] logits -> (mean, std) of the per-split scores, float64. `seed=None` keeps the row order."""
    n = logits.shape[0]
    if n < splits:
        raise ValueError(f"Inception Score with {splits} splits needs at least {splits} rows, got {n}")
    log_p = logits.double()[_official_order(n, seed, logits.device)].log_softmax(dim=1)
    scores = []
    for i in range(splits):
        part = log_p[i * n // splits : (i + 1) * n // splits]
        log_marginal = part.exp().mean(dim=0, keepdim=True).log()
        scores.append((part.exp() * (part - log_marginal)).sum(dim=1).mean().exp())
    scores = torch.stack(scores)
    return scores.mean(), scores.std(correction=0)


def _official_order(n: int, seed: int | None, device: torch.device) -> torch.Tensor:
    """The official row order: `RandomState(seed).permutation(n)`, or as given for `seed=None`."""
    if seed is None:
        return torch.arange(n, device=device)
    return torch.from_numpy(np.random.RandomState(seed).permutation(n)).to(device)


class InceptionScore(ClipResampling, Metric):
    """`update(logits_unbiased [N, C], ids=None)`; `compute()` -> (mean, std), float64; with `bootstrap`,
    `intervals()` -> {"is": (low, high)} of the mean (then give each row's clip id)."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self, splits: int = 10, seed: int | None = 2020, bootstrap: Bootstrap | None = None, **kwargs
    ):
        super().__init__(**kwargs)
        self.splits, self.seed, self.bootstrap = splits, seed, bootstrap
        self.add_state("logits", default=[], dist_reduce_fx="cat")
        self.add_state("ids", default=[], dist_reduce_fx="cat")

    def update(self, logits: torch.Tensor, ids: Sequence[str] | torch.Tensor | None = None) -> None:
        if logits.dim() != 2:
            raise ValueError(f"expected logits [N, C], got {tuple(logits.shape)}")
        self.logits.append(logits.detach().double())
        if self.bootstrap is not None:
            if ids is None or len(ids) != len(logits):
                raise ValueError("IS with a bootstrap needs the clip id of every row (ids=...)")
            self.ids.append(clip_key_ids(ids).to(logits.device))

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(self.logits, list) and not self.logits:
            raise RuntimeError("Inception Score: update() was never called")
        return inception_score(dim_zero_cat(self.logits), self.splits, self.seed)

    def clip_statistics(self) -> tuple[int, dict]:
        logits = dim_zero_cat(self.logits)
        n = len(logits)
        if n < self.splits:
            raise ValueError(f"Inception Score with {self.splits} splits needs at least {self.splits} rows")
        order = _official_order(n, self.seed, logits.device)
        log_p = logits[order].log_softmax(dim=1)
        p = log_p.exp()
        n_clips, (clips,) = clip_indices(dim_zero_cat(self.ids)[order])
        bounds = [i * n // self.splits for i in range(self.splits + 1)]
        parts = [slice(a, b) for a, b in itertools.pairwise(bounds)]
        neg_entropy = (p * log_p).sum(1)  # sum_y p(y|x) log p(y|x), per row

        def inception(counts: torch.Tensor) -> torch.Tensor:
            weights = counts.to(p.device, torch.float64)[:, clips]  # [B, N]
            scores = []
            for part in parts:
                w = weights[:, part]
                total = w.sum(1, keepdim=True)
                marginal = w @ p[part] / total  # [B, C]: the split's weighted p(y)
                # weighted mean over rows of sum_y p(y|x) (log p(y|x) - log p(y))
                kl = (w @ neg_entropy[part] - torch.xlogy(w @ p[part], marginal).sum(1)) / total[:, 0]
                scores.append(kl.exp())
            return torch.stack(scores, 1).nanmean(1)  # a split none of whose clips was drawn has no score

        return n_clips, {"is": inception}
