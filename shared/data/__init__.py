"""Datasets: clip records and indexes of VGGSound, VAS, ImageHear and VEGAS, feature caches, the toy set."""

from shared.data.cache import FeatureCache, prepare_features
from shared.data.features import MelFeature, WaveFeature
from shared.data.indexes import DatasetIndex, ImageHearIndex, VASIndex, VEGASIndex, VGGSoundIndex
from shared.data.records import SPLITS, ClipRecord, SkipReport

__all__ = [
    "SPLITS",
    "ClipRecord",
    "DatasetIndex",
    "FeatureCache",
    "ImageHearIndex",
    "MelFeature",
    "SkipReport",
    "VASIndex",
    "VEGASIndex",
    "VGGSoundIndex",
    "WaveFeature",
    "prepare_features",
]
