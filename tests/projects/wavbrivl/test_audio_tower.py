"""WavBriVL's WavLM audio tower: weighted layer sum, valid-frame mean, projection, trainable parts, loading."""

from __future__ import annotations

import pytest
import torch
from transformers import WavLMConfig

from projects.wavbrivl.models.audio_tower import WavLMAudioTower, WeightedLayerSum, parse_trainable
from shared.runs import UserError

pytestmark = pytest.mark.usefixtures("one_thread")

# WavLM Base's conv feature encoder strides and kernels (50 frames a second at 16 kHz), at toy widths
TINY = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    conv_dim=(16,) * 7,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=4,
    num_buckets=32,
    max_bucket_distance=80,
)


def tower(**kwargs) -> WavLMAudioTower:
    torch.manual_seed(0)
    return WavLMAudioTower(kwargs.pop("wavlm", TINY), embed_dim=kwargs.pop("embed_dim", 24), **kwargs)


def test_base_config_has_13_hidden_states_weighted_equally_at_first():
    base = WavLMAudioTower(WavLMConfig(), embed_dim=2048, trainable="projection")  # Base: 12 layers, 768 wide
    assert base.layer_sum.layer_weights.numel() == 13
    assert torch.allclose(base.layer_sum.weights, torch.full((13,), 1 / 13))
    assert base.projection.in_features == 768 and base.projection.out_features == 2048


def test_output_is_unit_norm_of_the_joint_dim_and_50_hz_frames():
    model = tower().eval()
    wave = 0.1 * torch.randn(2, 80_000)  # 5 s
    out = model.wavlm(wave, output_hidden_states=True)
    assert len(out.hidden_states) == TINY["num_hidden_layers"] + 1
    assert out.last_hidden_state.shape[1] == 249  # 5 s at 16 kHz -> 249 frames
    assert int(model.frame_mask(torch.tensor([160_000]), 600).sum()) == 499  # 10 s -> 499
    embedding = model(wave, torch.tensor([80_000, 40_000]))
    assert embedding.shape == (2, 24)
    assert torch.allclose(embedding.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_one_dominating_weight_gives_that_layer():
    states = torch.randn(5, 2, 7, 3)
    layer_sum = WeightedLayerSum(5)
    with torch.no_grad():
        layer_sum.layer_weights.copy_(torch.tensor([0.0, 0.0, 50.0, 0.0, 0.0]))
    assert torch.allclose(layer_sum(tuple(states)), states[2], atol=1e-6)
    with torch.no_grad():
        layer_sum.layer_weights.fill_(0.3)  # equal weights: the mean of the states
    assert torch.allclose(layer_sum(tuple(states)), states.mean(dim=0), atol=1e-6)


def test_tower_is_the_mean_over_valid_frames_of_the_weighted_states_projected():
    model = tower().eval()
    with torch.no_grad():
        model.layer_sum.layer_weights.copy_(torch.tensor([0.0, 40.0, 0.0]))  # layer 1 dominates
    wave, lengths = 0.1 * torch.randn(2, 32_000), torch.tensor([32_000, 20_000])
    with torch.no_grad():
        mask = (torch.arange(32_000)[None] < lengths[:, None]).long()
        hidden = model.wavlm(wave, attention_mask=mask, output_hidden_states=True).hidden_states[1]
        frames = model.wavlm._get_feat_extract_output_lengths(lengths)
        pooled = torch.stack([hidden[i, : int(frames[i])].mean(dim=0) for i in range(2)])
        expected = torch.nn.functional.normalize(model.projection(pooled), dim=-1)
        assert torch.allclose(model(wave, lengths), expected, atol=1e-5)


def test_padding_does_not_change_a_clip_with_per_frame_normalisation():
    # with layer-normalised conv features (WavLM Large's layout) nothing mixes valid and padded samples once
    # the padding is masked, so a padded clip embeds as the clip alone
    model = tower(wavlm={**TINY, "feat_extract_norm": "layer", "do_stable_layer_norm": True}).eval()
    clip = 0.1 * torch.randn(1, 20_000)
    padded = torch.cat([clip, torch.randn(1, 12_000)], dim=1)
    with torch.no_grad():
        alone = model(clip, torch.tensor([20_000]))
        in_batch = model(padded, torch.tensor([20_000]))
    assert torch.allclose(alone, in_batch, atol=1e-4)


def trainable_names(model: WavLMAudioTower) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


def test_trainable_parts():
    only_head = tower(trainable="projection")
    assert trainable_names(only_head) == {"layer_sum.layer_weights", "projection.weight", "projection.bias"}
    top = tower(trainable="top:1")
    wavlm_trained = {name for name in trainable_names(top) if name.startswith("wavlm.")}
    assert wavlm_trained and all(name.startswith("wavlm.encoder.layers.1.") for name in wavlm_trained)
    assert len(wavlm_trained) == len(list(top.wavlm.encoder.layers[1].parameters()))
    everything = tower(trainable="all")
    assert trainable_names(everything) == {name for name, _ in everything.named_parameters()}
    stable = tower(
        wavlm={**TINY, "do_stable_layer_norm": True, "feat_extract_norm": "layer"}, trainable="top:1"
    )
    assert any(name.startswith("wavlm.encoder.layer_norm.") for name in trainable_names(stable))


def test_frozen_parts_stay_in_eval_mode_and_get_no_gradient():
    model = tower(trainable="top:1").train()
    assert not model.wavlm.training and not model.wavlm.encoder.layers[0].training
    assert model.wavlm.encoder.layers[1].training and model.training
    model(0.1 * torch.randn(2, 16_000), torch.tensor([16_000, 12_000])).sum().backward()
    assert model.wavlm.encoder.layers[1].attention.q_proj.weight.grad is not None
    assert model.wavlm.encoder.layers[0].attention.q_proj.weight.grad is None
    assert model.layer_sum.layer_weights.grad is not None
    everything = tower(trainable="all", wavlm={**TINY, "layerdrop": 0.5}).train()
    assert everything.wavlm.training
    for _ in range(5):  # LayerDrop would skip layers and with them hidden states of the weighted sum
        assert everything(0.1 * torch.randn(1, 8_000)).shape == (1, 24)


def test_trainable_choice_is_checked():
    assert parse_trainable("top:3", 12) == 3 and parse_trainable("projection", 12) == 0
    assert parse_trainable("all", 12) is None
    for bad in ("top:13", "top:x", "some"):
        with pytest.raises(ValueError, match="trainable"):
            parse_trainable(bad, 12)


def test_folder_loading(tmp_path):
    config = WavLMConfig(**TINY)
    config.save_pretrained(tmp_path)
    with pytest.raises(UserError, match="no weights"):
        WavLMAudioTower(str(tmp_path), embed_dim=8)
    random_tower = WavLMAudioTower(str(tmp_path), embed_dim=8, random_init=True)
    random_tower.wavlm.save_pretrained(tmp_path)
    loaded = WavLMAudioTower(str(tmp_path), embed_dim=8)
    for (name, a), (_, b) in zip(
        random_tower.wavlm.state_dict().items(), loaded.wavlm.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    with pytest.raises(UserError, match="config.json"):
        WavLMAudioTower(str(tmp_path / "missing"), embed_dim=8)
