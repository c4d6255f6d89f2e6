"""The image VQGAN of WavBriVL's audio-guided generation (arXiv:2303.04585, sec. 5) as diffusers' `VQModel`.

The paper generates with the frozen VQGAN of taming-transformers (`CompVis/taming-transformers`), the
`vqgan_imagenet_f16_16384` model that Wav2CLIP's generation script loads (`descriptinc/lyrebird-wav2clip`,
`scripts/VQGAN-CLIP/generate.py`): ch 128, ch_mult (1, 1, 2, 2, 4), 2 residual blocks per level, attention
at resolution 16 (the lowest level of a 256-px training image), z 256 channels, 16,384 codes of 256
dimensions, f = 16. Its decoder maps codes to images in [-1, 1].

`vqgan_model` builds that architecture (or a smaller one for the toy stage) from diffusers' blocks;
`load_taming_vqgan` reads an official taming checkpoint, takes the sizes from its weights' shapes (the
released `.ckpt` does not carry its YAML) and converts the keys with `shared.vq.taming`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

import torch
from diffusers import VQModel

from shared.runs import UserError
from shared.vq.taming import convert_vqgan_state_dict

log = logging.getLogger(__name__)

# `vqgan_imagenet_f16_16384` (taming's `configs/imagenet_vqgan.yaml` with n_embed 16384); resolution 256
# puts attention at the lowest of the five levels.
IMAGENET_F16_16384 = {
    "channels": (128, 128, 256, 256, 512),
    "layers_per_block": 2,
    "attention_levels": (4,),
    "latent_channels": 256,
    "n_codes": 16384,
    "code_dim": 256,
}


def vqgan_model(
    channels: Sequence[int],
    layers_per_block: int,
    attention_levels: Sequence[int],
    latent_channels: int,
    n_codes: int,
    code_dim: int,
    image_channels: int = 3,
    norm_groups: int = 32,
) -> VQModel:
    """A taming-layout VQGAN as diffusers' VQModel: `channels` per level (taming's ch x ch_mult), attention
    in every residual block of `attention_levels` (0 = full resolution) and in the middle block, as taming
    puts it; the image is downsampled by 2 ** (len(channels) - 1)."""
    down = tuple(
        "AttnDownEncoderBlock2D" if i in attention_levels else "DownEncoderBlock2D"
        for i in range(len(channels))
    )
    up = tuple(name.replace("DownEncoder", "UpDecoder") for name in reversed(down))
    return VQModel(
        in_channels=image_channels,
        out_channels=image_channels,
        down_block_types=down,
        up_block_types=up,
        block_out_channels=tuple(channels),
        layers_per_block=layers_per_block,
        latent_channels=latent_channels,
        num_vq_embeddings=n_codes,
        vq_embed_dim=code_dim,
        norm_num_groups=norm_groups,
    )


def downsampling_factor(vqgan: VQModel) -> int:
    return 2 ** (len(vqgan.config.block_out_channels) - 1)


def taming_sizes(state: dict[str, torch.Tensor]) -> dict:
    """The `vqgan_model` arguments of a taming VQModel state dict, read from its weights' shapes."""
    levels = sorted({int(m[1]) for k in state if (m := re.match(r"encoder\.down\.(\d+)\.", k))})
    blocks = {int(m[1]) for k in state if (m := re.match(r"encoder\.down\.0\.block\.(\d+)\.", k))}
    n_codes, code_dim = state["quantize.embedding.weight"].shape
    return {
        "channels": tuple(state[f"encoder.down.{i}.block.0.conv1.weight"].shape[0] for i in levels),
        "layers_per_block": len(blocks),
        "attention_levels": tuple(i for i in levels if f"encoder.down.{i}.attn.0.q.weight" in state),
        "latent_channels": state["post_quant_conv.weight"].shape[0],
        "n_codes": n_codes,
        "code_dim": code_dim,
        "image_channels": state["encoder.conv_in.weight"].shape[1],
    }


def load_taming_vqgan(path: str | Path) -> VQModel:
    """An official taming-transformers VQGAN checkpoint (e.g. `vqgan_imagenet_f16_16384/checkpoints/last.ckpt`)
    as a VQModel in eval mode; raises UserError when a weight of ours is not in the file or a key of the file
    (other than the training loss's `loss.*`) has no place in ours."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)  # Lightning 1.x pickles
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    if state is None or "quantize.embedding.weight" not in state or "encoder.conv_in.weight" not in state:
        raise UserError(
            f"{path}: not a taming-transformers VQGAN checkpoint (no state_dict with encoder/quantize)"
        )
    model = vqgan_model(**taming_sizes(state))
    converted, report = convert_vqgan_state_dict(state, model)
    log.info("%s: %s", path, report)
    if report.unmapped or report.missing:
        raise UserError(f"{path}: does not fit a taming VQGAN: {report}")
    model.load_state_dict(converted)
    return model.eval()
