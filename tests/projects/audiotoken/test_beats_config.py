"""configs/toy_beats.yaml resolves to the toy BEATs stage on the AudioToken DataModule."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import resolved_config

CONFIG = Path(__file__).resolve().parents[3] / "projects" / "audiotoken" / "configs" / "toy_beats.yaml"


def test_toy_beats_config_resolves():
    config = resolved_config(CONFIG)
    assert config["model"]["class_path"] == "projects.audiotoken.module_beats.BEATsClassifierTraining"
    cfg = config["model"]["init_args"]["cfg"]
    assert cfg["encoder_layers"] == 12 and cfg["encoder_embed_dim"] == 32 and cfg["predictor_class"] == 6
    assert config["data"]["class_path"] == "projects.audiotoken.data.AudioTokenVGGSoundDataModule"
