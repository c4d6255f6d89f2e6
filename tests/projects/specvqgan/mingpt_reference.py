"""An independent model of the official SpecVQGAN transformer (minGPT `GPTFeats` / `GPTFeatsClass` of
`v-iashin/SpecVQGAN`, `specvqgan/modules/transformer/mingpt.py`), written from that file's structure with its
key names (checked against the released checkpoint's key list, data/specvqgan_gpt_state_dict_keys.txt):
explicit masked-softmax attention with the per-block mask buffer, no KV cache. Used only to test
`convert.load_official` on a transformer checkpoint.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class Attention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, block_size: int):
        super().__init__()
        self.key, self.query, self.value = (nn.Linear(n_embd, n_embd) for _ in range(3))
        self.proj = nn.Linear(n_embd, n_embd)
        self.register_buffer(
            "mask", torch.tril(torch.ones(block_size, block_size)).view(1, 1, block_size, block_size)
        )
        self.n_head = n_head

    def forward(self, x):
        b, t, c = x.shape
        split = lambda y: y.view(b, t, self.n_head, c // self.n_head).transpose(1, 2)  # noqa: E731
        k, q, v = split(self.key(x)), split(self.query(x)), split(self.value(x))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(self.mask[:, :, :t, :t] == 0, float("-inf")).softmax(-1)
        return self.proj((att @ v).transpose(1, 2).contiguous().view(b, t, c))


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int, block_size: int):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(n_embd), nn.LayerNorm(n_embd)
        self.attn = Attention(n_embd, n_head, block_size)
        self.mlp = nn.Sequential(
            nn.Linear(n_embd, 4 * n_embd), nn.GELU(), nn.Linear(4 * n_embd, n_embd), nn.Dropout(0.0)
        )

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class OfficialGPTFeats(nn.Module):
    """`forward(idx [B, L], feats [B, D, N], cls [B, 1] | None)` -> logits over [feats, (cls), tokens]."""

    def __init__(self, vocab, block_size, n_layer, n_head, n_embd, feat_dim, n_classes=None):
        super().__init__()
        self.tok_emb = nn.Embedding(vocab, n_embd)
        self.pos_emb = nn.Parameter(torch.randn(1, block_size, n_embd) * 0.02)
        self.blocks = nn.Sequential(*[Block(n_embd, n_head, block_size) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, vocab, bias=False)
        if n_classes is None:
            self.embedder = nn.Conv1d(feat_dim, n_embd, 1)
        else:
            self.feat_embedder = nn.Conv1d(feat_dim, n_embd, 1)
            self.cls_embedder = nn.Embedding(n_classes, n_embd)

    def forward(self, idx, feats, cls=None):
        embedder = self.embedder if cls is None else self.feat_embedder
        cond = embedder(feats).permute(0, 2, 1)
        if cls is not None:
            cond = torch.cat([cond, self.cls_embedder(cls)], dim=1)
        x = torch.cat([cond, self.tok_emb(idx)], dim=1)
        x = x + self.pos_emb[:, : x.shape[1]]
        return self.head(self.ln_f(self.blocks(x)))


def official_transformer_logits(gpt: OfficialGPTFeats, codes, feats, cls=None):
    """What Net2NetTransformer.forward returns: logits[:, cond_size - 1:] for codes[:, :-1]."""
    cond_size = feats.shape[-1] + (0 if cls is None else 1)
    logits = gpt(codes[:, :-1], feats, cls)
    return logits[:, cond_size - 1 :]


def column_major_permutation(h: int, w: int) -> torch.Tensor:
    """Written from the paper's column-major order (arXiv:2110.08791, sec. 3.2, Fig. 2; official
    `specvqgan/modules/transformer/permuter.py`, `ColumnMajor`), independently of the library's helper."""
    return torch.tensor([(k % h) * w + k // h for k in range(h * w)])
