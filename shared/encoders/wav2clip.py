"""Wav2CLIP: an audio encoder distilled into CLIP's image space (Wu et al., arXiv:2110.11499).

GRAVO (Interspeech 2023, sec. 2.3) uses it frozen as the audio target of its auxiliary losses, and its CS
metric (sec. 3.3) is the cosine between Wav2CLIP of the generated audio and CLIP of the condition. The
architecture is the official one (`descriptinc/lyrebird-wav2clip`, `wav2clip/model/resnet.py` and
`wav2clip/model/encoder.py`):

- front end: `torchaudio.transforms.Spectrogram(n_fft=512, hop_length=353)` (power 2, Hann, centred) on
  16 kHz audio -> [B, 1, 257, 1 + T // 353], then log(x + 1e-7) and normalisation to zero mean, unit std;
- `audio_encoder`: a ResNet-18 ([2, 2, 2, 2] BasicBlocks) with one input channel, global average pool ->
  512-d (11,170,240 parameters);
- `audio_transform`: the MLP 512 -> 512 -> 512 (Linear, ReLU, Dropout 0.1, Linear; 525,312 parameters) that
  maps the encoder's output into CLIP's image-embedding space; the released model outputs
  `audio_transform(audio_encoder(wav))`.

The submodule names are the official ones, so the official `Wav2CLIP.pt` loads key for key
(`load_wav2clip`). The residual blocks are torchvision's `BasicBlock` (the same block the official copy of
torchvision's ResNet defines); the trunk around them is written here because torchvision's `ResNet` fixes
three input channels, the widths 64-512 and an `fc` head, while the toy model needs narrower widths.

One deliberate difference: the official front end normalises with the mean and std of the *whole batch
tensor* (`(x - x.mean()) / (x.std() + 1e-9)`), so an item's embedding depends on the clips it is batched
with. Here every item is normalised by its own mean and unbiased std (torch's default, as the official
`torch.std`), which gives the official result for a batch of one and makes embeddings independent of batch
composition, as a metric and a training target need.
"""

from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torchaudio
from torch import nn
from torchvision.models.resnet import BasicBlock, conv1x1

from shared.runs import UserError

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
N_FFT = 512
HOP_LENGTH = 353
LOG_EPS = 1e-7  # official log(x + 1e-7)
STD_EPS = 1e-9  # official (x - mean) / (std + 1e-9)


def wav2clip_frames(n_samples: int) -> int:
    """Spectrogram frames of a clip of `n_samples` (centred STFT): 1 + n_samples // 353."""
    return 1 + n_samples // HOP_LENGTH


class Wav2CLIPResNet(nn.Module):
    """The official `audio_encoder`: log-spectrogram -> ResNet (BasicBlocks, one input channel) -> [B, C].

    `widths` are the stem's and the four stages' channels (official 64, 128, 256, 512; C = widths[-1]) and
    `blocks` the BasicBlocks per stage (official 2, 2, 2, 2); the toy model narrows them.
    """

    def __init__(self, widths: tuple[int, ...] = (64, 128, 256, 512), blocks: tuple[int, ...] = (2, 2, 2, 2)):
        super().__init__()
        if len(widths) != 4 or len(blocks) != 4:
            raise ValueError(f"expected 4 stage widths and 4 block counts, got {widths} and {blocks}")
        self.spectrogram = torchaudio.transforms.Spectrogram(n_fft=N_FFT, hop_length=HOP_LENGTH)
        self.conv1 = nn.Conv2d(1, widths[0], kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        in_channels = widths[0]
        for i, (width, n_blocks) in enumerate(zip(widths, blocks, strict=True)):
            stride = 1 if i == 0 else 2
            setattr(self, f"layer{i + 1}", self._stage(in_channels, width, n_blocks, stride))
            in_channels = width
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.out_dim = in_channels
        # the official initialisation (a copy of torchvision's, but BatchNorm weights drawn around 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, mean=1.0, std=0.02)
                nn.init.zeros_(m.bias)

    @staticmethod
    def _stage(in_channels: int, width: int, n_blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or in_channels != width:
            downsample = nn.Sequential(conv1x1(in_channels, width, stride), nn.BatchNorm2d(width))
        layers = [BasicBlock(in_channels, width, stride, downsample)]
        layers += [BasicBlock(width, width) for _ in range(n_blocks - 1)]
        return nn.Sequential(*layers)

    def log_spectrogram(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B, T] at 16 kHz -> the normalised log power spectrogram [B, 1, 257, 1 + T // 353].

        Each item is normalised by its own statistics (see the module docstring for the official batch-wide
        version)."""
        if wav.dim() != 2:
            raise ValueError(f"Wav2CLIP expects a batch of waveforms [B, T], got shape {tuple(wav.shape)}")
        if wav.shape[1] <= N_FFT // 2:
            raise ValueError(
                f"Wav2CLIP needs more than {N_FFT // 2} samples per clip (the centred STFT reflects "
                f"{N_FFT // 2} samples at each end), got {wav.shape[1]}"
            )
        x = torch.log(self.spectrogram(wav.unsqueeze(1)) + LOG_EPS)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        std = x.std(dim=(1, 2, 3), keepdim=True)
        return (x - mean) / (std + STD_EPS)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(self.log_spectrogram(wav)))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x).flatten(1)


class ProjectionMLP(nn.Module):
    """The official `MLPLayers` with units [in, hidden, out]: Linear, ReLU, Dropout, Linear (`sequential.{0,3}`).

    Written out rather than `torchvision.ops.MLP`, which ends with one more Dropout on the output."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, dropout: float = 0.1):
        super().__init__()
        self.sequential = nn.Sequential(
            nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden_dim, out_dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sequential(x)


class Wav2CLIP(nn.Module):
    """`forward(wav [B, T] float32 at 16 kHz, any T > 256) -> [B, embed_dim]` in CLIP's image space.

    Defaults are the released model's sizes; `widths`, `blocks` and `embed_dim` shrink it for toy runs.
    """

    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        widths: tuple[int, ...] = (64, 128, 256, 512),
        blocks: tuple[int, ...] = (2, 2, 2, 2),
        embed_dim: int = 512,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.audio_encoder = Wav2CLIPResNet(tuple(widths), tuple(blocks))
        self.audio_transform = ProjectionMLP(self.audio_encoder.out_dim, embed_dim, embed_dim, dropout)
        self.embed_dim = embed_dim
        self.frozen = False

    def freeze(self) -> Wav2CLIP:
        """Eval mode for good, no gradients: a frozen target inside a model being trained stays frozen when
        the parent's `.train()` reaches it (no dropout, no BatchNorm statistics updated)."""
        self.frozen = True
        return self.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> Wav2CLIP:
        return super().train(mode and not self.frozen)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.audio_transform(self.audio_encoder(wav))


# ---------------------------------------------------------------------------------------------------------
# Loading the official `Wav2CLIP.pt` and our own checkpoints


MODEL_PREFIXES = ("audio_encoder.", "audio_transform.")


@dataclass
class Wav2CLIPConversion:
    """What `load_wav2clip` took from a file: the model's tensors, and the training-only tensors beside them."""

    loaded: int = 0
    prefix: str = ""  # stripped from every key (e.g. `model.` in our Lightning checkpoints)
    skipped: list[str] = field(default_factory=list)  # training-only tensors (image head, loss temperature)

    def __str__(self) -> str:
        text = f"loaded {self.loaded} tensors"
        if self.prefix:
            text += f" (prefix {self.prefix!r} stripped)"
        if self.skipped:
            text += f"; skipped {len(self.skipped)} training-only tensors: {self.skipped[:5]}"
        return text


def _read(path: Path) -> dict:
    if not path.is_file():
        raise UserError(
            f"{path}: no such Wav2CLIP file (the official one is Wav2CLIP.pt, release v0.1.0-alpha)"
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as error:
        raise UserError(
            f"{path}: not a readable Wav2CLIP checkpoint ({str(error).splitlines()[0]})"
        ) from error
    if not isinstance(ckpt, dict):
        raise UserError(f"{path}: expected a state dict, found a {type(ckpt).__name__}")
    # the official file is a flat state dict; a Lightning checkpoint keeps it under `state_dict`
    state = ckpt.get("state_dict", ckpt)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path}: expected a state dict of tensors (or a Lightning checkpoint holding one)")
    return state


def _architecture(state: dict[str, torch.Tensor], path: Path) -> dict:
    """Wav2CLIP's constructor arguments read off the shapes of its tensors."""
    widths, blocks = [], []
    for stage in range(1, 5):
        convs = [
            k for k in state if k.startswith(f"audio_encoder.layer{stage}.") and k.endswith(".conv1.weight")
        ]
        if not convs:
            raise UserError(f"{path}: no audio_encoder.layer{stage} tensors; not a Wav2CLIP checkpoint")
        widths.append(state[f"audio_encoder.layer{stage}.0.conv1.weight"].shape[0])
        blocks.append(len(convs))
    head = state.get("audio_transform.sequential.3.weight")
    if head is None:
        raise UserError(
            f"{path}: no audio_transform.sequential.3.weight; Wav2CLIP needs its audio_transform head"
        )
    return {"widths": tuple(widths), "blocks": tuple(blocks), "embed_dim": head.shape[0]}


def load_wav2clip(path: str | Path) -> Wav2CLIP:
    """The official `Wav2CLIP.pt` or a Wav2CLIP trained here, frozen (`Wav2CLIP.freeze`: eval mode that a
    parent's `.train()` does not undo, no gradients).

    The official file (`descriptinc/lyrebird-wav2clip`, `wav2clip/__init__.py`, `get_model`) is a flat state
    dict whose `audio_encoder.*` (the spectrogram's window included) and `audio_transform.*` tensors are the
    model; our Lightning checkpoints (`shared.wav2clip_training`) hold the same keys under `model.`,
    next to the training-only image head and loss temperature, which are skipped. The sizes come from the
    tensors' shapes; every model tensor must be there with its shape, else a `UserError` names the file.
    `conversion_report` on the returned module says what was loaded.
    """
    path = Path(path)
    state = _read(path)
    anchor = next((k for k in state if k.endswith("audio_encoder.conv1.weight")), None)
    if anchor is None:
        raise UserError(f"{path}: no audio_encoder.conv1.weight; not a Wav2CLIP checkpoint")
    report = Wav2CLIPConversion(prefix=anchor.removesuffix("audio_encoder.conv1.weight"))
    model_state = {}
    for key, value in state.items():
        name = key.removeprefix(report.prefix)
        if key.startswith(report.prefix) and name.startswith(MODEL_PREFIXES):
            model_state[name] = value
        else:
            report.skipped.append(key)
    model = Wav2CLIP(**_architecture(model_state, path))
    expected = model.state_dict()
    problems = [f"missing {k}" for k in expected if k not in model_state]
    problems += [f"unexpected {k}" for k in model_state if k not in expected]
    problems += [
        f"{k} is {tuple(v.shape)}, expected {tuple(expected[k].shape)}"
        for k, v in model_state.items()
        if k in expected and v.shape != expected[k].shape
    ]
    if problems:
        raise UserError(
            f"{path}: does not fit Wav2CLIP ({len(problems)} problems: {'; '.join(problems[:5])})"
        )
    model.load_state_dict(model_state)
    report.loaded = len(model_state)
    log.info("%s: %s", path, report)
    model.conversion_report = report
    return model.freeze()
