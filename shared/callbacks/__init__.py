"""Lightning callbacks shared by every project: checkpoints, pre-emption, RNG state, example logging, outputs."""

from shared.callbacks.checkpoint import LastCheckpoint, save_checkpoint_atomically
from shared.callbacks.examples import ExampleLogger, Examples, MelExampleLogger, side_by_side, sound_pictures
from shared.callbacks.predictions import ClipPredictionWriter
from shared.callbacks.rng import RNGStateCheckpoint
from shared.callbacks.slurm import PreemptionRequeue

__all__ = [
    "ClipPredictionWriter",
    "ExampleLogger",
    "Examples",
    "LastCheckpoint",
    "MelExampleLogger",
    "PreemptionRequeue",
    "RNGStateCheckpoint",
    "save_checkpoint_atomically",
    "side_by_side",
    "sound_pictures",
]
