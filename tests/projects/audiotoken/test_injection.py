"""The audio token injected into a frozen CLIP text encoder through hooks (AudioToken arXiv:2305.13050, sec. 2.1)."""

from __future__ import annotations

import pytest
import torch
from transformers import CLIPTextModel

from projects.audiotoken.models.injection import (
    PLACEHOLDER,
    TokenInjector,
    add_placeholder,
    audio_prompt_ids,
    prompt_ids,
)
from projects.audiotoken.models.stable_diffusion import toy_text_config
from shared.encoders.clip_tokenizer import clip_tokenizer

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tokenizer():
    tokenizer = clip_tokenizer()
    add_placeholder(tokenizer)
    return tokenizer


def text_encoder(eos_token_id: int = 49407) -> CLIPTextModel:
    torch.manual_seed(0)
    config = toy_text_config()
    config.eos_token_id = eos_token_id
    return CLIPTextModel(config).eval().requires_grad_(False)


def word_row(encoder: CLIPTextModel, tokenizer, word: str) -> torch.Tensor:
    (word_id,) = tokenizer(word, add_special_tokens=False).input_ids  # a single BPE token
    return encoder.get_input_embeddings().weight[word_id]


def test_placeholder_is_one_new_token(tokenizer):
    fresh = clip_tokenizer()
    assert len(fresh) == 49408 and PLACEHOLDER not in fresh.get_vocab()
    assert add_placeholder(fresh) == 49408
    assert add_placeholder(fresh) == 49408  # adding twice keeps the one token
    assert len(fresh) == 49409
    ids = audio_prompt_ids(fresh, 2, suffix=", 4k, high resolution")
    assert ids.shape == (2, 77)
    assert ids[0, :6].tolist() == [49406, 320, 1125, 539, 49408, 267]  # BOS, "a photo of", <*>, ","
    assert (ids == 49408).sum().item() == 2
    with pytest.raises(ValueError, match="no placeholder"):
        audio_prompt_ids(fresh, 1, prompt="a photo of")


@pytest.mark.parametrize("eos_token_id", [49407, 2], ids=["eos-49407", "legacy-eos-2"])
def test_dog_token_gives_the_dog_prompt(tokenizer, eos_token_id):
    """Token = the input embedding of "dog": "a photo of <*>" encodes exactly as "a photo of dog", the pooled
    output included (with SD 1.x's legacy eos_token_id 2 too, where transformers' pooler uses argmax of ids)."""
    encoder = text_encoder(eos_token_id)
    vocabulary = encoder.get_input_embeddings().weight.shape[0]
    injector = TokenInjector(encoder, add_placeholder(tokenizer))
    token = word_row(encoder, tokenizer, "dog")[None]
    hidden, pooled = injector.encode_pooled(audio_prompt_ids(tokenizer, 1), token)
    expected = encoder(input_ids=prompt_ids(tokenizer, ["a photo of dog"]))
    scale = expected.last_hidden_state.abs().max().item()
    assert hidden.shape == (1, 77, 64)
    torch.testing.assert_close(hidden, expected.last_hidden_state, rtol=0, atol=1e-6 * scale)
    torch.testing.assert_close(pooled, expected.pooler_output, rtol=0, atol=1e-6 * scale)
    assert encoder.get_input_embeddings().weight.shape[0] == vocabulary == 49408
    if eos_token_id == 2:  # the trap the own pooling avoids: transformers' pooler picks the placeholder's row
        with injector.injecting(token):
            raw = encoder(input_ids=audio_prompt_ids(tokenizer, 1))
        torch.testing.assert_close(raw.pooler_output, raw.last_hidden_state[:, 4])


def test_batch_of_different_tokens_and_gradients(tokenizer):
    encoder = text_encoder()
    injector = TokenInjector(encoder, add_placeholder(tokenizer))
    words = ["dog", "cat", "guitar"]
    tokens = torch.stack([word_row(encoder, tokenizer, w) for w in words]).clone().requires_grad_(True)
    hidden = injector.encode(audio_prompt_ids(tokenizer, 3), tokens)
    expected = encoder(input_ids=prompt_ids(tokenizer, [f"a photo of {w}" for w in words])).last_hidden_state
    torch.testing.assert_close(hidden, expected, rtol=0, atol=1e-6 * expected.abs().max().item())
    hidden[1].square().sum().backward()
    # only the second prompt's token influences the second prompt's output
    assert tokens.grad[1].abs().sum() > 0
    assert tokens.grad[0].abs().sum() == 0 and tokens.grad[2].abs().sum() == 0
    assert not any(p.requires_grad for p in encoder.parameters())


def test_hooks_only_inside_encode(tokenizer):
    encoder = text_encoder()
    injector = TokenInjector(encoder, add_placeholder(tokenizer))
    ids = prompt_ids(tokenizer, ["a photo of dog"])
    before = encoder(input_ids=ids).last_hidden_state
    injector.encode(audio_prompt_ids(tokenizer, 1), torch.randn(1, 64))
    embeddings = encoder.get_input_embeddings()
    assert not embeddings._forward_hooks and not embeddings._forward_pre_hooks
    torch.testing.assert_close(encoder(input_ids=ids).last_hidden_state, before, rtol=0, atol=0)
    # an error inside the context removes the hooks too
    with pytest.raises(ValueError, match="every prompt must contain the placeholder"):
        injector.encode(ids, torch.randn(1, 64))
    assert not embeddings._forward_hooks and not embeddings._forward_pre_hooks
    with pytest.raises(ValueError, match="do not fit"):
        injector.encode(audio_prompt_ids(tokenizer, 2), torch.randn(1, 64))
