"""Audio-guided image generation: VQGAN latents optimised until the image tower's embedding of the decoded image
matches the audio embedding (WavBriVL, arXiv:2303.04585, sec. 5: the frozen VQGAN and the frozen image tower,
images refined until the tower "approves" them).

The paper gives no settings; the recipe is the VQGAN-CLIP loop of Wav2CLIP's generation script
(`descriptinc/lyrebird-wav2clip`, `scripts/VQGAN-CLIP/generate.py`), which WavBriVL follows:

- z starts as random codebook rows (one random code per latent position);
- each step quantises z to its nearest codes with straight-through gradients, decodes, maps [-1, 1] to
  [0, 1] with a clamp that still passes gradients that pull values back inside;
- `cutouts` crops of the image (side drawn as rand ** cut_pow between the perceptor's size and the image's,
  as the script's original cut method draws it; cut_pow 0 gives its default "latest" method, the whole
  image every time), each pooled to the perceptor's size by the mean of adaptive average and max pooling,
  augmented (RandomAffine 15 deg / translate 0.1 / shear 5, RandomPerspective 0.7, ColorJitter 0.1,
  RandomErasing 0.1-0.4 of the area, each with p 0.7; see below for the hue) and given Gaussian noise of a per-cutout scale drawn
  from U(0, noise);
- the loss is the mean spherical distance d = 2 arcsin(|x - y| / 2)^2 between the unit embeddings of the
  cutouts and the target; Adam (lr 0.1) steps z, which is then clamped per channel to the codebook's range.

Where we differ, and why: all cutouts and the un-augmented image go through the perceptor in one batched
forward (the script's perceptor also sees one batch; the un-augmented image rides along to measure the
similarity curve at no extra forward); augmentations are torchvision's `transforms.v2` instead of kornia
(kornia is not a dependency), applied per cutout because a v2 transform draws one set of parameters per call
(kornia draws one per sample), and without the hue jitter (torchvision's hue adjustment writes into views
in place, which autograd refuses; brightness, contrast and saturation jitter stay); the loop can stop early when the similarity has not improved for `patience`
steps or passes `threshold` (the paper ranks images of "the 100th epoch"; at 30+ perceptor forwards a step,
steps are the cost; both off by default: the similarity often dips for the first steps, as Adam's first
moves from the random codes overshoot, and a patience shorter than the dip stops at the start), and the
image returned is the one of the best similarity seen.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms import v2

from shared.vq import nearest_code


@dataclass
class GenerationSettings:
    steps: int = 100  # the paper's "100th epoch"; Wav2CLIP's script runs 500
    lr: float = 0.1
    cutouts: int = 32
    cut_pow: float = 1.0
    augmentations: bool = True
    noise: float = 0.1  # per-cutout noise scale drawn from U(0, noise)
    patience: int | None = None  # stop when the similarity has not improved for this many steps
    threshold: float | None = None  # stop when the similarity reaches this
    size: int = 256  # image side, rounded down to a multiple of the VQGAN's downsampling factor


def spherical_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """2 arcsin(|x^ - y^| / 2)^2 between the unit vectors of x and y along the last dim (= theta^2 / 2 for the
    angle theta between them; Wav2CLIP's `Prompt`)."""
    x, y = F.normalize(x, dim=-1), F.normalize(y, dim=-1)
    return (x - y).norm(dim=-1).div(2).arcsin().pow(2).mul(2)


class _ClampWithGrad(torch.autograd.Function):
    """clamp(x, low, high) whose gradient passes wherever following it moves x back towards [low, high]
    (a plain clamp would zero the gradient of every clipped pixel and stall the optimisation)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, low: float, high: float) -> torch.Tensor:
        ctx.low, ctx.high = low, high
        ctx.save_for_backward(x)
        return x.clamp(low, high)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        return grad * (grad * (x - x.clamp(ctx.low, ctx.high)) >= 0), None, None


def clamp_with_grad(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    return _ClampWithGrad.apply(x, low, high)


def straight_through_quantize(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """z [B, C, H, W] -> its nearest codebook rows in the forward pass, the identity in the backward pass."""
    rows = z.movedim(1, -1).reshape(-1, z.shape[1])
    z_q = codebook[nearest_code(rows, codebook)].view(z.shape[0], *z.shape[2:], z.shape[1]).movedim(-1, 1)
    return z + (z_q - z).detach()


def _augmentations() -> v2.Compose:
    return v2.Compose(
        [
            v2.RandomApply([v2.RandomAffine(degrees=15, translate=(0.1, 0.1), shear=5)], p=0.7),
            # fill None: grid_sample's zero padding (a fill colour goes through in-place ops autograd refuses)
            v2.RandomPerspective(distortion_scale=0.7, p=0.7, fill=None),
            v2.RandomApply([v2.ColorJitter(brightness=0.1, contrast=0.1, saturation=0.1)], p=0.7),
            v2.RandomErasing(p=0.7, scale=(0.1, 0.4), ratio=(0.3, 1 / 0.3)),
        ]
    )


class Cutouts(nn.Module):
    """An image [1, 3, H, W] -> `count` augmented crops [count, 3, cut_size, cut_size] (see the module doc).

    Crop places and sizes and the noise come from `generator`; the torchvision augmentations draw from the
    global generator, which is seeded from `generator` for the call and restored after it.
    """

    def __init__(
        self, cut_size: int, count: int, cut_pow: float = 1.0, augment: bool = True, noise: float = 0.1
    ):
        super().__init__()
        self.cut_size, self.count, self.cut_pow, self.noise = cut_size, count, cut_pow, noise
        self.augment = _augmentations() if augment else None

    def _crop(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        height, width = image.shape[-2:]
        largest, smallest = min(height, width), min(height, width, self.cut_size)
        draw = torch.rand((), generator=generator).item()
        side = int(draw**self.cut_pow * (largest - smallest) + smallest)
        top = int(torch.randint(height - side + 1, (), generator=generator))
        left = int(torch.randint(width - side + 1, (), generator=generator))
        crop = image[..., top : top + side, left : left + side]
        size = (self.cut_size, self.cut_size)
        return (F.adaptive_avg_pool2d(crop, size) + F.adaptive_max_pool2d(crop, size)) / 2

    def forward(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        crops = [self._crop(image, generator) for _ in range(self.count)]
        if self.augment is not None:
            seed = int(torch.randint(2**62, (), generator=generator))
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                crops = [self.augment(crop) for crop in crops]
        batch = torch.cat(crops)
        if self.noise:
            scale = torch.rand(self.count, 1, 1, 1, generator=generator) * self.noise
            noise = torch.randn(batch.shape, generator=generator)
            batch = batch + (scale * noise).to(batch)
        return batch


class LatentOptimisation:
    """The state of one image's optimisation: z, Adam, the cutouts. `step()` does one iteration and returns
    the similarity (cosine) of the image it started from (z before the update, un-augmented) to the target."""

    def __init__(
        self,
        vqgan: nn.Module,
        perceptor: nn.Module,
        target: torch.Tensor,
        settings: GenerationSettings,
        generator: torch.Generator,
    ):
        self.vqgan, self.perceptor, self.settings, self.generator = vqgan, perceptor, settings, generator
        codebook = vqgan.quantize.embedding.weight.detach()
        self.codebook = codebook
        self.z_min = codebook.min(dim=0).values[None, :, None, None]
        self.z_max = codebook.max(dim=0).values[None, :, None, None]
        self.target = F.normalize(target.detach().reshape(1, -1).float(), dim=-1).to(codebook.device)
        factor = 2 ** (len(vqgan.config.block_out_channels) - 1)
        side = settings.size // factor
        if side < 1:
            raise ValueError(
                f"image size {settings.size} is smaller than the VQGAN's downsampling factor {factor}"
            )
        codes = torch.randint(codebook.shape[0], (side * side,), generator=generator).to(codebook.device)
        self.z = codebook[codes].T.reshape(1, -1, side, side).clone().requires_grad_(True)
        self.optimizer = torch.optim.Adam([self.z], lr=settings.lr)
        self.cut_size = perceptor.image_size
        self.cutouts = Cutouts(
            self.cut_size, settings.cutouts, settings.cut_pow, settings.augmentations, settings.noise
        )

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z -> image [1, 3, H, W] in [0, 1], differentiable in z."""
        z_q = straight_through_quantize(z, self.codebook)
        image = self.vqgan.decode(z_q, force_not_quantize=True).sample
        return clamp_with_grad(image.add(1).div(2), 0.0, 1.0)

    def _whole(self, image: torch.Tensor) -> torch.Tensor:
        if image.shape[-1] == self.cut_size and image.shape[-2] == self.cut_size:
            return image
        return F.interpolate(image, size=(self.cut_size, self.cut_size), mode="bilinear", antialias=True)

    def step(self) -> tuple[float, torch.Tensor]:
        """One iteration; returns (similarity of the image before the update, that image [3, H, W])."""
        image = self.decode(self.z)
        batch = torch.cat([self.cutouts(image, self.generator), self._whole(image).detach()])
        embeddings = self.perceptor(batch)  # one forward for every cutout and the un-augmented image
        loss = spherical_distance(embeddings[:-1], self.target).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        with torch.no_grad():
            self.z.copy_(self.z.maximum(self.z_min).minimum(self.z_max))
        similarity = F.cosine_similarity(embeddings[-1:].detach(), self.target).item()
        return similarity, image[0].detach()


def generate_image(
    vqgan: nn.Module,
    perceptor: nn.Module,
    target: torch.Tensor,
    settings: GenerationSettings,
    generator: torch.Generator,
) -> tuple[torch.Tensor, list[float]]:
    """The image [3, H, W] in [0, 1] of the best similarity to `target` [E] and the similarity of every
    iteration's image. `vqgan` is a diffusers VQModel, `perceptor` an image tower (`forward(images in [0, 1])
    -> [B, E]`, `image_size`); both are frozen (their parameters stop requiring gradients)."""
    vqgan.eval().requires_grad_(False)
    perceptor.eval().requires_grad_(False)
    run = LatentOptimisation(vqgan, perceptor, target, settings, generator)
    curve: list[float] = []
    best_image, best, since_best = None, -float("inf"), 0
    for _ in range(settings.steps):
        similarity, image = run.step()
        curve.append(similarity)
        if similarity > best:
            best_image, best, since_best = image, similarity, 0
        else:
            since_best += 1
        if settings.threshold is not None and similarity >= settings.threshold:
            break
        if settings.patience is not None and since_best >= settings.patience:
            break
    if best_image is None:
        raise ValueError("settings.steps must be at least 1")
    return best_image, curve
