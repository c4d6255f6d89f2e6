"""Lightning callbacks shared by every project: checkpoints, example logging."""

from shared.callbacks.checkpoint import LastCheckpoint
from shared.callbacks.examples import MelExampleLogger

__all__ = ["LastCheckpoint", "MelExampleLogger"]
