"""MKL: the mean KL divergence between the class distributions of each generated clip and its real clip.

SpecVQGAN paper sec. 3.4 ("Relevance") and 6.1.7; reference card sec. 8 for what the official evaluation
computes: Melception `'logits'` (with the fc bias) of every fake and of its real clip, softmax, then
KL(p_real || p_fake) = sum_c p_real,c (log p_real,c - log(p_fake,c + 1e-6)) in natural log (the 1e-6 goes
to p_fake only; 0 log 0 = 0), averaged over all (fake, real) pairs - so a clip with 10 samples counts 10
times. Fakes are paired with reals by clip key (the official key is the file stem without `_mel` and
`_sample_*`), and reals and fakes may arrive in different `update` calls, batches or processes.

Written here because torchmetrics' `KLDivergence` averages over rows given side by side and cannot pair
rows by key. Keys are strings, which torchmetrics cannot gather across processes, so each key is turned
into a stable 64-bit hash (`clip_key_ids`); logits and ids are "cat" states, so the value under DDP equals
the one-process value.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat


def clip_key_ids(keys: Sequence[str] | torch.Tensor) -> torch.Tensor:
    """Clip keys -> int64 ids (blake2b, 8 bytes): equal keys give equal ids in every process and run."""
    if isinstance(keys, torch.Tensor):
        return keys.long().reshape(-1)
    if isinstance(keys, str):
        raise TypeError("expected a sequence of clip keys, got one string")
    return torch.tensor(
        [
            int.from_bytes(hashlib.blake2b(str(k).encode(), digest_size=8).digest(), "little", signed=True)
            for k in keys
        ],
        dtype=torch.long,
    )


def kl_divergence(p_real: torch.Tensor, p_fake: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Row-wise KL(p_real || p_fake + eps), natural log; [N, C] probabilities -> [N]."""
    return (torch.xlogy(p_real, p_real) - p_real * torch.log(p_fake + eps)).sum(dim=1)


def _cat(state: list | torch.Tensor) -> torch.Tensor | None:
    """A "cat" state as one tensor (a list before sync, a tensor after), None when it holds nothing."""
    if isinstance(state, list) and not state:
        return None
    out = dim_zero_cat(state)
    return out if out.numel() else None


class MeanKLDivergence(Metric):
    """`update(logits [N, C], keys, real=bool)`; `compute()` -> mean over fakes of KL(p_real || p_fake)."""

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, eps: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        self.eps = eps
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

    def compute(self) -> torch.Tensor:
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
        return kl_divergence(p_real, fake_logits.softmax(dim=1), self.eps).mean()
