"""Frozen feature extractors and official pre-extracted features.

- `ResNetFrameFeatures` / `ResNetFeature`: per-frame torchvision ResNet features of a video (SpecVQGAN's
  ResNet-50 condition) as a module and as a feature for the cache (`avgen prepare --features resnet50`);
- `load_official_features`, `load_official_bninception`, `OfficialFeatureFiles` (a cache feature):
  SpecVQGAN's released `.pkl` features, read without executing anything a pickle names;
- `frames`: the official per-item processing (pad/trim 215, centre crop 212, resample to k) and "No Feats".
"""

from shared.encoders.frames import (
    CROP_LEN,
    FEAT_LEN,
    center_crop_frames,
    frame_lengths,
    loop_frames,
    no_feats,
    pad_or_trim,
    resample_frames,
    resample_indices,
    select_frames,
)
from shared.encoders.official import (
    OfficialFeatureFiles,
    SafeUnpickler,
    UnsafePickleError,
    load_official_bninception,
    load_official_features,
)
from shared.encoders.resnet import ResNetFeature, ResNetFrameFeatures, build_resnet, weights_identity

__all__ = [
    "CROP_LEN",
    "FEAT_LEN",
    "OfficialFeatureFiles",
    "ResNetFeature",
    "ResNetFrameFeatures",
    "SafeUnpickler",
    "UnsafePickleError",
    "build_resnet",
    "center_crop_frames",
    "frame_lengths",
    "load_official_bninception",
    "load_official_features",
    "loop_frames",
    "no_feats",
    "pad_or_trim",
    "resample_frames",
    "resample_indices",
    "select_frames",
    "weights_identity",
]
