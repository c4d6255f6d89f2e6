"""`last.ckpt`, always there and never half-written.

Lightning's ModelCheckpoint writes `last.ckpt` in place (a kill or a full disk mid-write leaves a broken
file that the next resume trips on) and saves nothing when a run is interrupted. This callback writes to a
temporary file and renames it, every `every_n_steps` optimiser steps, after every validation, at the end
of training, and when training stops on Ctrl-C or SIGTERM, so a restart loses at most the steps since the
last save and an interrupt loses none.
"""

from __future__ import annotations

import os
from pathlib import Path

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Checkpoint


def save_checkpoint_atomically(trainer: Trainer, path: str | Path) -> Path:
    """Every rank calls this (saving is collective); rank 0 writes a temporary file and renames it."""
    path = Path(trainer.strategy.broadcast(str(path)))
    tmp = path.with_name(f".{path.name}.tmp")
    if trainer.is_global_zero:
        path.parent.mkdir(parents=True, exist_ok=True)
    trainer.save_checkpoint(tmp, weights_only=False)
    if trainer.is_global_zero:
        os.replace(tmp, path)
    return path


class LastCheckpoint(Checkpoint):
    """Being a `Checkpoint`, it also stops Lightning from adding its default epoch-end ModelCheckpoint."""

    def __init__(self, every_n_steps: int | None = 100, filename: str = "last.ckpt"):
        self.every_n_steps = every_n_steps
        self.filename = filename
        self._saved_step = -1

    def path(self, trainer: Trainer) -> Path:
        return Path(trainer.default_root_dir) / "checkpoints" / self.filename

    def save(self, trainer: Trainer) -> None:
        if trainer.global_step == self._saved_step or trainer.sanity_checking:
            return
        save_checkpoint_atomically(trainer, self.path(trainer))
        self._saved_step = trainer.global_step

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args) -> None:
        if self.every_n_steps and trainer.global_step % self.every_n_steps == 0:
            self.save(trainer)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.state.fn == "fit":
            self.save(trainer)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.save(trainer)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if isinstance(exception, KeyboardInterrupt | SystemExit) and trainer.state.fn == "fit":
            self.save(trainer)
