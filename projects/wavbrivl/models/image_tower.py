"""The image towers WavBriVL's audio tower is trained against: BriVL's, and an open substitute.

WavBriVL (arXiv:2303.04585, sec. 3) freezes the image tower of BriVL (arXiv:2103.06561, sec. 3; official code
`BAAI-WuDao/BriVL`, `BriVL-code-inference/models/vl_model.py`, `ImgLearnableEncoder`) and trains a WavLM
audio tower to predict its embedding of a video frame. `BriVLImageTower` computes what that encoder computes:

1. the image, resized to `image_size` x `image_size` and standardised with ImageNet's mean and std (the
   official `visual_transforms_box`), goes through the EfficientNet's `forward_features` (timm; BriVL-1.0:
   `tf_efficientnet_b5` at 380 px, 2048 channels; the WavBriVL paper: EfficientNet-B7 at 480 px, 2560);
2. region features: each box is sampled on a 4x4 grid of the feature map, mapped by a 1x1 convolution and
   averaged, one vector per region, l2-normalised. Regions are a 6x6 grid of boxes and the whole image, 37 in
   all (`neilfei/brivl-nmi`, `datasets.py`; WavBriVL uses no object detector);
3. a 4-layer `nn.TransformerEncoder` (4 heads, FFN 2048, dropout 0.1, ReLU, post-norm) over the regions,
   padded regions masked out;
4. the mean over valid regions, an MLP (Linear, ReLU, Linear) and l2 normalisation: the joint embedding.

The official code samples each region with `affine_grid` + `grid_sample` in a Python loop over the batch
(torch 1.8's defaults, `align_corners=False`, zero padding). Here one `torchvision.ops.roi_align` call does the
whole batch and gives the same numbers: sampling ratio 1 (one bilinear sample per bin, at the bin centre),
boxes scaled by w / (w - 1) and shifted by half a cell (the official affine transform normalises by w - 1
while the sampler reads coordinates with `align_corners=False`), and a one-cell zero border around the
feature map (`grid_sample`'s zero padding; `roi_align` clamps at the edge instead).

`OpenCLIPImageTower` puts an open_clip image tower behind the same `ImageTower` interface, for users without
BriVL weights (BriVL-1.0's download portal is gone; brivl-nmi's weights are CC BY-NC-ND).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import timm
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import roi_align

from shared.encoders.clip import FrozenCLIPVisual

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@runtime_checkable
class ImageTower(Protocol):
    """An image encoder into a joint space: images [B, 3, H, W] in [0, 1] -> unit-norm embeddings [B, E].

    The tower resizes to its own `image_size` and standardises with its own mean and std, so callers (the
    audio tower's training, the generation's perceptor) hand it plain RGB in [0, 1]; gradients flow to the
    input (the generation optimises an image through it)."""

    embed_dim: int
    image_size: int

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


def grid_boxes(image_size: int, grid: int) -> torch.Tensor:
    """[grid * grid + 1, 4] boxes (x1, y1, x2, y2) in pixels of an `image_size` square image: the grid cells
    (column-major, as `neilfei/brivl-nmi` lists them) and then the whole image."""
    step = image_size / grid
    cells = [[i * step, j * step, (i + 1) * step, (j + 1) * step] for i in range(grid) for j in range(grid)]
    return torch.tensor([*cells, [0.0, 0.0, image_size, image_size]], dtype=torch.float32)


def resize_and_standardise(images: torch.Tensor, size: int, mean: torch.Tensor, std: torch.Tensor):
    """[B, 3, H, W] in [0, 1] -> [B, 3, size, size] standardised. Bilinear without antialiasing: the official
    transform resizes the tensor after `ToTensor` (torchvision 0.9, which had no antialias for tensors)."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images [B, 3, H, W] in [0, 1], got {tuple(images.shape)}")
    if images.shape[-2:] != (size, size):
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    return (images - mean) / std


class BriVLImageTower(nn.Module):
    """BriVL's image encoder (module docstring): images [B, 3, H, W] in [0, 1] -> [B, embed_dim], unit norm.

    `backbone` is a timm EfficientNet name; `backbone_kwargs` go to `timm.create_model` (toy sizes);
    `pretrained_backbone` is None (random weights) or a local timm weight file of that model (e.g. the
    `tf_efficientnet_b5.ns_jft_in1k` ImageNet weights BriVL started from). The 1x1 region convolution maps the
    backbone's channels to `d_model`; in BriVL both are 2048 (`IMG_FEATURE_DIM`). The MLP is d_model ->
    embed_dim -> embed_dim (`FakeTransformer` in the official code, hidden width = joint width).
    """

    def __init__(
        self,
        backbone: str = "tf_efficientnet_b5",
        image_size: int = 380,
        grid: int = 6,
        d_model: int = 2048,
        layers: int = 4,
        heads: int = 4,
        ffn: int = 2048,
        embed_dim: int = 2048,
        pretrained_backbone: str | None = None,
        dropout: float = 0.1,
        roi_size: int = 4,
        backbone_kwargs: dict | None = None,
    ):
        super().__init__()
        # what rebuilds this architecture from a checkpoint (`load_image_tower`); the weights come from there
        self.config = dict(
            backbone=backbone, image_size=image_size, grid=grid, d_model=d_model, layers=layers, heads=heads,
            ffn=ffn, embed_dim=embed_dim, dropout=dropout, roi_size=roi_size, backbone_kwargs=backbone_kwargs,
        )  # fmt: skip
        self.image_size, self.embed_dim, self.roi_size = int(image_size), int(embed_dim), int(roi_size)
        overlay = {"pretrained_cfg_overlay": {"file": pretrained_backbone}} if pretrained_backbone else {}
        self.backbone = timm.create_model(
            backbone,
            pretrained=pretrained_backbone is not None,
            num_classes=0,
            **overlay,
            **(backbone_kwargs or {}),
        )
        self.region_conv = nn.Conv2d(self.backbone.num_features, d_model, kernel_size=1)
        layer = nn.TransformerEncoderLayer(
            d_model, heads, ffn, dropout, activation="relu", batch_first=True, norm_first=False
        )
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.mlp = nn.Sequential(nn.Linear(d_model, embed_dim), nn.ReLU(), nn.Linear(embed_dim, embed_dim))
        self.register_buffer("boxes", grid_boxes(self.image_size, grid), persistent=False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def num_regions(self) -> int:
        return self.boxes.shape[0]

    def pool_regions(self, features: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """features [B, C, h, w], boxes [B, R, 4] in input pixels -> region features [B, R, d_model] (not yet
        normalised): the official 4x4 `grid_sample` per box, batched as one `roi_align` (module docstring)."""
        batch, regions = boxes.shape[:2]
        h, w = features.shape[-2:]
        if h < 2 or w < 2:
            raise ValueError(
                f"feature map {h}x{w} too small for BriVL's region sampling (needs at least 2x2)"
            )
        # input pixels -> feature cells (the official `down_sample_ratio`), stretched by w / (w - 1), plus the border
        scale = boxes.new_tensor([w * w / (w - 1), h * h / (h - 1)] * 2) / self.image_size
        rois = torch.cat(
            [
                torch.arange(batch, device=boxes.device, dtype=boxes.dtype).repeat_interleave(regions)[
                    :, None
                ],
                (boxes * scale + 1).reshape(-1, 4),
            ],
            dim=1,
        )
        sampled = roi_align(
            F.pad(features, (1, 1, 1, 1)),
            rois.to(features.dtype),
            output_size=self.roi_size,
            spatial_scale=1.0,
            sampling_ratio=1,
            aligned=True,
        )
        return self.region_conv(sampled).mean(dim=(-2, -1)).view(batch, regions, -1)

    def forward(
        self,
        images: torch.Tensor,
        boxes: torch.Tensor | None = None,
        region_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """images [B, 3, H, W] in [0, 1] -> [B, embed_dim] unit norm.

        `boxes` [B, R, 4] (x1, y1, x2, y2 in pixels of the `image_size` square) replace the default 6x6 grid +
        whole image; `region_mask` [B, R] bool marks the valid ones (the official `maskImages`), the others are
        ignored by the attention and the mean."""
        x = resize_and_standardise(images, self.image_size, self.mean, self.std)
        if boxes is None:
            boxes = self.boxes.expand(x.shape[0], -1, -1)
        if region_mask is None:
            region_mask = torch.ones(boxes.shape[:2], dtype=torch.bool, device=boxes.device)
        if not region_mask.any(dim=1).all():
            raise ValueError("every image needs at least one valid region")
        regions = F.normalize(self.pool_regions(self.backbone.forward_features(x), boxes), dim=-1)
        regions = self.transformer(regions, src_key_padding_mask=~region_mask)
        weights = region_mask.to(regions.dtype).unsqueeze(-1)
        pooled = (regions * weights).sum(dim=1) / weights.sum(dim=1)
        return F.normalize(self.mlp(pooled), dim=-1)


class OpenCLIPImageTower(FrozenCLIPVisual):
    """An open_clip image tower as an `ImageTower`: images [B, 3, H, W] in [0, 1] -> CLIP image embeddings
    [B, E], unit norm. A stand-in for BriVL where its weights are not at hand (another model's joint space,
    not BriVL's). Frozen; gradients still reach the input. `pretrained`: an open_clip tag, a local checkpoint
    or None (random weights from `seed`); `model_cfg` overrides the architecture (toy runs, tests). The image
    is resized to the model's square input (bicubic, as CLIP's preprocessing) without cropping."""

    def __init__(
        self,
        model_name: str = "ViT-B-32",
        pretrained: str | None = "openai",
        model_cfg: dict | None = None,
        seed: int = 0,
    ):
        super().__init__(model_name, pretrained, model_cfg, batch_size=1, seed=seed)

    @property
    def embed_dim(self) -> int:
        return self.visual.output_dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images [B, 3, H, W] in [0, 1], got {tuple(images.shape)}")
        size = self.image_size
        if images.shape[-2:] != (size, size):
            images = F.interpolate(images, size=(size, size), mode="bicubic", align_corners=False)
        return F.normalize(self.visual((images - self.mean) / self.std).float(), dim=-1)


class FrozenImageTower(nn.Module):
    """A trained image tower, frozen: eval mode whatever a parent module asks, no gradients to its weights
    (gradients still reach the input). `head`, when given, is a classifier on the embedding (the toy stage's
    class head): `classify(images) -> logits [B, n_classes]`."""

    def __init__(self, tower: nn.Module, head: nn.Module | None = None):
        super().__init__()
        self.tower, self.head = tower, head
        self.requires_grad_(False)
        self.eval()

    @property
    def embed_dim(self) -> int:
        return self.tower.embed_dim

    @property
    def image_size(self) -> int:
        return self.tower.image_size

    def train(self, mode: bool = True) -> FrozenImageTower:
        return super().train(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.tower(images)

    def classify(self, images: torch.Tensor) -> torch.Tensor:
        if self.head is None:
            raise ValueError(f"{type(self.tower).__name__} was loaded without a class head")
        return self.head(self.tower(images))
