"""Vector quantisers: nearest-neighbour codebooks with straight-through gradients.

Two flavours, as the papers use them:

* :class:`VectorQuantizer` - codebook trained by gradients, as in VQ-VAE / VQGAN and the official
  SpecVQGAN code (paper eqs. 1-2). Loss = mean((sg[z_q] - z)^2) + beta * mean((z_q - sg[z])^2), i.e. beta
  weights the *codebook* term, which is how SpecVQGAN's eq. 2 and its code write it (the reverse of the
  original VQ-VAE convention); beta = 0.25.
* :class:`EMAVectorQuantizer` - codebook updated by exponential moving averages of the assigned encoder
  outputs (k-means style) with dead-code restart, as in Jukebox and Im2Wav, which GRAVO builds on:
  decay 0.99, codebook initialised from random encoder outputs of the first batch, every code whose EMA
  count falls below `restart_threshold` replaced by a random encoder output at each step. The loss is
  only the commitment term, weighted by `commitment_weight` (0.02 in Im2Wav).

Both take channel-first inputs [B, C, *spatial] (VQGAN [B, C, H, W], waveform VQ-VAE [B, C, T]) and
flatten the spatial positions row-major, so indices come back as [B, *spatial].
We write our own rather than use diffusers' `VectorQuantizer` because the EMA flavour, the usage
statistics and the multi-process reduction are not there, and both flavours should share one interface.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


@dataclass
class Quantized:
    """What a quantiser returns. `z_q` carries straight-through gradients to the encoder output."""

    z_q: torch.Tensor  # [B, C, *spatial]
    loss: torch.Tensor  # scalar
    indices: torch.Tensor  # [B, *spatial], int64
    perplexity: torch.Tensor  # scalar: exp(entropy of the code histogram of this batch)
    counts: torch.Tensor  # [n_codes]: how often each code was chosen in this batch


def _flatten(z: torch.Tensor) -> torch.Tensor:
    return z.movedim(1, -1).reshape(-1, z.shape[1])


def _unflatten(rows: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    shape = (like.shape[0], *like.shape[2:], like.shape[1])
    return rows.reshape(shape).movedim(-1, 1)


def nearest_code(rows: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest codebook row (squared L2) for each row; ties go to the lowest index."""
    distances = (
        rows.pow(2).sum(1, keepdim=True) - 2 * rows @ codebook.t() + codebook.pow(2).sum(1).unsqueeze(0)
    )
    return distances.argmin(dim=1)


def code_statistics(indices: torch.Tensor, n_codes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-code counts and the perplexity exp(-sum p log p) of the code histogram."""
    counts = torch.bincount(indices.reshape(-1), minlength=n_codes).float()
    probs = counts / counts.sum().clamp_min(1)
    entropy = -(probs * torch.log(probs.clamp_min(1e-12))).sum()
    return counts, entropy.exp()


def sample_rows(rows: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """n rows drawn without replacement from `rows` (tiled with a little noise when there are fewer)."""
    generator = torch.Generator().manual_seed(seed)
    if rows.shape[0] < n:
        repeats = math.ceil(n / rows.shape[0])
        noise = torch.randn(rows.shape[0] * repeats, rows.shape[1], generator=generator)
        rows = rows.repeat(repeats, 1) + noise.to(rows) * 0.01 / math.sqrt(rows.shape[1])
    order = torch.randperm(rows.shape[0], generator=generator)[:n]
    return rows[order.to(rows.device)]


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _all_gather_rows(rows: torch.Tensor) -> torch.Tensor:
    """Concatenate the rows of every rank in rank order (each rank must hold the same number)."""
    if not _distributed():
        return rows
    gathered = [torch.empty_like(rows) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, rows.contiguous())
    return torch.cat(gathered)


class VectorQuantizer(nn.Module):
    """Gradient-trained codebook (VQGAN / SpecVQGAN), `n_codes` entries of size `dim`.

    Initialised U(-1/n_codes, 1/n_codes) as the official code does. Over the paper's 300k steps unused
    codes get their chance; a run of a few hundred steps sits on a handful of them. `restart_unused_after=N`
    (off by default, on in the toy configs) replaces every code left unchosen for N training steps by an
    encoder output of the current batch (of all processes), the dead-code restart of Jukebox and
    SoundStream. It is not in the official code and leaves the loss of eq. 2 unchanged.
    """

    def __init__(
        self,
        n_codes: int,
        dim: int,
        beta: float = 0.25,
        restart_unused_after: int | None = None,
        seed: int = 0,
    ):
        super().__init__()
        self.n_codes, self.dim, self.beta, self.seed = n_codes, dim, beta, seed
        self.embedding = nn.Embedding(n_codes, dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / n_codes, 1.0 / n_codes)
        self.restart_unused_after = restart_unused_after
        if restart_unused_after:  # only then, so official checkpoints keep their exact keys
            self.register_buffer("steps_unused", torch.zeros(n_codes, dtype=torch.long))

    @torch.no_grad()
    def _restart_unused(self, rows: torch.Tensor, counts: torch.Tensor) -> None:
        if _distributed():
            counts = counts.clone()
            dist.all_reduce(counts)
        self.steps_unused.add_(1).masked_fill_(counts > 0, 0)
        dead = self.steps_unused >= self.restart_unused_after
        if dead.any():
            seed = self.seed + int(self.steps_unused.sum())
            candidates = sample_rows(_all_gather_rows(rows), self.n_codes, seed)
            self.embedding.weight[dead] = candidates[dead].to(self.embedding.weight)
            self.steps_unused[dead] = 0

    @property
    def codebook(self) -> torch.Tensor:
        return self.embedding.weight

    def forward(self, z: torch.Tensor) -> Quantized:
        rows = _flatten(z)
        indices = nearest_code(rows.detach(), self.codebook)
        z_q = _unflatten(self.codebook[indices], z)
        loss = F.mse_loss(z_q.detach(), z) + self.beta * F.mse_loss(z_q, z.detach())
        counts, perplexity = code_statistics(indices, self.n_codes)
        if self.training and self.restart_unused_after:
            self._restart_unused(rows.detach(), counts)
        z_q = z + (z_q - z).detach()
        return Quantized(z_q, loss, indices.view(z.shape[0], *z.shape[2:]), perplexity, counts)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Indices [B, *spatial] -> quantised vectors [B, C, *spatial]."""
        return self.codebook[indices].movedim(-1, 1)


class EMAVectorQuantizer(nn.Module):
    """EMA-updated codebook with dead-code restart (Jukebox / Im2Wav bottleneck).

    The codebook and its running statistics are buffers, so they are saved, loaded and moved with the
    module but never touched by an optimiser. In training mode every forward pass updates them; the
    per-code counts and sums are summed over all processes first, and restart candidates are drawn from
    the encoder outputs of all processes with a generator seeded by the update count, so every rank
    holds the same codebook.
    """

    def __init__(
        self,
        n_codes: int,
        dim: int,
        decay: float = 0.99,
        commitment_weight: float = 0.02,
        restart_threshold: float = 1.0,
        seed: int = 0,
    ):
        super().__init__()
        self.n_codes, self.dim = n_codes, dim
        self.decay, self.commitment_weight = decay, commitment_weight
        self.restart_threshold, self.seed = restart_threshold, seed
        self.register_buffer("codebook", torch.zeros(n_codes, dim))
        self.register_buffer("ema_count", torch.zeros(n_codes))
        self.register_buffer("ema_sum", torch.zeros(n_codes, dim))
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def _initialise(self, rows: torch.Tensor) -> None:
        self.codebook.copy_(sample_rows(_all_gather_rows(rows), self.n_codes, self.seed + int(self.updates)))
        self.ema_sum.copy_(self.codebook)
        self.ema_count.fill_(1.0)

    @torch.no_grad()
    def _update(self, rows: torch.Tensor, indices: torch.Tensor) -> None:
        counts = torch.bincount(indices, minlength=self.n_codes).to(rows.dtype)
        sums = torch.zeros_like(self.ema_sum).index_add_(0, indices, rows)
        if _distributed():
            dist.all_reduce(counts)
            dist.all_reduce(sums)
        self.ema_count.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        alive = (self.ema_count >= self.restart_threshold).unsqueeze(1)
        means = self.ema_sum / self.ema_count.clamp_min(1e-12).unsqueeze(1)
        candidates = sample_rows(_all_gather_rows(rows), self.n_codes, self.seed + int(self.updates))
        self.codebook.copy_(torch.where(alive, means, candidates))
        self.updates += 1

    def forward(self, z: torch.Tensor) -> Quantized:
        rows = _flatten(z)
        if self.training and int(self.updates) == 0:
            self._initialise(rows.detach().float())
        indices = nearest_code(rows.detach().float(), self.codebook)
        z_q = _unflatten(self.codebook[indices].to(z.dtype), z)  # quantised before this step's update
        if self.training:
            self._update(rows.detach().float(), indices)
        loss = self.commitment_weight * F.mse_loss(z, z_q.detach())
        counts, perplexity = code_statistics(indices, self.n_codes)
        z_q = z + (z_q - z).detach()
        return Quantized(z_q, loss, indices.view(z.shape[0], *z.shape[2:]), perplexity, counts)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        return self.codebook[indices].movedim(-1, 1)
