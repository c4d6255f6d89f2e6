"""GPT blocks, Jukebox's factorised sparse-attention transformer (arXiv:2005.00341, arXiv:1904.10509; as Im2Wav,
arXiv:2211.03089, `RoySheffer/im2wav`, `models/transformer/factored_attention.py`, uses it), a preallocated KV
cache, and next-token sampling (top-k / top-p / temperature)."""

from shared.transformer.cache import KVCache
from shared.transformer.gpt import GPT, Block, CausalSelfAttention
from shared.transformer.sampling import TokenSampling, draw, filter_logits, item_generators, uniforms
from shared.transformer.sparse import Guidance, SparseTransformerLM

__all__ = [
    "GPT", "Block", "CausalSelfAttention", "Guidance", "KVCache", "SparseTransformerLM", "TokenSampling", "draw",
    "filter_logits", "item_generators", "uniforms",
]  # fmt: skip
