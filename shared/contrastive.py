"""Contrastive alignment of two embedding spaces: CLIP's symmetric InfoNCE loss with a learnable temperature,
BriVL's MoCo-style cross-modal contrast with queues of keys (`MoCoCrossModal`), and cross-modal retrieval
recall (of the paired row, or of any row of the same class) to see what it learned.

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
import torch.distributed as dist
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


def gather_keys(keys: torch.Tensor) -> torch.Tensor:
    """Every process's keys [B, D] concatenated in rank order -> [world x B, D] (the keys themselves when no
    process group is initialised). No gradient flows through the gathered keys."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return keys.detach()
    parts = [torch.empty_like(keys) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, keys.detach().contiguous())
    return torch.cat(parts)


class MoCoCrossModal(nn.Module):
    """BriVL's cross-modal MoCo loss (Huo et al., arXiv:2103.06561, sec. 3; `BAAI-WuDao/BriVL`,
    `BriVL-code-inference/models/vl_model.py`, `VL_model.forward`, `cfg/test_xyb.yml`).

    For two modalities a and b, with queries q (the trained towers' l2-normalised embeddings) and keys k
    (the same from momentum copies of the towers, no gradient), and a queue Q_x [D, K] of earlier keys of
    each modality: logits_a2b = [q_a . k_b, q_a . Q_b] / tau, loss_a2b = -log softmax(logits)[positive]
    summed over the batch and divided by B; loss = loss_a2b + loss_b2a. After the step the keys of the whole
    global batch (gathered over processes) replace the oldest K columns' worth of each queue (FIFO), so K
    must be a multiple of the global batch (checked, as BriVL asserts it). The queues start as random unit
    vectors, as BriVL's do; they are buffers, so a checkpoint carries them and a resumed run continues with
    the same negatives. At random init every logit is near 0 and each direction costs about ln(1 + K).

    `update_momentum_copy(online, copy)` is BriVL's key-encoder update, copy <- m copy + (1 - m) online.
    A frozen tower is its own momentum copy: its keys are its embeddings. With a frozen b (WavBriVL's image
    tower), q_b has no gradient, so loss_b2a does not train anything; it is the loss BriVL reports and
    measures how well b's queries find their a-keys among the queued ones. BriVL's optional multi-label
    masking (negatives among both queues' top-k similar keys counted as positives) is not implemented.
    Written here because no library has a cross-modal MoCo loss.
    """

    def __init__(self, dim: int, queue_size: int = 9600, temperature: float = 0.07, momentum: float = 0.99):
        super().__init__()
        if queue_size <= 0:
            raise ValueError(f"queue_size must be positive, not {queue_size}")
        self.queue_size, self.temperature, self.momentum = queue_size, temperature, momentum
        self.register_buffer("queue_a", F.normalize(torch.randn(dim, queue_size), dim=0))
        self.register_buffer("queue_b", F.normalize(torch.randn(dim, queue_size), dim=0))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

    def check_batch(self, global_batch: int) -> None:
        """The FIFO replaces whole global batches: K must be a multiple of it."""
        if global_batch <= 0 or self.queue_size % global_batch:
            raise ValueError(
                f"queue_size {self.queue_size} is not a multiple of the global batch {global_batch} "
                "(the batch size times the number of processes): choose a queue size that is"
            )

    def direction(self, query: torch.Tensor, key: torch.Tensor, queue: torch.Tensor) -> torch.Tensor:
        """-log softmax at the positive of [q . k, q . queue] / tau, summed over the batch / B."""
        positive = (query * key).sum(dim=-1, keepdim=True)
        # a copy: the queue changes in place at enqueue, before the backward pass that needs it
        negatives = query @ queue.detach().clone().to(query.dtype)
        logits = torch.cat([positive, negatives], dim=1) / self.temperature
        return -F.log_softmax(logits, dim=1)[:, 0].sum() / len(query)

    def forward(
        self,
        query_a: torch.Tensor,
        key_a: torch.Tensor,
        query_b: torch.Tensor,
        key_b: torch.Tensor,
        enqueue: bool = True,
    ) -> dict[str, torch.Tensor]:
        """All [B, D], l2-normalised -> {"loss", "a2b", "b2a"}; with `enqueue`, the keys then enter the
        queues."""
        shapes = [tuple(t.shape) for t in (query_a, key_a, query_b, key_b)]
        if len(set(shapes)) != 1 or query_a.dim() != 2 or query_a.shape[1] != self.queue_a.shape[0]:
            raise ValueError(f"expected four [B, {self.queue_a.shape[0]}] batches, got {shapes}")
        a2b = self.direction(query_a, key_b.detach(), self.queue_b)
        b2a = self.direction(query_b, key_a.detach(), self.queue_a)
        if enqueue:
            self.enqueue(key_a, key_b)
        return {"loss": a2b + b2a, "a2b": a2b, "b2a": b2a}

    @torch.no_grad()
    def enqueue(self, key_a: torch.Tensor, key_b: torch.Tensor) -> None:
        """The global batch's keys replace the oldest ones (a FIFO over the K columns)."""
        keys_a, keys_b = gather_keys(key_a), gather_keys(key_b)
        self.check_batch(len(keys_a))
        ptr = int(self.queue_ptr)
        self.queue_a[:, ptr : ptr + len(keys_a)] = keys_a.T.to(self.queue_a.dtype)
        self.queue_b[:, ptr : ptr + len(keys_b)] = keys_b.T.to(self.queue_b.dtype)
        self.queue_ptr[0] = (ptr + len(keys_a)) % self.queue_size

    @torch.no_grad()
    def update_momentum_copy(self, online: nn.Module, copy: nn.Module) -> None:
        """copy <- m copy + (1 - m) online, parameter by parameter (BriVL's
        `_momentum_update_key_encoder`)."""
        for param, param_copy in zip(online.parameters(), copy.parameters(), strict=True):
            param_copy.mul_(self.momentum).add_(param.detach(), alpha=1.0 - self.momentum)


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
