"""GRAVO's Wav2CLIP configs (the stage is `shared.wav2clip_training`): the paper config builds the released
model's size, the toy config a small one."""

from __future__ import annotations

from pathlib import Path

import yaml

from shared.encoders.wav2clip import Wav2CLIP

CONFIGS = Path(__file__).resolve().parents[3] / "projects" / "gravo" / "configs"


def config_model(name: str) -> Wav2CLIP:
    """The Wav2CLIP a config's `model.init_args.model` section builds."""
    config = yaml.safe_load((CONFIGS / name).read_text())
    section = config["model"]["init_args"]["model"]
    assert section["class_path"] == "shared.encoders.Wav2CLIP"
    return Wav2CLIP(**section["init_args"])


def test_paper_config_builds_the_released_size_and_the_toy_config_a_small_one():
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    paper = config_model("vggsound_wav2clip.yaml")
    assert (count(paper.audio_encoder), count(paper.audio_transform)) == (11_170_240, 525_312)
    toy = config_model("toy_wav2clip.yaml")
    assert toy.embed_dim == 512 and count(toy) < count(paper) / 10


def test_configs_name_the_shared_training_module():
    for name in ("vggsound_wav2clip.yaml", "toy_wav2clip.yaml"):
        config = yaml.safe_load((CONFIGS / name).read_text())
        assert config["model"]["class_path"] == "shared.wav2clip_training.Wav2CLIPTraining", name
