"""Im2Wav's sampling scheme for the Low prior, re-created faithfully: the baseline of the GRAVO sampling benchmark.

    python benchmarks/im2wav_scheme.py --size tiny                       # a whole tiny window
    python benchmarks/im2wav_scheme.py --size paper --steps 64 --threads 2   # paper size, 64 timed steps

What the official code does (`RoySheffer/im2wav`, `models/prior/prior.py` `SimplePrior.sample` and
`models/prior/autoregressive.py` `ConditionalAutoregressive2D.sample`, called by `models/sample.py` with
cfg_s 3.0): the conditional and the null-label conditioning are built apart; at the start of every window
the transformer is deep-copied (`copy.deepcopy(self.transformer)`) so each branch has its own key/value
cache; every step runs the two branches one after the other, each a one-token forward through its own
model, whose per-layer caches grow by `torch.cat` and are cut back to what the layer's attention pattern
needs; the logits are combined as `cfg_s * l_cond + (1 - cfg_s) * l_null`, divided by the temperature,
filtered (top-k or top-p) and sampled.

`sample_low` does exactly that on the official re-creation (`tests/projects/gravo/official_im2wav.py`), with
one change so that the same seed gives the same tokens as our sampler: the official draw
(`torch.distributions.Categorical(logits=...).sample()`, i.e. `torch.multinomial`) is replaced by the
repo's inverse-CDF draw `shared.transformer.sampling.draw` fed with one uniform number per row per step,
taken for the whole window up front from `shared.transformer.sampling.uniforms(generator, N, n_tokens)`
(column t at the t-th new token), as our cached sampler consumes them. The distribution of each draw is
unchanged. With `prime` [N, P] it is the official `primed_sample` (a sliding window after the first): each
branch's cache is first filled with the prime's keys and values (`prime_cache`), then n_ctx - P tokens
follow. `sample_up` is the Up prior's loop in the same file: no guidance, so the model's own transformer and
one pass per step; it differs from ours only by the concatenated cache.

The table gives seconds per step (both branches) and per window of n_ctx tokens (a 4.096-s clip's Low
pass), measured over `--steps` steps after `--warmup` untimed ones and extrapolated linearly when fewer
than n_ctx steps are timed (the per-step cost grows with the cached length for the transpose-pattern
layers, so a short measurement from the start underestimates a little; say which was done). Others may
share the machine: wall and CPU seconds are both reported.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from shared.transformer.sampling import draw, uniforms
from tests.projects.gravo.official_im2wav import (
    TINY,
    SimplePrior,
    Transformer,
    build_official,
    deep_copied_transformers,
    filter_logits,
    official_hps,
    randomize_,
)


def prime_cache(
    prior: SimplePrior,
    transformer: Transformer,
    x_cond: torch.Tensor,
    y_cond: torch.Tensor,
    prime: torch.Tensor,
) -> None:
    """Leave `transformer`'s per-layer caches as the official `cache_prime` (`primed_sample`, the sliding
    windows after the first) leaves them after the P tokens of `prime` [N, P]: at sample_t = P, each layer
    holding the last `_suff_cache_len()` keys and values. The official code runs the prime through the
    sampling path in chunks; this re-creation's sampling path takes one token at a time, so the keys and
    values come from one full forward over positions 0 .. P - 1 (causal: the same keys), P a multiple of
    the block length as the full forward's block reshapes need."""
    model, (n, p) = prior.prior, prime.shape
    block_ctx = transformer._attn_mods[0].attn.block_ctx
    if p % block_ctx:
        raise ValueError(f"a prime of {p} tokens is not a whole number of blocks of {block_ctx}")
    x = torch.cat([y_cond.view(n, 1, model.width), model.x_emb(prime[:, :-1])], dim=1)
    x = x + model.pos_emb()[:p] + x_cond[:, :p]
    qkv = []
    hooks = [
        layer.attn.c_attn.register_forward_hook(lambda _module, _inputs, out: qkv.append(out))
        for layer in transformer._attn_mods
    ]
    try:
        transformer(x)
    finally:
        for hook in hooks:
            hook.remove()
    for layer, out in zip(transformer._attn_mods, qkv, strict=True):
        _, key, value = out.chunk(3, dim=2)
        layer.attn.sample_t = p
        keep = layer.attn._suff_cache_len()
        layer.attn.cache = {"key": key[:, -keep:], "value": value[:, -keep:]}


@torch.no_grad()
def _sample(
    prior: SimplePrior,
    branches: list[tuple[Transformer, torch.Tensor, torch.Tensor]],
    combine,
    n: int,
    *,
    temperature: float,
    top_k: int,
    top_p: float,
    generator: torch.Generator | Sequence[torch.Generator] | None,
    n_tokens: int | None,
    prime: torch.Tensor | None,
    on_step,
) -> torch.Tensor:
    """The official sampling loop over one or two (transformer, x_cond, y_cond) branches, each a one-token
    forward per step through its own transformer and cache; `combine` turns the branches' logits into one."""
    assert not prior.training, "the official sampler asserts eval mode"
    n_prime = 0 if prime is None else prime.shape[1]
    n_tokens = n_tokens or prior.n_ctx - n_prime
    if n_prime + n_tokens > prior.n_ctx:
        raise ValueError(f"{n_prime} prime + {n_tokens} new tokens exceed n_ctx={prior.n_ctx}")
    model = prior.prior
    xs, x = [], None
    if prime is not None:
        for transformer, x_cond, y_cond in branches:
            prime_cache(prior, transformer, x_cond, y_cond, prime)
        xs, x = [prime], prime[:, -1:]
    random = uniforms(generator, n, n_tokens, branches[0][1].device)
    try:
        for sample_t in range(n_prime, n_prime + n_tokens):
            logits = combine([model.get_logits(t, xc, yc, sample_t, n, x) for t, xc, yc in branches])
            logits = filter_logits(logits / temperature, top_k=top_k, top_p=top_p)
            x = draw(torch.softmax(logits[:, 0].float(), dim=-1), random[:, sample_t - n_prime]).view(n, 1)
            xs.append(x.clone())
            if on_step is not None:
                on_step(sample_t)
    finally:
        for transformer, _, _ in branches:
            transformer.del_cache()
    return torch.cat(xs, dim=1)


@torch.no_grad()
def sample_low(
    prior: SimplePrior,
    clip: torch.Tensor,
    *,
    cfg_s: float = 3.0,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 0.0,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
    n_tokens: int | None = None,
    prime: torch.Tensor | None = None,
    on_step=None,
) -> torch.Tensor:
    """Im2Wav's guided ancestral sampling of one Low window: CLIP frames [N, F, 512] -> codes [N, P + n_tokens].

    `prime` [N, P] (the official `primed_sample`) is kept and n_tokens (default n_ctx - P) codes follow it;
    on_step(t) is called after each step (for timing)."""
    labels = prior.labels(clip)
    conds = [prior.get_cond(labels, null=null) for null in (False, True)]
    transformers = deep_copied_transformers(prior)
    branches = [(t, x_cond, y_cond) for t, (x_cond, y_cond) in zip(transformers, conds, strict=True)]
    return _sample(
        prior, branches, lambda logits: cfg_s * logits[0] + (1 - cfg_s) * logits[1], clip.shape[0],
        temperature=temperature, top_k=top_k, top_p=top_p, generator=generator, n_tokens=n_tokens,
        prime=prime, on_step=on_step,
    )  # fmt: skip


@torch.no_grad()
def sample_up(
    prior: SimplePrior,
    codes_low: torch.Tensor,
    clip: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 0.0,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
    n_tokens: int | None = None,
    prime: torch.Tensor | None = None,
    on_step=None,
) -> torch.Tensor:
    """Im2Wav's sampling of one Up window (no guidance: the model's own transformer, one pass per step):
    Low codes [N, n_ctx / 4] and CLIP frames [N, F, 512] (their mean is the start token) -> [N, P + n_tokens]."""
    x_cond, y_cond = prior.get_cond(prior.labels(clip), codes_low)
    return _sample(
        prior, [(prior.prior.transformer, x_cond, y_cond)], lambda logits: logits[0], clip.shape[0],
        temperature=temperature, top_k=top_k, top_p=top_p, generator=generator, n_tokens=n_tokens,
        prime=prime, on_step=on_step,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=["tiny", "paper"], default="tiny")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--frames", type=int, default=123, help="CLIP frames of the window (123 at 30 fps)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: the whole window)")
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    hps = official_hps("low", **(TINY["low"] if args.size == "tiny" else {}))
    torch.manual_seed(args.seed)
    prior = randomize_(build_official(hps), seed=args.seed).eval().to(args.device)
    clip = torch.nn.functional.normalize(torch.randn(args.batch, args.frames, 512), dim=-1).to(args.device)
    steps = min(args.steps or prior.n_ctx, prior.n_ctx - args.warmup)
    marks = {}

    def on_step(t: int) -> None:
        if t + 1 in (args.warmup, args.warmup + steps):
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            marks[t + 1] = (time.perf_counter(), time.process_time())

    start = time.perf_counter()
    sample_low(
        prior, clip, generator=torch.Generator().manual_seed(args.seed), n_tokens=args.warmup + steps,
        on_step=on_step,
    )  # fmt: skip
    total_wall = time.perf_counter() - start
    (w0, c0), (w1, c1) = marks[args.warmup], marks[args.warmup + steps]
    per_step = (w1 - w0) / steps
    result = {
        "size": args.size,
        "n_ctx": prior.n_ctx,
        "batch": args.batch,
        "device": args.device,
        "threads": torch.get_num_threads(),
        "timed_steps": steps,
        "whole_window_timed": args.warmup + steps == prior.n_ctx,
        "s_per_step_wall": per_step,
        "s_per_step_cpu": (c1 - c0) / steps,
        "s_per_window_wall": per_step * prior.n_ctx,
        "run_wall_s_incl_deepcopy_and_warmup": total_wall,
    }
    for key, value in result.items():
        print(f"{key:38s} {value:.4g}" if isinstance(value, float) else f"{key:38s} {value}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
