"""torchmetrics Metrics shared by the projects."""

from shared.metrics.frechet import FrechetDistance, frechet_distance
from shared.metrics.inception_score import InceptionScore, inception_score
from shared.metrics.kl import MeanKLDivergence, clip_key_ids, kl_divergence
from shared.metrics.means import StageMeans
from shared.metrics.melception import MelceptionMetrics, spectrogram_metrics
from shared.metrics.onset import OnsetSyncMetrics, dtw_odf, onset_strength, wasserstein_odf

__all__ = [
    "FrechetDistance",
    "InceptionScore",
    "MeanKLDivergence",
    "MelceptionMetrics",
    "OnsetSyncMetrics",
    "StageMeans",
    "clip_key_ids",
    "dtw_odf",
    "frechet_distance",
    "inception_score",
    "kl_divergence",
    "onset_strength",
    "spectrogram_metrics",
    "wasserstein_odf",
]
