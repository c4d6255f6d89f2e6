import pytest

from projects.specvqgan.models.sampler import CodeSampling
from shared.cli import AvgenCLI
from tests.conftest import REPO, resolved_config

CONFIGS = sorted((REPO / "projects" / "specvqgan" / "configs").glob("*.yaml"))


def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_every_config_resolves(config):
    resolved = resolved_config(config)
    model = resolved["model"]["class_path"]
    assert model.startswith("projects.specvqgan.") or model == "shared.classifier.SpectrogramClassifier"
    expected = {
        "projects.specvqgan.module_vocoder.MelGANVocoder": "data_audio.WaveformDataModule",
        "projects.specvqgan.module_frames.FrameClassifier": "module_frames.FrameDataModule",
    }.get(model, "data.SpectrogramDataModule")
    assert resolved["data"]["class_path"] == f"projects.specvqgan.{expected}"


@pytest.mark.parametrize(
    ("config", "autoencoder", "discriminator"),
    [("vggsound_codebook", 72_137_089, 2_763_585), ("vas_codebook", 71_907_713, 2_763_585)],
)
def test_paper_codebook_configs_build_at_the_paper_sizes(config, autoencoder, discriminator, tmp_path):
    cli = AvgenCLI(
        args=[
            "--config", str(REPO / "projects" / "specvqgan" / "configs" / f"{config}.yaml"),
            "--model.init_args.perceptual_weight=0",  # no trained VGGish-ish here; LPAPS is tested elsewhere
            f"--run.root={tmp_path}",
        ],
        run=False,
    )  # fmt: skip
    assert n_params(cli.model.autoencoder) == autoencoder
    assert n_params(cli.model.discriminator) == discriminator
    assert cli.model.autoencoder.grid_shape(80, 848) == (5, 53)


def test_paper_vggishish_config_builds_at_the_paper_size(tmp_path):
    config = REPO / "projects" / "specvqgan" / "configs" / "vggsound_vggishish.yaml"
    cli = AvgenCLI(args=["--config", str(config), f"--run.root={tmp_path}"], run=False)
    assert n_params(cli.model.net) == 137_622_517


def test_paper_vocoder_config_builds_at_the_paper_size(tmp_path):
    config = REPO / "projects" / "specvqgan" / "configs" / "vggsound_vocoder.yaml"
    cli = AvgenCLI(args=["--config", str(config), f"--run.root={tmp_path}"], run=False)
    assert n_params(cli.model.generator) == 4_266_050  # the released best_netG.pt
    assert n_params(cli.model.discriminator) == 16_924_086
    assert cli.datamodule.batch_size == 64 and cli.datamodule.segment_length == 8192


# The evaluation protocol behind the reported numbers, per Table 3 setting: top-k from the official README's
# evaluation section (TOP_K=512 for VGGSound and "use TOP_K=512 when evaluating a VAS transformer trained
# with a VGGSound codebook", 64 otherwise on VAS); samples per clip from arXiv:2110.08791, sec. 6.1.7 (10 per
# VGGSound test clip, 100 per VAS validation clip).
OFFICIAL_EVALUATION = {"a": (512, 10), "b": (512, 100), "c": (64, 100)}


@pytest.mark.parametrize(
    "config", [c for c in CONFIGS if c.stem.startswith("sampler_")], ids=lambda p: p.stem
)
def test_paper_sampler_configs_evaluate_with_the_official_protocol(config):
    setting = config.stem.split("_")[1]
    sampling = resolved_config(config)["model"]["init_args"]["sampling"]
    assert (sampling["top_k"], sampling["samples_per_clip"]) == OFFICIAL_EVALUATION[setting]
    assert 1 <= sampling["chunk_size"] <= 32  # bounded KV cache: 32 x 94 MB at 212 features


def test_the_paper_sampler_configs_are_the_generator_s_output():
    from projects.specvqgan.paper_sampler_configs import OUT, configs

    expected = configs()
    samplers = [name for name in expected if not name.startswith("base/")]
    assert len(samplers) == 21  # (a), (b), (c) x {ResNet-50, BN-Inception} x {1, 5, 212} + No Feats each
    for name, text in expected.items():
        assert (OUT / name).read_text() == text, (
            f"{name} is stale: python -m projects.specvqgan.paper_sampler_configs"
        )


@pytest.mark.parametrize(
    ("config", "n_codes", "gpt"),
    [("sampler_a_bninception_212", 1024, 306_995_200), ("sampler_c_resnet50_212", 128, 305_160_192),
     ("sampler_b_resnet50_5", 1024, 306_995_200 - (477 - 270) * 1024), ("sampler_c_nofeats", 128, 305_160_192 - 211 * 1024)],
)  # fmt: skip
def test_paper_sampler_configs_build_the_official_transformer_sizes(config, n_codes, gpt, tmp_path):
    from tests.projects.specvqgan.test_sampler import write_codebook_checkpoint

    codebook = write_codebook_checkpoint(tmp_path / "codebook.ckpt", n_codes=n_codes)
    path = REPO / "projects" / "specvqgan" / "configs" / f"{config}.yaml"
    cli = AvgenCLI(
        args=["--config", str(path), f"--model.init_args.codebook_ckpt={codebook}", f"--run.root={tmp_path}"],
        run=False,
    )
    sampler = cli.model.sampler
    setting = config.split("_")[1]
    top_k, samples = OFFICIAL_EVALUATION[setting]
    assert cli.model.sampling == CodeSampling(top_k=top_k, samples_per_clip=samples, chunk_size=32)
    assert sum(p.numel() for n, p in sampler.named_parameters() if not n.startswith("codebook.")) == gpt
    assert sampler.grid == (5, 53) and sampler.gpt.n_layer == 24
    assert cli.datamodule.frames[0] == sampler.n_feats or cli.model.hparams.condition == "none"
