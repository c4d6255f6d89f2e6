"""benchmarks/im2wav_scheme.py: the re-created Im2Wav sampling scheme draws, with the repo's uniform numbers,
the tokens that the guided teacher-forced logits of the official re-creation give, leaves the model's own
transformer as it found it (the unconditional branch runs on a deep copy), is reproducible by seed, and draws
the same tokens as our batched-CFG cached sampler on the same weights (loaded by `load_official`)."""

import pytest
import torch

from benchmarks.im2wav_scheme import sample_low
from projects.gravo.convert import load_official
from shared.transformer import TokenSampling
from shared.transformer.sampling import draw, uniforms
from tests.projects.gravo.official_im2wav import (
    TINY,
    build_official,
    official_hps,
    randomize_,
    write_official_checkpoint,
)

SMALL_LOW = {**TINY["low"], "n_ctx": 64, "blocks": 8, "sample_length": 2048}


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see tests/conftest.py


def test_scheme_tokens_are_the_guided_draws_of_the_full_forward_logits():
    hps = official_hps("low", **SMALL_LOW)
    prior = randomize_(build_official(hps), seed=1).eval()
    clip = torch.nn.functional.normalize(
        torch.randn(3, 7, 512, generator=torch.Generator().manual_seed(0)), dim=-1
    )
    before = {k: v.clone() for k, v in prior.state_dict().items()}
    tokens = sample_low(prior, clip, cfg_s=3.0, generator=torch.Generator().manual_seed(5))
    assert tokens.shape == (3, prior.n_ctx)
    assert all(layer.attn.cache == {} for layer in prior.prior.transformer._attn_mods)
    assert all(torch.equal(v, before[k]) for k, v in prior.state_dict().items())

    with torch.no_grad():
        cond, null = prior.logits(tokens, clip), prior.logits(tokens, clip, null=True)
    guided = 3.0 * cond + (1 - 3.0) * null
    random = uniforms(torch.Generator().manual_seed(5), 3, prior.n_ctx, "cpu")
    redrawn = torch.stack([draw(guided[:, t].softmax(-1), random[:, t]) for t in range(prior.n_ctx)], dim=1)
    assert torch.equal(redrawn, tokens)
    assert tokens.unique().numel() > hps["l_bins"] // 4  # not a constant sequence

    again = sample_low(prior, clip, cfg_s=3.0, generator=torch.Generator().manual_seed(5))
    other = sample_low(prior, clip, cfg_s=3.0, generator=torch.Generator().manual_seed(6))
    assert torch.equal(again, tokens)
    assert not torch.equal(other, tokens)


def test_top_k_keeps_draws_inside_the_top_k_guided_logits():
    hps = official_hps("low", **SMALL_LOW)
    prior = randomize_(build_official(hps), seed=2).eval()
    clip = torch.nn.functional.normalize(
        torch.randn(2, 4, 512, generator=torch.Generator().manual_seed(1)), dim=-1
    )
    tokens = sample_low(prior, clip, top_k=3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        guided = 3.0 * prior.logits(tokens, clip) - 2.0 * prior.logits(tokens, clip, null=True)
    top3 = guided.topk(3, dim=-1).indices
    assert (top3 == tokens[..., None]).any(-1).all()


@pytest.mark.parametrize(("cfg_s", "top_k"), [(3.0, None), (3.0, 5), (1.0, None)])
def test_same_weights_same_seed_same_tokens_as_our_sampler(tmp_path, cfg_s, top_k):
    hps = official_hps("low", **SMALL_LOW)
    reference = randomize_(build_official(hps), seed=3).eval()
    ours = load_official(write_official_checkpoint(reference, hps, tmp_path / "low.tar"))
    clip = torch.nn.functional.normalize(
        torch.randn(2, 9, 512, generator=torch.Generator().manual_seed(2)), dim=-1
    )
    theirs = sample_low(
        reference, clip, cfg_s=cfg_s, top_k=top_k or 0, generator=torch.Generator().manual_seed(7)
    )
    mine = ours.sample(
        clip, TokenSampling(top_k=top_k), guidance_scale=cfg_s, generators=torch.Generator().manual_seed(7)
    )
    assert torch.equal(mine, theirs)
