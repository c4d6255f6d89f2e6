"""An independent model of taming-transformers' VQModel (`CompVis/taming-transformers`: `taming/models/vqgan.py`,
`taming/modules/diffusionmodules/model.py`, `taming/modules/vqvae/quantize.py`), which the official SpecVQGAN
codebook copies (`v-iashin/SpecVQGAN`, `specvqgan/models/vqgan.py`), written from those files' structure with
their key names (checked against the released SpecVQGAN checkpoint's key list,
tests/projects/specvqgan/data/specvqgan_vqgan_state_dict_keys.txt).

It exists only to test that the taming-checkpoint converters (`shared.vq.taming`, SpecVQGAN's
`convert.load_official`, WavBriVL's `load_taming_vqgan`) map an official checkpoint onto our diffusers-based
models with identical outputs; it is not used by the library.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.norm1, self.conv1 = norm(cin), nn.Conv2d(cin, cout, 3, 1, 1)
        self.norm2, self.conv2 = norm(cout), nn.Conv2d(cout, cout, 3, 1, 1)
        if cin != cout:
            self.nin_shortcut = nn.Conv2d(cin, cout, 1)

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x) + h


class AttnBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.norm = norm(c)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(c, c, 1) for _ in range(4))

    def forward(self, x):
        h = self.norm(x)
        b, c, hh, ww = x.shape
        q = self.q(h).reshape(b, c, -1).permute(0, 2, 1)
        k = self.k(h).reshape(b, c, -1)
        w = torch.softmax(torch.bmm(q, k) * c**-0.5, dim=2)
        v = self.v(h).reshape(b, c, -1)
        out = torch.bmm(v, w.permute(0, 2, 1)).reshape(b, c, hh, ww)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 2, 0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 1, 1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Level(nn.Module):
    pass


class Mid(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.block_1, self.attn_1, self.block_2 = ResnetBlock(c, c), AttnBlock(c), ResnetBlock(c, c)

    def forward(self, x):
        return self.block_2(self.attn_1(self.block_1(x)))


class Encoder(nn.Module):
    def __init__(self, ch, ch_mult, num_res_blocks, attn_levels, z_channels, in_channels=1):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, ch, 3, 1, 1)
        self.down = nn.ModuleList()
        cin = ch
        for i, m in enumerate(ch_mult):
            level = Level()
            level.block = nn.ModuleList()
            level.attn = nn.ModuleList()
            for _ in range(num_res_blocks):
                level.block.append(ResnetBlock(cin, ch * m))
                cin = ch * m
                if i in attn_levels:
                    level.attn.append(AttnBlock(cin))
            if i != len(ch_mult) - 1:
                level.downsample = Downsample(cin)
            self.down.append(level)
        self.mid = Mid(cin)
        self.norm_out, self.conv_out = norm(cin), nn.Conv2d(cin, z_channels, 3, 1, 1)

    def forward(self, x):
        h = self.conv_in(x)
        for level in self.down:
            for j, block in enumerate(level.block):
                h = block(h)
                if len(level.attn):
                    h = level.attn[j](h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        return self.conv_out(F.silu(self.norm_out(self.mid(h))))


class Decoder(nn.Module):
    def __init__(self, ch, ch_mult, num_res_blocks, attn_levels, z_channels, out_ch=1):
        super().__init__()
        cin = ch * ch_mult[-1]
        self.conv_in = nn.Conv2d(z_channels, cin, 3, 1, 1)
        self.mid = Mid(cin)
        levels = []
        for i in reversed(range(len(ch_mult))):
            level = Level()
            level.block = nn.ModuleList()
            level.attn = nn.ModuleList()
            for _ in range(num_res_blocks + 1):
                level.block.append(ResnetBlock(cin, ch * ch_mult[i]))
                cin = ch * ch_mult[i]
                if i in attn_levels:
                    level.attn.append(AttnBlock(cin))
            if i != 0:
                level.upsample = Upsample(cin)
            levels.insert(0, level)  # up.0 is the highest resolution, as in the official state dict
        self.up = nn.ModuleList(levels)
        self.norm_out, self.conv_out = norm(cin), nn.Conv2d(cin, out_ch, 3, 1, 1)

    def forward(self, z):
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            for j, block in enumerate(level.block):
                h = block(h)
                if len(level.attn):
                    h = level.attn[j](h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Quantize(nn.Module):
    def __init__(self, n_codes, dim):
        super().__init__()
        self.embedding = nn.Embedding(n_codes, dim)

    def forward(self, z):
        rows = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        idx = torch.cdist(rows, self.embedding.weight).argmin(1)
        zq = self.embedding(idx).view(z.shape[0], z.shape[2], z.shape[3], -1).permute(0, 3, 1, 2)
        return zq, idx.view(z.shape[0], z.shape[2], z.shape[3])


class OfficialVQModel(nn.Module):
    def __init__(
        self, n_embed, embed_dim, ch, ch_mult, num_res_blocks, z_channels, attn_levels, image_channels=1
    ):
        super().__init__()
        self.encoder = Encoder(ch, ch_mult, num_res_blocks, attn_levels, z_channels, image_channels)
        self.decoder = Decoder(ch, ch_mult, num_res_blocks, attn_levels, z_channels, image_channels)
        self.quantize = Quantize(n_embed, embed_dim)
        self.quant_conv = nn.Conv2d(z_channels, embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, z_channels, 1)

    def forward(self, x):
        zq, idx = self.quantize(self.quant_conv(self.encoder(x)))
        return self.decoder(self.post_quant_conv(zq)), idx
