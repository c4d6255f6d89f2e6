"""An independent re-creation of BriVL's official image encoder, for tests: its module names (so its state dict
has the released checkpoint's layout) and its forward as the official code runs it.

Written from `BAAI-WuDao/BriVL`, `BriVL-code-inference/models/vl_model.py` (`ImgLearnableEncoder`, `VL_model`)
and `models/fakeTransformer.py`: a per-image loop of `affine_grid` + `grid_sample` with the official affine
transform, under torch 1.8.1's defaults (`align_corners=False`, zero padding), sequence-first attention, the
masked mean, `FakeTransformer` (fc1, ReLU, fc2). The checkpoint is `{"learnable": VL_model.learnable.state_dict()}`
(`evaluation/XYB_box_extract.py` loads it so), whose keys start with `imgencoder.`, `imgencoder_mom.`,
`textencoder.` and `textencoder_mom.`.
"""

from __future__ import annotations

import timm
import torch
import torch.nn.functional as F
from torch import nn


class FakeTransformer(nn.Module):
    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(input_dim, hidden_dim)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(hidden_dim, output_dim)

    def forward(self, x):
        return self.fc2(self.relu(self.fc1(x)))


class OfficialImgEncoder(nn.Module):
    """`ImgLearnableEncoder` with `IMG_FEATURE_DIM` = the backbone's width (as in BriVL, where both are 2048)."""

    def __init__(self, cnn: str, img_size: int, heads: int, layers: int, grid_size: int = 4, **cnn_kwargs):
        super().__init__()
        self.backbone = timm.create_model(
            cnn, pretrained=False, **cnn_kwargs
        )  # with its classifier, as timm's
        dim = self.backbone.num_features
        self.img_size, self.grid_size = img_size, grid_size
        self.learnable = nn.ModuleDict()
        self.learnable["imgFC"] = FakeTransformer(dim, dim, dim)
        self.learnable["imgAtt"] = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(d_model=dim, nhead=heads),
            num_layers=layers,
            enable_nested_tensor=False,
        )
        self.learnable["max_pool"] = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size=1), nn.AvgPool2d(grid_size, stride=1)
        )

    def roi_grid_pool(self, feature_map: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        height, width = feature_map.shape[-2:]
        ratio = self.img_size / height
        pooled = []
        for b in range(feature_map.shape[0]):
            x1, y1, x2, y2 = (rois[b, :, i] / ratio for i in range(4))
            zero = torch.zeros_like(x1)
            theta = torch.stack(
                (
                    (x2 - x1) / (width - 1), zero, (x1 + x2 - width + 1) / (width - 1),
                    zero, (y2 - y1) / (height - 1), (y1 + y2 - height + 1) / (height - 1),
                ),
                dim=1,
            ).view(-1, 2, 3)  # fmt: skip
            size = (rois.shape[1], feature_map.shape[1], self.grid_size, self.grid_size)
            grid = F.affine_grid(theta, torch.Size(size), align_corners=False)
            sampled = F.grid_sample(
                feature_map[b : b + 1].expand(rois.shape[1], -1, -1, -1), grid, align_corners=False
            )
            pooled.append(self.learnable["max_pool"](sampled).flatten(1))
        return torch.stack(pooled)

    def forward(self, images: torch.Tensor, mask: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """images standardised at `img_size`; mask [B, R] 1 = valid; boxes [B, R, 4] pixels. Not normalised (the
        official `VL_model` normalises the encoder's output)."""
        x = F.normalize(self.roi_grid_pool(self.backbone.forward_features(images), boxes), p=2, dim=-1)
        x = self.learnable["imgAtt"](x.transpose(0, 1), src_key_padding_mask=(mask == 0)).transpose(0, 1)
        weights = (mask == 1).float()
        x = (x * weights.unsqueeze(-1)).sum(dim=1) / weights.sum(dim=1).unsqueeze(-1)
        return self.learnable["imgFC"](x)


class OfficialTextStub(nn.Module):
    """Stands in for `TextLearnableEncoder`: some parameters under its names, which the loader must ignore."""

    def __init__(self, dim: int):
        super().__init__()
        self.learnable = nn.ModuleDict({"textFC": FakeTransformer(8, dim, dim)})


def official_learnable(encoder_args: dict) -> nn.ModuleDict:
    """`VL_model.learnable` with random weights: query and momentum copies of both towers."""
    image, image_mom = OfficialImgEncoder(**encoder_args), OfficialImgEncoder(**encoder_args)
    dim = image.backbone.num_features
    return nn.ModuleDict(
        {
            "imgencoder": image,
            "imgencoder_mom": image_mom,
            "textencoder": OfficialTextStub(dim),
            "textencoder_mom": OfficialTextStub(dim),
        }
    )
