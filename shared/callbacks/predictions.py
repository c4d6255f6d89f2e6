"""Writing `predict` outputs one file per clip, from every process at once.

A module's `predict_step` returns a dict with `clip_id` (list of B str) and tensors whose first dimension
is B; each tensor of each clip goes to `<output_dir>/<key>/<clip_id>.npy`, written atomically. Clip ids
are unique and each process predicts its own clips (`shared.data.loaders.ShardedEvalSampler`), so
processes never write the same file; a clip already written is skipped on a re-run only if
`skip_existing` (the default), so a killed generation continues where it stopped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter

from shared.files import atomic_path


class ClipPredictionWriter(BasePredictionWriter):
    def __init__(self, output_dir: str | None = None, skip_existing: bool = True):
        super().__init__(write_interval="batch")
        self.output_dir, self.skip_existing = output_dir, skip_existing

    def directory(self, trainer: Trainer) -> Path:
        return Path(self.output_dir) if self.output_dir else Path(trainer.default_root_dir) / "predictions"

    def write_on_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, prediction: dict, batch_indices, batch, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        root = self.directory(trainer)
        for key, values in prediction.items():
            if key == "clip_id" or not isinstance(values, torch.Tensor):
                continue
            for clip_id, value in zip(prediction["clip_id"], values, strict=True):
                path = root / key / f"{clip_id}.npy"
                if self.skip_existing and path.is_file():
                    continue
                with atomic_path(path) as tmp, open(tmp, "wb") as f:
                    np.save(f, value.detach().cpu().numpy())
