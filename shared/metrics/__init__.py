"""torchmetrics Metrics shared by the projects, with bootstrap intervals over clips (`bootstrap`)."""

from shared.metrics.bootstrap import BOOTSTRAP, Bootstrap, bootstrap_interval, clip_key_ids, format_interval
from shared.metrics.frechet import FrechetDistance, frechet_distance
from shared.metrics.inception_score import InceptionScore, inception_score
from shared.metrics.kl import MeanKLDivergence, kl_divergence
from shared.metrics.means import ClipMean, StageMeans
from shared.metrics.melception import MelceptionMetrics, spectrogram_metrics
from shared.metrics.onset import OnsetSyncMetrics, dtw_odf, onset_strength, wasserstein_odf

__all__ = [
    "BOOTSTRAP",
    "Bootstrap",
    "ClipMean",
    "FrechetDistance",
    "InceptionScore",
    "MeanKLDivergence",
    "MelceptionMetrics",
    "OnsetSyncMetrics",
    "StageMeans",
    "bootstrap_interval",
    "clip_key_ids",
    "dtw_odf",
    "format_interval",
    "frechet_distance",
    "inception_score",
    "kl_divergence",
    "onset_strength",
    "spectrogram_metrics",
    "wasserstein_odf",
]
