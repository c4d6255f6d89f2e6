"""Frozen feature extractors and official pre-extracted features.

- `ResNetFrameFeatures` / `ResNetFeature`: per-frame torchvision ResNet features of a video (SpecVQGAN's
  ResNet-50 condition) as a module and as a feature for the cache (`avgen prepare --features resnet50`);
- `load_official_features`, `load_official_bninception`, `OfficialFeatureFiles` (a cache feature):
  SpecVQGAN's released `.pkl` features, read without executing anything a pickle names;
- `CLIPFrameFeatures` / `CLIPFeature`: per-frame CLS and mean patch tokens of chosen open_clip layers (TiVA);
- `CLIPImageEmbedder` / `CLIPEmbeddingFeature`: per-frame L2-normalised CLIP image embeddings at 30 fps, or of
  a still image (Im2Wav, GRAVO); `Im2WavCLIPFiles`: Im2Wav's released per-clip feature pickles;
- `CLIPImageText` / `load_clip_image_text`: a frozen transformers `CLIPModel` folder's L2-normalised image and
  text embeddings with CLIP's preprocessing, and zero-shot classes (AudioToken's IIS and AIC);
- `Melception` (SpecVQGAN's evaluation classifier; also TiVA's), `load_melception` (official or our checkpoints),
  `melception_inputs` (audio at any rate -> Melception's mel);
- `Wav2CLIP` (GRAVO's audio target and CS metric), `load_wav2clip` (official `Wav2CLIP.pt` or our checkpoints);
- `VGGish` (FAD's embedding network, with its log-mel front end and FAD's windows), `load_vggish`,
  `load_vggish_pca` (torchvggish's weight and PCA files);
- `PaSST` (PaSST-S, the 527-class AudioSet tagger of KL and ACC, with its mel front end), `load_passt`;
- `Cnn14` (PANNs' AudioSet tagger of the Inception Score of generated audio, with its log-mel), `load_panns`;
- `WaveMelception`: a Melception that reads waveforms (the toy stand-in for VGGish and PaSST);
- `BEATs` / `BEATsConfig` (AudioToken's audio encoder: BEATs blocks 4, 8, 12 with the official fbank front
  end), `load_beats` (official `{'cfg', 'model'}` files, also what the toy stage writes);
- `MelStatisticsEmbedding`: per-band mean and std of a 16 kHz log-mel, the non-learned baseline of probes;
- `frames`: the official per-item processing (pad/trim 215, centre crop 212, resample to k) and "No Feats".
"""

from shared.lazy import lazy_package

# imported on first use (`shared.lazy`): no command pays for a submodule it does not use
lazy_package(
    __name__,
    {
        "shared.encoders.beats": ["BEATs", "BEATsConfig", "load_beats"],
        "shared.encoders.clip": [
            "CLIPFeature",
            "CLIPFrameFeatures",
            "FrozenCLIPVisual",
            "split_clip_feature",
        ],
        "shared.encoders.clip_image_text": [
            "CLIPImageText",
            "load_clip_image_text",
            "resize_shorter_and_crop",
        ],
        "shared.encoders.clip_embeddings": [
            "CLIPEmbeddingFeature",
            "CLIPImageEmbedder",
            "Im2WavCLIPFiles",
            "pad_with_last",
        ],
        "shared.encoders.frames": [
            "CROP_LEN",
            "FEAT_LEN",
            "center_crop_frames",
            "frame_lengths",
            "loop_frames",
            "no_feats",
            "pad_or_trim",
            "resample_frames",
            "resample_indices",
            "select_frames",
        ],
        "shared.encoders.mel_summary": ["MelStatisticsEmbedding"],
        "shared.encoders.melception": ["Melception", "melception_inputs"],
        "shared.encoders.melception_loading": ["load_melception"],
        "shared.encoders.official": [
            "OfficialFeatureFiles",
            "SafeUnpickler",
            "UnsafePickleError",
            "load_official_bninception",
            "load_official_features",
        ],
        "shared.encoders.resnet": [
            "ResNetFeature",
            "ResNetFrameFeatures",
            "build_resnet",
            "weights_identity",
        ],
        "shared.encoders.wav2clip": ["Wav2CLIP", "load_wav2clip", "wav2clip_frames"],
        "shared.encoders.passt": ["PaSST", "PaSSTMel", "load_passt"],
        "shared.encoders.panns": ["Cnn14", "PANNsLogMel", "load_panns"],
        "shared.encoders.wave_melception": ["WaveMelception", "load_wave_melception"],
        "shared.encoders.vggish": [
            "VGGish",
            "VGGishLogMel",
            "VGGishPCA",
            "fad_examples",
            "load_vggish",
            "load_vggish_pca",
            "read_tensor_file",
        ],
    },
)
