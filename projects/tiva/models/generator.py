"""The generator G (TiVA paper sec. 3.2.2, eq. 7): ε̂ = first c channels of UNet([z_t ; t_layout], t, s).

A diffusers `UNet2DConditionModel` (AudioLDM2's "T-UNet" design: residual blocks with self- and cross-
attention transformer layers) whose input is the noisy latent z_t [B, c, h, w] with the resized audio layout
appended as channel c + 1, cross-attending to the semantic embeddings s [B, N, context_dim]. Its output has
c + 1 channels as well; only the first c are the noise estimate, as the paper says.

`paper_unet_config()` is AudioLDM2's UNet (`haoheliu/AudioLDM2`,
`audioldm2/latent_diffusion/modules/diffusionmodules/openaimodel.py` as AudioLDM2's config sizes it: widths 128,
256, 384, 640, two residual blocks per level, attention at the three deeper levels with 32-channel heads, one
transformer layer) with 9 input/output channels and one cross-attention context, s, of width 768: 184.3 M
parameters.
AudioLDM2's own UNet (`AudioLDM2UNet2DConditionModel`) stacks three transformers at each attention site
(self-attention only, then one per context: GPT-2 768 and Flan-T5 1024); with the same widths it has the
346.9 M of diffusers' `AudioLDM2UNet2DConditionModel` (a test builds it). The paper does not say how TiVA
adapted it to its single context; one transformer with cross-attention to s is our choice.
diffusers' quirk: in `UNet2DConditionModel`, `attention_head_dim` is the number of heads per level
(channels / 32 = 4, 8, 12, 20), not their width.
"""

from __future__ import annotations

import torch
from diffusers import UNet2DConditionModel
from torch import nn


def paper_unet_config(latent_channels: int = 8, context_dim: int = 768) -> dict:
    widths = (128, 256, 384, 640)
    return {
        "sample_size": (256, 16),
        "in_channels": latent_channels + 1,
        "out_channels": latent_channels + 1,
        "down_block_types": (
            "DownBlock2D",
            "CrossAttnDownBlock2D",
            "CrossAttnDownBlock2D",
            "CrossAttnDownBlock2D",
        ),
        "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        "block_out_channels": widths,
        "layers_per_block": 2,
        "transformer_layers_per_block": 1,
        "attention_head_dim": tuple(w // 32 for w in widths),  # heads, see the module docstring
        "cross_attention_dim": context_dim,
        "norm_num_groups": 32,
    }


class LayoutConditionedUNet(nn.Module):
    def __init__(self, unet: dict):
        super().__init__()
        if unet["in_channels"] != unet["out_channels"]:
            raise ValueError(
                f"G's UNet maps c + 1 channels to c + 1 (eq. 7); got {unet['in_channels']} -> {unet['out_channels']}"
            )
        self.unet = UNet2DConditionModel(**unet)
        self.latent_channels = unet["in_channels"] - 1

    def forward(
        self, z_t: torch.Tensor, layout: torch.Tensor, t: torch.Tensor, s: torch.Tensor
    ) -> torch.Tensor:
        """z_t [B, c, h, w], layout [B, 1, h, w], t [B], s [B, N, context_dim] -> ε̂ [B, c, h, w]."""
        x = torch.cat([z_t, layout.to(z_t.dtype)], dim=1)
        return self.unet(x, t, encoder_hidden_states=s).sample[:, : self.latent_channels]
