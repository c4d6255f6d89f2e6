"""A key/value cache allocated once for the longest sequence, written in place as decoding advances.

Growing the cache by `torch.cat` at every step copies the whole history each time (quadratic memory
traffic) and fragments the allocator; here each layer owns two [B, H, max_length, head_dim] buffers and a
step writes only its new positions.
"""

from __future__ import annotations

import torch


class KVCache:
    def __init__(
        self,
        n_layer: int,
        batch_size: int,
        n_head: int,
        max_length: int,
        head_dim: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ):
        shape = (n_layer, 2, batch_size, n_head, max_length, head_dim)
        # zeros, not empty: the static-shape step (`GPT.step`) attends the whole buffer under a mask, and a masked
        # position's zero weight times a NaN left in unwritten memory is NaN
        self.buffer = torch.zeros(shape, dtype=dtype, device=device)
        self.max_length = max_length
        self.length = 0  # positions already stored (for every layer)

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the new positions' keys/values of one layer; return that layer's keys/values so far."""
        end = self.length + k.shape[2]
        if end > self.max_length:
            raise ValueError(f"KV cache full: {end} positions > max_length={self.max_length}")
        self.buffer[layer, 0, :, :, self.length : end] = k
        self.buffer[layer, 1, :, :, self.length : end] = v
        return self.buffer[layer, 0, :, :, :end], self.buffer[layer, 1, :, :, :end]

    def write_at(
        self, layer: int, k: torch.Tensor, v: torch.Tensor, position: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store one position's keys/values [B, H, 1, hd] of one layer at `position` (a 0-d long tensor on
        the cache's device) and return the layer's whole buffers [B, H, max_length, hd]: the shapes and
        addresses never change, so a CUDA graph can capture it; the caller masks the unwritten positions
        and advances `length` itself."""
        index = position.view(1)
        self.buffer[layer, 0].index_copy_(2, index, k)
        self.buffer[layer, 1].index_copy_(2, index, v)
        return self.buffer[layer, 0], self.buffer[layer, 1]

    def advance(self, n: int) -> None:
        self.length += n

    def reset(self) -> None:
        self.length = 0
