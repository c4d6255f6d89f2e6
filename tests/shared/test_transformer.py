import pytest
import torch

from shared.transformer import GPT, KVCache, TokenSampling, draw, filter_logits, item_generators, uniforms
from shared.transformer.decoding import StaticDecoder


def test_incremental_decoding_with_the_cache_equals_one_full_forward():
    torch.manual_seed(0)
    gpt = GPT(vocab_size=50, block_size=40, n_layer=2, n_head=2, n_embd=16).eval()
    tokens, prefix = torch.randint(50, (3, 20)), torch.randn(3, 4, 16)
    full = gpt(tokens, prefix)
    cache = gpt.new_cache(3)
    chunks = [gpt(tokens[:, :5], prefix, cache), gpt(tokens[:, 5:9], None, cache)]  # prefill, then a chunk
    chunks += [gpt(tokens[:, i : i + 1], None, cache) for i in range(9, 20)]  # then one position at a time
    assert cache.length == 24
    assert torch.allclose(torch.cat(chunks, dim=1), full, atol=1e-5)


def test_the_static_shape_step_equals_the_growing_cache_step():
    """`GPT.step` (what a CUDA graph captures: position in a tensor, the whole cache under a mask) gives
    the logits of the full forward at every position, and never moves the cache's storage."""
    torch.manual_seed(0)
    gpt = GPT(vocab_size=50, block_size=30, n_layer=2, n_head=2, n_embd=16).eval()
    tokens, prefix = torch.randint(50, (3, 20)), torch.randn(3, 4, 16)
    full = gpt(tokens, prefix)
    cache = gpt.new_cache(3)
    storage = cache.buffer.data_ptr()
    gpt(tokens[:, :5], prefix, cache)
    decoder = StaticDecoder(gpt, cache)
    steps = torch.stack([decoder(tokens[:, i]) for i in range(5, 20)], dim=1)
    assert cache.length == 24 and cache.buffer.data_ptr() == storage
    scale = full.abs().max()
    assert (steps - full[:, 9:]).abs().max() <= 1e-5 * scale


def test_cache_is_preallocated_and_refuses_to_overflow():
    cache = KVCache(n_layer=2, batch_size=1, n_head=2, max_length=6, head_dim=4)
    storage = cache.buffer.data_ptr()
    # unwritten positions are finite: the static step weighs them by zero, and 0 x NaN would be NaN
    assert torch.equal(cache.buffer, torch.zeros_like(cache.buffer))
    k = torch.randn(1, 2, 4, 4)
    keys, _ = cache.write(0, k, k)
    cache.advance(4)
    assert torch.equal(keys, k) and cache.buffer.data_ptr() == storage
    with pytest.raises(ValueError, match="KV cache full: 8 positions > max_length=6"):
        cache.write(0, k, k)


def test_sequences_longer_than_the_position_table_are_refused():
    gpt = GPT(vocab_size=10, block_size=8, n_layer=1, n_head=1, n_embd=8)
    with pytest.raises(ValueError, match="9 positions exceed block_size=8"):
        gpt(torch.zeros(1, 9, dtype=torch.long))


def test_top_k_keeps_ties_at_the_boundary_and_top_p_keeps_the_crossing_token():
    logits = torch.tensor([[3.0, 1.0, 2.0, 2.0, 0.0]])
    kept = filter_logits(logits, top_k=2).isfinite()
    assert kept.tolist() == [[True, False, True, True, False]]  # both logits equal to the 2nd largest
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    kept = filter_logits(probs.log(), top_p=0.7).isfinite()
    assert kept.tolist() == [[True, True, False, False]]  # 0.5 < 0.7, 0.5 + 0.3 crosses it


def test_sampling_follows_the_filtered_distribution_and_the_generator():
    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0]]).repeat(4000, 1)
    top2 = TokenSampling(top_k=2)
    draws = top2.next_token(logits, uniforms(torch.Generator().manual_seed(0), 4000, 1, "cpu")[:, 0])
    assert set(draws.tolist()) == {2, 3}
    share = (draws == 3).float().mean().item()
    assert abs(share - torch.tensor([2.0, 3.0]).softmax(0)[1].item()) < 0.03
    again = top2.next_token(logits, uniforms(torch.Generator().manual_seed(0), 4000, 1, "cpu")[:, 0])
    assert torch.equal(draws, again)
    cold = TokenSampling(temperature=0.01).next_token(logits[:10], torch.rand(10))
    assert (cold == 3).all()
    for bad in ({"temperature": 0}, {"top_k": 0}, {"top_p": 1.5}):
        with pytest.raises(ValueError, match=f"{next(iter(bad))} must be"):
            TokenSampling(**bad)


def test_draw_is_the_inverse_cdf_and_never_picks_a_token_of_probability_zero():
    probs = torch.tensor([[0.0, 0.25, 0.0, 0.75, 0.0]]).repeat(5, 1)
    u = torch.tensor([0.0, 0.2499, 0.25, 0.9999999, 1 - 2**-24])
    assert draw(probs, u).tolist() == [1, 1, 3, 3, 3]
    unnormalised = probs * 3.0  # only the shape of the cdf matters
    assert torch.equal(draw(unnormalised, u), draw(probs, u))


def test_item_generators_give_each_item_its_own_stream_whatever_the_batch():
    keys = ["clip_a/0", "clip_a/1", "clip_b/0"]
    together = uniforms(item_generators(7, keys), 3, 5, "cpu")
    alone = uniforms(item_generators(7, keys[2:]), 1, 5, "cpu")
    assert torch.equal(together[2:], alone)  # item b/0 draws the same numbers with or without the others
    assert not torch.equal(together[0], together[1])
    assert not torch.equal(together, uniforms(item_generators(8, keys), 3, 5, "cpu"))  # the seed matters
    with pytest.raises(ValueError, match="2 generators for 3 rows"):
        uniforms(item_generators(7, keys[:2]), 3, 5, "cpu")
