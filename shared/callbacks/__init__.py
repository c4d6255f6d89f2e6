"""Lightning callbacks shared by every project: checkpoints, pre-emption, RNG state, example logging, outputs."""

from shared.callbacks.checkpoint import LastCheckpoint, save_checkpoint_atomically
from shared.callbacks.examples import Examples, MelExampleLogger
from shared.callbacks.predictions import ClipPredictionWriter
from shared.callbacks.rng import RNGStateCheckpoint
from shared.callbacks.slurm import PreemptionRequeue

__all__ = [
    "ClipPredictionWriter",
    "Examples",
    "LastCheckpoint",
    "MelExampleLogger",
    "PreemptionRequeue",
    "RNGStateCheckpoint",
    "save_checkpoint_atomically",
]
