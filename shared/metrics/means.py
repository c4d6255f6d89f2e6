"""Means exact across processes: batch-size-weighted means of named losses per evaluation stage
(`StageMeans`), and the mean of a per-clip value with its bootstrap interval over clips (`ClipMean`).

`self.log(..., sync_dist=True)` averages each process's own mean, which is off when the processes hold
different numbers of clips (as sharded evaluation does); a torchmetrics `MeanMetric` sums values and
weights over all processes first, so 2 processes give the single-process number.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from lightning.pytorch import LightningModule
from torch import nn
from torchmetrics import MeanMetric, Metric
from torchmetrics.utilities import dim_zero_cat

from shared.metrics.bootstrap import (
    BOOTSTRAP,
    Bootstrap,
    ClipResampling,
    clip_indices,
    clip_key_ids,
    mean_statistic,
    with_intervals,
)


class StageMeans(nn.Module):
    """One MeanMetric per (stage, name); `log` updates them and hands them to Lightning to reduce."""

    def __init__(self, names: list[str], stages: tuple[str, ...] = ("val", "test")):
        super().__init__()
        self.names = names
        self.metrics = nn.ModuleDict({f"{s}_{n}": MeanMetric() for s in stages for n in names})

    def log(
        self, module: LightningModule, stage: str, values: dict[str, torch.Tensor], batch_size: int
    ) -> None:
        for name, value in values.items():
            metric = self.metrics[f"{stage}_{name}"]
            metric.update(value.detach(), weight=batch_size)
            module.log(f"{stage}/{name}", metric, on_step=False, on_epoch=True, batch_size=batch_size)


class ClipMean(ClipResampling, Metric):
    """The mean of a value given per row (a generated sample, a clip), with its interval over clips.

    `update(values [N], ids)` with the clip id of each row; `compute()` -> {name: mean over all rows of all
    processes, `<name>_lo`, `<name>_hi`: its bootstrap interval (`shared.metrics.bootstrap`)}.
    """

    full_state_update = False

    def __init__(self, name: str, bootstrap: Bootstrap | None = BOOTSTRAP, **kwargs):
        super().__init__(**kwargs)
        self.name, self.bootstrap = name, bootstrap
        self.add_state("values", default=[], dist_reduce_fx="cat")
        self.add_state("ids", default=[], dist_reduce_fx="cat")

    def update(self, values: torch.Tensor, ids: Sequence[str] | torch.Tensor) -> None:
        values = values.detach().double().reshape(-1)
        if len(ids) != len(values):
            raise ValueError(f"{len(values)} values of {self.name!r} need as many clip ids, got {len(ids)}")
        self.values.append(values)
        self.ids.append(clip_key_ids(ids).to(values.device))

    def compute(self) -> dict[str, torch.Tensor]:
        values = {self.name: dim_zero_cat(self.values).mean()}
        return values if self.bootstrap is None else with_intervals(values, self._intervals())

    def clip_statistics(self) -> tuple[int, dict]:
        n_clips, (clips,) = clip_indices(dim_zero_cat(self.ids))
        return n_clips, {self.name: mean_statistic(dim_zero_cat(self.values), clips, n_clips)}
