"""VGGish-ish: the spectrogram classifier behind LPAPS (SpecVQGAN, arXiv:2110.08791, sec. 3.1 and 6.1.3;
official `specvqgan/modules/losses/vggishish/model.py`).

A VGG-16 conv stack (3x3 convs + ReLU, no BatchNorm, max-pool between the five blocks but not after the
last) on one-channel mel spectrograms, then AdaptiveAvgPool to 5 x 10 and three fully connected layers.
Paper size: widths (64, 128, 256, 512, 512), FC 4096, 309 VGGSound classes, 137,622,517 parameters; the
`features.N` / `classifier.N` indices match the official checkpoint.

The per-mel-bin input standardisation ((x - mean_f) / std_f, on the [0, 1] mel) is part of the module
as buffers (`MelStandardization`, shared with Melception), so a checkpoint carries the statistics its
weights were trained with.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from shared.encoders.mel_statistics import MelStandardization

VGG16_BLOCKS = (2, 2, 3, 3, 3)  # convs per block


class VGGishish(MelStandardization, nn.Module):
    def __init__(
        self,
        n_classes: int = 309,
        widths: tuple[int, ...] = (64, 128, 256, 512, 512),
        fc_dim: int = 4096,
        pool_size: tuple[int, int] = (5, 10),
        n_mels: int = 80,
        fc_init_std: float | None = 0.01,
    ):
        super().__init__()
        self.n_classes = n_classes
        layers: list[nn.Module] = []
        self.scale_ends: list[int] = []  # index just after the last ReLU of each block (an LPAPS scale)
        in_ch = 1
        for block, (width, n_convs) in enumerate(zip(widths, VGG16_BLOCKS, strict=True)):
            if block > 0:
                layers.append(nn.MaxPool2d(2, 2))
            for _ in range(n_convs):
                layers += [nn.Conv2d(in_ch, width, 3, padding=1), nn.ReLU(inplace=True)]
                in_ch = width
            self.scale_ends.append(len(layers))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(pool_size)
        self.classifier = nn.Sequential(
            nn.Linear(in_ch * pool_size[0] * pool_size[1], fc_dim),
            nn.ReLU(inplace=True),
            nn.Linear(fc_dim, fc_dim),
            nn.ReLU(inplace=True),
            nn.Linear(fc_dim, n_classes),
        )
        self._init_mel_statistics(n_mels)
        self.apply(partial(_vgg_init, fc_init_std=fc_init_std))

    def scales(self, mel01: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps at the end of each of the five blocks (relu1_2 ... relu5_3), for LPAPS."""
        x, outputs, start = self.standardize(mel01), [], 0
        for end in self.scale_ends:
            x = self.features[start:end](x)
            outputs.append(x)
            start = end
        return outputs

    def forward(self, mel01: torch.Tensor) -> torch.Tensor:
        """[B, 1, F, T] mel in [0, 1] -> class logits [B, n_classes]."""
        x = self.features(self.standardize(mel01))
        return self.classifier(torch.flatten(self.avgpool(x), 1))


def _vgg_init(module: nn.Module, fc_init_std: float | None) -> None:
    """torchvision's VGG initialisation, which the official VGGish-ish uses.

    Its N(0, 0.01) fully connected weights suit 4096-wide layers; in a narrow toy network they shrink the
    logits so far that training idles at chance for many epochs, so `fc_init_std=None` keeps PyTorch's
    fan-in-scaled default there instead.
    """
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Linear) and fc_init_std is not None:
        nn.init.normal_(module.weight, 0.0, fc_init_std)
        nn.init.zeros_(module.bias)
