"""torchmetrics Metrics shared by the projects, with bootstrap intervals over clips (`bootstrap`)."""

from shared.lazy import lazy_package

# imported on first use (`shared.lazy`): no command pays for a submodule it does not use
lazy_package(
    __name__,
    {
        "shared.metrics.audio": [
            "AudioGenerationMetrics",
            "LabelSetAccuracy",
            "top_class_hits",
        ],
        "shared.metrics.bootstrap": [
            "BOOTSTRAP",
            "Bootstrap",
            "bootstrap_interval",
            "clip_key_ids",
            "format_interval",
        ],
        "shared.metrics.clip_score": ["CLIPScore", "clip_score"],
        "shared.metrics.frechet": ["FrechetDistance", "frechet_distance"],
        "shared.metrics.image": [
            "AudioImageClassAgreement",
            "AudioImageSimilarity",
            "ImageFID",
            "ImageFeatures",
            "ImageImageSimilarity",
            "ReferenceWinRate",
            "class_matches",
            "pool_indices",
            "win_rates",
        ],
        "shared.metrics.inception_score": ["InceptionScore", "inception_score"],
        "shared.metrics.kl": ["MeanKLDivergence", "kl_divergence"],
        "shared.metrics.means": ["ClipMean", "StageMeans"],
        "shared.metrics.melception": ["MelceptionMetrics", "spectrogram_metrics"],
        "shared.metrics.retrieval": ["CrossModalMRR", "chance_mrr", "reciprocal_ranks"],
        "shared.metrics.onset": ["OnsetSyncMetrics", "dtw_odf", "onset_strength", "wasserstein_odf"],
    },
)
