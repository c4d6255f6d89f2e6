"""torchmetrics Metrics shared by the projects."""

from shared.lazy import lazy_package

# imported on first use (`shared.lazy`): no command pays for a submodule it does not use
lazy_package(
    __name__,
    {
        "shared.metrics.frechet": ["FrechetDistance", "frechet_distance"],
        "shared.metrics.inception_score": ["InceptionScore", "inception_score"],
        "shared.metrics.kl": ["MeanKLDivergence", "clip_key_ids", "kl_divergence"],
        "shared.metrics.means": ["StageMeans"],
        "shared.metrics.melception": ["MelceptionMetrics", "spectrogram_metrics"],
        "shared.metrics.onset": ["OnsetSyncMetrics", "dtw_odf", "onset_strength", "wasserstein_odf"],
    },
)
