"""An independent re-creation of Im2Wav's official models (`RoySheffer/im2wav`, Sheffer & Adi, arXiv:2211.03089),
the reference for the tests of `projects.gravo.convert`.

Written from the official files' structure with their module and parameter names, so `state_dict()` has the
official keys and shapes (the tests check them against the released checkpoints' key lists):

- VQ-VAE (`models/vqvae/vqvae.py`, `encdec.py`, `resnet.py`, `bottleneck.py`): `encoders.{l}.level_blocks`,
  `decoders.{l}.level_blocks` / `.out`, `bottleneck.level_blocks.{l}.k`; codes by the official squared
  distance `|x|^2 - 2 x k^T + |k|^2`.
- Priors (`models/prior/prior.py` `SimplePrior`, `autoregressive.py` `ConditionalAutoregressive2D`,
  `conditioners.py`, `models/transformer/*.py`): Jukebox `Conv1D` with its weight stored (n_in, n_out) as `w`,
  the factored attention as the official code computes it (per-pattern reshapes, then a dense softmax masked
  as `w * mask - 1e9 * (1 - mask)`), the sampling path with its growing `torch.cat` key/value cache, `x_emb`
  tied with `x_out`, the label conditioner (`y_emb`: `clip_map`, `video_map`, `null_*`, range embeddings)
  and the Up prior's upsampler (`conditioner_blocks.0`, whose residual units sit in `blocks` because the
  official code builds them with `checkpoint_res=1`).

One deliberate difference: the official MLP uses quick-GELU only when CUDA is available (`use_cuda` in
`models/transformer/transformer.py`) and the identity otherwise; the released models were trained and
sampled on GPUs, so this re-creation always applies quick-GELU, as the official code does on a GPU.

Sizes come from an `hps` dict like the official one (`official_hps`: the hparam sets of
`models/hparams.py` merged over their defaults, plus the command-line values of the official README).
`write_official_checkpoint` saves a model in the official file layout: `{hps, model, opt, step}` with
`module.`-prefixed keys and, for `all_fp16` priors, float16 `Conv1D` weights.
"""

from __future__ import annotations

import copy
import itertools
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# ---------------------------------------------------------------------------------------------------------
# hparams (`models/hparams.py`): the defaults the models read, the three hparam sets of Im2Wav, all_fp16

DEFAULTS = {
    # script / data / train
    "sr": 16000, "prior": False, "level": 0, "labels": True, "labels_v3": False, "sample_length": 0,
    "clip_emb": False, "video_clip_emb": False, "class_free_guidance_prob": -1, "n_tokens": 0,
    "use_tokens": False, "copy_input": False, "merged_decoder": False, "single_enc_dec": False, "train": False,
    # vqvae
    "levels": 2, "downs_t": (1, 1), "strides_t": (2, 2), "hvqvae_multipliers": None, "emb_width": 64,
    "l_bins": 512, "l_mu": 0.99, "commit": 1.0, "use_bottleneck": True, "revival_threshold": 1.0,
    # vqvae_conv_block
    "depth": 3, "width": 128, "m_conv": 1.0, "dilation_growth_rate": 1, "dilation_cycle": None,
    "vqvae_reverse_decoder_dilation": True,
    # prior
    "y_bins": 0, "t_bins": 64, "max_bow_genre_size": None, "min_duration": None, "max_duration": None,
    # prior_attn_block
    "n_ctx": 1024, "prior_depth": 3, "prior_width": 128, "heads": 1, "attn_order": 0, "blocks": None,
    "spread": None, "attn_dropout": 0.0, "resid_dropout": 0.0, "emb_dropout": 0.0, "zero_out": False,
    "res_scale": False, "pos_init": False, "init_scale": 1.0, "m_attn": 0.25, "m_mlp": 1.0, "c_res": 0,
    "c_attn": 0, "c_mlp": 0,
    # cond_conv_block
    "cond_depth": 3, "cond_width": 128, "cond_m_conv": 1.0, "cond_zero_out": False, "cond_res_scale": False,
    "cond_dilation_growth_rate": 1, "cond_dilation_cycle": None, "cond_c_res": 0,
    # fp16
    "fp16": False, "fp16_params": False, "fp16_opt": False,
}  # fmt: skip

SMALL_MULTI_LEVEL_VQVAE = {
    "sr": 16000, "levels": 2, "downs_t": (3, 2), "strides_t": (2, 2), "emb_width": 128, "l_bins": 2048,
    "l_mu": 0.99, "commit": 0.02, "width": 32, "depth": 4, "m_conv": 1.0, "dilation_growth_rate": 3,
}  # fmt: skip
SMALL_PRIOR = {
    "n_ctx": 1024, "prior_width": 1024, "prior_depth": 48, "heads": 1, "c_res": 1, "attn_order": 2,
    "blocks": 64, "init_scale": 0.7,
}  # fmt: skip
SMALL_LABELLED_PRIOR = {
    **SMALL_PRIOR, "labels": True, "labels_v3": True, "y_bins": (10, 100), "max_bow_genre_size": 1,
    "min_duration": 2.05, "max_duration": 600.0, "t_bins": 64,
}  # fmt: skip
SMALL_UPSAMPLER = {
    **SMALL_PRIOR, "n_ctx": 4096, "cond_width": 512, "cond_depth": 16, "cond_dilation_growth_rate": 3,
    "cond_dilation_cycle": 8, "cond_c_res": 1,
}  # fmt: skip
ALL_FP16 = {"fp16": True, "fp16_params": True, "fp16_opt": True}

# what the official README's training commands add on the command line
COMMAND_LINE = {
    "vqvae": {"sample_length": 65536, "labels": False},
    "low": {
        "sample_length": 65536, "n_ctx": 2048, "labels": True, "prior": True, "levels": 2, "level": 1,
        "clip_emb": True, "video_clip_emb": True, "class_free_guidance_prob": 0.5,
    },
    "up": {
        "sample_length": 65536, "n_ctx": 8192, "labels": True, "prior": True, "levels": 2, "level": 0,
        "clip_emb": True,
    },
}  # fmt: skip
HPARAM_SETS = {
    "vqvae": [SMALL_MULTI_LEVEL_VQVAE],
    "low": [SMALL_MULTI_LEVEL_VQVAE, SMALL_LABELLED_PRIOR, ALL_FP16],
    "up": [SMALL_MULTI_LEVEL_VQVAE, SMALL_UPSAMPLER, ALL_FP16],
}

# a narrow copy for fast tests: the same structure, every size small; Low's 256 tokens (8192 samples) reach
# relative-position bins 0-3 of the time signal
TINY = {
    "vqvae": {"l_bins": 64, "emb_width": 16, "width": 8, "depth": 2, "sample_length": 2048},
    "low": {
        "l_bins": 64, "emb_width": 16, "width": 8, "depth": 2, "sample_length": 8192, "n_ctx": 256,
        "prior_width": 32, "prior_depth": 4, "blocks": 16,
    },
    "up": {
        "l_bins": 64, "emb_width": 16, "width": 8, "depth": 2, "sample_length": 2048, "n_ctx": 256,
        "prior_width": 32, "prior_depth": 4, "blocks": 8, "cond_width": 16, "cond_depth": 3,
    },
}  # fmt: skip


def official_hps(kind: str, **overrides) -> dict:
    """The hps a file of `kind` ("vqvae", "low", "up") carries: defaults, hparam sets, command line, overrides."""
    hps = dict(DEFAULTS)
    for hparam_set in HPARAM_SETS[kind]:
        hps.update(hparam_set)
    hps.update(COMMAND_LINE[kind])
    hps.update(overrides)
    return hps


# ---------------------------------------------------------------------------------------------------------
# VQ-VAE


class ResConv1DBlock(nn.Module):
    def __init__(self, n_in, n_state, dilation=1, res_scale=1.0):
        super().__init__()
        self.model = nn.Sequential(
            nn.ReLU(),
            nn.Conv1d(n_in, n_state, 3, 1, dilation, dilation),
            nn.ReLU(),
            nn.Conv1d(n_state, n_in, 1, 1, 0),
        )
        self.res_scale = res_scale

    def forward(self, x):
        return x + self.res_scale * self.model(x)


class Resnet1D(nn.Module):
    def __init__(
        self, n_in, n_depth, m_conv=1.0, dilation_growth_rate=1, dilation_cycle=None, res_scale=False,
        reverse_dilation=False, checkpoint_res=False,
    ):  # fmt: skip
        super().__init__()
        cycle = (lambda depth: depth) if dilation_cycle is None else (lambda depth: depth % dilation_cycle)
        blocks = [
            ResConv1DBlock(
                n_in,
                int(m_conv * n_in),
                dilation=dilation_growth_rate ** cycle(depth),
                res_scale=1.0 if not res_scale else 1.0 / math.sqrt(n_depth),
            )
            for depth in range(n_depth)
        ]
        if reverse_dilation:
            blocks = blocks[::-1]
        self.checkpoint_res = checkpoint_res
        if checkpoint_res == 1:  # gradient checkpointing in the official code: the units live in `blocks`
            self.blocks = nn.ModuleList(blocks)
        else:
            self.model = nn.Sequential(*blocks)

    def forward(self, x):
        if self.checkpoint_res == 1:
            for block in self.blocks:
                x = block(x)
            return x
        return self.model(x)


class EncoderConvBlock(nn.Module):
    def __init__(self, input_emb_width, output_emb_width, down_t, stride_t, width, depth, m_conv,
                 dilation_growth_rate=1, dilation_cycle=None, res_scale=False):  # fmt: skip
        super().__init__()
        filter_t, pad_t = stride_t * 2, stride_t // 2
        blocks = [
            nn.Sequential(
                nn.Conv1d(input_emb_width if i == 0 else width, width, filter_t, stride_t, pad_t),
                Resnet1D(width, depth, m_conv, dilation_growth_rate, dilation_cycle, res_scale),
            )
            for i in range(down_t)
        ]
        blocks.append(nn.Conv1d(width, output_emb_width, 3, 1, 1))
        self.model = nn.Sequential(*blocks)

    def forward(self, x):
        return self.model(x)


class DecoderConvBock(nn.Module):  # sic: the official class name
    def __init__(self, input_emb_width, output_emb_width, down_t, stride_t, width, depth, m_conv,
                 dilation_growth_rate=1, dilation_cycle=None, res_scale=False, reverse_decoder_dilation=False,
                 checkpoint_res=False):  # fmt: skip
        super().__init__()
        filter_t, pad_t = stride_t * 2, stride_t // 2
        blocks = [nn.Conv1d(output_emb_width, width, 3, 1, 1)]
        for i in range(down_t):
            blocks.append(
                nn.Sequential(
                    Resnet1D(
                        width,
                        depth,
                        m_conv,
                        dilation_growth_rate,
                        dilation_cycle,
                        res_scale,
                        reverse_dilation=reverse_decoder_dilation,
                        checkpoint_res=checkpoint_res,
                    ),
                    nn.ConvTranspose1d(
                        width, input_emb_width if i == down_t - 1 else width, filter_t, stride_t, pad_t
                    ),
                )
            )
        self.model = nn.Sequential(*blocks)

    def forward(self, x):
        return self.model(x)


class Encoder(nn.Module):
    def __init__(self, input_emb_width, output_emb_width, levels, downs_t, strides_t, **block_kwargs):
        super().__init__()
        block_kwargs.pop("reverse_decoder_dilation", None)
        self.level_blocks = nn.ModuleList(
            EncoderConvBlock(
                input_emb_width if level == 0 else output_emb_width,
                output_emb_width,
                down_t,
                stride_t,
                **block_kwargs,
            )
            for level, (down_t, stride_t) in enumerate(zip(downs_t, strides_t, strict=True))
        )

    def forward(self, x):
        xs = []
        for level_block in self.level_blocks:
            x = level_block(x)
            xs.append(x)
        return xs


class Decoder(nn.Module):
    def __init__(self, input_emb_width, output_emb_width, levels, downs_t, strides_t, **block_kwargs):
        super().__init__()
        self.level_blocks = nn.ModuleList(
            DecoderConvBock(output_emb_width, output_emb_width, down_t, stride_t, **block_kwargs)
            for level, (down_t, stride_t) in enumerate(zip(downs_t, strides_t, strict=True))
        )
        self.out = nn.Conv1d(output_emb_width, input_emb_width, 3, 1, 1)

    def forward(self, xs, all_levels=True):
        x = xs[-1]
        for level in reversed(range(len(self.level_blocks))):
            x = self.level_blocks[level](x)
            if level != 0 and all_levels:
                x = x + xs[level - 1]
        return self.out(x)


class BottleneckBlock(nn.Module):
    def __init__(self, k_bins, emb_width):
        super().__init__()
        self.k_bins, self.emb_width = k_bins, emb_width
        self.register_buffer("k", torch.zeros(k_bins, emb_width))

    def encode(self, x):
        n, _, t = x.shape
        x = x.permute(0, 2, 1).contiguous().view(-1, x.shape[1])
        k_w = self.k.t()
        distance = (
            torch.sum(x**2, dim=-1, keepdim=True)
            - 2 * torch.matmul(x, k_w)
            + torch.sum(k_w**2, dim=0, keepdim=True)
        )
        _, x_l = torch.min(distance, dim=-1)
        return x_l.view(n, t)

    def decode(self, x_l):
        n, t = x_l.shape
        return F.embedding(x_l, self.k).view(n, t, self.emb_width).permute(0, 2, 1).contiguous()


class Bottleneck(nn.Module):
    def __init__(self, l_bins, emb_width, levels):
        super().__init__()
        self.level_blocks = nn.ModuleList(BottleneckBlock(l_bins, emb_width) for _ in range(levels))


class VQVAE(nn.Module):
    """`models/vqvae/vqvae.py` `VQVAE` (built as `make_vqvae` builds it); audio NTC [N, T, 1] as officially."""

    def __init__(self, hps: dict):
        super().__init__()
        levels = hps["levels"]
        multipliers = hps["hvqvae_multipliers"] or [1] * levels
        block_kwargs = dict(
            width=hps["width"], depth=hps["depth"], m_conv=hps["m_conv"],
            dilation_growth_rate=hps["dilation_growth_rate"], dilation_cycle=hps["dilation_cycle"],
            reverse_decoder_dilation=hps["vqvae_reverse_decoder_dilation"],
        )  # fmt: skip

        def level_kwargs(level):
            return {**block_kwargs, "width": block_kwargs["width"] * multipliers[level],
                    "depth": block_kwargs["depth"] * multipliers[level]}  # fmt: skip

        downs_t, strides_t, emb_width = hps["downs_t"], hps["strides_t"], hps["emb_width"]
        self.encoders = nn.ModuleList(
            Encoder(
                1, emb_width, level + 1, downs_t[: level + 1], strides_t[: level + 1], **level_kwargs(level)
            )
            for level in range(levels)
        )
        self.decoders = nn.ModuleList(
            Decoder(
                1, emb_width, level + 1, downs_t[: level + 1], strides_t[: level + 1], **level_kwargs(level)
            )
            for level in range(levels)
        )
        self.bottleneck = Bottleneck(hps["l_bins"], emb_width, levels)

    def encode(self, x):
        """x [N, T, 1] -> codes per level [N, T / hop_level]."""
        x_in = x.permute(0, 2, 1).float()
        xs = [encoder(x_in)[-1] for encoder in self.encoders]
        return [block.encode(h) for block, h in zip(self.bottleneck.level_blocks, xs, strict=True)]

    def decode(self, zs, start_level=0):
        """Codes of levels start_level.. -> audio [N, T, 1] from the start level's decoder alone."""
        x_quantised = self.bottleneck.level_blocks[start_level].decode(zs[0])
        return self.decoders[start_level]([x_quantised], all_levels=False).permute(0, 2, 1)


# ---------------------------------------------------------------------------------------------------------
# transformer (`models/transformer/ops.py`, `factored_attention.py`, `transformer.py`)


class Conv1D(nn.Module):
    def __init__(self, n_in, n_out, zero_out=False, init_scale=1.0):
        super().__init__()
        self.n_out = n_out
        w = torch.zeros(n_in, n_out) if zero_out else torch.empty(n_in, n_out).normal_(std=0.02 * init_scale)
        self.w = nn.Parameter(w)
        self.b = nn.Parameter(torch.zeros(n_out))

    def forward(self, x):
        size_out = (*x.size()[:-1], self.n_out)
        x = torch.addmm(self.b.type_as(x), x.view(-1, x.size(-1)), self.w.type_as(x))  # fp16 w: fp32 math
        return x.view(*size_out)


class LayerNorm(nn.LayerNorm):
    def forward(self, x):
        return super().forward(x.float()).type_as(x)


def quick_gelu(x):
    return x * torch.sigmoid(1.702 * x)


def get_mask(attn_mask, q_l, kv_l, sample, sample_t, device):
    if attn_mask is None or q_l == 1:
        return None
    offset = sample_t - q_l if sample else max(kv_l - q_l, 0)
    return torch.ones(q_l, kv_l, device=device).tril(offset).view(1, 1, q_l, kv_l)


class FactoredAttention(nn.Module):
    """Attention functions 1 (own block), 2 (transpose block) and 3 (previous block) of the official class."""

    def __init__(
        self, n_in, n_ctx, n_state, n_head, zero_out=False, init_scale=1.0, attn_func=0, blocks=None
    ):
        super().__init__()
        assert attn_func in (1, 2, 3), "Im2Wav's attn_order 2 uses attention functions 1, 2, 3"
        self.n_state, self.n_head, self.attn_func = n_state, n_head, attn_func
        self.c_attn = Conv1D(n_in, n_state * 3, init_scale=init_scale)
        self.c_proj = Conv1D(n_state, n_in, zero_out, init_scale=init_scale)
        self.attn = {1: self.block_attn, 2: self.transpose_block_attn, 3: self.prev_block_attn}[attn_func]
        self.attn_mask = "autoregressive" if attn_func in (1, 2) else None
        self.block_ctx = n_ctx // blocks
        self.sample_t = 0
        self.cache = {}

    def _attn(self, q, k, v, sample):
        scale = 1.0 / math.sqrt(math.sqrt(self.n_state // self.n_head))
        if self.training:
            w = torch.matmul(q * scale, k * scale)
        else:
            w = torch.matmul(q, k)
            w.mul_(scale * scale)
        wtype = w.dtype
        w = w.float()
        mask = get_mask(self.attn_mask, q.size(-2), k.size(-1), sample, self.sample_t, w.device)
        if mask is not None:
            w = w * mask + -1e9 * (1 - mask)
        w = F.softmax(w, dim=-1).type(wtype)
        return torch.matmul(w, v)

    def split_heads(self, x, k=False):
        x = x.view(*x.size()[:-1], self.n_head, x.size(-1) // self.n_head)
        return x.permute(0, 2, 3, 1) if k else x.permute(0, 2, 1, 3)

    def merge_heads(self, x):
        x = x.permute(0, 2, 1, 3).contiguous()
        return x.view(*x.size()[:-2], x.size(-2) * x.size(-1))

    def dense_attn(self, q, k, v, sample):
        a = self._attn(self.split_heads(q), self.split_heads(k, k=True), self.split_heads(v), sample)
        return self.merge_heads(a)

    def block_attn(self, q, k, v, sample):
        bs, length, d = v.shape
        bc = self.block_ctx
        if sample:
            return self.dense_attn(q, k, v, sample).view(bs, 1, d)
        q, k, v = (y.view(bs * length // bc, bc, d) for y in (q, k, v))
        return self.dense_attn(q, k, v, sample).view(bs, length, d)

    def transpose_block_attn(self, q, k, v, sample):
        bs, length, d = v.shape
        bc = self.block_ctx
        if sample:
            block_l = (length - 1) % bc
            return self.dense_attn(q, k[:, block_l::bc], v[:, block_l::bc], sample).view(bs, 1, d)
        q, k, v = (
            y.view(bs, length // bc, bc, d).transpose(1, 2).contiguous().view(bs * bc, length // bc, d)
            for y in (q, k, v)
        )
        a = self.dense_attn(q, k, v, sample)
        return a.view(bs, bc, length // bc, d).transpose(1, 2).contiguous().view(bs, length, d)

    def prev_block_attn(self, q, k, v, sample):
        bs, length, d = v.shape
        bc = self.block_ctx
        if sample:
            if (length - 1) // bc > 0:  # the cache holds the previous block, then the current one
                k, v = k[:, :bc], v[:, :bc]
            else:
                k = torch.zeros(bs, bc, d, dtype=q.dtype, device=q.device)
                v = torch.zeros(bs, bc, d, dtype=q.dtype, device=q.device)
            return self.dense_attn(q, k, v, sample).view(bs, 1, d)
        q = q.view(bs * length // bc, bc, d)
        k, v = (
            F.pad(y.view(bs, length // bc, bc, d)[:, :-1], (0, 0, 0, 0, 1, 0)).view(bs * length // bc, bc, d)
            for y in (k, v)
        )
        return self.dense_attn(q, k, v, sample).view(bs, length, d)

    def _suff_cache_len(self):
        if self.attn_func == 1:
            return (self.sample_t - 1) % self.block_ctx + 1
        if self.attn_func == 2:
            return self.sample_t
        if self.sample_t <= self.block_ctx:
            return self.sample_t
        return (self.sample_t - 1) % self.block_ctx + 1 + self.block_ctx

    def factored_qkv(self, x, sample):
        query, key, value = x.chunk(3, dim=2)
        if sample:
            assert x.shape[1] == 1, "this re-creation samples one token at a time"
            self.sample_t += 1
            if (
                "key" in self.cache
            ):  # the official cache grows by concatenation, then is cut to what is needed
                key = torch.cat([self.cache["key"], key], dim=1)
                value = torch.cat([self.cache["value"], value], dim=1)
            length = self._suff_cache_len()
            self.cache["key"], self.cache["value"] = key[:, -length:], value[:, -length:]
            key, value = self.cache["key"], self.cache["value"]
        return query, key, value

    def del_cache(self):
        self.sample_t = 0
        self.cache = {}

    def forward(self, x, sample=False):
        query, key, value = self.factored_qkv(self.c_attn(x), sample)
        return self.c_proj(self.attn(query, key, value, sample))


class MLP(nn.Module):
    def __init__(self, n_in, n_state, zero_out=False, init_scale=1.0):
        super().__init__()
        self.c_fc = Conv1D(n_in, n_state, init_scale=init_scale)
        self.c_proj = Conv1D(n_state, n_in, zero_out, init_scale=init_scale)

    def forward(self, x):
        return self.c_proj(
            quick_gelu(self.c_fc(x))
        )  # as on a GPU (the official CPU path drops the activation)


class ResAttnBlock(nn.Module):
    def __init__(self, n_in, n_ctx, n_head, zero_out, init_scale, m_attn, m_mlp, attn_func, blocks):
        super().__init__()
        self.attn = FactoredAttention(
            n_in, n_ctx, int(m_attn * n_in), n_head, zero_out, init_scale, attn_func=attn_func, blocks=blocks
        )
        self.ln_0 = LayerNorm(n_in)
        self.mlp = MLP(n_in, int(m_mlp * n_in), zero_out, init_scale)
        self.ln_1 = LayerNorm(n_in)

    def forward(self, x, sample=False):
        a = self.attn(self.ln_0(x), sample)
        m = self.mlp(self.ln_1(x + a))
        return x + a + m


class Transformer(nn.Module):
    def __init__(self, n_in, n_ctx, n_head, n_depth, zero_out, init_scale, m_attn, m_mlp, attn_order, blocks):
        super().__init__()
        assert attn_order == 2, "Im2Wav's priors use attn_order 2"
        self._attn_mods = nn.ModuleList(
            ResAttnBlock(n_in, n_ctx, n_head, zero_out, init_scale, m_attn, m_mlp, [1, 2, 3][d % 3], blocks)
            for d in range(n_depth)
        )

    def forward(self, x, sample=False):
        for layer in self._attn_mods:
            x = layer(x, sample=sample)
        return x.float()

    def del_cache(self):
        for layer in self._attn_mods:
            layer.attn.del_cache()


class PositionEmbedding(nn.Module):
    def __init__(self, input_dims, width, init_scale=1.0):
        super().__init__()
        self.pos_emb = nn.Parameter(torch.empty(input_dims, width).normal_(std=0.01 * init_scale))

    def forward(self):
        return self.pos_emb


class ConditionalAutoregressive2D(nn.Module):
    def __init__(self, hps: dict, bins: int):
        super().__init__()
        width, init_scale = hps["prior_width"], hps["init_scale"]
        self.width, self.bins, self.input_dims = width, bins, hps["n_ctx"]
        self.x_emb = nn.Embedding(bins, width)
        nn.init.normal_(self.x_emb.weight, std=0.02 * init_scale)
        self.pos_emb = PositionEmbedding(hps["n_ctx"], width, init_scale)
        self.transformer = Transformer(
            width, hps["n_ctx"], hps["heads"], hps["prior_depth"], hps["zero_out"], init_scale, hps["m_attn"],
            hps["m_mlp"], hps["attn_order"], hps["blocks"],
        )  # fmt: skip
        self.x_out = nn.Linear(width, bins, bias=False)
        self.x_out.weight = self.x_emb.weight

    def forward(self, x, x_cond, y_cond):
        """Teacher-forced logits [N, D, bins] (the official `preds` of `forward(..., get_preds=True)`)."""
        n = x.shape[0]
        x = self.x_emb(x.view(n, -1).long())
        x = torch.cat((x[:, -1:], x[:, :-1]), dim=1)  # `roll(x, 1)`, then the start token in front
        x[:, 0] = y_cond.view(n, self.width)
        x = x + self.pos_emb() + x_cond
        x = self.transformer(x)
        x = x + x_cond
        return self.x_out(x)

    def get_emb(self, sample_t, n_samples, x, x_cond, y_cond):
        if sample_t == 0:
            x = torch.empty(n_samples, 1, self.width, device=y_cond.device)
            x[:, 0] = y_cond.view(n_samples, self.width)
        else:
            x = self.x_emb(x)
        cond = x_cond[:, sample_t : sample_t + 1, :] if x_cond.shape[1] == self.input_dims else x_cond
        return x + self.pos_emb()[sample_t : sample_t + 1] + cond, cond

    def get_logits(self, transformer, x_cond, y_cond, sample_t, n_samples, x):
        """One cached step of `transformer` (the model's own or its deep copy): logits [N, 1, bins]."""
        x, cond = self.get_emb(sample_t, n_samples, x, x_cond, y_cond)
        x = transformer(x, sample=True)
        return self.x_out(x + cond)


# ---------------------------------------------------------------------------------------------------------
# conditioners (`models/prior/conditioners.py`)


class Conditioner(nn.Module):
    """The Up prior's upsampler of the level-1 codes: embedding -> DecoderConvBock -> LayerNorm."""

    def __init__(self, bins, down_t, stride_t, out_width, init_scale, res_scale, **block_kwargs):
        super().__init__()
        self.x_emb = nn.Embedding(bins, out_width)
        nn.init.normal_(self.x_emb.weight, std=0.02 * init_scale)
        self.cond = DecoderConvBock(
            out_width, out_width, down_t, stride_t, **block_kwargs, res_scale=res_scale
        )
        self.ln = LayerNorm(out_width)

    def forward(self, x):
        x = self.x_emb(x.long()) + 0.0
        x = self.cond(x.permute(0, 2, 1)).permute(0, 2, 1)
        return self.ln(x)


class MLPLayers(nn.Module):
    def __init__(self, units, dropout=0.1):
        super().__init__()
        sequence = []
        for u0, u1 in itertools.pairwise(units):
            sequence += [nn.Linear(u0, u1), nn.ReLU(), nn.Dropout(dropout)]
        self.sequential = nn.Sequential(*sequence[:-2])

    def forward(self, x):
        return self.sequential(x)


class RangeEmbedding(nn.Module):
    def __init__(self, n_time, bins, pos_range, out_width, init_scale, clamp=False):
        super().__init__()
        self.n_time, self.bins, self.clamp = n_time, bins, clamp
        self.emb = nn.Embedding(bins, out_width)
        nn.init.normal_(self.emb.weight, std=0.01 * init_scale)
        self.pos_min, self.pos_max = pos_range

    def forward(self, pos_start, pos_end=None):
        assert (self.pos_min <= pos_start).all() and (pos_start < self.pos_max).all()
        pos_start = pos_start.float()
        if self.n_time != 1:
            if self.clamp:
                pos_end = pos_end.clamp(self.pos_min, self.pos_max)
            assert (self.pos_min <= pos_end).all() and (pos_end <= self.pos_max).all()
            interpolation = (
                torch.arange(self.n_time, dtype=torch.float, device=pos_start.device).view(1, -1)
                / self.n_time
            )
            position = pos_start + (pos_end.float() - pos_start) * interpolation
        else:
            position = pos_start
        normalised_position = (position - self.pos_min) / (self.pos_max - self.pos_min)
        return self.emb((self.bins * normalised_position).floor().long())


class LabelConditioner(nn.Module):
    """CLIP conditioning (`clip_emb`, `video_clip_emb`), the null embeddings of classifier-free guidance and,
    for the top level, the three time-signal embeddings."""

    def __init__(self, hps: dict, n_time: int, include_time_signal: bool):
        super().__init__()
        out_width, init_scale = hps["prior_width"], hps["init_scale"]
        assert hps["clip_emb"], "Im2Wav's priors condition on CLIP"
        self.video_clip_emb = hps["video_clip_emb"]
        self.class_free_guidance_prob = hps["class_free_guidance_prob"]
        self.clip_map = MLPLayers([512, 512, out_width])
        if self.class_free_guidance_prob >= 0:
            self.null_CLIP = nn.Parameter(torch.empty(out_width).normal_(std=0.01 * init_scale))
        if self.video_clip_emb:
            self.video_map = MLPLayers([512, 512, out_width])
            if self.class_free_guidance_prob >= 0:
                self.null_video_CLIP = nn.Parameter(torch.empty(out_width).normal_(std=0.01 * init_scale))
        self.include_time_signal = include_time_signal
        if include_time_signal:
            sr, t_bins = hps["sr"], hps["t_bins"]
            min_duration, max_duration = hps["min_duration"], hps["max_duration"]
            self.total_length_emb = RangeEmbedding(
                1, t_bins, (min_duration * sr, max_duration * sr), out_width, init_scale
            )
            self.absolute_pos_emb = RangeEmbedding(
                n_time, t_bins, (0.0, max_duration * sr), out_width, init_scale
            )
            self.relative_pos_emb = RangeEmbedding(
                n_time, t_bins, (0.0, 1.0), out_width, init_scale, clamp=True
            )

    def forward(self, y, null: bool = False):
        """y [N, F, 515] (video) or [N, 515]: [total_length, offset, length, clip(512)] ->
        (start_emb [N, 1, W], pos_emb [N, n_time, W] or None, video_emb [N, F, W] or None)."""
        video_emb = None
        if self.video_clip_emb:
            total_length, offset, length, clip = y[:, 0, 0:1], y[:, 0, 1:2], y[:, 0, 2:3], y[:, :, 3:]
            start_emb = self.clip_map(torch.mean(clip, dim=1))
            video_emb = self.video_map(clip)
        else:
            total_length, offset, length, clip = y[:, 0:1], y[:, 1:2], y[:, 2:3], y[:, 3:]
            start_emb = self.clip_map(clip)
        start_emb = start_emb[:, None, :]
        pos_emb = None
        if self.include_time_signal:
            start, end = offset.float(), (offset + length).float()
            total_length = total_length.float()
            pos_emb = (
                self.total_length_emb(total_length)
                + self.absolute_pos_emb(start, end)
                + self.relative_pos_emb(start / total_length, end / total_length)
            )
        if null:  # `Condition_Modes.null_label`: every row takes the learned null conditioning
            assert self.class_free_guidance_prob >= 0, "this prior was trained without null conditioning"
            start_emb[:] = self.null_CLIP
            if self.video_clip_emb:
                video_emb[:] = self.null_video_CLIP
        return start_emb, pos_emb, video_emb


# ---------------------------------------------------------------------------------------------------------
# the prior (`models/prior/prior.py` `SimplePrior`, built as `make_prior` builds it)

VIDEO_TOTAL_LENGTH = 160000  # `models/hparams.py` VIDEO_TOTAL_LENGTHS: the total length put in every label


def hop_lengths(hps: dict) -> list[int]:
    return [int(h) for h in np.cumprod([s**d for s, d in zip(hps["strides_t"], hps["downs_t"], strict=True)])]


class SimplePrior(nn.Module):
    def __init__(self, hps: dict):
        super().__init__()
        self.level, self.levels = hps["level"], hps["levels"]
        self.n_ctx = hps["n_ctx"]
        self.raw_to_tokens = hop_lengths(hps)[self.level]
        self.sample_length = self.n_ctx * self.raw_to_tokens
        self.x_cond = self.level != self.levels - 1
        self.video_clip_emb = hps["video_clip_emb"]
        if self.x_cond:
            cond_level = self.level + 1
            self.conditioner_blocks = nn.ModuleList([
                Conditioner(
                    hps["l_bins"], hps["downs_t"][cond_level], hps["strides_t"][cond_level],
                    out_width=hps["prior_width"], init_scale=hps["init_scale"], res_scale=hps["cond_res_scale"], width=hps["cond_width"], depth=hps["cond_depth"],
                    m_conv=hps["cond_m_conv"], dilation_growth_rate=hps["cond_dilation_growth_rate"],
                    dilation_cycle=hps["cond_dilation_cycle"], checkpoint_res=hps["cond_c_res"],
                )
            ])  # fmt: skip
        self.y_emb = LabelConditioner(hps, n_time=self.n_ctx, include_time_signal=not self.x_cond)
        self.prior = ConditionalAutoregressive2D(hps, hps["l_bins"])

    def get_cond(self, y, z_cond=None, null=False):
        """`get_cond` / `get_x_cond`: (x_cond [N, n_ctx, W], y_cond [N, 1, W])."""
        y_cond, y_pos, y_video = self.y_emb(y, null=null)
        if self.x_cond:
            return self.conditioner_blocks[0](z_cond), y_cond
        x_cond = y_pos
        if self.video_clip_emb:
            frames = y_video.shape[1]
            token2frame = np.round(np.linspace(0, 1, num=self.n_ctx) * (frames - 1)).astype(np.int64)
            x_cond = x_cond + y_video[:, token2frame]
        return x_cond, y_cond

    def labels(self, clip: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """The label tensor `models/sample.py` builds: per frame [N, F, 515] for a video prior, else the mean
        CLIP [N, 515]; [total_length, offset, sample_length] in front."""
        n, frames, _ = clip.shape
        pos = torch.tensor(
            [VIDEO_TOTAL_LENGTH, offset, self.sample_length], dtype=torch.float32, device=clip.device
        )
        if self.video_clip_emb:
            return torch.cat([pos.expand(n, frames, 3), clip.float()], dim=-1)
        return torch.cat([pos.expand(n, 3), clip.float().mean(dim=1)], dim=-1)

    def logits(self, z, clip, z_cond=None, null=False):
        """Teacher-forced next-token logits [N, n_ctx, l_bins] of the codes z given CLIP frames [N, F, 512]
        (and, for the Up prior, the level-1 codes z_cond)."""
        x_cond, y_cond = self.get_cond(self.labels(clip), z_cond, null=null)
        return self.prior(z, x_cond, y_cond)


def build_official(hps: dict) -> nn.Module:
    """The official model a file with these hps holds: a `VQVAE`, or a `SimplePrior` of level hps['level']."""
    return SimplePrior(hps) if hps["prior"] else VQVAE(hps)


def filter_logits(logits, top_k=0, top_p=0.0, filter_value=-float("Inf")):
    """`models/transformer/ops.py` `filter_logits` (top-k or nucleus)."""
    logits = logits.clone()
    top_k = min(top_k, logits.size(-1))
    assert (top_k == 0) or (top_p == 0.0)
    if top_k > 0:
        logits[logits < torch.topk(logits, top_k, dim=-1)[0][..., -1:]] = filter_value
    if top_p > 0.0:
        sorted_logits, sorted_indices = torch.sort(logits, descending=True, dim=-1)
        cumulative_probs = torch.cumsum(F.softmax(sorted_logits, dim=-1), dim=-1)
        remove = cumulative_probs > top_p
        remove[..., 1:] = remove[..., :-1].clone()
        remove[..., 0] = 0
        logits[torch.zeros_like(logits, dtype=remove.dtype).scatter_(-1, sorted_indices, remove)] = (
            filter_value
        )
    return logits


def deep_copied_transformers(prior: SimplePrior) -> list[Transformer]:
    """`ConditionalAutoregressive2D.sample` with classifier-free guidance: the model's transformer for the
    conditional branch and a deep copy of it (weights and all) for the unconditional one."""
    return [prior.prior.transformer, copy.deepcopy(prior.prior.transformer)]


# ---------------------------------------------------------------------------------------------------------
# random weights and official files


@torch.no_grad()
def randomize_(model: nn.Module, seed: int = 0, audio_length: int = 4096) -> nn.Module:
    """Move every parameter off its initial value (LayerNorm gains off 1, biases off 0, the nulls and
    embeddings to visible scales) so each one changes the outputs; a VQ-VAE's codebooks are set, as the
    official `init_k` does, to encoder outputs of random audio (so codes spread over the codebook)."""
    gen = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        noise = torch.randn(p.shape, generator=gen)
        if name.endswith(("ln_0.weight", "ln_1.weight", "ln.weight")):
            p.copy_(1.0 + 0.1 * noise)
        elif name.endswith((".b", "bias")):
            p.copy_(0.02 * noise)
        elif "null" in name or name.endswith(("emb.weight", "pos_emb")):
            p.copy_(0.1 * noise)
        else:
            p.add_(p.float().std().clamp(min=1e-3) * 0.1 * noise)
    if isinstance(model, VQVAE):
        wav = torch.randn(2, audio_length, 1, generator=gen).mul_(0.3)
        x = wav.permute(0, 2, 1)
        for encoder, block in zip(model.encoders, model.bottleneck.level_blocks, strict=True):
            h = encoder(x)[-1].permute(0, 2, 1).reshape(-1, block.emb_width)
            pick = torch.randint(0, h.shape[0], (block.k_bins,), generator=gen)
            block.k.copy_(h[pick] + 0.01 * h.std() * torch.randn(block.k.shape, generator=gen))
    return model


def to_fp16_params_(model: nn.Module) -> nn.Module:
    """`_convert_conv_weights_to_fp16`, applied by `make_prior` when hps['fp16_params']: Conv1D `w` in float16."""
    for module in model.modules():
        if isinstance(module, Conv1D):
            module.w.data = module.w.data.half()
    return model


def write_official_checkpoint(model: nn.Module, hps: dict, path: Path, step: int = 1000) -> Path:
    """Save `model` as the official `save_checkpoint` does under DistributedDataParallel:
    {'hps', 'model' (keys prefixed `module.`), 'opt' (an Adam state), 'step'}. Conv1D weights are stored as
    the model holds them (float16 after `to_fp16_params_`)."""
    param = nn.Parameter(torch.zeros(3))
    opt = torch.optim.Adam([param], lr=3e-4)
    param.grad = torch.ones(3)
    opt.step()
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save({"hps": dict(hps), "model": state, "opt": opt.state_dict(), "step": step}, path)
    return path
