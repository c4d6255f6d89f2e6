"""The MelGAN vocoder V of SpecVQGAN (arXiv:2110.08791, sec. 3.3 and 6.1.5; official `vocoder/modules.py`).

SpecVQGAN trains a MelGAN (Kumar et al., NeurIPS 2019) on VGGSound to turn its [0, 1] log-mel spectrograms
(80 bins, hop 256 at 22,050 Hz; `shared.audio.MelFrontEnd.from_preset("specvqgan")`) into waveforms.
Written here because no well-kept library ships a MelGAN whose layout matches the released SpecVQGAN
vocoder (torchaudio, diffusers and transformers have none; the MelGAN reimplementations on PyPI are
unmaintained and lay their weights out differently), and the official weights must load key for key.

Generator (paper config: n_mels 80, ngf 32, 3 residual units per level, 4,266,050 parameters):
ReflectionPad(3) + conv k7 80 -> 16 ngf; then for each upsampling ratio r of [8, 8, 2, 2]: LeakyReLU(0.2),
transposed conv (kernel 2r, stride r) halving the channels (512 -> 256 -> 128 -> 64 -> 32), and residual
units with dilations 1, 3, 9; finally LeakyReLU -> ReflectionPad(3) -> conv k7 ngf -> 1 -> tanh. A mel of
T frames gives 256 T samples (848 frames -> 217,088 samples).

Residual unit: x + ... is replaced, as in the official code, by shortcut(x) + block(x), where the
shortcut is a weight-normalised 1x1 conv and the block is LeakyReLU -> ReflectionPad(d) -> conv k3
dilation d -> LeakyReLU -> conv k1.

Multi-scale discriminator (paper config: 3 scales, ndf 16, 4 strided layers, factor 4: 16,924,086
parameters): the same window-based discriminator on the waveform, on it average-pooled once (AvgPool
k4 s2) and twice. Each returns the outputs of all its layers; the last is the score map, the others are
the features of the feature-matching loss.

Every convolution is weight-normalised (`torch.nn.utils.parametrizations.weight_norm`, so the state dict
holds `parametrizations.weight.original0` = g and `original1` = v where the official checkpoints have
`weight_g` and `weight_v`; `projects.specvqgan.convert_melgan` maps the names). Module order and names
otherwise equal the official ones (`model.N...`, `model.disc_i.model.layer_j...`), so official state
dicts load after that one rename. The official code also calls a N(0, 0.02) `weights_init`, which has no
effect on weight-normalised convs (it writes into `weight`, which is recomputed from g and v on every
forward); the effective start is PyTorch's default conv init, which is what we keep.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm


def wn_conv1d(*args, **kwargs) -> nn.Conv1d:
    return weight_norm(nn.Conv1d(*args, **kwargs))


def wn_conv_transpose1d(*args, **kwargs) -> nn.ConvTranspose1d:
    return weight_norm(nn.ConvTranspose1d(*args, **kwargs))


class ResidualUnit(nn.Module):
    """shortcut(x) + [LReLU -> ReflPad(d) -> conv k3 dilation d -> LReLU -> conv k1](x), channels kept."""

    def __init__(self, channels: int, dilation: int = 1):
        super().__init__()
        self.block = nn.Sequential(
            nn.LeakyReLU(0.2),
            nn.ReflectionPad1d(dilation),
            wn_conv1d(channels, channels, kernel_size=3, dilation=dilation),
            nn.LeakyReLU(0.2),
            wn_conv1d(channels, channels, kernel_size=1),
        )
        self.shortcut = wn_conv1d(channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.block(x)


class MelGANGenerator(nn.Module):
    """Mel [B, n_mels, T] (SpecVQGAN's [0, 1] scale) -> waveform [B, 1, hop_length * T] in [-1, 1].

    `ratios` must multiply to the mel front end's hop (256); the first conv has 2**len(ratios) * ngf
    channels and each upsampling level halves them, down to ngf.
    """

    def __init__(
        self,
        n_mels: int = 80,
        ngf: int = 32,
        n_residual_layers: int = 3,
        ratios: tuple[int, ...] = (8, 8, 2, 2),
    ):
        super().__init__()
        self.config = {
            "n_mels": n_mels,
            "ngf": ngf,
            "n_residual_layers": n_residual_layers,
            "ratios": list(ratios),
        }
        self.hop_length = math.prod(ratios)
        channels = 2 ** len(ratios) * ngf
        layers: list[nn.Module] = [nn.ReflectionPad1d(3), wn_conv1d(n_mels, channels, kernel_size=7)]
        for r in ratios:
            layers += [
                nn.LeakyReLU(0.2),
                wn_conv_transpose1d(
                    channels,
                    channels // 2,
                    kernel_size=2 * r,
                    stride=r,
                    padding=r // 2 + r % 2,
                    output_padding=r % 2,
                ),
            ]
            channels //= 2
            layers += [ResidualUnit(channels, dilation=3**j) for j in range(n_residual_layers)]
        layers += [
            nn.LeakyReLU(0.2),
            nn.ReflectionPad1d(3),
            wn_conv1d(channels, 1, kernel_size=7),
            nn.Tanh(),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        if mel.dim() != 3 or mel.shape[1] != self.config["n_mels"]:
            raise ValueError(f"expected a mel [B, {self.config['n_mels']}, T], got {tuple(mel.shape)}")
        return self.model(mel)

    def remove_weight_norm(self) -> MelGANGenerator:
        """Fold g and v into plain weights (same outputs, faster inference); the state dict then has
        plain `weight` keys, so do this only on a generator that is no longer trained or saved."""
        for module in self.modules():
            if parametrize.is_parametrized(module, "weight"):
                parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
        return self


class WindowDiscriminator(nn.Module):
    """One scale of MelGAN's discriminator: waveform [B, 1, L] -> the outputs of its n_layers + 3 layers.

    layer_0: ReflectionPad(7) + conv k15 1 -> ndf; layers 1..n_layers: grouped strided convs (kernel
    10 f + 1, stride f, groups in/4), channels times f up to `max_channels`; then conv k5 to
    min(2 x channels, max_channels) and conv k3 to one score channel. LeakyReLU(0.2) after all but the last.

    The official code gives the k5 conv the input width of the last strided conv rather than its output
    width; the two agree in every configuration where the channels reach the cap before the last strided
    layer (the paper's), and ours takes the actual output width, so other sizes build too.
    """

    def __init__(
        self, ndf: int = 16, n_layers: int = 4, downsampling_factor: int = 4, max_channels: int = 1024
    ):
        super().__init__()
        layers = nn.ModuleDict()
        layers["layer_0"] = nn.Sequential(
            nn.ReflectionPad1d(7), wn_conv1d(1, ndf, kernel_size=15), nn.LeakyReLU(0.2, True)
        )
        channels, f = ndf, downsampling_factor
        for n in range(1, n_layers + 1):
            out = min(channels * f, max_channels)
            layers[f"layer_{n}"] = nn.Sequential(
                wn_conv1d(
                    channels,
                    out,
                    kernel_size=10 * f + 1,
                    stride=f,
                    padding=5 * f,
                    groups=max(channels // 4, 1),
                ),
                nn.LeakyReLU(0.2, True),
            )
            channels = out
        out = min(channels * 2, max_channels)
        layers[f"layer_{n_layers + 1}"] = nn.Sequential(
            wn_conv1d(channels, out, kernel_size=5, padding=2), nn.LeakyReLU(0.2, True)
        )
        layers[f"layer_{n_layers + 2}"] = wn_conv1d(out, 1, kernel_size=3, padding=1)
        self.model = layers

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for layer in self.model.values():
            x = layer(x)
            outputs.append(x)
        return outputs


class MelGANDiscriminator(nn.Module):
    """Waveform [B, 1, L] -> one list per scale (num_D) of layer outputs; the last of each is the score."""

    def __init__(
        self,
        num_D: int = 3,
        ndf: int = 16,
        n_layers: int = 4,
        downsampling_factor: int = 4,
        max_channels: int = 1024,
    ):
        super().__init__()
        self.num_D, self.n_layers = num_D, n_layers
        self.model = nn.ModuleDict(
            {
                f"disc_{i}": WindowDiscriminator(ndf, n_layers, downsampling_factor, max_channels)
                for i in range(num_D)
            }
        )
        self.downsample = nn.AvgPool1d(4, stride=2, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        results = []
        for disc in self.model.values():
            results.append(disc(x))
            x = self.downsample(x)
        return results
