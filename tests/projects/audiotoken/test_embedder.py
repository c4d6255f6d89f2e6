"""The Embedder (AudioToken arXiv:2305.13050, sec. 2.1): official key names, parameter counts, attentive-pooling
properties, the dropout flag, and `load_official_embedder`."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from projects.audiotoken.convert import load_official_embedder
from projects.audiotoken.models.embedder import Embedder
from shared.runs import UserError

pytestmark = pytest.mark.usefixtures("one_thread")


def official_shapes(c_in: int, d: int) -> dict[str, tuple[int, ...]]:
    """The official FGAEmbedder's state dict (`guyyariv/AudioToken`, `modules/AudioToken/embedder.py`)."""
    return {
        "fc1.weight": (c_in, c_in),
        "fc1.bias": (c_in,),
        "fc2.weight": (d, c_in),
        "fc2.bias": (d,),
        "fga.un_models.0.embed.weight": (d, d, 1),
        "fga.un_models.0.embed.bias": (d,),
        "fga.un_models.0.feature_reduce.weight": (1, d, 1),
        "fga.un_models.0.feature_reduce.bias": (1,),
        "fga.pp_models.0.embed_X.weight": (d, d, 1),
        "fga.pp_models.0.embed_X.bias": (d,),
        "fga.pp_models.0.embed_Y.weight": (d, d, 1),
        "fga.pp_models.0.embed_Y.bias": (d,),
        "fga.reduce_potentials.0.weight": (1, 2, 1),
    }


@pytest.mark.parametrize(("d", "count"), [(768, 8_853_507), (1024, 10_820_867)])
def test_official_keys_and_parameter_count(d, count):
    embedder = Embedder(2304, d)
    shapes = {key: tuple(value.shape) for key, value in embedder.state_dict().items()}
    assert shapes == official_shapes(2304, d)
    assert sum(p.numel() for p in embedder.parameters()) == count


def reference_token(state: dict[str, torch.Tensor], feats: torch.Tensor) -> torch.Tensor:
    """The FGA pooling written out from its equations with plain matrix products (dropout off)."""
    x = F.gelu(feats @ state["fc1.weight"].T + state["fc1.bias"]) @ state["fc2.weight"].T + state["fc2.bias"]
    hidden = torch.relu(
        x @ state["fga.un_models.0.embed.weight"][..., 0].T + state["fga.un_models.0.embed.bias"]
    )
    unary = (
        hidden @ state["fga.un_models.0.feature_reduce.weight"][0, :, 0]
        + state["fga.un_models.0.feature_reduce.bias"]
    )
    queries = x @ state["fga.pp_models.0.embed_X.weight"][..., 0].T + state["fga.pp_models.0.embed_X.bias"]
    keys = x @ state["fga.pp_models.0.embed_Y.weight"][..., 0].T + state["fga.pp_models.0.embed_Y.bias"]
    queries, keys = queries / queries.norm(dim=-1, keepdim=True), keys / keys.norm(dim=-1, keepdim=True)
    pairwise = (queries @ keys.transpose(1, 2)).mean(dim=2)
    w_unary, w_pairwise = state["fga.reduce_potentials.0.weight"][0, :, 0]
    alpha = (w_unary * unary + w_pairwise * pairwise).softmax(dim=1)
    return (alpha[..., None] * x).sum(dim=1)


def test_forward_matches_the_written_out_equations():
    torch.manual_seed(0)
    embedder = Embedder(24, 16).eval()
    with torch.no_grad():  # make the combination weights large enough that both potentials matter
        embedder.fga.reduce_potentials[0].weight.copy_(torch.tensor([[[1.5], [-2.0]]]))
    feats = torch.randn(3, 11, 24)
    with torch.no_grad():
        expected = reference_token(embedder.state_dict(), feats)
        token = embedder(feats)
    assert token.shape == (3, 16)
    torch.testing.assert_close(token, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())


def test_attentive_pooling_properties():
    torch.manual_seed(1)
    embedder = Embedder(12, 8).eval()
    feats = torch.randn(2, 9, 12)
    with torch.no_grad():
        alpha = embedder.attention_weights(feats)
        frames = embedder.frames(feats)
        token = embedder(feats)
        # invariant to permuting the frames
        order = torch.randperm(9)
        permuted = embedder(feats[:, order])
        # identical frames -> that frame's vector
        same = embedder(feats[:, :1].expand(2, 5, 12))
    assert alpha.shape == (2, 9)
    assert (alpha >= 0).all()
    torch.testing.assert_close(alpha.sum(dim=1), torch.ones(2))
    torch.testing.assert_close(token, torch.einsum("bn,bnd->bd", alpha, frames))
    # in the convex hull of the frames: within each channel's min/max over frames
    assert (token >= frames.min(dim=1).values - 1e-6).all() and (
        token <= frames.max(dim=1).values + 1e-6
    ).all()
    torch.testing.assert_close(permuted, token, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(same, frames[:, 0], rtol=1e-5, atol=1e-6)


def test_dropout_follows_training_unless_official():
    torch.manual_seed(2)
    feats = torch.randn(2, 7, 12)
    fixed = Embedder(12, 8).eval()
    official = Embedder(12, 8, official_dropout=True).eval()
    official.load_state_dict(fixed.state_dict())
    with torch.no_grad():
        assert torch.equal(fixed(feats), fixed(feats))  # eval: deterministic
        assert not torch.equal(official(feats), official(feats))  # the official always-on dropout
        fixed.train()
        assert not torch.equal(fixed(feats), fixed(feats))  # train: the p = 0.5 dropout is active


def test_gradients_reach_every_parameter():
    embedder = Embedder(12, 8).train()
    embedder(torch.randn(2, 5, 12)).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in embedder.parameters())


def test_load_official_embedder(tmp_path):
    torch.manual_seed(3)
    state = {key: torch.randn(shape) for key, shape in official_shapes(48, 20).items()}
    path = tmp_path / "embedder_learned_embeds.bin"
    torch.save(state, path)
    embedder = load_official_embedder(path)
    assert not embedder.training
    assert (embedder.input_size, embedder.output_size) == (48, 20)
    for key, value in embedder.state_dict().items():
        assert torch.equal(value, state[key])
    feats = torch.randn(2, 6, 48)
    with torch.no_grad():
        torch.testing.assert_close(embedder(feats), embedder(feats), rtol=0, atol=0)


def test_load_official_embedder_errors(tmp_path):
    state = {key: torch.zeros(shape) for key, shape in official_shapes(16, 8).items()}
    missing = dict(state)
    del missing["fga.reduce_potentials.0.weight"]
    torch.save(missing, tmp_path / "missing.bin")
    with pytest.raises(UserError, match=r"missing\.bin.*missing \['fga\.reduce_potentials\.0\.weight'\]"):
        load_official_embedder(tmp_path / "missing.bin")
    torch.save({**state, "extra.weight": torch.zeros(1)}, tmp_path / "extra.bin")
    with pytest.raises(UserError, match=r"extra\.bin.*unexpected \['extra\.weight'\]"):
        load_official_embedder(tmp_path / "extra.bin")
    with pytest.raises(UserError, match="nothing.bin"):
        load_official_embedder(tmp_path / "nothing.bin")
