"""BriVL's image tower: regions, masking, the batched roi_align against the official per-image sampling, the
official checkpoint layout, the paper-size parameter count, and the open_clip substitute."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from projects.wavbrivl.convert import load_official_brivl_image_tower
from projects.wavbrivl.models.image_tower import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    BriVLImageTower,
    ImageTower,
    OpenCLIPImageTower,
    grid_boxes,
)
from shared.runs import UserError
from tests.projects.wavbrivl.official_brivl import OfficialImgEncoder, official_learnable

pytestmark = pytest.mark.usefixtures("one_thread")

# timm's smallest EfficientNet (99k parameters, 256 channels): 96 px -> a 3x3 feature map
TINY = dict(backbone="test_efficientnet", image_size=96, d_model=32, layers=2, heads=4, ffn=64, embed_dim=48)


def tiny_tower(seed: int = 0, **overrides) -> BriVLImageTower:
    torch.manual_seed(seed)
    return BriVLImageTower(**(TINY | overrides)).eval()


def standardised(images: torch.Tensor) -> torch.Tensor:
    return (images - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(
        1, 3, 1, 1
    )


def test_grid_boxes_cover_the_image_in_37_regions():
    boxes = grid_boxes(480, 6)
    assert boxes.shape == (37, 4)
    assert torch.equal(boxes[-1], torch.tensor([0.0, 0.0, 480.0, 480.0]))
    cell_areas = (boxes[:-1, 2] - boxes[:-1, 0]) * (boxes[:-1, 3] - boxes[:-1, 1])
    assert torch.allclose(cell_areas.sum(), torch.tensor(480.0 * 480.0))
    assert len({tuple(b) for b in boxes[:-1].tolist()}) == 36


def test_unit_norm_embedding_of_37_regions():
    tower = tiny_tower()
    assert tower.num_regions == 37 and isinstance(tower, ImageTower)
    with torch.no_grad():
        out = tower(torch.rand(3, 3, 70, 110))  # any input size: the tower resizes
    assert out.shape == (3, 48)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(3))


def test_masked_regions_change_nothing():
    """Padding regions (any boxes, masked out) give the embedding of the valid regions alone."""
    tower = tiny_tower()
    images = torch.rand(2, 3, 96, 96)
    valid = grid_boxes(96, 6)[[0, 7, 20, 36]]
    garbage = torch.tensor([[0.0, 0.0, 0.0, 0.0], [10.0, 20.0, 90.0, 30.0], [5.0, 5.0, 50.0, 60.0]])
    with torch.no_grad():
        alone = tower(images, boxes=valid.expand(2, -1, -1))
        padded = tower(
            images,
            boxes=torch.cat([valid, garbage]).expand(2, -1, -1),
            region_mask=torch.tensor([[True] * 4 + [False] * 3] * 2),
        )
        unmasked = tower(images, boxes=torch.cat([valid, garbage]).expand(2, -1, -1))
    torch.testing.assert_close(padded, alone, rtol=1e-5, atol=1e-5)
    assert (unmasked - alone).abs().max() > 1e-3  # the mask, not chance, made them equal


def test_batched_roi_align_equals_the_official_per_image_grid_sample():
    """Our one-call roi_align against the official loop of affine_grid + grid_sample (torch 1.8 defaults), on
    the grid boxes, the whole image and boxes reaching past the feature map's last cell."""
    tower = tiny_tower()
    official = OfficialImgEncoder("test_efficientnet", img_size=96, heads=4, layers=1)
    official.learnable["max_pool"][0] = torch.nn.Conv2d(256, 32, kernel_size=1)
    official.learnable["max_pool"][0].load_state_dict(tower.region_conv.state_dict())
    features = torch.randn(3, 256, 3, 3)
    boxes = torch.cat([grid_boxes(96, 6), torch.tensor([[60.0, 10.0, 96.0, 30.0], [1.0, 2.0, 3.0, 95.0]])])
    boxes = boxes.expand(3, -1, -1).clone()
    boxes[1] = boxes[1] * 0.5 + 7.0  # a different box set per image, so the batch index matters
    with torch.no_grad():
        ours = tower.pool_regions(features, boxes)
        reference = official.roi_grid_pool(features, boxes)
    assert ours.shape == (3, 39, 32)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5 * reference.abs().max().item())


def write_official_checkpoint(path, encoder_args: dict, seed: int = 0):
    torch.manual_seed(seed)
    learnable = official_learnable(encoder_args)
    for p in learnable.parameters():  # not the default init: biases and norms must reach the output too
        p.data.normal_(0, 0.02).add_(torch.randn(()) * 0.1)
    for name, buffer in learnable.named_buffers():
        if name.endswith("running_var"):
            buffer.uniform_(0.5, 2.0)
        elif name.endswith("running_mean"):
            buffer.normal_(0, 0.1)
    torch.save({"learnable": learnable.state_dict()}, path)
    return learnable.eval()


def test_official_checkpoint_layout_loads_and_matches_the_official_forward(tmp_path):
    path = tmp_path / "brivl.pth"
    learnable = write_official_checkpoint(path, dict(cnn="test_efficientnet", img_size=96, heads=4, layers=2))
    width = learnable["imgencoder"].backbone.num_features
    ours = load_official_brivl_image_tower(
        path,
        backbone="test_efficientnet",
        image_size=96,
        d_model=width,
        layers=2,
        heads=4,
        ffn=2048,
        embed_dim=width,
    )
    images = torch.rand(2, 3, 96, 96)
    boxes = grid_boxes(96, 6).expand(2, -1, -1)
    with torch.no_grad():
        reference = F.normalize(
            learnable["imgencoder"](standardised(images), torch.ones(2, 37), boxes), dim=-1
        )
        out = ours(images)
        momentum = F.normalize(
            learnable["imgencoder_mom"](standardised(images), torch.ones(2, 37), boxes), dim=-1
        )
    torch.testing.assert_close(out, reference, rtol=1e-4, atol=1e-4)
    assert (momentum - reference).abs().max() > 1e-2  # the query encoder was loaded, not its momentum copy
    assert not any(p.requires_grad for p in ours.parameters())


def test_official_checkpoint_errors_name_the_file(tmp_path):
    path = tmp_path / "brivl.pth"
    write_official_checkpoint(path, dict(cnn="test_efficientnet", img_size=96, heads=4, layers=2))
    with pytest.raises(UserError, match=r"brivl\.pth: shape mismatch.*mlp\.0\.weight"):
        load_official_brivl_image_tower(
            path, backbone="test_efficientnet", image_size=96, d_model=256, layers=2, heads=4, embed_dim=128
        )
    with pytest.raises(UserError, match=r"brivl\.pth: .*missing \['transformer\.layers\.2\."):
        load_official_brivl_image_tower(
            path, backbone="test_efficientnet", image_size=96, d_model=256, layers=3, heads=4, embed_dim=256
        )
    torch.save({"learnable": {"textencoder.x": torch.zeros(1)}}, tmp_path / "text_only.pth")
    with pytest.raises(UserError, match=r"text_only\.pth: no 'imgencoder\.\*' keys"):
        load_official_brivl_image_tower(tmp_path / "text_only.pth")
    with pytest.raises(UserError, match="absent.pth: BriVL checkpoint not found"):
        load_official_brivl_image_tower(tmp_path / "absent.pth")


def expected_head_parameters(channels: int, d_model: int, ffn: int, layers: int, embed_dim: int) -> int:
    """Parameters after the backbone, counted from the architecture: 1x1 conv, post-norm encoder layers
    (in/out projections of attention, two FFN linears, two LayerNorms), the two-layer MLP."""
    conv = channels * d_model + d_model
    attention = 3 * d_model * d_model + 3 * d_model + d_model * d_model + d_model
    feedforward = d_model * ffn + ffn + ffn * d_model + d_model
    layer = attention + feedforward + 2 * 2 * d_model
    mlp = d_model * embed_dim + embed_dim + embed_dim * embed_dim + embed_dim
    return conv + layers * layer + mlp


@pytest.mark.parametrize(
    ("backbone", "channels"), [("tf_efficientnet_b5", 2048), ("tf_efficientnet_b7", 2560)]
)
def test_paper_size_parameter_count(backbone, channels):
    """BriVL-1.0 (B5, 2048 channels) and the WavBriVL paper's B7 (2560): backbone + the counted head."""
    import timm

    tower = BriVLImageTower(backbone=backbone)
    backbone_alone = sum(p.numel() for p in timm.create_model(backbone, num_classes=0).parameters())
    assert tower.backbone.num_features == channels
    total = sum(p.numel() for p in tower.parameters())
    assert total == backbone_alone + expected_head_parameters(channels, 2048, 2048, 4, 2048)


def test_brivl_1_0_size_forward():
    """The BriVL-1.0 configuration end to end: a 2048-d unit-norm embedding from a frame of any size."""
    torch.manual_seed(0)
    tower = BriVLImageTower().eval()
    with torch.no_grad():
        out = tower(torch.rand(1, 3, 240, 320))
    assert out.shape == (1, 2048)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(1))


def test_open_clip_tower_behind_the_same_interface():
    cfg = {
        "embed_dim": 24,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
        "text_cfg": {"context_length": 8, "vocab_size": 100, "width": 16, "heads": 2, "layers": 1},
    }
    tower = OpenCLIPImageTower("ViT-B-32", pretrained=None, model_cfg=cfg)
    assert isinstance(tower, ImageTower) and tower.embed_dim == 24 and tower.image_size == 32
    images = torch.rand(2, 3, 50, 40, requires_grad=True)
    out = tower(images)
    assert out.shape == (2, 24)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(2))
    out[:, 0].sum().backward()  # the generation optimises an image through the perceptor
    assert images.grad is not None and images.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in tower.parameters())
