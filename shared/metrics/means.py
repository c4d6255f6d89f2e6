"""Batch-size-weighted means of named losses per evaluation stage, exact across processes.

`self.log(..., sync_dist=True)` averages each process's own mean, which is off when the processes hold
different numbers of clips (as sharded evaluation does); a torchmetrics `MeanMetric` sums values and
weights over all processes first, so 2 processes give the single-process number.
"""

from __future__ import annotations

import torch
from lightning.pytorch import LightningModule
from torch import nn
from torchmetrics import MeanMetric


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
