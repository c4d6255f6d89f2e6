"""Random number generator states in every checkpoint, so a resumed run draws what the original would.

Lightning seeds once at start-up and does not save generator states; a run resumed mid-training would
otherwise replay the random numbers of step 0 (dropout masks, noise, random crops in the main process).
The states are saved at a step boundary and put back when training starts, not when the checkpoint is
read: in between, Lightning creates the restored data-loader iterator and prefetches from it, which an
uninterrupted run had done before the save.
"""

from __future__ import annotations

import random

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer


class RNGStateCheckpoint(Callback):
    def __init__(self):
        self._pending: dict | None = None

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict) -> None:
        checkpoint["rng_states"] = {
            "python": random.getstate(),
            "numpy": _plain(np.random.get_state()),  # plain types: checkpoints load with weights_only
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict) -> None:
        self._pending = checkpoint.get("rng_states")

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._pending:
            _restore(self._pending)
        self._pending = None


def _restore(states: dict) -> None:
    random.setstate(states["python"])
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _plain(numpy_state: tuple) -> tuple:
    name, keys, pos, has_gauss, cached = numpy_state
    return name, keys.tolist(), int(pos), int(has_gauss), float(cached)
