"""Classifier-free guidance (Ho & Salimans 2022) for noise predictions and for logits.

TiVA (sec. 4.1.1): 10 % of the semantic conditions are zeroed in training, per sample, and the unconditional
branch at sampling is that zero condition; ε̂ = ε_u + w (ε_c - ε_u) with w = 5.0. Both branches run in one
batched forward (`batched_guidance`), which halves the kernel launches of two separate calls and gives the
same numbers.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def cfg_combine(uncond: torch.Tensor, cond: torch.Tensor, scale: float) -> torch.Tensor:
    """uncond + scale * (cond - uncond): scale 1 is the conditional output, 0 the unconditional one."""
    return uncond + scale * (cond - uncond)


def drop_condition(
    cond: torch.Tensor, p: float, generator: torch.Generator | None = None, null: torch.Tensor | None = None
) -> torch.Tensor:
    """cond [B, ...] with each sample replaced, with probability p, by `null` (zeros by default)."""
    drop = torch.rand(cond.shape[0], generator=generator, device=cond.device) < p
    null = torch.zeros_like(cond) if null is None else null.expand_as(cond)
    return torch.where(drop.view(-1, *[1] * (cond.dim() - 1)), null, cond)


def batched_guidance(
    model: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    cond: torch.Tensor,
    uncond: torch.Tensor,
    scale: float,
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A denoiser (x, t) -> guided output from `model(x, t, condition)`, both branches in one forward.

    Scale 0 is the unconditional output and scale 1 the conditional one: there the other branch, whose
    weight is zero, is not computed at all.
    """
    if scale in (0, 1):
        condition = cond if scale == 1 else uncond
        return lambda x, t: model(x, t, condition)
    conditions = torch.cat([uncond, cond])

    def guided(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out_u, out_c = model(torch.cat([x, x]), torch.cat([t, t]), conditions).chunk(2)
        return cfg_combine(out_u, out_c, scale)

    return guided
