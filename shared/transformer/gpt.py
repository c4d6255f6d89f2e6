"""A GPT-2-style decoder over code tokens, with an optional prefix of condition embeddings.

The layout follows minGPT as used by taming-transformers and SpecVQGAN (arXiv:2110.08791 sec. 3.2;
`v-iashin/SpecVQGAN`, `specvqgan/modules/transformer/mingpt.py`): pre-LayerNorm blocks
`x + attn(ln1 x)`, `x + mlp(ln2 x)`, separate key/query/value/proj Linears with bias, a 4x GELU MLP, a
learned absolute position table shared by the prefix and the tokens, a final LayerNorm and a bias-free
head; init N(0, 0.02), LayerNorm (1, 0), position table zeros. Keeping those names and shapes lets the
official checkpoints load by renaming only the prefix.

Written here rather than taken from `transformers.GPT2Model`: GPT-2 there fuses q/k/v into one Conv1D,
adds its own position table and has no slot for a prefix of continuous embeddings, so the official
weights would need reshaping and the prefix a detour through `inputs_embeds`. Attention runs through
`torch.nn.functional.scaled_dot_product_attention` (flash / memory-efficient kernels where available), and
incremental decoding writes into a preallocated `KVCache` instead of growing tensors by concatenation.
`GPT.step` is the same decoding step with static shapes (the position a tensor, the whole cache attended
under a mask), the function a CUDA graph captures (`shared.transformer.decoding`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from shared.transformer.cache import KVCache


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float = 0.0):
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"n_embd={n_embd} is not a multiple of n_head={n_head}")
        self.n_head, self.dropout = n_head, dropout
        self.key = nn.Linear(n_embd, n_embd)
        self.query = nn.Linear(n_embd, n_embd)
        self.value = nn.Linear(n_embd, n_embd)
        self.proj = nn.Linear(n_embd, n_embd)
        self.resid_drop = nn.Dropout(dropout)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        return x.view(b, t, self.n_head, c // self.n_head).transpose(1, 2)  # [B, H, T, hd]

    def forward(
        self,
        x: torch.Tensor,
        cache: KVCache | None = None,
        layer: int = 0,
        position: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """position (a 0-d tensor; one new item): write it there and attend the whole cache, masked."""
        q, k, v = self._heads(self.query(x)), self._heads(self.key(x)), self._heads(self.value(x))
        t = x.shape[1]
        mask, causal = None, True
        if position is not None:
            k, v = cache.write_at(layer, k, v, position)
            mask, causal = (torch.arange(cache.max_length, device=x.device) <= position)[None], False
        elif cache is not None:
            start = cache.length
            k, v = cache.write(layer, k, v)
            if start > 0:  # the new positions see the whole cache and, causally, each other
                causal = False
                if t > 1:
                    mask = torch.ones(t, start + t, dtype=torch.bool, device=x.device).tril(start)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=causal, dropout_p=self.dropout if self.training else 0.0
        )
        y = y.transpose(1, 2).reshape(x.shape)
        return self.resid_drop(self.proj(y))


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float = 0.0):
        super().__init__()
        self.ln1 = nn.LayerNorm(n_embd)
        self.ln2 = nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head, dropout)
        self.mlp = nn.Sequential(
            nn.Linear(n_embd, 4 * n_embd), nn.GELU(), nn.Linear(4 * n_embd, n_embd), nn.Dropout(dropout)
        )

    def forward(
        self,
        x: torch.Tensor,
        cache: KVCache | None = None,
        layer: int = 0,
        position: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), cache, layer, position)
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """Token ids (and an optional prefix of embeddings) -> next-token logits.

    `forward(tokens [B, T], prefix [B, P, n_embd] | None)` returns logits [B, P + T, vocab] for the sequence
    [prefix, tok_emb(tokens)]; position i's logits predict the item at i + 1. With a `KVCache`, only the new
    items are run and the cache holds everything before them (positions continue from `cache.length`).
    """

    def __init__(
        self,
        vocab_size: int,
        block_size: int,
        n_layer: int = 24,
        n_head: int = 16,
        n_embd: int = 1024,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.vocab_size, self.block_size, self.n_layer, self.n_head = vocab_size, block_size, n_layer, n_head
        self.tok_emb = nn.Embedding(vocab_size, n_embd)
        self.pos_emb = nn.Parameter(torch.zeros(1, block_size, n_embd))
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(n_embd, n_head, dropout) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, vocab_size, bias=False)
        self.apply(_init_weights)

    @property
    def n_embd(self) -> int:
        return self.tok_emb.embedding_dim

    def new_cache(self, batch_size: int, max_length: int | None = None) -> KVCache:
        head_dim = self.n_embd // self.n_head
        param = self.pos_emb
        return KVCache(
            self.n_layer,
            batch_size,
            self.n_head,
            max_length or self.block_size,
            head_dim,
            param.dtype,
            param.device,
        )

    def forward(
        self, tokens: torch.Tensor | None, prefix: torch.Tensor | None = None, cache: KVCache | None = None
    ) -> torch.Tensor:
        parts = [p for p in (prefix, None if tokens is None else self.tok_emb(tokens)) if p is not None]
        x = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        start = cache.length if cache is not None else 0
        if start + x.shape[1] > self.block_size:
            raise ValueError(f"{start + x.shape[1]} positions exceed block_size={self.block_size}")
        x = self.drop(x + self.pos_emb[:, start : start + x.shape[1]])
        for i, block in enumerate(self.blocks):
            x = block(x, cache, i)
        if cache is not None:
            cache.advance(x.shape[1])
        return self.head(self.ln_f(x))

    def step(self, tokens: torch.Tensor, position: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """One decoding step with static shapes: tokens [B] at `position` (a 0-d long tensor on the model's
        device) -> next-token logits [B, vocab]. It reads no Python-side state and never synchronises with
        the host, so a CUDA graph can capture it once and replay it at every position; it leaves
        `cache.length` to the caller."""
        x = self.tok_emb(tokens)[:, None] + self.pos_emb.index_select(1, position.view(1))
        x = self.drop(x)
        for i, block in enumerate(self.blocks):
            x = block(x, cache, i, position)
        return self.head(self.ln_f(x))[:, 0]


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear | nn.Embedding):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
