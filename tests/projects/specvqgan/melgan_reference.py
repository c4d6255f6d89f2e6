"""An independent model of the official SpecVQGAN MelGAN (`v-iashin/SpecVQGAN`, `vocoder/modules.py`:
`Generator`, `NLayerDiscriminator`, `Discriminator`), written from that file's structure with its module
names and its old-style weight norm (`torch.nn.utils.weight_norm`: `weight_g` / `weight_v` keys), which ours
replaces by `torch.nn.utils.parametrizations.weight_norm`. Only the sizes are arguments; the layer order,
paddings, groups and the k5 conv's input width (`nf_prev`) are the official code's.

It exists only to test `projects.specvqgan.convert_melgan` against outputs ours did not produce; it is not
used by the library.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn


def wn(module: nn.Module) -> nn.Module:
    with warnings.catch_warnings():  # the deprecated API is the point: it makes the official key names
        warnings.simplefilter("ignore", FutureWarning)
        return torch.nn.utils.weight_norm(module)


def WNConv1d(*args, **kwargs):
    return wn(nn.Conv1d(*args, **kwargs))


def WNConvTranspose1d(*args, **kwargs):
    return wn(nn.ConvTranspose1d(*args, **kwargs))


class ResnetBlock(nn.Module):
    def __init__(self, dim, dilation=1):
        super().__init__()
        self.block = nn.Sequential(
            nn.LeakyReLU(0.2),
            nn.ReflectionPad1d(dilation),
            WNConv1d(dim, dim, kernel_size=3, dilation=dilation),
            nn.LeakyReLU(0.2),
            WNConv1d(dim, dim, kernel_size=1),
        )
        self.shortcut = WNConv1d(dim, dim, kernel_size=1)

    def forward(self, x):
        return self.shortcut(x) + self.block(x)


class Generator(nn.Module):
    def __init__(self, input_size, ngf, n_residual_layers):
        super().__init__()
        ratios = [8, 8, 2, 2]
        self.hop_length = np.prod(ratios)
        mult = int(2 ** len(ratios))
        model = [nn.ReflectionPad1d(3), WNConv1d(input_size, mult * ngf, kernel_size=7, padding=0)]
        for r in ratios:
            model += [
                nn.LeakyReLU(0.2),
                WNConvTranspose1d(
                    mult * ngf, mult * ngf // 2, kernel_size=r * 2, stride=r, padding=r // 2 + r % 2,
                    output_padding=r % 2,
                ),
            ]  # fmt: skip
            for j in range(n_residual_layers):
                model += [ResnetBlock(mult * ngf // 2, dilation=3**j)]
            mult //= 2
        model += [
            nn.LeakyReLU(0.2),
            nn.ReflectionPad1d(3),
            WNConv1d(ngf, 1, kernel_size=7, padding=0),
            nn.Tanh(),
        ]
        self.model = nn.Sequential(*model)

    def forward(self, x):
        return self.model(x)


class NLayerDiscriminator(nn.Module):
    def __init__(self, ndf, n_layers, downsampling_factor):
        super().__init__()
        model = nn.ModuleDict()
        model["layer_0"] = nn.Sequential(
            nn.ReflectionPad1d(7), WNConv1d(1, ndf, kernel_size=15), nn.LeakyReLU(0.2, True)
        )
        nf = ndf
        stride = downsampling_factor
        for n in range(1, n_layers + 1):
            nf_prev = nf
            nf = min(nf * stride, 1024)
            model[f"layer_{n}"] = nn.Sequential(
                WNConv1d(nf_prev, nf, kernel_size=stride * 10 + 1, stride=stride, padding=stride * 5,
                         groups=nf_prev // 4),
                nn.LeakyReLU(0.2, True),
            )  # fmt: skip
        nf = min(nf * 2, 1024)
        model[f"layer_{n_layers + 1}"] = nn.Sequential(
            WNConv1d(nf_prev, nf, kernel_size=5, stride=1, padding=2), nn.LeakyReLU(0.2, True)
        )
        model[f"layer_{n_layers + 2}"] = WNConv1d(nf, 1, kernel_size=3, stride=1, padding=1)
        self.model = model

    def forward(self, x):
        results = []
        for layer in self.model.values():
            x = layer(x)
            results.append(x)
        return results


class Discriminator(nn.Module):
    def __init__(self, num_D, ndf, n_layers, downsampling_factor):
        super().__init__()
        self.model = nn.ModuleDict()
        for i in range(num_D):
            self.model[f"disc_{i}"] = NLayerDiscriminator(ndf, n_layers, downsampling_factor)
        self.downsample = nn.AvgPool1d(4, stride=2, padding=1, count_include_pad=False)

    def forward(self, x):
        results = []
        for disc in self.model.values():
            results.append(disc(x))
            x = self.downsample(x)
        return results


def randomize(module: nn.Module, seed: int) -> nn.Module:
    """Random directions v, gains g in [0.9, 1.3] and small biases: far from any default init, so a wrong
    mapping shows, and scaled so that the signal neither dies out nor saturates the tanh over the
    generator's many layers."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("weight_g"):
                p.copy_(torch.rand(p.shape, generator=generator) * 0.4 + 0.9)
            else:
                p.copy_(torch.randn(p.shape, generator=generator) * (0.1 if name.endswith("bias") else 1.0))
    return module.eval()
