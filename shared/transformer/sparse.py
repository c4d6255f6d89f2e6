"""The factorised sparse-attention autoregressive transformer of Jukebox, as Im2Wav uses it for its priors.

Sparse Transformers (Child et al., arXiv:1904.10509) factorise causal attention over a sequence cut into
blocks of `block_ctx` positions; Jukebox (Dhariwal et al., arXiv:2005.00341, `ConditionalAutoregressive2D`)
cycles three such layers, and Im2Wav (Sheffer & Adi, arXiv:2211.03089; `RoySheffer/im2wav`,
`models/transformer/factored_attention.py`, `transformer.py`, `models/prior/autoregressive.py`) uses that
transformer unchanged for its Low and Up priors (`attn_order` 2: layer d has pattern
[block, transpose, prev_block][d % 3]), and so does GRAVO (Ahn et al., Interspeech 2023, sec. 3.2).
Position p in block s = p // b (b = block_ctx) attends to

- block: its own block up to itself, keys [s b, p];
- transpose: the same in-block offset of every block up to its own, keys {p mod b, p mod b + b, ..., p};
- prev_block: the whole previous block, keys [(s - 1) b, s b), without a causal mask (every key is earlier)
  and without its own key. In block 0 the official code attends to a block of zero keys and zero values
  (`F.pad` of the shifted blocks in training, `t.zeros` in sampling), so the attention output there is
  exactly 0 and the layer adds only `c_proj`'s bias: nothing there depends on the input.

The model: `x_emb` (tied with the head `x_out`) and a learned absolute `pos_emb`; input i is the start
embedding at i = 0, else the embedding of token i - 1; the condition `x_cond` is added to the input and
again to the last block's output (there is no final LayerNorm); pre-LN blocks a = attn(ln_0 x),
m = mlp(ln_1(x + a)), x <- x + a + m, with an attention width (`attn_width`, the q/k/v width) and an MLP
width of their own and quick-GELU x sigmoid(1.702 x) (always: the official MLP silently swaps it for the
identity on a machine without CUDA, but the released priors ran on GPUs). Jukebox's `Conv1D` stores weights as (in, out); here
they are `nn.Linear` (out, in), so official weights load transposed. Init as Jukebox: Linear and `x_emb`
N(0, 0.02 init_scale), `pos_emb` N(0, 0.01 init_scale), biases 0, LayerNorm (1, 0); Jukebox's `zero_out`
and `res_scale` options are left out, since Im2Wav's priors use neither.

Written here rather than taken from a library: no maintained package implements these three patterns with
Jukebox's parameter layout. The full forward reshapes the sequence into blocks as Jukebox does and runs
`torch.nn.functional.scaled_dot_product_attention` on the blocks (block: causal inside each block;
transpose: causal along the blocks at each offset; prev_block: unmasked against the shifted blocks), so it
costs O(T b) or O(T^2 / b), never a [T, T] matrix. SDPA's default scale 1/sqrt(head_dim) equals the
official one (q and k each times head_dim^(-1/4)), and its -inf masking equals the official
w * mask - 1e9 (1 - mask) in float32 (exp(-1e9) is 0). Decoding writes each position's keys into the
preallocated `KVCache` [B, H, n_ctx, head_dim] and attends only the keys of its pattern (a slice, a strided
slice, or the previous block), so a step costs O(b) or O(T / b). `sample` runs classifier-free guidance's
two branches in one batched forward of batch 2B over one cache, not Im2Wav's two sequential passes over a
deep-copied model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from shared.guidance import cfg_combine
from shared.transformer.cache import KVCache
from shared.transformer.sampling import TokenSampling, uniforms

PATTERNS = ("dense", "block", "transpose", "prev_block")
# Jukebox's `attn_order` (`models/transformer/transformer.py`): the patterns cycled over the layers
ATTN_ORDERS = {0: ("dense",), 1: ("block", "transpose"), 2: ("block", "transpose", "prev_block")}


@dataclass(frozen=True)
class Guidance:
    """Classifier-free guidance of `SparseTransformerLM.sample`: logits l_u + scale (l_c - l_u) (Im2Wav's
    eta = 3 gives 3 l_c - 2 l_u); `start` [B, W] and `x_cond` [B, P + n, W] | None are the null branch's."""

    scale: float
    start: torch.Tensor
    x_cond: torch.Tensor | None = None


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(1.702 * x)


class SparseAttention(nn.Module):
    """One layer's attention with one of `PATTERNS`; q, k, v are the three `attn_width` chunks of `c_attn`."""

    def __init__(
        self, width: int, attn_width: int, n_head: int, pattern: str, block_ctx: int, dropout: float
    ):
        super().__init__()
        if pattern not in PATTERNS:
            raise ValueError(f"unknown attention pattern {pattern!r}; choose one of {PATTERNS}")
        if attn_width % n_head:
            raise ValueError(f"attn_width={attn_width} is not a multiple of n_head={n_head}")
        self.n_head, self.pattern, self.block_ctx, self.dropout = n_head, pattern, block_ctx, dropout
        self.c_attn = nn.Linear(width, 3 * attn_width)
        self.c_proj = nn.Linear(attn_width, width)
        self.resid_drop = nn.Dropout(dropout)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        return x.view(b, t, self.n_head, c // self.n_head).transpose(1, 2)  # [B, H, T, hd]

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        """x [B, T, width] -> [B, T, width]. With a cache: T > 1 is a prefill from position 0, T = 1 one
        decoding step at position `cache.length` (the caller advances the cache after the last layer)."""
        q, k, v = (self._heads(part) for part in self.c_attn(x).chunk(3, dim=-1))
        if cache is not None:
            position = cache.length
            keys, values = cache.write(layer, k, v)
            if x.shape[1] == 1:
                y = self._step(q, keys, values, position)
                return self._project(y)
            if position > 0:
                raise ValueError(
                    f"a multi-position forward with a cache must start at position 0, not {position}"
                )
        y = self._blocked(q, k, v, dropout=self.dropout if self.training else 0.0)
        return self._project(y)

    def _project(self, y: torch.Tensor) -> torch.Tensor:
        b, h, t, hd = y.shape
        return self.resid_drop(self.c_proj(y.transpose(1, 2).reshape(b, t, h * hd)))

    def _blocked(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout: float) -> torch.Tensor:
        """The full forward's attention [B, H, T, hd] on the sequence cut into blocks, as Jukebox's
        `block_attn` / `transpose_block_attn` / `prev_block_attn` reshape it. The sequence is padded at the
        end to whole blocks: a padded position is later than every real query, so none attends to it."""
        if self.pattern == "dense":
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout)
        batch, heads, t, hd = q.shape
        b = self.block_ctx
        n_blocks = -(-t // b)
        q, k, v = (
            F.pad(z, (0, 0, 0, n_blocks * b - t)).view(batch, heads, n_blocks, b, hd) for z in (q, k, v)
        )
        if self.pattern == "block":  # [B, H * blocks, b, hd]: causal inside each block
            y = F.scaled_dot_product_attention(
                *(z.flatten(1, 2) for z in (q, k, v)), is_causal=True, dropout_p=dropout
            )
            y = y.view(batch, heads, n_blocks, b, hd)
        elif self.pattern == "transpose":  # [B, H * b, blocks, hd]: causal along the blocks at each offset
            q, k, v = (z.transpose(2, 3).flatten(1, 2) for z in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout)
            y = y.view(batch, heads, b, n_blocks, hd).transpose(2, 3)
        else:  # prev_block: block s against the keys of block s - 1, block 0 against zeros
            k, v = (F.pad(z[:, :, :-1], (0, 0, 0, 0, 1, 0)) for z in (k, v))
            y = F.scaled_dot_product_attention(*(z.flatten(1, 2) for z in (q, k, v)), dropout_p=dropout)
            y = y.view(batch, heads, n_blocks, b, hd)
        return y.reshape(batch, heads, n_blocks * b, hd)[:, :, :t]

    def _step(self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, p: int) -> torch.Tensor:
        """One query [B, H, 1, hd] at position p against only its pattern's keys among the cache's [0, p]."""
        b = self.block_ctx
        block_start = p - p % b
        if self.pattern == "dense":
            selected = slice(0, p + 1)
        elif self.pattern == "block":
            selected = slice(block_start, p + 1)
        elif self.pattern == "transpose":
            selected = slice(p % b, p + 1, b)
        elif block_start == 0:  # prev_block in block 0: zero keys and values give exactly zero
            return torch.zeros_like(q)
        else:
            selected = slice(block_start - b, block_start)
        return F.scaled_dot_product_attention(q, keys[:, :, selected], values[:, :, selected])


class MLP(nn.Module):
    def __init__(self, width: int, mlp_width: int, dropout: float):
        super().__init__()
        self.c_fc = nn.Linear(width, mlp_width)
        self.c_proj = nn.Linear(mlp_width, width)
        self.resid_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resid_drop(self.c_proj(quick_gelu(self.c_fc(x))))


class SparseBlock(nn.Module):
    """Jukebox's `ResAttnBlock`: a = attn(ln_0 x); m = mlp(ln_1(x + a)); x + a + m."""

    def __init__(
        self,
        width: int,
        attn_width: int,
        mlp_width: int,
        n_head: int,
        pattern: str,
        block_ctx: int,
        dropout: float,
    ):
        super().__init__()
        self.ln_0 = nn.LayerNorm(width)
        self.attn = SparseAttention(width, attn_width, n_head, pattern, block_ctx, dropout)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = MLP(width, mlp_width, dropout)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        a = self.attn(self.ln_0(x), cache, layer)
        m = self.mlp(self.ln_1(x + a))
        return x + a + m


class SparseTransformerLM(nn.Module):
    """Jukebox's `ConditionalAutoregressive2D` with an external start embedding (Im2Wav's `y_cond`).

    `forward(tokens [B, T], start [B, W], x_cond [B, T, W] | None)` -> teacher-forced logits [B, T, n_vocab]:
    position i scores token i given the start, tokens[:, :i] and the conditions.
    """

    def __init__(
        self,
        n_vocab: int,
        n_ctx: int,
        width: int,
        depth: int,
        n_head: int = 1,
        attn_width: int | None = None,
        mlp_width: int | None = None,
        block_ctx: int = 32,
        attn_order: int = 2,
        dropout: float = 0.0,
        init_scale: float = 1.0,
    ):
        super().__init__()
        if attn_order not in ATTN_ORDERS:
            raise ValueError(f"attn_order={attn_order} is not one of {sorted(ATTN_ORDERS)}")
        self.n_vocab, self.n_ctx, self.width, self.depth, self.n_head = n_vocab, n_ctx, width, depth, n_head
        self.attn_width = attn_width or width
        self.block_ctx = block_ctx
        cycle = ATTN_ORDERS[attn_order]
        self.patterns = [cycle[d % len(cycle)] for d in range(depth)]
        self.x_emb = nn.Embedding(n_vocab, width)
        self.pos_emb = nn.Parameter(torch.empty(n_ctx, width))
        self.x_emb_drop = nn.Dropout(dropout)
        self.pos_emb_drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            SparseBlock(width, self.attn_width, mlp_width or width, n_head, pattern, block_ctx, dropout)
            for pattern in self.patterns
        )
        self.x_out = nn.Linear(width, n_vocab, bias=False)
        self._init_weights(init_scale)
        self.x_out.weight = self.x_emb.weight

    def _init_weights(self, init_scale: float) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.02 * init_scale)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        nn.init.normal_(self.x_emb.weight, std=0.02 * init_scale)
        nn.init.normal_(self.pos_emb, std=0.01 * init_scale)

    def new_cache(self, batch_size: int) -> KVCache:
        head_dim = self.attn_width // self.n_head
        param = self.pos_emb
        return KVCache(self.depth, batch_size, self.n_head, self.n_ctx, head_dim, param.dtype, param.device)

    def forward(
        self, tokens: torch.Tensor, start: torch.Tensor, x_cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        inputs = torch.cat([start[:, None], self.x_emb(tokens[:, :-1])], dim=1)
        return self._logits(inputs, x_cond)

    def _logits(
        self, inputs: torch.Tensor, x_cond: torch.Tensor | None, cache: KVCache | None = None
    ) -> torch.Tensor:
        """Input embeddings [B, T, W] at positions from `cache.length` (0 without a cache) -> logits."""
        offset = 0 if cache is None else cache.length
        end = offset + inputs.shape[1]
        if end > self.n_ctx:
            raise ValueError(f"{end} positions exceed n_ctx={self.n_ctx}")
        x = self.x_emb_drop(inputs) + self.pos_emb_drop(self.pos_emb[offset:end])
        if x_cond is not None:
            x = x + x_cond
        for layer, block in enumerate(self.blocks):
            x = block(x, cache, layer)
        if cache is not None:
            cache.advance(inputs.shape[1])
        if x_cond is not None:
            x = x + x_cond
        return self.x_out(x)

    @torch.no_grad()
    def sample(
        self,
        start: torch.Tensor,
        x_cond: torch.Tensor | None,
        n_tokens: int,
        sampling: TokenSampling,
        *,
        prime: torch.Tensor | None = None,
        guidance: Guidance | None = None,
        generators: torch.Generator | Sequence[torch.Generator] | None = None,
    ) -> torch.Tensor:
        """Draw `n_tokens` tokens [B, n_tokens] after the start and the optional `prime` tokens [B, P] (a
        sliding window's overlap): the start and the prime run in one prefill forward, then one cached step
        per token. `x_cond` [B, P + n_tokens, W] conditions positions 0 .. P + n_tokens - 1. With guidance
        (scale != 1) both branches run as one batch of 2B over one cache. Call it in eval mode.

        Each row's tokens depend only on its own generator (`uniforms`), whatever else shares the batch."""
        batch = start.shape[0]
        n_prime = 0 if prime is None else prime.shape[1]
        if n_prime + n_tokens > self.n_ctx:
            raise ValueError(f"{n_prime} prime + {n_tokens} new tokens exceed n_ctx={self.n_ctx}")
        if x_cond is not None and x_cond.shape[1] < n_prime + n_tokens:
            raise ValueError(f"x_cond has {x_cond.shape[1]} positions; sampling needs {n_prime + n_tokens}")
        guided = guidance is not None and guidance.scale != 1
        if guided:
            if (guidance.x_cond is None) != (x_cond is None):
                raise ValueError("give x_cond to both branches of the guidance or to neither")
            if guidance.start.shape != start.shape:
                raise ValueError(
                    f"the null start {tuple(guidance.start.shape)} differs from {tuple(start.shape)}"
                )
            start = torch.cat([guidance.start, start])
            x_cond = None if x_cond is None else torch.cat([guidance.x_cond, x_cond])
        inputs = start[:, None]
        if prime is not None:
            prime = torch.cat([prime, prime]) if guided else prime
            inputs = torch.cat([inputs, self.x_emb(prime)], dim=1)
        cache = self.new_cache(inputs.shape[0])
        draws = uniforms(generators, batch, n_tokens, start.device)
        tokens = torch.empty(batch, n_tokens, dtype=torch.long, device=start.device)
        logits = self._logits(inputs, _positions(x_cond, 0, n_prime + 1), cache)[:, -1]
        for i in range(n_tokens):
            if guided:
                uncond, cond = logits.chunk(2)
                logits = cfg_combine(uncond, cond, guidance.scale)
            tokens[:, i] = sampling.next_token(logits, draws[:, i])
            if i + 1 < n_tokens:
                step = tokens[:, i : i + 1]
                step = torch.cat([step, step]) if guided else step
                position = n_prime + 1 + i
                logits = self._logits(self.x_emb(step), _positions(x_cond, position, position + 1), cache)[
                    :, -1
                ]
        return tokens


def _positions(x_cond: torch.Tensor | None, begin: int, end: int) -> torch.Tensor | None:
    return None if x_cond is None else x_cond[:, begin:end]
