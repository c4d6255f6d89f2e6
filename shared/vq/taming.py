"""Official taming-transformers VQGAN checkpoints (`CompVis/taming-transformers`, `taming/models/vqgan.py`
`VQModel`; its Encoder/Decoder in `taming/modules/diffusionmodules/model.py`) as diffusers-layout weights.

Any model whose `encoder`/`decoder` are diffusers' `Encoder`/`Decoder` and whose `quantize`, `quant_conv`,
`post_quant_conv` carry taming's names (diffusers' `VQModel`, SpecVQGAN's codebook) takes the converted
state dict: `down.i.block.j` -> `down_blocks.i.resnets.j`, `nin_shortcut` -> `conv_shortcut`, the
attention's 1x1 convs -> linear layers (`q` -> `to_q`, ..., `proj_out` -> `to_out.0`, `norm` ->
`group_norm`), `mid.block_1` -> `mid_block.resnets.0`, `norm_out` -> `conv_norm_out`, and the decoder's
levels counted from the other end (taming's `up.i` is diffusers' `up_blocks.{n - 1 - i}`). The copy of
the training loss (`loss.*`: LPIPS and the discriminator) is dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch
from torch import nn

_RESNET = {"nin_shortcut": "conv_shortcut"}
_ATTENTION = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}


@dataclass
class ConversionReport:
    mapped: int = 0
    dropped: list[str] = field(default_factory=list)  # known official keys we do not need
    unmapped: list[str] = field(default_factory=list)  # official keys we could not place
    missing: list[str] = field(default_factory=list)  # our keys the checkpoint did not provide

    def __str__(self) -> str:
        lines = [
            f"mapped {self.mapped} tensors, dropped {len(self.dropped)} (the loss copy, masks, permutations)"
        ]
        if self.unmapped:
            lines.append(f"could not map {len(self.unmapped)}: {self.unmapped}")
        if self.missing:
            lines.append(f"not in the checkpoint {len(self.missing)}: {self.missing}")
        return "; ".join(lines)


def _rename_block(rest: str) -> str:
    """`block.j.<x>` / `attn.j.<x>` / `downsample.conv` tails -> diffusers names."""
    if m := re.fullmatch(r"block\.(\d+)\.(\w+)\.(weight|bias)", rest):
        return f"resnets.{m[1]}.{_RESNET.get(m[2], m[2])}.{m[3]}"
    if m := re.fullmatch(r"attn\.(\d+)\.(\w+)\.(weight|bias)", rest):
        return f"attentions.{m[1]}.{_ATTENTION[m[2]]}.{m[3]}"
    if m := re.fullmatch(r"(downsample|upsample)\.conv\.(weight|bias)", rest):
        return f"{m[1]}rs.0.conv.{m[2]}"
    raise KeyError(rest)


def _rename_mid(rest: str) -> str:
    if m := re.fullmatch(r"block_(\d)\.(\w+)\.(weight|bias)", rest):
        return f"mid_block.resnets.{int(m[1]) - 1}.{_RESNET.get(m[2], m[2])}.{m[3]}"
    if m := re.fullmatch(r"attn_1\.(\w+)\.(weight|bias)", rest):
        return f"mid_block.attentions.0.{_ATTENTION[m[1]]}.{m[2]}"
    raise KeyError(rest)


def official_vqgan_key(key: str, n_levels: int) -> str:
    """Official (taming) VQModel key -> the diffusers-layout key; KeyError if it has no counterpart."""
    if key.startswith(("quantize.", "quant_conv.", "post_quant_conv.")):
        return key
    part, _, rest = key.partition(".")
    if part not in ("encoder", "decoder"):
        raise KeyError(key)
    if m := re.fullmatch(r"(down|up)\.(\d+)\.(.+)", rest):
        level = int(m[2]) if m[1] == "down" else n_levels - 1 - int(m[2])
        return f"{part}.{m[1]}_blocks.{level}.{_rename_block(m[3])}"
    if rest.startswith("mid."):
        return f"{part}.{_rename_mid(rest[4:])}"
    if m := re.fullmatch(r"norm_out\.(weight|bias)", rest):
        return f"{part}.conv_norm_out.{m[1]}"
    if re.fullmatch(r"conv_(in|out)\.(weight|bias)", rest):
        return key
    raise KeyError(key)


def convert_vqgan_state_dict(
    official: dict[str, torch.Tensor], model: nn.Module
) -> tuple[dict[str, torch.Tensor], ConversionReport]:
    """A taming VQModel state dict -> `model`'s keys and shapes, and what was mapped, dropped, missing."""
    report = ConversionReport()
    ours = model.state_dict()
    n_levels = len(model.encoder.down_blocks)
    converted = {}
    for key, value in official.items():
        if key.startswith("loss."):
            report.dropped.append(key)
            continue
        try:
            new_key = official_vqgan_key(key, n_levels)
        except KeyError:
            report.unmapped.append(key)
            continue
        if new_key not in ours:
            report.unmapped.append(key)
            continue
        converted[new_key] = value.reshape(ours[new_key].shape)  # 1x1 attention convs -> linear
        report.mapped += 1
    report.missing = sorted(set(ours) - set(converted))
    return converted, report
