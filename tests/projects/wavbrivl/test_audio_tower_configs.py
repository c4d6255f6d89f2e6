"""The audio-tower stage configs: they resolve, and their MoCo queues are multiples of the global batch."""

import pytest

from tests.conftest import REPO, resolved_config

CONFIGS = REPO / "projects" / "wavbrivl" / "configs"
AUDIO_TOWER = ["toy_audio_tower.yaml", "toy_audio_tower_infonce.yaml", "vggsound_audio_tower.yaml"]


@pytest.mark.parametrize("name", AUDIO_TOWER)
def test_audio_tower_configs_resolve(name):
    config = resolved_config(CONFIGS / name)
    model = config["model"]["init_args"]
    assert config["model"]["class_path"] == "projects.wavbrivl.module_audio_tower.WavBriVLTraining"
    assert model["loss"] == ("infonce" if "infonce" in name else "moco")
    if model["loss"] == "moco":
        assert model["queue_size"] % config["data"]["init_args"]["batch_size"] == 0


def test_the_paper_config_has_brivl_s_numbers():
    config = resolved_config(CONFIGS / "vggsound_audio_tower.yaml")
    model, data = config["model"]["init_args"], config["data"]["init_args"]
    assert (model["queue_size"], model["momentum"], model["temperature"]) == (9600, 0.99, 0.07)
    assert model["audio_tower"]["init_args"]["embed_dim"] == 2048
    assert data["train_subset"] == 20_000 and data["audio_seconds"] == 10.0


@pytest.mark.parametrize("name", ["base/vegas_s2i.yaml", "base/toy_vegas.yaml"])
def test_vegas_bases_select_five_classes(name):
    import yaml

    data = yaml.safe_load((CONFIGS / name).read_text())["data"]
    assert data["class_path"] == "projects.wavbrivl.data.WavBriVLVEGASDataModule"
    assert len(data["init_args"]["classes"]) == 5
    if name == "base/vegas_s2i.yaml":
        from projects.wavbrivl.data import S2I_VEGAS_CLASSES

        assert tuple(data["init_args"]["classes"]) == S2I_VEGAS_CLASSES
