"""SpecVQGAN's plain nn.Modules (no Lightning inside)."""

from projects.specvqgan.models.discriminator import PatchDiscriminator
from projects.specvqgan.models.lpaps import LPAPS
from projects.specvqgan.models.melception import Melception
from projects.specvqgan.models.vggishish import VGGishish
from projects.specvqgan.models.vqgan import SpectrogramVQGAN

__all__ = ["LPAPS", "Melception", "PatchDiscriminator", "SpectrogramVQGAN", "VGGishish"]
