import pytest
import torch

from shared.transformer import GPT, KVCache, filter_logits, sample_next


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


def test_cache_is_preallocated_and_refuses_to_overflow():
    cache = KVCache(n_layer=2, batch_size=1, n_head=2, max_length=6, head_dim=4)
    storage = cache.buffer.data_ptr()
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
    draws = sample_next(logits, temperature=1.0, top_k=2, generator=torch.Generator().manual_seed(0))
    assert set(draws.tolist()) == {2, 3}
    share = (draws == 3).float().mean().item()
    assert abs(share - torch.tensor([2.0, 3.0]).softmax(0)[1].item()) < 0.03
    again = sample_next(logits, top_k=2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(draws, again)
    cold = sample_next(logits[:10], temperature=0.01, generator=torch.Generator().manual_seed(1))
    assert (cold == 3).all()
    with pytest.raises(ValueError, match="temperature must be > 0"):
        sample_next(logits, temperature=0)
