"""VGGish: the AudioSet embedding network behind FAD, with its log-mel front end and loaders for its weights.

Hershey et al., "CNN architectures for large-scale audio classification" (arXiv:1609.09430); FAD: Kilgour et
al. (arXiv:1812.08466), which GRAVO (Interspeech 2023, sec. 3.3) computes with google-research's
`frechet_audio_distance` on VGGish embeddings.

The network (`tensorflow/models`, `research/audioset/vggish_slim.py`): a [96 frames, 64 mel bands] log-mel
example through conv 64 - pool - conv 128 - pool - 2 x conv 256 - pool - 2 x conv 512 - pool (3 x 3 convs,
stride 1, same padding, ReLU; 2 x 2 max-pools, stride 2), flattened in TensorFlow's (time, frequency, channel)
order, then fc 4096 - fc 4096 - fc 128, 72,141,184 parameters. The 128-d layer is the embedding. The
definition FAD's code imports (`tensorflow_models.audioset.vggish_slim`, the pre-2020 layout of that folder)
keeps slim's default ReLU on it, as does torchvggish; the later `research/audioset/vggish/vggish_slim.py`
returns it before the activation (`embedding_relu=False`).

The front end (`research/audioset/mel_features.py`, `vggish_params.py`): 16 kHz; frames of 400 samples (25 ms)
every 160 (10 ms), no padding; a periodic Hann window; |rfft| with 512 points; 64 HTK mel bands over 125-7500
Hz whose triangles are linear in mel (not in Hz, as torchaudio's are) with the DC bin excluded, applied to
the magnitude; log(mel + 0.01). It is written here because neither torchaudio's filterbank nor `torch.stft`
(which centres a short window inside the FFT frame) reproduces it.

FAD's windows (`google-research/google-research`, `frechet_audio_distance/audioset_model.py`,
`create_embeddings_main.py`): each clip is scaled by 1 / max(0.1, max(x)) (its largest sample, not its
largest magnitude; the cap keeps near-silence from being raised more than 20 dB), cut into 1-s windows every
0.5 s (`model_step_size` 8000), and each window's 98 frames give one example of their first 96: a 4-s clip
gives 7 embeddings. The official pipeline reads int16 wav files without scaling them to [-1, 1], so there
every clip ends with its largest sample at 1; float input in [-1, 1] keeps the 0.1 cap.

Weights: the torchvggish port of the TensorFlow checkpoint (`harritaylor/torchvggish`, release v0.1,
`vggish-10086976.pth`: `features.{0,3,6,8,11,13}.{weight,bias}` for the convolutions and
`embeddings.{0,2,4}.{weight,bias}` for the fully connected layers), and its PCA file
(`vggish_pca_params-970ea276.pth`: `pca_eigen_vectors` [128, 128], `pca_means` [128]) for the AudioSet
release's post-processing (PCA, clip to [-2, 2], 8-bit quantisation; `vggish_postprocess.py`), which FAD
does not use. The `torchvggish` package itself is not used: it downloads both files when a model is built
and needs `resampy`, which the project's pinned stack does not have.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from shared.runs import UserError

SAMPLE_RATE = 16000
WINDOW, HOP, N_FFT = 400, 160, 512  # 25 ms frames every 10 ms, FFT of the next power of two
N_MELS, MEL_MIN_HZ, MEL_MAX_HZ, LOG_OFFSET = 64, 125.0, 7500.0, 0.01
EXAMPLE_FRAMES = 96  # 0.96 s of 10-ms frames
EMBEDDING_SIZE = 128
FAD_WINDOW, FAD_STEP, FAD_MIN_PEAK = 16000, 8000, 0.1

CONV_CHANNELS = (64, "pool", 128, "pool", 256, 256, "pool", 512, 512, "pool")


def hertz_to_mel(hz: torch.Tensor) -> torch.Tensor:
    """The HTK mel scale, 1127 ln(1 + f / 700)."""
    return 1127.0 * torch.log1p(hz / 700.0)


def vggish_mel_matrix(
    n_mels: int = N_MELS,
    n_bins: int = N_FFT // 2 + 1,
    sample_rate: int = SAMPLE_RATE,
    f_min: float = MEL_MIN_HZ,
    f_max: float = MEL_MAX_HZ,
) -> torch.Tensor:
    """[n_bins, n_mels] weights: triangles linear in mel between n_mels + 2 equally spaced mel edges; DC gets
    no weight (`mel_features.spectrogram_to_mel_matrix`)."""
    bins_mel = hertz_to_mel(torch.linspace(0.0, sample_rate / 2, n_bins, dtype=torch.float64))
    edges = torch.linspace(
        float(hertz_to_mel(torch.tensor(f_min))), float(hertz_to_mel(torch.tensor(f_max))), n_mels + 2
    ).double()
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins_mel[:, None] - lower) / (centre - lower)
    falling = (upper - bins_mel[:, None]) / (upper - centre)
    weights = torch.minimum(rising, falling).clamp_min(0.0)
    weights[0] = 0.0
    return weights


class VGGishLogMel(nn.Module):
    """Waveforms [..., T] at 16 kHz -> log-mel [..., 1 + (T - 400) // 160, 64] (`mel_features.py`)."""

    def __init__(self):
        super().__init__()
        periodic_hann = 0.5 - 0.5 * torch.cos(
            2 * math.pi * torch.arange(WINDOW, dtype=torch.float64) / WINDOW
        )
        self.register_buffer("window", periodic_hann.float(), persistent=False)
        self.register_buffer("mel_matrix", vggish_mel_matrix().float(), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if wave.shape[-1] < WINDOW:
            raise ValueError(f"VGGish's front end needs at least {WINDOW} samples, got {wave.shape[-1]}")
        frames = wave.float().unfold(-1, WINDOW, HOP) * self.window
        magnitude = torch.fft.rfft(frames, n=N_FFT).abs()
        return torch.log(magnitude @ self.mel_matrix + LOG_OFFSET)


def fad_examples(wave: torch.Tensor, log_mel: VGGishLogMel) -> torch.Tensor:
    """Clips [B, T] at 16 kHz -> FAD's examples [B, W, 96, 64]: peak scaling, 1-s windows every 0.5 s,
    the first 96 frames of each (module docstring)."""
    if wave.dim() != 2 or wave.shape[1] < FAD_WINDOW:
        raise ValueError(f"expected clips [B, T] of at least {FAD_WINDOW} samples, got {tuple(wave.shape)}")
    wave = wave.float()
    peak = wave.amax(dim=1, keepdim=True).clamp_min(FAD_MIN_PEAK)
    windows = (wave / peak).unfold(1, FAD_WINDOW, FAD_STEP)  # [B, W, 16000]
    return log_mel(windows)[..., :EXAMPLE_FRAMES, :]


def _conv_stack() -> nn.Sequential:
    """The convolutions at torchvggish's indices: conv/ReLU pairs and pools in `CONV_CHANNELS` order."""
    layers: list[nn.Module] = []
    channels = 1
    for item in CONV_CHANNELS:
        if item == "pool":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, item, 3, padding=1), nn.ReLU(inplace=True)]
            channels = item
    return nn.Sequential(*layers)


class VGGish(nn.Module):
    """`forward(examples [N, 96, 64])` -> embeddings [N, 128]; `embed(wave [B, T] at 16 kHz)` -> FAD's
    embeddings [B, W, 128] (W = 1 + (T - 16000) // 8000). Attribute names follow torchvggish's file."""

    def __init__(self, embedding_relu: bool = True):
        super().__init__()
        self.features = _conv_stack()
        layers: list[nn.Module] = [
            nn.Linear(512 * 6 * 4, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, EMBEDDING_SIZE),
        ]
        if embedding_relu:
            layers.append(nn.ReLU(inplace=True))
        self.embeddings = nn.Sequential(*layers)
        self.log_mel = VGGishLogMel()
        self.sample_rate, self.embedding_dim = SAMPLE_RATE, EMBEDDING_SIZE

    def forward(self, examples: torch.Tensor) -> torch.Tensor:
        if examples.shape[-2:] != (EXAMPLE_FRAMES, N_MELS):
            raise ValueError(f"expected examples [N, 96, 64], got {tuple(examples.shape)}")
        x = self.features(examples.reshape(-1, 1, EXAMPLE_FRAMES, N_MELS))  # [N, 512, 6, 4]
        x = x.permute(0, 2, 3, 1).flatten(1)  # TensorFlow's NHWC flattening
        return self.embeddings(x)

    def embed(self, wave: torch.Tensor) -> torch.Tensor:
        examples = fad_examples(wave, self.log_mel)
        return self(examples.flatten(0, 1)).unflatten(0, examples.shape[:2])


class VGGishPCA(nn.Module):
    """The AudioSet release's post-processing of embeddings [N, 128] (`vggish_postprocess.py`): PCA with
    whitening, clip to [-2, 2], quantise to 0..255 (returned as float)."""

    def __init__(self, eigen_vectors: torch.Tensor, means: torch.Tensor):
        super().__init__()
        self.register_buffer("pca_eigen_vectors", eigen_vectors.float())
        self.register_buffer("pca_means", means.float().reshape(-1))

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        projected = (embeddings - self.pca_means) @ self.pca_eigen_vectors.t()
        return torch.round((projected.clamp(-2.0, 2.0) + 2.0) * (255.0 / 4.0))


# what a pickled float numpy array needs beyond weights_only's defaults (the PCA file may hold numpy arrays)
_NUMPY_ARRAYS = [
    np.ndarray,
    np.dtype,
    type(np.dtype(np.float32)),
    type(np.dtype(np.float64)),
    (np.ndarray.__reduce__(np.zeros(1))[0], "numpy.core.multiarray._reconstruct"),  # numpy 1.x's name
    np.ndarray.__reduce__(np.zeros(1))[0],
]


def read_tensor_file(path: str | Path, what: str) -> dict[str, torch.Tensor]:
    """A weight file's tensors by name (read with `weights_only`; numpy arrays allowed; a dict kept under
    `model` unwrapped); a missing or unreadable file is a `UserError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such {what} file")
    try:
        with torch.serialization.safe_globals(_NUMPY_ARRAYS):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise UserError(f"{path}: not a readable {what} file ({error})") from error
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise UserError(f"{path}: expected a dict of tensors, got {type(state).__name__}")
    return {key: torch.as_tensor(value) for key, value in state.items()}


def load_vggish(path: str | Path, embedding_relu: bool = True) -> VGGish:
    """torchvggish's `vggish-10086976.pth` -> a frozen VGGish in eval mode; every key must be used."""
    state = read_tensor_file(path, "VGGish weights")
    model = VGGish(embedding_relu=embedding_relu)
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        raise UserError(
            f"{path}: not torchvggish's VGGish layout (missing {missing[:4]}, unexpected {unexpected[:4]}, "
            f"wrong shapes {wrong[:4]})"
        )
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.eval().requires_grad_(False)


def load_vggish_pca(path: str | Path) -> VGGishPCA:
    """torchvggish's `vggish_pca_params-970ea276.pth` -> the post-processing module."""
    state = read_tensor_file(path, "VGGish PCA parameters")
    if set(state) != {"pca_eigen_vectors", "pca_means"} or state["pca_eigen_vectors"].shape != (128, 128):
        raise UserError(
            f"{path}: expected pca_eigen_vectors [128, 128] and pca_means [128], got {list(state)}"
        )
    return VGGishPCA(state["pca_eigen_vectors"], state["pca_means"]).eval()
