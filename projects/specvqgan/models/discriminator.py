"""Patch-based discriminator D of SpecVQGAN's adversarial loss (arXiv:2110.08791, eq. 3, Fig. 3; official
`specvqgan/modules/discriminator/model.py`).

The pix2pix PatchGAN ("NLayerDiscriminator") that taming-transformers and the official SpecVQGAN code
use: 4x4 convs, stride 2 except the last two, BatchNorm and LeakyReLU(0.2), one logit per patch
(an 80 x 848 mel gives 8 x 104 logits). Weights start from N(0, 0.02) and BatchNorm scales from
N(1, 0.02), as in pix2pix. The layer indices in `main` match the official checkpoint's
`loss.discriminator.main.N` keys.
"""

from __future__ import annotations

import torch
from torch import nn


class PatchDiscriminator(nn.Module):
    def __init__(self, in_channels: int = 1, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, 4, stride, 1, bias=False),
                nn.BatchNorm2d(ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, 1, 1))
        self.main = nn.Sequential(*layers)
        self.apply(_pix2pix_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


def _pix2pix_init(module: nn.Module) -> None:
    if isinstance(module, nn.Conv2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)
