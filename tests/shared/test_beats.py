"""BEATs (`shared.encoders.beats`): geometry, the fbank front end, the paper size, official files."""

from __future__ import annotations

import math

import pytest
import torch

from shared.encoders.beats import (
    FBANK_MEAN,
    FBANK_STD,
    BEATs,
    BEATsConfig,
    beats_tokens,
    load_beats,
    save_official,
)
from shared.runs import UserError

TINY = dict(
    input_patch_size=16,
    embed_dim=16,
    encoder_layers=12,
    encoder_embed_dim=32,
    encoder_ffn_embed_dim=64,
    encoder_attention_heads=2,
    conv_pos=16,
    conv_pos_groups=4,
    deep_norm=True,
    relative_position_embedding=True,
    max_distance=800,
    gru_rel_pos=True,
)


def tiny(**overrides) -> BEATs:
    torch.manual_seed(0)
    return BEATs(BEATsConfig(**{**TINY, **overrides})).eval()


def noise(batch: int, samples: int) -> torch.Tensor:
    return 0.1 * torch.randn(batch, samples, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("samples, tokens", [(80_000, 248), (160_000, 496), (27_777, 80)])
def test_token_count_and_channels(samples, tokens):
    fbank_frames = 1 + (samples - 400) // 160
    assert beats_tokens(samples) == fbank_frames // 16 * 8 == tokens
    with torch.no_grad():
        feats = tiny()(noise(2, samples))
    assert feats.shape == (2, tokens, 3 * 32)


def test_tokens_are_time_major():
    """Token 8 t + f sees fbank frames 16 t.. and mel bins 16 f..: later audio changes only later tokens."""
    model = tiny()
    wav = noise(1, 80_000)
    changed = wav.clone()
    changed[:, 60_000:] += 0.3 * torch.randn(1, 20_000)
    with torch.no_grad():
        a, b = model.tokens(wav), model.tokens(changed)
    # frames from 1 + (60000 - 400) // 160 = 373 on are touched: patches t >= 23 (t = 23 holds frames 368..383)
    differs = (a - b).abs().amax(-1)[0] > 1e-6
    assert not differs[: 23 * 8].any() and differs[23 * 8 :].all()


def test_fbank_log_floor_is_kaldis():
    """Kaldi's 128-bin mel bank at a 512-point FFT has an empty filter at bin 3: its energy is floored at
    FLT_EPSILON, so the log is log(FLT_EPSILON) in every frame (another floor would move the features)."""
    fbank = BEATs.preprocess(noise(2, 16_000)) * (2 * FBANK_STD) + FBANK_MEAN
    floor = math.log(torch.finfo(torch.float32).eps)
    assert fbank.shape == (2, 98, 128)
    assert torch.allclose(fbank[..., 3], torch.full_like(fbank[..., 3], floor), rtol=0, atol=1e-5)
    assert fbank[..., 4:].min() > floor + 1  # the floor is specific to the empty bin


def test_paper_size_parameter_count():
    cfg = BEATsConfig(
        **{
            **TINY,
            **dict(
                embed_dim=512,
                encoder_embed_dim=768,
                encoder_ffn_embed_dim=3072,
                encoder_attention_heads=12,
                conv_pos=128,
                conv_pos_groups=16,
            ),
        }
    )
    with torch.device("meta"):
        model = BEATs(cfg)
    assert sum(p.numel() for p in model.parameters()) == 90_311_792


def test_layers_are_1_based_blocks(tmp_path):
    model = tiny()
    wav = noise(1, 40_000)
    with torch.no_grad():
        blocks = model.block_outputs(wav)
        single = BEATs(model.cfg, layers=(1, 12))
        single.load_state_dict(model.state_dict())
        got = single.eval()(wav)
    assert len(blocks) == 12
    assert torch.equal(got, torch.cat([blocks[0], blocks[11]], dim=-1))
    with pytest.raises(ValueError, match="1-based"):
        BEATs(model.cfg, layers=(0, 4))


def test_save_official_round_trip_and_frozen(tmp_path):
    model = BEATs(BEATsConfig(**{**TINY, "predictor_class": 6}), predictor=True).eval()
    save_official(model, tmp_path / "beats.pt")
    ckpt = torch.load(tmp_path / "beats.pt", weights_only=True)
    assert ckpt["cfg"]["finetuned_model"] is True and "predictor.weight" in ckpt["model"]
    loaded = load_beats(tmp_path)  # a run folder holding beats.pt
    assert loaded.predictor is None and not loaded.training
    assert not any(p.requires_grad for p in loaded.parameters())
    loaded.train()  # a parent's .train() does not undo the freeze
    assert not loaded.training
    wav = noise(2, 32_000)
    with torch.no_grad():
        assert torch.equal(loaded(wav), model(wav))


def write(tmp_path, model: BEATs, edit) -> str:
    state = model.state_dict()
    edit(state)
    path = tmp_path / "bad.pt"
    torch.save({"cfg": {**TINY}, "model": state}, path)
    return str(path)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.pop("encoder.layers.5.fc1.weight"), "missing encoder.layers.5.fc1.weight"),
        (lambda s: s.update(extra=torch.zeros(1)), "unexpected extra"),
        (
            lambda s: s.update({"encoder.pos_conv.0.weight_g": torch.zeros(1, 1, 8)}),
            r"weight_g is \(1, 1, 8\)",
        ),
    ],
    ids=["missing", "unexpected", "shape"],
)
def test_bad_files_name_the_path_and_keys(tmp_path, edit, message):
    path = write(tmp_path, tiny(), edit)
    with pytest.raises(UserError, match=message) as error:
        load_beats(path)
    assert path in str(error.value)


def test_unreadable_files(tmp_path):
    with pytest.raises(UserError, match="no such BEATs file"):
        load_beats(tmp_path / "absent.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="other.pt.*'cfg' dict"):
        load_beats(tmp_path / "other.pt")
