"""MKL: the mean KL divergence between the class distributions of each generated clip and its real clip.

SpecVQGAN (arXiv:2110.08791) sec. 3.4 ("Relevance") and sec. 4 ("Metrics"; MKL averaged across the dataset).
The official code, `v-iashin/SpecVQGAN` `evaluation/metrics/kl.py` (`calculate_kl`, with
`kl_cfg.feat_layer_name: 'logits'`): Melception `'logits'` (with the fc bias) of every fake and of its real
clip, softmax, then KL(p_real || p_fake) = sum_c p_real,c (log p_real,c - log(p_fake,c + 1e-6)) in natural
log (`kl_div((p_fake + 1e-6).log(), p_real, reduction='sum') / N`: the 1e-6 goes to p_fake only; 0 log 0 =
0), averaged over all (fake, real) pairs - so a clip with 10 samples counts 10 times. Fakes are paired with
reals by clip key (the official key, `path_to_sharedkey`, is the file stem without `_mel` and `_sample_*`),
and reals and fakes may arrive in different `update` calls, batches or processes.

Written here because torchmetrics' `KLDivergence` averages over rows given side by side and cannot pair
rows by key. Keys become stable 64-bit ids (`clip_key_ids`) that torchmetrics can gather; logits and ids
are "cat" states, so the value under DDP equals the one-process value. With a `Bootstrap`, `intervals()`
resamples clips (`shared.metrics.bootstrap`): a drawn clip brings all its (fake, real) pairs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from shared.metrics.bootstrap import Bootstrap, ClipResampling, clip_indices, clip_key_ids, mean_statistic


def kl_divergence(p_real: torch.Tensor, p_fake: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Row-wise KL(p_real || p_fake + eps), natural log; [N, C] probabilities -> [N]."""
    return (torch.xlogy(p_real, p_real) - p_real * torch.log(p_fake + eps)).sum(dim=1)


def _cat(state: list | torch.Tensor) -> torch.Tensor | None:
    """A "cat" state as one tensor (a list before sync, a tensor after), None when it holds nothing."""
    if isinstance(state, list) and not state:
        return None
    out = dim_zero_cat(state)
    return out if out.numel() else None


class MeanKLDivergence(ClipResampling, Metric):
    """`update(logits [N, C], keys, real=bool)`; `compute()` -> mean over fakes of KL(p_real || p_fake);
    with `bootstrap`, `intervals()` -> {"mkl": (low, high)}."""

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, eps: float = 1e-6, bootstrap: Bootstrap | None = None, **kwargs):
        super().__init__(**kwargs)
        self.eps, self.bootstrap = eps, bootstrap
        for kind in ("real", "fake"):
            self.add_state(f"{kind}_logits", default=[], dist_reduce_fx="cat")
            self.add_state(f"{kind}_ids", default=[], dist_reduce_fx="cat")

    def update(self, logits: torch.Tensor, keys: Sequence[str] | torch.Tensor, real: bool) -> None:
        ids = clip_key_ids(keys).to(logits.device)
        if logits.dim() != 2 or len(ids) != len(logits):
            raise ValueError(
                f"expected logits [N, C] and N keys, got {tuple(logits.shape)} and {len(ids)} keys"
            )
        kind = "real" if real else "fake"
        getattr(self, f"{kind}_logits").append(logits.detach().double())
        getattr(self, f"{kind}_ids").append(ids)

    def _pairs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(KL of every fake against its real clip [N_fake], the fakes' clip ids [N_fake])."""
        real_ids, fake_ids = _cat(self.real_ids), _cat(self.fake_ids)
        if real_ids is None or fake_ids is None:
            raise RuntimeError("MKL needs real and fake logits; update() was not given both")
        real_logits, fake_logits = _cat(self.real_logits), _cat(self.fake_logits)
        order = torch.argsort(real_ids)
        sorted_ids = real_ids[order]
        if len(sorted_ids) > 1 and bool((sorted_ids[1:] == sorted_ids[:-1]).any()):
            raise ValueError("a real clip was given more than once; give each real clip once")
        pos = torch.searchsorted(sorted_ids, fake_ids).clamp(max=len(sorted_ids) - 1)
        found = sorted_ids[pos] == fake_ids
        if not bool(found.all()):
            raise ValueError(
                f"{int((~found).sum())} of {len(fake_ids)} fakes have no real clip with their key"
            )
        p_real = real_logits[order[pos]].softmax(dim=1)
        return kl_divergence(p_real, fake_logits.softmax(dim=1), self.eps), fake_ids

    def compute(self) -> torch.Tensor:
        return self._pairs()[0].mean()

    def clip_statistics(self) -> tuple[int, dict]:
        kl, fake_ids = self._pairs()
        n_clips, (clips,) = clip_indices(fake_ids)
        return n_clips, {"mkl": mean_statistic(kl, clips, n_clips)}
