"""Datasets: clip records and indexes of VGGSound, VAS, ImageHear and VEGAS, feature caches, the toy set."""

from shared.lazy import lazy_package

# imported on first use (`shared.lazy`): no command pays for a submodule it does not use
lazy_package(
    __name__,
    {
    "shared.data.cache": ["FeatureCache", "prepare_features"],
    "shared.data.features": ["MelFeature", "WaveFeature"],
    "shared.data.indexes": ["DatasetIndex", "ImageHearIndex", "VASIndex", "VEGASIndex", "VGGSoundIndex"],
    "shared.data.records": ["SPLITS", "ClipRecord", "SkipReport"],
    },
)
