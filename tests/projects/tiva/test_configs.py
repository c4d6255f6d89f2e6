import pytest

from projects.tiva.models import SamplingSettings
from shared.cli import AvgenCLI
from tests.conftest import REPO, resolved_config

CONFIGS = sorted((REPO / "projects" / "tiva" / "configs").glob("*.yaml"))


def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_every_config_resolves(config):
    assert resolved_config(config)["data"]["class_path"] == "projects.tiva.data.TiVADataModule"


def test_the_paper_configs_are_the_generator_s_output():
    from projects.tiva.paper_configs import OUT, STAGES, configs

    expected = configs()
    assert sorted(expected) == ["base/vggsound.yaml", *sorted(f"vggsound_{s}.yaml" for s in STAGES)]
    for name, text in expected.items():
        assert (OUT / name).read_text() == text, f"{name} is stale: python -m projects.tiva.paper_configs"


@pytest.mark.slow  # builds the 184 M-parameter G
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
    assert model.sampling == SamplingSettings("dpm_solver", steps=25, guidance_scale=5.0, layout="predicted")
    assert model.hparams.cond_drop == 0.1


@pytest.mark.parametrize(
    "config", [c for c in CONFIGS if "melception" not in c.stem and "vae" not in c.stem], ids=lambda p: p.stem
)
def test_frozen_parts_sampling_and_evaluation_protocol_of_each_config(config):
    resolved = resolved_config(config)
    model, data, trainer = resolved["model"]["init_args"], resolved["data"]["init_args"], resolved["trainer"]
    sampling = model["sampling"]
    assert sampling["layout"] == ("none" if model["stage"] == "no_layout" else "predicted")
    assert any(c["class_path"] == "shared.callbacks.ExampleLogger" for c in trainer["callbacks"])
    if config.stem.startswith("toy_"):
        # the toy VAE has no vocoder: Griffin-Lim, asked for; it travels in the checkpoints
        assert model["vocoder"] == "griffin_lim" and model["bundle_frozen_parts"] is True
        # the default protocol (the first 8 s) scores the whole 1.92-s toy clip
        assert model["eval_seconds"] >= data["duration"]
    else:
        # the paper: AudioLDM2's HiFi-GAN, never a silent Griffin-Lim; the first 8 s of 10.24 (sec. 4.1.2)
        assert model["vocoder"] == "hifigan" and not model["bundle_frozen_parts"]
        assert model["eval_seconds"] == 8.0 and data["duration"] == 10.24
        assert sampling["sampler"] == "dpm_solver" and sampling["steps"] == 25
        assert sampling["guidance_scale"] == (0.0 if config.stem == "vggsound_wo_s" else 5.0)
