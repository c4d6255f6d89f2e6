"""GPT blocks with a preallocated KV cache, and next-token sampling (top-k / top-p / temperature)."""

from shared.transformer.cache import KVCache
from shared.transformer.gpt import GPT, Block, CausalSelfAttention
from shared.transformer.sampling import TokenSampling, draw, filter_logits, item_generators, uniforms

__all__ = [
    "GPT", "Block", "CausalSelfAttention", "KVCache", "TokenSampling", "draw", "filter_logits",
    "item_generators", "uniforms",
]  # fmt: skip
