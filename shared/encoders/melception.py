"""Melception: the spectrogram classifier behind SpecVQGAN's FID, MKL and IS (paper sec. 3.4 and 6.1.6).

torchvision's `Inception3` with the paper's two changes: the input convolution `Conv2d_1a_3x3` takes one
channel (1 -> 32, kernel 3, stride 2) and `maxpool1` / `maxpool2` are identities, so an 80 x 848 mel keeps its
resolution (pre-pool map [B, 2048, 8, 104]; `v-iashin/SpecVQGAN`,
`evaluation/feature_extractors/melception.py`). The auxiliary head stays in the module because the official
checkpoint holds `AuxLogits.*`; the official training computed the auxiliary loss and then overwrote it, so
only the main head learned - here the auxiliary head is frozen (`requires_grad=False`) and never run, which is
the same training and keeps DDP free of unused parameters. Paper size (309 VGGSound classes): 25,213,450
parameters, 580 official state-dict entries (plus our two `mel_mean` / `mel_std` buffers, the classifier's
input standardisation shared with VGGish-ish).

`features` returns what the official evaluation reads: `'2048'` (pooled features, FID), `'logits'` (with the
fc bias, MKL) and `'logits_unbiased'` (features @ W^T without the bias, IS).

`width_divisor` (1, 2, 4, 8 or 16) divides every channel count of every block; it exists only so the toy
config trains in seconds on a CPU, where the full network is far too slow for a toy run (figures:
projects/specvqgan/README.md). The paper configuration is `width_divisor=1`, which builds torchvision's
blocks unchanged.
"""

from __future__ import annotations

import functools
from functools import partial

import torch
import torchaudio
from torch import nn
from torchvision.models.inception import (
    BasicConv2d,
    Inception3,
    InceptionA,
    InceptionAux,
    InceptionB,
    InceptionC,
    InceptionD,
    InceptionE,
)

from shared.audio import MelFrontEnd
from shared.encoders.mel_statistics import MelStandardization

FEATURES = ("2048", "logits", "logits_unbiased")
# The blocks in the order torchvision's Inception3 runs them (maxpool1/2 are identities here).
TRUNK = (
    "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
    "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
    "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c",
)  # fmt: skip


def _narrow_conv(in_channels: int, out_channels: int, divisor: int, **kwargs) -> BasicConv2d:
    return BasicConv2d(max(in_channels // divisor, 1), out_channels // divisor, **kwargs)


def _trunc_normal_init(module: nn.Module, std: float) -> None:
    """torchvision's Inception3 initialisation for a layer we replaced after its constructor ran."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.trunc_normal_(m.weight, mean=0.0, std=std, a=-2, b=2)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class Melception(MelStandardization, Inception3):
    def __init__(self, n_classes: int = 309, n_mels: int = 80, dropout: float = 0.5, width_divisor: int = 1):
        if width_divisor not in (1, 2, 4, 8, 16):
            raise ValueError(f"width_divisor must be 1, 2, 4, 8 or 16 (got {width_divisor})")
        blocks = None
        if width_divisor > 1:
            conv = partial(_narrow_conv, divisor=width_divisor)
            blocks = [conv] + [
                partial(b, conv_block=conv)
                for b in (InceptionA, InceptionB, InceptionC, InceptionD, InceptionE, InceptionAux)
            ]
        super().__init__(
            num_classes=n_classes,
            aux_logits=True,
            transform_input=False,
            inception_blocks=blocks,
            init_weights=True,
            dropout=dropout,
        )
        self.n_classes = n_classes
        self.width_divisor = width_divisor
        self.Conv2d_1a_3x3 = BasicConv2d(1, 32 // width_divisor, kernel_size=3, stride=2)
        self.maxpool1 = nn.Identity()
        self.maxpool2 = nn.Identity()
        _trunc_normal_init(self.Conv2d_1a_3x3, 0.1)
        if width_divisor > 1:  # the two heads' input sizes are written into torchvision's classes
            self.fc = nn.Linear(2048 // width_divisor, n_classes)
            self.AuxLogits.fc = nn.Linear(768 // width_divisor, n_classes)
            _trunc_normal_init(self.fc, 0.1)
            _trunc_normal_init(self.AuxLogits.fc, 0.001)
        self.AuxLogits.requires_grad_(False)
        self._init_mel_statistics(n_mels)

    def prepool(self, mel01: torch.Tensor) -> torch.Tensor:
        """[B, 1, F, T] mel in [0, 1] -> the last block's map [B, 2048 / width_divisor, F', T']."""
        x = self.standardize(mel01)
        for name in TRUNK:
            x = getattr(self, name)(x)
        return x

    def _pooled(self, mel01: torch.Tensor) -> torch.Tensor:
        return self.dropout(torch.flatten(self.avgpool(self.prepool(mel01)), 1))

    def forward(self, mel01: torch.Tensor) -> torch.Tensor:
        """[B, 1, F, T] mel in [0, 1] -> class logits [B, n_classes] (the main head only)."""
        return self.fc(self._pooled(mel01))

    def features(self, mel01: torch.Tensor, names: tuple[str, ...] = FEATURES) -> dict[str, torch.Tensor]:
        """The features the official evaluation reads (`v-iashin/SpecVQGAN`, `evaluation/metrics/fid.py`,
        `kl.py`, `isc.py`), by name: `'2048'` [B, 2048] pooled features, `'logits'` [B, n_classes] =
        fc(features), `'logits_unbiased'` = features @ fc.weight^T (no bias).
        Call it in eval mode (dropout off), as the official evaluation does."""
        unknown = set(names) - set(FEATURES)
        if unknown:
            raise ValueError(f"unknown Melception features {sorted(unknown)}; choose from {FEATURES}")
        pooled = self._pooled(mel01)
        out = {"2048": pooled, "logits": self.fc(pooled), "logits_unbiased": pooled @ self.fc.weight.t()}
        return {name: out[name] for name in names}


@functools.cache
def _specvqgan_front_end() -> MelFrontEnd:
    return MelFrontEnd.from_preset("specvqgan")


def melception_inputs(wave: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Waveforms [B, T] at any rate -> what Melception reads: SpecVQGAN's mel [B, 80, frames] in [0, 1] of the
    audio resampled to 22,050 Hz (torchaudio's sinc resampler). This is how audio of other systems is scored
    with Melception, e.g. TiVA's 16 kHz output (TiVA sec. 4.1.3, its "mel." metrics)."""
    front_end = _specvqgan_front_end().to(wave.device)
    if sample_rate != front_end.sample_rate:
        wave = torchaudio.functional.resample(wave.float(), sample_rate, front_end.sample_rate)
    return front_end(wave)
