import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from projects.wavbrivl.generation import (
    Cutouts,
    GenerationSettings,
    LatentOptimisation,
    clamp_with_grad,
    generate_image,
    spherical_distance,
)
from projects.wavbrivl.models.vqgan import vqgan_model

pytestmark = pytest.mark.usefixtures("one_thread")


class TinyTower(nn.Module):
    """A stand-in image tower: images [B, 3, H, W] in [0, 1] -> unit embeddings; counts its forwards."""

    image_size = 32
    embed_dim = 16

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        # colour layout on a 4 x 4 grid, randomly projected: different pictures point different ways
        self.net = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(48, self.embed_dim))
        self.batches: list[int] = []

    def forward(self, images):
        self.batches.append(len(images))
        images = F.interpolate(images, size=(self.image_size, self.image_size), mode="bilinear")
        return F.normalize(self.net(images - 0.5), dim=-1)


def tiny_vqgan():
    torch.manual_seed(0)
    return vqgan_model((16, 32), 1, (1,), latent_channels=8, n_codes=64, code_dim=8, norm_groups=8).eval()


def real_image(size: int = 32) -> torch.Tensor:
    """A red disc on a blue-green gradient, as a toy frame looks."""
    y, x = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    disc = ((x - 0.2) ** 2 + (y + 0.1) ** 2 < 0.25).float()
    background = torch.stack([0.1 + 0 * x, 0.3 + 0.3 * y, 0.6 - 0.2 * x])
    return (disc * torch.tensor([0.9, 0.1, 0.1])[:, None, None] + (1 - disc) * background).clamp(0, 1)


def test_spherical_distance_of_the_reference_cases():
    e = torch.eye(4)
    assert spherical_distance(e[0], e[1]).item() == pytest.approx(math.pi**2 / 8, rel=1e-6)
    assert spherical_distance(e[0], 3 * e[0]).item() == pytest.approx(0.0, abs=1e-6)
    assert spherical_distance(e[0], -e[0]).item() == pytest.approx(math.pi**2 / 2, rel=1e-6)  # theta^2 / 2


def test_clamp_with_grad_passes_gradients_that_pull_back_inside():
    x = torch.tensor([-0.5, 0.5, 1.5], requires_grad=True)
    clamp_with_grad(x, 0.0, 1.0).backward(torch.tensor([-1.0, 1.0, -1.0]))  # descent raises x[0], x[2]
    assert x.grad.tolist() == [-1.0, 1.0, 0.0]  # x[0] moves up (back inside), x[2] would move further out


def test_cutouts_are_one_batch_of_the_perceptor_size():
    cutouts = Cutouts(cut_size=24, count=5, cut_pow=1.0)
    batch = cutouts(torch.rand(1, 3, 64, 48), torch.Generator().manual_seed(0))
    assert batch.shape == (5, 3, 24, 24)
    assert not torch.allclose(batch[0], batch[1])


def test_every_step_is_one_perceptor_forward_and_z_stays_in_the_codebook_range():
    vqgan, tower = tiny_vqgan(), TinyTower()
    settings = GenerationSettings(size=32, cutouts=6, lr=0.5)
    run = LatentOptimisation(vqgan, tower, torch.randn(16), settings, torch.Generator().manual_seed(0))
    assert run.z.shape == (1, 8, 16, 16)
    codebook = vqgan.quantize.embedding.weight
    low, high = codebook.min(0).values[:, None, None], codebook.max(0).values[:, None, None]
    start = run.z.detach().clone()
    for _ in range(5):
        run.step()
        assert ((run.z >= low) & (run.z <= high)).all()
    assert not torch.equal(run.z, start)
    assert tower.batches == [6 + 1] * 5  # the cutouts and the un-augmented image together


def test_similarity_rises_towards_a_reachable_target():
    vqgan, tower = tiny_vqgan(), TinyTower()
    with torch.no_grad():
        target = tower(real_image()[None])[0]
    settings = GenerationSettings(steps=25, size=32, cutouts=8, patience=None)
    image, curve = generate_image(vqgan, tower, target, settings, torch.Generator().manual_seed(0))
    assert image.shape == (3, 32, 32) and image.min() >= 0 and image.max() <= 1
    assert len(curve) == 25
    # the last iterations close at least a quarter of the gap between the start and a perfect match
    assert max(curve[-10:]) - curve[0] > 0.25 * (1 - curve[0]), curve


def test_generation_is_determined_by_the_seed_and_stops_early():
    vqgan, tower = tiny_vqgan(), TinyTower()
    target = torch.randn(16)
    settings = GenerationSettings(steps=6, size=32, cutouts=4)
    first = generate_image(vqgan, tower, target, settings, torch.Generator().manual_seed(3))
    again = generate_image(vqgan, tower, target, settings, torch.Generator().manual_seed(3))
    other = generate_image(vqgan, tower, target, settings, torch.Generator().manual_seed(4))
    assert torch.equal(first[0], again[0]) and first[1] == again[1]
    assert not torch.equal(first[0], other[0])
    _, curve = generate_image(vqgan, tower, target, GenerationSettings(steps=50, size=32, cutouts=4, threshold=-1.0),
                              torch.Generator().manual_seed(3))  # fmt: skip
    assert len(curve) == 1
    _, curve = generate_image(vqgan, tower, target, GenerationSettings(steps=50, size=32, cutouts=4, patience=2),
                              torch.Generator().manual_seed(3))  # fmt: skip
    best = curve.index(max(curve))
    assert len(curve) == min(50, best + 3) and all(c < max(curve) for c in curve[best + 1 :])
