"""PANNs Cnn14: the AudioSet tagger behind the Inception Score of generated audio, with its log-mel front end and a
loader for its released weights.

Kong et al., "PANNs: Large-Scale Pretrained Audio Neural Networks for Audio Pattern Recognition"
(arXiv:1912.10211), sec. 3.1 (the CNN14 of Table 1); official code `qiuqiangkong/audioset_tagging_cnn`,
`pytorch/models.py` (`Cnn14`, `ConvBlock`). The IS of generated audio on Cnn14 is the one of `haoheliu/audioldm_eval`
(`audioldm_eval/eval.py`: `calculate_isc(..., feat_layer_name="logits", splits=10, samples_shuffle=True,
rng_seed=2020)` on `feature_extractors/panns/models.py`'s Cnn14 "logits", the pre-sigmoid class scores), which is
`shared.metrics.InceptionScore` on `Cnn14.logits`.

- front end (torchlibrosa's `Spectrogram` and `LogmelFilterBank`, as the official model builds them): power STFT
  (`n_fft` = window, a periodic Hann window, centred with reflect padding), librosa's Slaney mel filterbank
  (`librosa.filters.mel`, 64 bands from 50 Hz), 10 log10(max(mel, 1e-10)) (ref 1, no top_db). The released
  16-kHz model (`Cnn14_16k_mAP=0.438.pth`, what audioldm_eval loads for 16-kHz audio): window 512, hop 160,
  fmax 8000; the 32-kHz one (`Cnn14_mAP=0.431.pth`): window 1024, hop 320, fmax 14000.
- network at inference: BatchNorm over the 64 mel bands (`bn0`); six `ConvBlock`s (two 3 x 3 convolutions without
  bias, each with BatchNorm and ReLU; 64, 128, 256, 512, 1024, 2048 channels), each followed by 2 x 2 average
  pooling except the last (1 x 1); the mean over frequency; max plus mean over time; `fc1` (2048) with ReLU: the
  embedding; `fc_audioset` (527): the logits (their sigmoid is the clip-wise output). Dropout and SpecAugment are
  training devices and are left out: this module is for inference.

The STFT is `torch.stft` rather than torchlibrosa's DFT convolutions (the same sums; the released file's
`spectrogram_extractor.*` and `logmel_extractor.melW` entries hold those fixed matrices, and the loader checks
the filterbank against this module's to tell the 16-kHz and 32-kHz files apart). The package is not used: it is
not in the pinned stack.
"""

from __future__ import annotations

from pathlib import Path

import librosa
import torch
import torch.nn.functional as F
from torch import nn

from shared.encoders.vggish import read_tensor_file
from shared.runs import UserError

N_MELS, F_MIN, N_CLASSES, AMIN = 64, 50.0, 527, 1e-10
CHANNELS = (64, 128, 256, 512, 1024, 2048)
# sample rate -> (window = n_fft, hop, fmax) of the released checkpoints
SETTINGS = {16000: (512, 160, 8000.0), 32000: (1024, 320, 14000.0)}


class PANNsLogMel(nn.Module):
    """Waveforms [B, T] at `sample_rate` -> Cnn14's log-mel [B, 1, 1 + T // hop, 64] in dB."""

    def __init__(self, sample_rate: int = 16000):
        super().__init__()
        if sample_rate not in SETTINGS:
            raise ValueError(f"Cnn14 was released for {sorted(SETTINGS)} Hz, not {sample_rate}")
        self.n_fft, self.hop, f_max = SETTINGS[sample_rate]
        self.register_buffer("window", torch.hann_window(self.n_fft, periodic=True), persistent=False)
        mel = librosa.filters.mel(sr=sample_rate, n_fft=self.n_fft, n_mels=N_MELS, fmin=F_MIN, fmax=f_max)
        self.register_buffer("mel_basis", torch.from_numpy(mel.T).float(), persistent=False)  # [bins, 64]

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(
            wave.float(), self.n_fft, self.hop, window=self.window, center=True, pad_mode="reflect",
            return_complex=True,
        ).abs().pow(2)  # fmt: skip
        mel = spec.transpose(1, 2) @ self.mel_basis  # [B, frames, 64]
        return (10.0 * torch.log10(mel.clamp_min(AMIN))).unsqueeze(1)


class ConvBlock(nn.Module):
    """Two 3 x 3 convolutions (no bias) with BatchNorm and ReLU, then average pooling."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn1, self.bn2 = nn.BatchNorm2d(out_channels), nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor, pool: int) -> torch.Tensor:
        x = F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
        return F.avg_pool2d(x, pool)


class Cnn14(nn.Module):
    """`forward(wave [B, T] at sample_rate)` -> (logits [B, 527], embedding [B, 2048]); `logits(wave)`,
    `embed(wave)`. Attribute names follow the released state dict; `n_classes` only shrinks it for tests."""

    def __init__(self, sample_rate: int = 16000, n_classes: int = N_CLASSES):
        super().__init__()
        self.mel = PANNsLogMel(sample_rate)
        self.bn0 = nn.BatchNorm2d(N_MELS)
        for i, (c_in, c_out) in enumerate(zip((1, *CHANNELS[:-1]), CHANNELS, strict=True), 1):
            setattr(self, f"conv_block{i}", ConvBlock(c_in, c_out))
        self.fc1 = nn.Linear(CHANNELS[-1], CHANNELS[-1])
        self.fc_audioset = nn.Linear(CHANNELS[-1], n_classes)
        self.sample_rate, self.n_classes, self.embedding_dim = sample_rate, n_classes, CHANNELS[-1]

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.mel(wave)  # [B, 1, frames, 64]
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)  # normalised per mel band
        for i in range(1, len(CHANNELS) + 1):
            x = getattr(self, f"conv_block{i}")(x, 2 if i < len(CHANNELS) else 1)
        x = x.mean(dim=3)  # over frequency: [B, 2048, frames']
        x = x.amax(dim=2) + x.mean(dim=2)
        embedding = F.relu(self.fc1(x))
        return self.fc_audioset(embedding), embedding

    def logits(self, wave: torch.Tensor) -> torch.Tensor:
        return self(wave)[0]

    def embed(self, wave: torch.Tensor) -> torch.Tensor:
        return self(wave)[1]


FRONT_END_KEYS = ("spectrogram_extractor.", "logmel_extractor.")


def load_panns(path: str | Path) -> Cnn14:
    """A released Cnn14 file (`Cnn14_16k_mAP=0.438.pth` or `Cnn14_mAP=0.431.pth`: a dict with the state dict
    under `model`) -> a frozen Cnn14 in eval mode at the file's sample rate; every network key must be used."""
    state = read_tensor_file(path, "PANNs Cnn14 weights")
    mel_w = state.get("logmel_extractor.melW")
    rate = next(
        (
            r
            for r, (n_fft, _, _) in SETTINGS.items()
            if mel_w is not None and mel_w.shape[0] == n_fft // 2 + 1
        ),
        None,
    )
    if rate is None:
        raise UserError(
            f"{path}: not a released Cnn14 (no logmel_extractor.melW of a 16-kHz or 32-kHz model; "
            f"got {None if mel_w is None else tuple(mel_w.shape)})"
        )
    model = Cnn14(sample_rate=rate)
    if mel_w.shape != model.mel.mel_basis.shape or not torch.allclose(
        mel_w.float(), model.mel.mel_basis, atol=1e-6
    ):
        raise UserError(
            f"{path}: its mel filterbank is not Cnn14's at {rate} Hz (64 bands, 50-{SETTINGS[rate][2]:.0f} Hz)"
        )
    network = {k: v for k, v in state.items() if not k.startswith(FRONT_END_KEYS)}
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(network)), sorted(set(network) - set(expected))
    wrong = [k for k in expected if k in network and network[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        raise UserError(
            f"{path}: not Cnn14's layout (missing {missing[:4]}, unexpected {unexpected[:4]}, "
            f"wrong shapes {wrong[:4]})"
        )
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in network.items()})
    return model.eval().requires_grad_(False)
