"""An independent re-creation of the official BEATs for tests (`microsoft/unilm`, `beats/BEATs.py`,
`beats/backbone.py`, `beats/modules.py`), kept to the official class structure and arithmetic: time-first
tensors, `torch.nn.utils.weight_norm` on the positional convolution, the attention's logits computed as
(q scaling / 32) k^T, shifted by their maximum and multiplied by 32, the gated relative position bias
computed in layer 0 and handed on, and the layer outputs collected as AudioToken's copy does
(`guyyariv/AudioToken`, `modules/BEATs/backbone.py`: blocks with 0-based index 3, 7, 11).

Only the paths the released models take are here (self-attention, no padding mask, no incremental state);
the module registration order is the official one, so `state_dict()` lists the keys in the official order.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
import torchaudio.compliance.kaldi as ta_kaldi
from torch import nn


class OfficialConfig:
    def __init__(self, cfg: dict):
        self.input_patch_size = -1
        self.embed_dim = 512
        self.conv_bias = False
        self.encoder_layers = 12
        self.encoder_embed_dim = 768
        self.encoder_ffn_embed_dim = 3072
        self.encoder_attention_heads = 12
        self.activation_fn = "gelu"
        self.layer_norm_first = False
        self.deep_norm = False
        self.dropout = 0.1
        self.attention_dropout = 0.1
        self.activation_dropout = 0.0
        self.encoder_layerdrop = 0.0
        self.dropout_input = 0.0
        self.conv_pos = 128
        self.conv_pos_groups = 16
        self.relative_position_embedding = False
        self.num_buckets = 320
        self.max_distance = 1280
        self.gru_rel_pos = False
        self.finetuned_model = False
        self.predictor_dropout = 0.1
        self.predictor_class = 527
        self.__dict__.update(cfg)


# the released AS-2M fine-tuned model's cfg, as far as the architecture goes
RELEASED_CFG = {
    "input_patch_size": 16,
    "embed_dim": 512,
    "encoder_layers": 12,
    "encoder_embed_dim": 768,
    "encoder_ffn_embed_dim": 3072,
    "encoder_attention_heads": 12,
    "layer_norm_first": False,
    "deep_norm": True,
    "relative_position_embedding": True,
    "num_buckets": 320,
    "max_distance": 800,
    "gru_rel_pos": True,
    "conv_pos": 128,
    "conv_pos_groups": 16,
    "conv_bias": False,
    "encoder_layerdrop": 0.05,
    "finetuned_model": True,
    "predictor_class": 527,
}


class OfficialAttention(nn.Module):
    def __init__(self, dim, heads, has_bias, num_buckets, max_distance, gru_rel_pos):
        super().__init__()
        self.embed_dim = dim
        self.num_heads = heads
        self.has_relative_attention_bias = has_bias
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        if has_bias:
            self.relative_attention_bias = nn.Embedding(num_buckets, heads)
        self.head_dim = dim // heads
        self.scaling = self.head_dim**-0.5
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.q_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        self.gru_rel_pos = gru_rel_pos
        if gru_rel_pos:
            self.grep_linear = nn.Linear(self.head_dim, 8)
            self.grep_a = nn.Parameter(torch.ones(1, heads, 1, 1))

    def _bucket(self, relative_positions):
        num_buckets = self.num_buckets // 2
        buckets = (relative_positions > 0).to(torch.long) * num_buckets
        relative_positions = torch.abs(relative_positions)
        max_exact = num_buckets // 2
        is_small = relative_positions < max_exact
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if_large = max_exact + (
                torch.log(relative_positions.float() / max_exact)
                / math.log(self.max_distance / max_exact)
                * (num_buckets - max_exact)
            ).to(torch.long)
        if_large = torch.min(if_large, torch.full_like(if_large, num_buckets - 1))
        return buckets + torch.where(is_small, relative_positions, if_large)

    def compute_bias(self, qlen, klen):
        context = torch.arange(qlen, dtype=torch.long)[:, None]
        memory = torch.arange(klen, dtype=torch.long)[None, :]
        bucket = self._bucket(memory - context).to(self.relative_attention_bias.weight.device)
        return self.relative_attention_bias(bucket).permute([2, 0, 1])

    def forward(self, query, position_bias):
        tgt_len, bsz, embed_dim = query.size()
        if self.has_relative_attention_bias and position_bias is None:
            position_bias = self.compute_bias(tgt_len, tgt_len)
            position_bias = (
                position_bias.unsqueeze(0).repeat(bsz, 1, 1, 1).view(bsz * self.num_heads, tgt_len, tgt_len)
            )
        q = self.q_proj(query)
        k = self.k_proj(query)
        v = self.v_proj(query)
        q *= self.scaling
        alpha = 32
        q *= 1 / alpha
        q = q.contiguous().view(tgt_len, bsz * self.num_heads, self.head_dim).transpose(0, 1)
        k = k.contiguous().view(-1, bsz * self.num_heads, self.head_dim).transpose(0, 1)
        v = v.contiguous().view(-1, bsz * self.num_heads, self.head_dim).transpose(0, 1)
        attn_weights = torch.bmm(q, k.transpose(1, 2))
        attn_weights = (attn_weights - attn_weights.max(dim=-1, keepdim=True)[0]) * alpha
        if position_bias is not None:
            rel = position_bias
            if self.gru_rel_pos:
                query_layer = q.view(bsz, self.num_heads, tgt_len, self.head_dim) * alpha / self.scaling
                _b, _h, _l, _ = query_layer.size()
                gate_a, gate_b = torch.sigmoid(
                    self.grep_linear(query_layer).view(_b, _h, _l, 2, 4).sum(-1, keepdim=False)
                ).chunk(2, dim=-1)
                gate_a_1 = gate_a * (gate_b * self.grep_a - 1.0) + 2.0
                rel = gate_a_1.view(bsz * self.num_heads, tgt_len, 1) * position_bias
            attn_weights = attn_weights + rel.view(attn_weights.size())
        attn_probs = F.softmax(attn_weights, dim=-1)
        attn = torch.bmm(attn_probs, v)
        attn = attn.transpose(0, 1).contiguous().view(tgt_len, bsz, embed_dim)
        return self.out_proj(attn), position_bias


def fairseq_gelu(x):
    return F.gelu(x.float()).type_as(x)


class OfficialLayer(nn.Module):
    def __init__(self, args, has_bias):
        super().__init__()
        dim = args.encoder_embed_dim
        self.self_attn = OfficialAttention(
            dim, args.encoder_attention_heads, has_bias, args.num_buckets, args.max_distance, args.gru_rel_pos
        )
        self.layer_norm_first = args.layer_norm_first
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, args.encoder_ffn_embed_dim)
        self.fc2 = nn.Linear(args.encoder_ffn_embed_dim, dim)
        self.final_layer_norm = nn.LayerNorm(dim)
        self.deep_norm_alpha = math.pow(2 * args.encoder_layers, 1 / 4) if args.deep_norm else 1

    def forward(self, x, pos_bias):
        residual = x
        if self.layer_norm_first:
            x = self.self_attn_layer_norm(x)
            x, pos_bias = self.self_attn(x, pos_bias)
            x = residual + x
            residual = x
            x = self.fc2(fairseq_gelu(self.fc1(self.final_layer_norm(x))))
            x = residual + x
        else:
            x, pos_bias = self.self_attn(x, pos_bias)
            x = residual * self.deep_norm_alpha + x
            x = self.self_attn_layer_norm(x)
            residual = x
            x = self.fc2(fairseq_gelu(self.fc1(x)))
            x = residual * self.deep_norm_alpha + x
            x = self.final_layer_norm(x)
        return x, pos_bias


class SamePad(nn.Module):
    def __init__(self, kernel_size):
        super().__init__()
        self.remove = 1 if kernel_size % 2 == 0 else 0

    def forward(self, x):
        return x[:, :, : -self.remove] if self.remove > 0 else x


class OfficialEncoder(nn.Module):
    def __init__(self, args):
        super().__init__()
        dim = args.encoder_embed_dim
        conv = nn.Conv1d(
            dim, dim, kernel_size=args.conv_pos, padding=args.conv_pos // 2, groups=args.conv_pos_groups
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the old weight_norm API is what gives weight_g / weight_v
            conv = nn.utils.weight_norm(conv, name="weight", dim=2)
        self.pos_conv = nn.Sequential(conv, SamePad(args.conv_pos), nn.GELU())
        self.layers = nn.ModuleList(
            [OfficialLayer(args, args.relative_position_embedding) for _ in range(args.encoder_layers)]
        )
        if args.relative_position_embedding:
            for i in range(1, args.encoder_layers):
                del self.layers[i].self_attn.relative_attention_bias
                self.layers[i].self_attn.relative_attention_bias = self.layers[
                    0
                ].self_attn.relative_attention_bias
        self.layer_norm_first = args.layer_norm_first
        self.layer_norm = nn.LayerNorm(dim)

    def forward(self, x):
        """x [B, N, C] -> (final output [B, N, C], every block's output [B, N, C])."""
        x_conv = self.pos_conv(x.transpose(1, 2)).transpose(1, 2)
        x = x + x_conv
        if not self.layer_norm_first:
            x = self.layer_norm(x)
        x = x.transpose(0, 1)
        outputs = []
        pos_bias = None
        for layer in self.layers:
            x, pos_bias = layer(x, pos_bias)
            outputs.append(x.transpose(0, 1))
        x = x.transpose(0, 1)
        if self.layer_norm_first:
            x = self.layer_norm(x)
        return x, outputs


class OfficialBEATs(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        args = OfficialConfig(cfg)
        self.args = args
        self.post_extract_proj = (
            nn.Linear(args.embed_dim, args.encoder_embed_dim)
            if args.embed_dim != args.encoder_embed_dim
            else None
        )
        patch = args.input_patch_size
        self.patch_embedding = nn.Conv2d(
            1, args.embed_dim, kernel_size=patch, stride=patch, bias=args.conv_bias
        )
        self.encoder = OfficialEncoder(args)
        self.layer_norm = nn.LayerNorm(args.embed_dim)
        self.predictor = (
            nn.Linear(args.encoder_embed_dim, args.predictor_class) if args.finetuned_model else None
        )

    def preprocess(self, source, fbank_mean=15.41663, fbank_std=6.55582):
        fbanks = []
        for waveform in source:
            waveform = waveform.unsqueeze(0) * 2**15
            fbanks.append(
                ta_kaldi.fbank(
                    waveform, num_mel_bins=128, sample_frequency=16000, frame_length=25, frame_shift=10
                )
            )
        return (torch.stack(fbanks, dim=0) - fbank_mean) / (2 * fbank_std)

    def extract_features(self, source):
        """wav [B, T] -> (final output, every block's output), each [B, N, C]."""
        fbank = self.preprocess(source).unsqueeze(1)
        features = self.patch_embedding(fbank)
        features = features.reshape(features.shape[0], features.shape[1], -1).transpose(1, 2)
        features = self.layer_norm(features)
        if self.post_extract_proj is not None:
            features = self.post_extract_proj(features)
        return self.encoder(features)

    def audiotoken_features(self, source):
        """What AudioToken's Embedder receives: blocks 3, 7, 11 (0-based) concatenated on channels."""
        _, outputs = self.extract_features(source)
        return torch.cat([outputs[i] for i in (3, 7, 11)], dim=2)

    def probabilities(self, source):
        x, _ = self.extract_features(source)
        return torch.sigmoid(self.predictor(x).mean(dim=1))
