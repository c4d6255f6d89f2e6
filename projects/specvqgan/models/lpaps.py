"""LPAPS, the learned perceptual audio patch similarity (SpecVQGAN, arXiv:2110.08791, sec. 3.1, eq. 3;
official `specvqgan/modules/losses/lpaps.py`).

sum over the five VGGish-ish scales s of (1 / (F^s T^s)) * ||x^s - x_hat^s||^2: a spatial mean of the
squared feature difference, summed over channels and scales. As in LPIPS, which the official code follows,
each feature vector is first normalised to unit length over channels, so every scale contributes on the
same footing; the paper names no per-channel weights, so all are 1 (the official code's `lin` layers were
never trained, and its VGGish-ish weights never loaded: README erratum, issue #13). The classifier is
frozen and in eval mode.
"""

from __future__ import annotations

import torch
from torch import nn

from projects.specvqgan.models.vggishish import VGGishish


def _unit_channels(x: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    return x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


class LPAPS(nn.Module):
    def __init__(self, classifier: VGGishish):
        super().__init__()
        del (
            classifier.classifier
        )  # only the conv features are used; the 123M-parameter head would bloat checkpoints
        self.classifier = classifier.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> LPAPS:
        return super().train(False)  # the classifier stays frozen in eval mode

    def forward(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        """x, x_hat: mels [B, 1, F, T] scaled to [-1, 1] -> per-example distance [B]."""
        real = self.classifier.scales((x + 1) / 2)
        fake = self.classifier.scales((x_hat + 1) / 2)
        return sum(
            (_unit_channels(a) - _unit_channels(b)).pow(2).sum(dim=1).mean(dim=(1, 2))
            for a, b in zip(real, fake, strict=True)
        )
