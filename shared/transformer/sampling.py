"""Choosing the next token from logits: temperature, top-k, top-p, then a draw.

`TokenSampling` holds the three settings every autoregressive sampler of the repo shares. `top_k` keeps
every logit at least as large as the k-th largest, so ties at the boundary can keep more than k, as
taming-transformers and SpecVQGAN do (`v-iashin/SpecVQGAN`, `specvqgan/models/cond_transformer.py`,
`top_k_logits`); samples then follow the official sampler's distribution exactly.

A draw is an inverse-CDF lookup of one uniform number per row (`draw`), not `torch.multinomial`: the
uniform numbers can then come from a separate random stream per generated item (`item_generators`), so an
item's tokens depend only on its own seed, not on which other items share the batch, how the batch is cut
into chunks or how many processes share the work. The distribution is the same as multinomial's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TokenSampling:
    """Temperature, top-k and top-p (nucleus) of one autoregressive step; None switches a filter off."""

    top_k: int | None = None
    top_p: float | None = None
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1 or None, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1] or None, got {self.top_p}")

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits [..., V] -> float32 probabilities [..., V], zero outside the top-k / nucleus."""
        return filter_logits(logits.float() / self.temperature, self.top_k, self.top_p).softmax(-1)

    def next_token(self, logits: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
        """Logits [B, V] of the next position and one U(0, 1) number per row [B] -> token ids [B]."""
        return draw(self.probabilities(logits), uniform)


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Set the logits outside the top-k / nucleus to -inf; [..., V] -> [..., V]."""
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop_sorted = cumulative - sorted_logits.softmax(-1) > top_p  # keep the token that crosses top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def draw(probs: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """Probabilities [B, V] (any positive scale) and uniform numbers in [0, 1) [B] -> token ids [B].

    Token j is chosen when cdf[j - 1] <= u * cdf[V - 1] < cdf[j], so a token of probability zero is never
    chosen. The cumulative sum is float64: u * total then stays below the total for every u < 1.
    """
    cdf = probs.double().cumsum(-1)
    target = uniform.to(cdf).unsqueeze(-1) * cdf[:, -1:]
    return torch.searchsorted(cdf, target, right=True).squeeze(-1)


def uniforms(
    generator: torch.Generator | Sequence[torch.Generator] | None, batch: int, n: int, device: torch.device
) -> torch.Tensor:
    """[batch, n] uniform numbers for n steps: from one generator (row after row), from one generator per
    row (`item_generators`: each row its own stream), or from torch's global generator (None)."""
    if generator is None or isinstance(generator, torch.Generator):
        gen_device = generator.device if generator is not None else device
        return torch.rand(batch, n, generator=generator, device=gen_device).to(device)
    if len(generator) != batch:
        raise ValueError(f"{len(generator)} generators for {batch} rows; give one per row")
    return torch.stack([torch.rand(n, generator=g, device=g.device) for g in generator]).to(device)


def stable_seed(seed: int, key: str) -> int:
    """A 63-bit seed from a base seed and an item's key, the same in every process and Python run (unlike
    `hash`, which is salted per process)."""
    digest = hashlib.blake2b(f"{seed}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def item_generators(seed: int, keys: Sequence[str]) -> list[torch.Generator]:
    """One CPU generator per item, seeded from (seed, key): an item's random numbers are the same whatever
    batch, chunk, device or process it is generated in."""
    return [torch.Generator().manual_seed(stable_seed(seed, key)) for key in keys]
