"""`load_official_beats` against an independent re-creation of the official BEATs (`official_beats.py`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from projects.audiotoken.convert import load_official_beats
from shared.encoders.beats import BEATs, BEATsConfig, load_beats
from tests.projects.audiotoken.official_beats import RELEASED_CFG, OfficialBEATs

KEYS_FILE = Path(__file__).with_name("beats_iter3_plus_as2m_keys.txt")

# the released architecture at toy width: 12 blocks (so 4, 8, 12 exist), an even positional kernel (the
# official SamePad trims one frame), a patch embedding narrower than the encoder (post_extract_proj)
SMALL_CFG = {
    **RELEASED_CFG,
    "embed_dim": 24,
    "encoder_embed_dim": 32,
    "encoder_ffn_embed_dim": 64,
    "encoder_attention_heads": 2,
    "conv_pos": 16,
    "conv_pos_groups": 4,
    "predictor_class": 6,
    "label_dict": {"a": 0},  # not a cfg field of ours: must be ignored
}


def official_model(cfg: dict, seed: int = 0) -> OfficialBEATs:
    """The re-creation with every parameter moved off its initial value (LayerNorms, grep_a, biases too)."""
    torch.manual_seed(seed)
    model = OfficialBEATs(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2 * (p.std() if p.numel() > 1 else 1.0))
    return model


def save_file(model: OfficialBEATs, cfg: dict, path: Path) -> Path:
    torch.save({"cfg": cfg, "model": model.state_dict(), "label_dict": {"/m/09x0r": 0}}, path)
    return path


def noise(batch: int, samples: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # coloured noise with a loud and a quiet clip: no pure tones (ill-conditioned fbank bins in float32)
    wav = torch.randn(batch, samples, generator=g).cumsum(-1) * 0.01
    wav = wav - wav.mean(-1, keepdim=True)
    wav = wav + 0.05 * torch.randn(batch, samples, generator=g)
    return wav * torch.linspace(0.3, 1.0, batch)[:, None] / wav.abs().amax(-1, keepdim=True)


def test_official_key_list_matches_released_file_line_by_line():
    with torch.device("meta"):
        official = OfficialBEATs(RELEASED_CFG)
    lines = [f"{k}\t{tuple(v.shape)}" for k, v in official.state_dict().items()]
    assert lines == KEYS_FILE.read_text().splitlines()


def test_ours_has_the_released_keys_and_shapes():
    expected = dict(line.split("\t") for line in KEYS_FILE.read_text().splitlines())
    cfg = BEATsConfig.from_dict(RELEASED_CFG)
    with torch.device("meta"):
        ours = BEATs(cfg, predictor=True)
    assert {k: str(tuple(v.shape)) for k, v in ours.state_dict().items()} == expected


@pytest.mark.parametrize(
    "overrides",
    [
        {},  # the released architecture
        {"num_buckets": 16, "max_distance": 40},  # log buckets and their clamp within 248 tokens
        {"deep_norm": False, "layer_norm_first": True, "gru_rel_pos": False},  # pre-norm, ungated bias
    ],
    ids=["released", "few-buckets", "pre-norm"],
)
def test_features_equal_the_official_code(tmp_path, overrides):
    cfg = {**SMALL_CFG, **overrides}
    official = official_model(cfg)
    path = save_file(official, cfg, tmp_path / "beats.pt")
    ours = load_official_beats(path)
    wav = noise(2, 80_000)
    with torch.no_grad():
        expected = official.audiotoken_features(wav)
        got = ours(wav)
    assert got.shape == expected.shape == (2, 248, 3 * 32)
    scale = expected.std().item()
    assert (got - expected).abs().max().item() < 1e-4 * scale
    assert not any(p.requires_grad for p in ours.parameters()) and not ours.training


def test_predictor_equals_the_official_head(tmp_path):
    official = official_model(SMALL_CFG)
    ours = BEATs(BEATsConfig.from_dict(SMALL_CFG), predictor=True).eval()
    ours.load_state_dict(official.state_dict())
    wav = noise(2, 40_000)
    with torch.no_grad():
        expected = official.probabilities(wav)
        got = torch.sigmoid(ours.logits(wav))
    assert (got - expected).abs().max().item() < 1e-5


def test_load_beats_ignores_predictor_and_label_dict(tmp_path):
    official = official_model(SMALL_CFG)
    path = save_file(official, SMALL_CFG, tmp_path / "finetuned.pt")
    assert load_beats(path).predictor is None
