"""The vision-conditioned autoregressive sampler (SpecVQGAN, arXiv:2110.08791, sec. 3.2, eq. 4; official
`v-iashin/SpecVQGAN`, `specvqgan/models/cond_transformer.py` and `specvqgan/modules/transformer/mingpt.py`).

The codebook indices of a spectrogram form an F' x T' grid (5 x 53 for 10 s); the transformer reads them
column-major, i.e. position k holds the raster index (k mod F') * T' + floor(k / F'), so each latent
column (about 0.19 s) is generated low to high frequency before the next one starts (sec. 3.2, Fig. 2).
The sequence is [condition embeddings, code tokens]: N visual features through a 1x1 Conv1d (the official
`embedder`), and/or a class embedding ("+ cls" rows of Table 4), or one random vector ("No Feats").
The logits of the last condition position and of every code but the last predict the F'T' codes.

`sample` draws codes with a preallocated KV cache: one prefill over the condition, then one position per
step (`decode`: "cache", or "cuda_graph", the step captured in a CUDA graph, whose body "static" runs
uncaptured on any device; `shared.transformer.decoding`). `decode="recompute"` is the recompute-everything
loop of the official sampler (every step a full forward), kept as the reference the cached paths must
reproduce token for token. Sequences longer than
the model's grid (more columns than it was trained on) slide a window of W columns one column at a time,
re-encoding the kept W - 1 columns (the absolute position table starts at 0 in each window) and taking the
visual condition of the window's own time span from `condition_at(first_column)`.

`sample_items` is the evaluation and generation protocol on top of it (`CodeSampling`): any number of
items, `chunk_size` of them per call of `sample` so that the KV cache stays bounded, each item drawn from
its own random stream, so that its codes (and its "No Feats" vector) depend on the seed and the item's key
only, not on the chunk size, the batch or the number of processes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from projects.specvqgan.models.vqgan import SpectrogramVQGAN
from shared.transformer import GPT, TokenSampling, item_generators, uniforms
from shared.transformer.decoding import DECODERS, new_decoder

Condition = tuple[torch.Tensor | None, torch.Tensor | None]  # (features [B, N, D], class ids [B])


@dataclass(frozen=True)
class CodeSampling(TokenSampling):
    """How the sampler draws codes for evaluation and generation: top-k / top-p / temperature, and

    - `samples_per_clip`: the paper scores 10 samples per VGGSound test clip and 100 per VAS validation clip
      (arXiv:2110.08791, sec. 6.1.7);
    - `chunk_size`: items per call of `VisualCodeSampler.sample`. A call's KV cache holds
      chunk_size x 2 x n_layer x block_size x n_embd floats (94 MB per item at paper size with 212
      features), so this bounds the memory whatever samples_per_clip x batch size is; None: one call;
    - `seed`: the base of every item's random stream (`shared.transformer.item_generators`).
    """

    samples_per_clip: int = 1
    chunk_size: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.samples_per_clip < 1:
            raise ValueError(f"samples_per_clip must be >= 1, got {self.samples_per_clip}")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1 or None, got {self.chunk_size}")


def column_major_order(rows: int, cols: int) -> torch.Tensor:
    """order[k] = raster (row-major) index of transformer position k."""
    k = torch.arange(rows * cols)
    return (k % rows) * cols + k // rows


class VisualCodeSampler(nn.Module):
    """GPT over column-major codes, conditioned on features [B, N, D] and/or class ids [B].

    The frozen codebook travels with the sampler, so one checkpoint generates spectrograms; it does not
    take part in `forward`.
    """

    def __init__(
        self,
        codebook: SpectrogramVQGAN,
        grid: tuple[int, int] = (5, 53),
        feat_dim: int | None = 2048,
        n_feats: int = 212,
        n_classes: int | None = None,
        n_layer: int = 24,
        n_head: int = 16,
        n_embd: int = 1024,
        dropout: float = 0.0,
    ):
        super().__init__()
        if feat_dim is None and n_classes is None:
            raise ValueError("the sampler needs a condition: feat_dim (visual features) and/or n_classes")
        self.codebook = codebook.eval().requires_grad_(False)
        self.grid = tuple(grid)
        self.n_feats = n_feats if feat_dim is not None else 0
        self.embedder = nn.Conv1d(feat_dim, n_embd, 1) if feat_dim is not None else None
        self.cls_embedder = nn.Embedding(n_classes, n_embd) if n_classes is not None else None
        self.prefix_length = self.n_feats + (1 if n_classes is not None else 0)
        self.gpt = GPT(codebook.n_codes, self.prefix_length + self.n_tokens, n_layer, n_head, n_embd, dropout)
        order = column_major_order(*self.grid)
        self.register_buffer("order", order, persistent=False)
        self.register_buffer("inverse_order", torch.argsort(order), persistent=False)

    @property
    def n_tokens(self) -> int:
        return self.grid[0] * self.grid[1]

    def train(self, mode: bool = True) -> VisualCodeSampler:
        super().train(mode)
        self.codebook.eval()  # frozen stage 1: no dropout or statistics updates
        return self

    # --- codes <-> grid ------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, mel: torch.Tensor) -> torch.Tensor:
        """Mel [B, 1, F, T] in [0, 1] -> codes [B, F'T'] in transformer (column-major) order."""
        _, indices = self.codebook.encode(mel * 2 - 1)
        return self.to_sequence(indices)

    def to_sequence(self, grid_codes: torch.Tensor) -> torch.Tensor:
        """[B, F', W] raster grid -> [B, F'W] column-major sequence."""
        return grid_codes.transpose(1, 2).flatten(1)

    def to_grid(self, codes: torch.Tensor) -> torch.Tensor:
        """[B, F'W] column-major sequence -> [B, F', W] raster grid (W = any number of columns)."""
        return codes.view(codes.shape[0], -1, self.grid[0]).transpose(1, 2)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Column-major codes [B, F'W] -> mel [B, 1, F, 16 W] in [0, 1] (not clamped)."""
        return (self.codebook.decode_indices(self.to_grid(codes)) + 1) / 2

    # --- the transformer -----------------------------------------------------------------------------
    def condition(
        self, feats: torch.Tensor | None = None, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Features [B, N, D] and/or labels [B] -> prefix embeddings [B, P, n_embd] ([feats, class])."""
        parts = []
        if self.embedder is not None:
            if feats is None or feats.shape[1] != self.n_feats:
                got = None if feats is None else tuple(feats.shape)
                raise ValueError(f"expected features [B, {self.n_feats}, D], got {got}")
            parts.append(self.embedder(feats.transpose(1, 2)).transpose(1, 2))
        if self.cls_embedder is not None:
            if labels is None:
                raise ValueError("this sampler is class-conditional: pass labels")
            parts.append(self.cls_embedder(labels)[:, None])
        return torch.cat(parts, dim=1)

    def forward(
        self, codes: torch.Tensor, feats: torch.Tensor | None = None, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Codes [B, F'T'] (column-major) + condition -> logits [B, F'T', n_codes]; logits[:, j] predict codes[:, j]."""
        logits = self.gpt(codes[:, :-1], self.condition(feats, labels))
        return logits[:, self.prefix_length - 1 :]

    @torch.no_grad()
    def sample(
        self,
        feats: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        *,
        n_columns: int | None = None,
        prime: torch.Tensor | None = None,
        condition_at: Callable[[int], Condition] | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        temperature: float = 1.0,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
        decode: str = "cache",
    ) -> torch.Tensor:
        """Draw codes [B, F' * n_columns] (column-major; n_columns defaults to the model's T').

        prime: the first codes [B, m] (column-major, e.g. from real audio); they are kept, not sampled.
        condition_at(c) -> (feats, labels) for the window whose first column is c, when n_columns > T';
        by default the given condition is reused for every window (as the official demo does).
        generator: one for the whole batch, or one per row (each row then draws from its own stream).
        decode: "cache", "static", "cuda_graph" (`shared.transformer.decoding`) or "recompute" (a full
        forward per code, the official loop); all draw the same codes.
        """
        if decode != "recompute" and decode not in DECODERS:
            raise ValueError(f"unknown decode {decode!r}; choose one of {[*DECODERS, 'recompute']}")
        sampling = TokenSampling(top_k, top_p, temperature)
        rows, window = self.grid
        n_columns = n_columns or window
        total = rows * n_columns
        batch = (feats if feats is not None else labels).shape[0]
        codes = torch.empty(batch, total, dtype=torch.long, device=self.gpt.pos_emb.device)
        m = 0 if prime is None else prime.shape[1]
        if m:
            codes[:, :m] = prime
        while m < total:
            first_column = max(0, m // rows - window + 1)  # the window ends at the column being drawn
            condition = condition_at(first_column) if condition_at is not None else (feats, labels)
            start, stop = first_column * rows, min(total, (first_column + window) * rows)
            random = uniforms(generator, batch, stop - m, codes.device)
            codes[:, m:stop] = self._sample_window(
                self.condition(*condition), codes[:, start:m], random, sampling, decode
            )
            m = stop
        return codes

    def _sample_window(
        self,
        prefix: torch.Tensor,
        context: torch.Tensor,
        random: torch.Tensor,
        sampling: TokenSampling,
        decode: str,
    ) -> torch.Tensor:
        """random [B, n_new]: one uniform number per row for each new code."""
        new = []
        n_new = random.shape[1]
        if decode != "recompute":
            cache = self.gpt.new_cache(prefix.shape[0], self.gpt.block_size)
            logits = self.gpt(context, prefix, cache)[:, -1]
            decoder = new_decoder(decode, self.gpt, cache) if n_new > 1 else None
            for i in range(n_new):
                token = sampling.next_token(logits, random[:, i])
                new.append(token)
                if i + 1 < n_new:
                    logits = decoder(token)
        else:
            for i in range(n_new):
                tokens = torch.cat([context, *[t[:, None] for t in new]], dim=1)
                logits = self.gpt(tokens, prefix)[:, -1]
                new.append(sampling.next_token(logits, random[:, i]))
        return torch.stack(new, dim=1)

    # --- the evaluation / generation protocol --------------------------------------------------------
    def no_feats(self, generators: Sequence[torch.Generator]) -> torch.Tensor:
        """The "No Feats" condition (Table 3; paper sec. 6.1.4): per item one uniform-random [n_feats, D]
        from the start of its own random stream, as the official data code draws one per item
        (`specvqgan/data/vggsound.py`, `replace_feats_with_random`) -> [len(generators), n_feats, D]."""
        shape = (self.n_feats, self.embedder.in_channels)
        return torch.stack([torch.rand(shape, generator=g) for g in generators]).to(self.gpt.pos_emb)

    @torch.no_grad()
    def sample_items(
        self,
        feats: torch.Tensor | None,
        labels: torch.Tensor | None,
        keys: Sequence[str],
        sampling: CodeSampling,
        *,
        rows: Sequence[int] | None = None,
        n_columns: int | None = None,
        prime: torch.Tensor | None = None,
        condition_at: Callable[[int], Condition] | None = None,
        decode: str = "cache",
    ) -> Iterator[tuple[slice, torch.Tensor]]:
        """One sample per key, `sampling.chunk_size` per call of `sample`: yields (items, codes [n, F'W]).

        feats [R, N, D], labels [R], prime [R, m] and what condition_at returns are condition rows; item i uses
        row `rows[i]` (default: row i), so the samples of a clip share its row without copies of it.
        feats=None on a sampler with a feature embedder is "No Feats": each item gets its random vector from
        its own stream (`no_feats`). Each key seeds its item's stream with `sampling.seed`
        (`item_generators`), so the codes of an item are the same whatever the chunk size and whichever
        items it is sampled with.
        """
        index = torch.as_tensor(list(rows) if rows is not None else range(len(keys)), dtype=torch.long)
        if len(index) != len(keys):
            raise ValueError(f"{len(index)} condition rows for {len(keys)} keys; give one per key")
        size = sampling.chunk_size or len(keys)
        for start in range(0, len(keys), size):
            items = slice(start, min(len(keys), start + size))

            def pick(x: torch.Tensor | None, items=items) -> torch.Tensor | None:
                return None if x is None else x[index[items].to(x.device)]

            generators = item_generators(sampling.seed, keys[items])
            chunk_feats = pick(feats)
            if chunk_feats is None and self.embedder is not None:
                chunk_feats = self.no_feats(generators)
            window = None
            if condition_at is not None:
                window = lambda c, pick=pick: tuple(map(pick, condition_at(c)))  # noqa: E731
            codes = self.sample(
                chunk_feats, pick(labels), n_columns=n_columns, prime=pick(prime), condition_at=window,
                top_k=sampling.top_k, top_p=sampling.top_p, temperature=sampling.temperature,
                generator=generators, decode=decode,
            )  # fmt: skip
            yield items, codes
