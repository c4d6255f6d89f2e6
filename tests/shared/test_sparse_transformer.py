from dataclasses import dataclass, field

import pytest
import torch

from shared.transformer import Guidance, SparseTransformerLM, TokenSampling, item_generators, uniforms
from shared.transformer.sparse import SparseAttention

B_CTX = 4  # block_ctx of the tiny models
T = 3 * B_CTX + 3  # not a whole number of blocks: the padding of the last block is exercised too


def receptive_field(pattern: str, p: int, b: int) -> set[int]:
    """The input positions that attention output p depends on (Jukebox's `FactoredAttention.check`): the
    keys of its pattern, and p itself through its query, except in prev_block's block 0, which attends to
    zero keys and values and so depends on nothing."""
    block_start = p - p % b
    if pattern == "block":
        return set(range(block_start, p + 1))
    if pattern == "transpose":
        return set(range(p % b, p + 1, b))
    if block_start == 0:  # prev_block
        return set()
    return set(range(block_start - b, block_start)) | {p}


def allowed_keys(pattern: str, t: int, b: int) -> torch.Tensor:
    """[t, t] bool: query i may attend key j (prev_block excludes the query's own key)."""
    mask = torch.zeros(t, t, dtype=torch.bool)
    for i in range(t):
        keys = receptive_field(pattern, i, b) - ({i} if pattern == "prev_block" else set())
        mask[i, sorted(keys)] = True
    return mask


def dense_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v over a [T, T] mask; a row without keys gives 0 (the official zero block)."""
    scores = (q @ k.transpose(-1, -2)) / q.shape[-1] ** 0.5
    weights = scores.masked_fill(~mask, float("-inf")).softmax(-1).nan_to_num(0.0)
    return weights @ v


@pytest.mark.parametrize("pattern", ["block", "transpose", "prev_block"])
def test_each_pattern_sees_exactly_its_receptive_field(pattern):
    torch.manual_seed(0)
    attn = SparseAttention(
        width=8, attn_width=8, n_head=2, pattern=pattern, block_ctx=B_CTX, dropout=0.0
    ).double()
    x = torch.randn(1, T, 8, dtype=torch.double, requires_grad=True)
    out = attn(x)
    for p in range(T):
        (grad,) = torch.autograd.grad(out[0, p].sum(), x, retain_graph=True)
        seen = set(torch.nonzero(grad[0].abs().sum(-1)).flatten().tolist())
        assert seen == receptive_field(pattern, p, B_CTX), f"position {p}"


@pytest.mark.parametrize("pattern", ["dense", "block", "transpose", "prev_block"])
def test_block_reshaped_kernels_equal_a_dense_masked_softmax(pattern):
    torch.manual_seed(0)
    attn = SparseAttention(width=8, attn_width=8, n_head=2, pattern=pattern, block_ctx=B_CTX, dropout=0.0)
    q, k, v = torch.randn(3, 2, 2, T, 5, dtype=torch.double)
    mask = (
        torch.ones(T, T, dtype=torch.bool).tril() if pattern == "dense" else allowed_keys(pattern, T, B_CTX)
    )
    assert torch.allclose(attn._blocked(q, k, v, dropout=0.0), dense_reference(q, k, v, mask), atol=1e-12)


def tiny_model(**kwargs) -> SparseTransformerLM:
    torch.manual_seed(0)
    size = dict(
        n_vocab=11, n_ctx=T + 1, width=32, depth=6, n_head=2, attn_width=16, mlp_width=48, block_ctx=B_CTX
    )
    return SparseTransformerLM(**{**size, **kwargs}).eval()


def test_layers_cycle_block_transpose_prev_block_and_the_model_is_causal_over_every_earlier_token():
    model = tiny_model()
    assert [block.attn.pattern for block in model.blocks] == ["block", "transpose", "prev_block"] * 2
    tokens, start, x_cond = torch.randint(11, (1, T)), torch.randn(1, 32), torch.randn(1, T, 32)
    logits = model(tokens, start, x_cond)
    for j in range(T - 1):  # token j is the input of position j + 1
        changed = tokens.clone()
        changed[0, j] = (changed[0, j] + 1) % 11
        moved = (model(changed, start, x_cond) - logits).abs().amax(-1)[0] > 0
        assert moved.tolist() == [i > j for i in range(T)], f"token {j}"


def test_inputs_are_start_then_previous_tokens_plus_positions_and_the_condition_enters_twice():
    """With every residual branch zeroed the blocks are the identity, so the logits show the layout alone:
    x_out(input_i + pos_emb_i + 2 x_cond_i), input 0 the start and input i the embedding of token i - 1."""
    model = tiny_model()
    for block in model.blocks:
        for proj in (block.attn.c_proj, block.mlp.c_proj):
            torch.nn.init.zeros_(proj.weight)
            torch.nn.init.zeros_(proj.bias)
    tokens, start, x_cond = torch.randint(11, (2, T)), torch.randn(2, 32), torch.randn(2, T, 32)
    inputs = torch.cat([start[:, None], model.x_emb.weight[tokens[:, :-1]]], dim=1)
    expected = (inputs + model.pos_emb[:T] + 2 * x_cond) @ model.x_emb.weight.T
    assert torch.allclose(model(tokens, start, x_cond), expected, atol=1e-6)


@dataclass(frozen=True)
class RecordingSampling(TokenSampling):
    """A `TokenSampling` that keeps the logits each step receives (after guidance, before temperature)."""

    seen: list = field(default_factory=list)

    def next_token(self, logits, uniform):
        self.seen.append(logits.clone())
        return super().next_token(logits, uniform)


@pytest.mark.parametrize("attn_order", [0, 1, 2])
def test_cached_decoding_gives_the_full_forward_logits_and_the_tokens_of_a_recompute_loop(attn_order):
    model = tiny_model(attn_order=attn_order)
    n, keys = T, ["a", "b", "c"]
    start, x_cond = torch.randn(3, 32), torch.randn(3, n, 32)
    sampling = RecordingSampling()
    tokens = model.sample(start, x_cond, n, sampling, generators=item_generators(0, keys))
    with torch.no_grad():
        full = model(tokens, start, x_cond)
    steps = torch.stack(sampling.seen, dim=1)
    assert (steps - full).abs().max() <= 1e-5 * full.abs().max()

    # the official way: a full forward over everything so far for every token, same random numbers
    draws = uniforms(item_generators(0, keys), 3, n, torch.device("cpu"))
    recomputed = torch.zeros(3, n, dtype=torch.long)
    with torch.no_grad():
        for i in range(n):
            logits = model(recomputed[:, : i + 1], start, x_cond[:, : i + 1])[:, i]
            recomputed[:, i] = TokenSampling().next_token(logits, draws[:, i])
    assert torch.equal(tokens, recomputed)


def test_batched_guidance_logits_are_3_cond_minus_2_uncond_of_two_separate_forwards():
    model = tiny_model()
    start, x_cond = torch.randn(2, 32), torch.randn(2, T, 32)
    null = Guidance(scale=3.0, start=torch.randn(2, 32), x_cond=torch.randn(2, T, 32))
    sampling = RecordingSampling()
    tokens = model.sample(
        start, x_cond, T, sampling, guidance=null, generators=item_generators(1, ["a", "b"])
    )
    with torch.no_grad():
        cond, uncond = model(tokens, start, x_cond), model(tokens, null.start, null.x_cond)
    expected = 3 * cond - 2 * uncond
    guided = torch.stack(sampling.seen, dim=1)
    assert (guided - expected).abs().max() <= 1e-5 * expected.abs().max()


def test_guidance_scale_1_runs_only_the_conditional_branch_and_equals_the_unguided_sample(monkeypatch):
    model = tiny_model()
    start, x_cond = torch.randn(2, 32), torch.randn(2, T, 32)
    null = Guidance(scale=1.0, start=torch.randn(2, 32), x_cond=torch.randn(2, T, 32))
    cache_batches = []
    new_cache = model.new_cache
    monkeypatch.setattr(model, "new_cache", lambda batch: cache_batches.append(batch) or new_cache(batch))
    sampling = TokenSampling(top_p=0.9)
    guided = model.sample(
        start, x_cond, T, sampling, guidance=null, generators=item_generators(2, ["a", "b"])
    )
    plain = model.sample(start, x_cond, T, sampling, generators=item_generators(2, ["a", "b"]))
    assert torch.equal(guided, plain) and cache_batches == [2, 2]


def test_an_item_draws_the_same_tokens_alone_or_in_a_guided_batch():
    model = tiny_model()
    start, x_cond = torch.randn(2, 32), torch.randn(2, T, 32)
    null = Guidance(scale=3.0, start=torch.randn(2, 32), x_cond=torch.randn(2, T, 32))
    both = model.sample(
        start, x_cond, T, TokenSampling(), guidance=null, generators=item_generators(3, ["a", "b"])
    )
    alone_null = Guidance(scale=3.0, start=null.start[1:], x_cond=null.x_cond[1:])
    alone = model.sample(
        start[1:], x_cond[1:], T, TokenSampling(), guidance=alone_null, generators=item_generators(3, ["b"])
    )
    assert torch.equal(alone[0], both[1])


@pytest.mark.parametrize("n_prime", [1, B_CTX + 2])
def test_priming_with_sampled_tokens_continues_as_the_unprimed_sample(n_prime):
    """top-k 1 makes each token independent of the random numbers, so the primed run must draw the rest of
    the unprimed run's tokens; its logits (from the prefill, then from steps) must be the unprimed ones."""
    model = tiny_model()
    start, x_cond = torch.randn(2, 32), torch.randn(2, T, 32)
    null = Guidance(scale=3.0, start=torch.randn(2, 32), x_cond=torch.randn(2, T, 32))
    whole_sampling, primed_sampling = RecordingSampling(top_k=1), RecordingSampling(top_k=1)
    whole = model.sample(start, x_cond, T, whole_sampling, guidance=null)
    primed = model.sample(
        start, x_cond, T - n_prime, primed_sampling, prime=whole[:, :n_prime], guidance=null
    )
    assert torch.equal(primed, whole[:, n_prime:])
    expected = torch.stack(whole_sampling.seen[n_prime:], dim=1)
    assert (torch.stack(primed_sampling.seen, dim=1) - expected).abs().max() <= 1e-5 * expected.abs().max()


def test_input_and_output_embeddings_are_one_tied_parameter():
    model = tiny_model()
    assert model.x_out.weight is model.x_emb.weight
    names = [name for name, _ in model.named_parameters()]
    assert "x_emb.weight" in names and "x_out.weight" not in names


@pytest.mark.parametrize("n_ctx", [2048, 8192])  # Im2Wav's Low and Up priors
def test_paper_size_parameter_count_follows_the_jukebox_layer_formula(n_ctx):
    width, attn_width, mlp_width, depth, vocab = 1024, 256, 1024, 48, 2048
    with torch.device("meta"):
        model = SparseTransformerLM(vocab, n_ctx, width, depth, 1, attn_width, mlp_width, block_ctx=32)
    per_layer = (
        width * 3 * attn_width + 3 * attn_width  # attn.c_attn
        + attn_width * width + width  # attn.c_proj
        + width * mlp_width + mlp_width  # mlp.c_fc
        + mlp_width * width + width  # mlp.c_proj
        + 2 * 2 * width  # ln_0, ln_1
    )  # fmt: skip
    expected = depth * per_layer + vocab * width + n_ctx * width  # x_emb (= x_out), pos_emb
    assert sum(p.numel() for p in model.parameters()) == expected


def test_too_long_inputs_and_mismatched_guidance_are_refused():
    model = tiny_model()
    with pytest.raises(ValueError, match=f"{T + 2} positions exceed n_ctx={T + 1}"):
        model(torch.zeros(1, T + 2, dtype=torch.long), torch.zeros(1, 32))
    with pytest.raises(ValueError, match=f"2 prime \\+ {T} new tokens exceed n_ctx={T + 1}"):
        model.sample(torch.zeros(1, 32), None, T, TokenSampling(), prime=torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="the null start \\(1, 32\\) differs from \\(2, 32\\)"):
        model.sample(torch.zeros(2, 32), None, 3, TokenSampling(), guidance=Guidance(3.0, torch.zeros(1, 32)))
