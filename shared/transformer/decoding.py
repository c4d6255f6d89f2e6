"""Decoders of one position per call after a prefill: `decoder(tokens [B]) -> next-token logits [B, vocab]`.

- `CacheDecoder` ("cache"): `GPT.forward` on the new token, attending the cache's growing views. The
  fastest on a CPU, where each step's cost is its arithmetic and weight reads, not its launches.
- `StaticDecoder` ("static"): `GPT.step`, the same step with static shapes (token and position in
  device buffers, the whole cache attended under a mask). It is the body `CUDAGraphDecoder` captures;
  uncaptured it runs on any device, which is how the tests check it against the growing-cache step.
- `CUDAGraphDecoder` ("cuda_graph"): `GPT.step` captured once in a CUDA graph and replayed at every
  position. A batch-1 step of a 24-layer GPT is a few hundred small kernels whose launches, not the GPU,
  set its time; a replay launches them all at once.
"""

from __future__ import annotations

import torch

from shared.transformer.cache import KVCache
from shared.transformer.gpt import GPT


class CacheDecoder:
    def __init__(self, gpt: GPT, cache: KVCache):
        self.gpt, self.cache = gpt, cache

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.gpt(tokens[:, None], None, self.cache)[:, -1]


class StaticDecoder:
    def __init__(self, gpt: GPT, cache: KVCache):
        self.gpt, self.cache = gpt, cache
        device = cache.buffer.device
        self.tokens = torch.zeros(cache.buffer.shape[2], dtype=torch.long, device=device)
        self.position = torch.zeros((), dtype=torch.long, device=device)

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        self.tokens.copy_(tokens)
        self.position.fill_(self.cache.length)
        logits = self._step()
        self.cache.advance(1)
        return logits

    def _step(self) -> torch.Tensor:
        return self.gpt.step(self.tokens, self.position, self.cache)


class CUDAGraphDecoder(StaticDecoder):
    """Captures `StaticDecoder`'s step on the cache it is given (one graph per cache: the graph holds the
    cache's addresses). The warm-up run before the capture, on a side stream as `torch.cuda.graph` asks,
    writes the next position, which the first real step overwrites."""

    def __init__(self, gpt: GPT, cache: KVCache):
        super().__init__(gpt, cache)
        self.position.fill_(cache.length)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            super()._step()
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.logits = super()._step()

    def _step(self) -> torch.Tensor:
        self.graph.replay()
        return self.logits.clone()  # the next replay overwrites the graph's output buffer


DECODERS = {"cache": CacheDecoder, "static": StaticDecoder, "cuda_graph": CUDAGraphDecoder}


def new_decoder(kind: str, gpt: GPT, cache: KVCache) -> CacheDecoder | StaticDecoder:
    """The decoder `kind` ("cache", "static" or "cuda_graph") of `gpt` over `cache`, after its prefill."""
    if kind not in DECODERS:
        raise ValueError(f"unknown decoder {kind!r}; choose one of {sorted(DECODERS)}")
    if kind == "cuda_graph" and cache.buffer.device.type != "cuda":
        raise ValueError(f"cuda_graph decoding needs a CUDA device; the model is on {cache.buffer.device}")
    return DECODERS[kind](gpt, cache)
