"""Plain nn.Modules of GRAVO and its Im2Wav base (no Lightning inside)."""

from projects.gravo.models.resnet1d import ResConv1DBlock, Resnet1D
from projects.gravo.models.vqvae import WaveVQVAE, WaveVQVAEOutput

__all__ = ["ResConv1DBlock", "Resnet1D", "WaveVQVAE", "WaveVQVAEOutput"]
