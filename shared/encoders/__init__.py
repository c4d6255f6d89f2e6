"""Frozen feature extractors and official pre-extracted features.

- `ResNetFrameFeatures` / `ResNetFeature`: per-frame torchvision ResNet features of a video (SpecVQGAN's
  ResNet-50 condition) as a module and as a feature for the cache (`avgen prepare --features resnet50`);
- `load_official_features`, `load_official_bninception`, `OfficialFeatureFiles` (a cache feature):
  SpecVQGAN's released `.pkl` features, read without executing anything a pickle names;
- `CLIPFrameFeatures` / `CLIPFeature`: per-frame CLS and mean patch tokens of chosen open_clip layers (TiVA);
- `Melception` (SpecVQGAN's evaluation classifier; also TiVA's), `load_melception` (official or our checkpoints),
  `melception_inputs` (audio at any rate -> Melception's mel);
- `frames`: the official per-item processing (pad/trim 215, centre crop 212, resample to k) and "No Feats".
"""

from shared.encoders.clip import CLIPFeature, CLIPFrameFeatures, split_clip_feature
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
from shared.encoders.melception import Melception, melception_inputs
from shared.encoders.melception_loading import load_melception
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
    "CLIPFeature",
    "CLIPFrameFeatures",
    "Melception",
    "OfficialFeatureFiles",
    "ResNetFeature",
    "ResNetFrameFeatures",
    "SafeUnpickler",
    "UnsafePickleError",
    "build_resnet",
    "center_crop_frames",
    "frame_lengths",
    "load_melception",
    "load_official_bninception",
    "load_official_features",
    "loop_frames",
    "melception_inputs",
    "no_feats",
    "pad_or_trim",
    "resample_frames",
    "resample_indices",
    "select_frames",
    "split_clip_feature",
    "weights_identity",
]
