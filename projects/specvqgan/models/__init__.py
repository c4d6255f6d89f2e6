"""SpecVQGAN's plain nn.Modules (no Lightning inside)."""

from projects.specvqgan.models.discriminator import PatchDiscriminator
from projects.specvqgan.models.lpaps import LPAPS
from projects.specvqgan.models.melgan import MelGANDiscriminator, MelGANGenerator
from projects.specvqgan.models.vggishish import VGGishish
from projects.specvqgan.models.vqgan import SpectrogramVQGAN

__all__ = [
    "LPAPS",
    "MelGANDiscriminator",
    "MelGANGenerator",
    "PatchDiscriminator",
    "SpectrogramVQGAN",
    "VGGishish",
]
