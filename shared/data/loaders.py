"""DataLoaders that resume exactly and shard evaluation without repeats.

* Training: torchdata's `StatefulDataLoader`, which Lightning saves in every checkpoint and restores, so a
  run resumed from a mid-epoch checkpoint (a kill, a SLURM pre-emption) sees exactly the batches the
  uninterrupted run would have seen. Its sampler is a `DistributedSampler` even in one process: the
  permutation of each epoch depends only on (seed, epoch) and process r of w takes positions r, r + w, ...,
  so the global batch (all processes' batches together) is the same whatever the number of processes.
  Lightning would otherwise put its own always-shuffling sampler under DDP and a different one in a single
  process. The sampler keeps its epoch in the loader's state: on resume Lightning creates the restored
  iterator before it calls `set_epoch`, which would otherwise replay epoch 0's order.
* Every loader draws its worker seeds from a generator of its own: by default a new iterator (each epoch,
  each validation) takes a number from torch's global generator, so the random numbers of training would
  depend on when iterators are created, which differs between a resumed run and an uninterrupted one.
* Evaluation and generation across processes: `ShardedEvalSampler` gives every process a contiguous
  share of the clips, each clip exactly once. Lightning's default `DistributedSampler` pads the last
  shard with repeated clips, which skews metrics and writes some outputs twice. It is used only outside
  `fit`: during fit, validation runs through the DDP wrapper, whose collectives need equal shard sizes.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from torchdata.stateful_dataloader import StatefulDataLoader
from torchdata.stateful_dataloader.sampler import StatefulDistributedSampler


class ShardedEvalSampler(DistributedSampler):
    """Rank r of w gets clips [ceil(n r / w), ceil(n (r + 1) / w)): no padding, no repeats, order kept."""

    def __init__(self, dataset: Dataset, num_replicas: int | None = None, rank: int | None = None):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)
        n = len(dataset)
        self.start = math.ceil(n * self.rank / self.num_replicas)
        self.stop = math.ceil(n * (self.rank + 1) / self.num_replicas)
        self.num_samples = self.stop - self.start

    def __iter__(self):
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return self.num_samples


class ResumableDistributedSampler(StatefulDistributedSampler):
    """torchdata's position-keeping DistributedSampler, with the epoch kept as well.

    A state saved after the epoch's last batch resumes at the start of the next epoch: Lightning reuses
    the restored iterator for the next epoch, which would otherwise be empty.
    """

    def __init__(
        self, dataset: Dataset, num_replicas: int, rank: int, shuffle: bool, seed: int, batch_size: int
    ):
        super().__init__(dataset, num_replicas, rank, shuffle=shuffle, seed=seed, drop_last=True)
        self.samples_per_epoch = (
            self.num_samples // batch_size * batch_size
        )  # the loader drops the last batch

    def state_dict(self) -> dict:
        return {**super().state_dict(), "epoch": self.epoch}

    def load_state_dict(self, state_dict: dict) -> None:
        if state_dict["yielded"] >= self.samples_per_epoch:
            self.set_epoch(state_dict["epoch"] + 1)
            return
        super().load_state_dict(state_dict)
        self.set_epoch(state_dict["epoch"])


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def train_loader(
    dataset: Dataset,
    batch_size: int,
    num_workers: int = 0,
    shuffle: bool = True,
    seed: int = 0,
    collate_fn: Callable | None = None,
    sampler_class: type[ResumableDistributedSampler] = ResumableDistributedSampler,
) -> StatefulDataLoader:
    """`batch_size` is per process; the global batch is batch_size x processes; `collate_fn` as a DataLoader's;
    `sampler_class`: a subclass whose keys the dataset understands (e.g. (epoch, index) pairs for per-item
    random draws that a resumed run repeats)."""
    world, rank = _world()
    sampler = sampler_class(dataset, world, rank, shuffle, seed, batch_size)
    return StatefulDataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=True,
        collate_fn=collate_fn,
        persistent_workers=num_workers > 0,
        generator=torch.Generator().manual_seed(seed + rank),
    )


def eval_loader(dataset: Dataset, batch_size: int, num_workers: int = 0, sharded: bool = False) -> DataLoader:
    """`sharded=True` (outside fit, with a process group) splits the clips over the processes."""
    distributed = sharded and _world()[0] > 1
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        sampler=ShardedEvalSampler(dataset) if distributed else None,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        generator=torch.Generator().manual_seed(0),
    )


def random_windows(x: torch.Tensor, width: int) -> torch.Tensor:
    """A random `width`-long window of the last axis of each item of x [B, ..., T].

    Starts are drawn from torch's global generator on the CPU, in the main process just before a step
    (a DataModule's `on_after_batch_transfer`): checkpoints carry that generator, so a resumed run cuts the
    windows the uninterrupted run would have, on any device.
    """
    if x.shape[-1] < width:
        raise ValueError(f"items of {x.shape[-1]} frames/samples are shorter than the {width}-long windows")
    starts = torch.randint(0, x.shape[-1] - width + 1, (x.shape[0],)).to(x.device)
    index = starts[:, None] + torch.arange(width, device=x.device)
    return torch.gather(
        x, -1, index.view(x.shape[0], *[1] * (x.dim() - 2), width).expand(*x.shape[:-1], width)
    )


def split_records(index, split: str, *caches) -> list:
    """The records of a split whose features are in every cache (VAS has no test split: valid stands in)."""
    records = index.records(split)
    if not records and split == "test":
        records = index.records("valid")
    return [r for r in records if all(cache.has(r.clip_id) for cache in caches)]


class SplitLoaders:
    """The four dataloader hooks of a LightningDataModule that has `split(name) -> Dataset`.

    Needs `batch_size`, `num_workers`, `shuffle`, `seed`, `predict_split` (and optionally `eval_batch_size`).
    Training uses `train_loader`; evaluation shards the clips across processes outside `fit`.
    """

    def train_dataloader(self):
        return train_loader(self.split("train"), self.batch_size, self.num_workers, self.shuffle, self.seed)

    def _eval_loader(self, split: str):
        fitting = self.trainer is not None and self.trainer.state.fn == "fit"
        batch_size = getattr(self, "eval_batch_size", None) or self.batch_size
        return eval_loader(self.split(split), batch_size, self.num_workers, sharded=not fitting)

    def val_dataloader(self):
        return self._eval_loader("valid")

    def test_dataloader(self):
        return self._eval_loader("test")

    def predict_dataloader(self):
        return self._eval_loader(self.predict_split)


class EpochIndexSampler(ResumableDistributedSampler):
    """The resumable training sampler yielding (epoch, index) keys: a dataset seeds its per-item random draws
    (a frame, a window) from (seed, epoch, index), so they depend neither on worker processes nor on when
    iterators are created, and a resumed run (position and epoch restored) draws what the uninterrupted one
    would have."""

    def __iter__(self):
        for index in super().__iter__():
            yield self.epoch, index
