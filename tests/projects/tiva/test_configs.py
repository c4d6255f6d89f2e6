import pytest
import yaml

from shared.cli import AvgenCLI
from tests.conftest import REPO

CONFIGS = sorted((REPO / "projects" / "tiva" / "configs").glob("*.yaml"))


def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_every_config_resolves(config, capsys):
    with pytest.raises(SystemExit) as exit_info:
        AvgenCLI(args=["fit", "--config", str(config), "--print_config"])
    assert exit_info.value.code == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    assert resolved["data"]["class_path"] == "projects.tiva.data.TiVADataModule"


def test_the_paper_configs_are_the_generator_s_output():
    from projects.tiva.paper_configs import OUT, configs

    expected = configs()
    assert len(expected) == 5
    for name, text in expected.items():
        assert (OUT / name).read_text() == text, f"{name} is stale: python -m projects.tiva.paper_configs"


def test_the_paper_configuration_builds_at_the_paper_sizes(tmp_path):
    path = REPO / "projects" / "tiva" / "configs" / "vggsound_generator.yaml"
    cli = AvgenCLI(
        args=[
            "--config",
            str(path),
            "--model.init_args.layout_predictor_ckpt=null",
            f"--run.root={tmp_path}",
        ],
        run=False,
    )
    model = cli.model
    assert n_params(model.generator) == 184_284_681  # AudioLDM2's T-UNet widths, 9 channels, one context
    assert model.generator.latent_channels == 8
    assert n_params(model.semantic) == 768 * 768 + 768
    assert model.layout_predictor.layout_size == (102, 5) and model.layout_predictor.n_frames == 102
    assert cli.datamodule.n_frames == 102 and cli.datamodule.clip.kwargs["layers"] == (4, 8, 11)
    assert (
        model.hparams.steps == 25 and model.hparams.guidance_scale == 5.0 and model.hparams.cond_drop == 0.1
    )
