"""The prior configs of GRAVO and its Im2Wav baseline: the variants of Tables 1-2 and the paper's sizes."""

from __future__ import annotations

import pytest
import torch

from projects.gravo.models.priors import LowPrior, UpPrior
from tests.conftest import REPO, resolved_config

pytest.importorskip("projects.gravo.data", reason="the configs extend the GRAVO data configs")

CONFIGS = REPO / "projects" / "gravo" / "configs"
# config -> (frame attention, lambda_w, lambda_f): Im2Wav and Table 2's rows
LOW_VARIANTS = {
    "low_im2wav": (False, 0.0, 0.0),
    "gravo_mha": (True, 0.0, 0.0),
    "gravo_lw": (True, 1e-4, 0.0),
    "gravo_lf": (True, 0.0, 1000.0),
    "gravo": (True, 1e-4, 1000.0),
}
TOY_NAMES = {"low_im2wav": "low_im2wav", "gravo_mha": "low_mha", "gravo_lw": "low_lw", "gravo_lf": "low_lf"}


def model_args(name: str) -> dict:
    return resolved_config(CONFIGS / f"{name}.yaml")["model"]["init_args"]


@pytest.mark.parametrize("variant", sorted(LOW_VARIANTS))
@pytest.mark.parametrize("scale", ["vggsound", "toy"])
def test_low_variants(scale, variant):
    name = f"vggsound_{variant}" if scale == "vggsound" else f"toy_{TOY_NAMES.get(variant, 'low_gravo')}"
    args = model_args(name)
    frame_attention, lambda_w, lambda_f = LOW_VARIANTS[variant]
    assert args["prior"]["class_path"] == "projects.gravo.models.priors.LowPrior"
    assert args["prior"]["init_args"]["frame_attention"] is frame_attention
    assert (args["lambda_w"], args["lambda_f"], args["gamma"]) == (lambda_w, lambda_f, 0.9)
    assert args["cfg_prob"] == 0.5 and args["ce_units"] == "bits"
    if lambda_w or lambda_f:
        assert args["wav2clip_ckpt"]


@pytest.mark.parametrize("name", ["vggsound_gravo", "vggsound_up"])
def test_paper_configs_build_at_the_official_sizes(name):
    args = model_args(name)
    prior_class = {"LowPrior": LowPrior, "UpPrior": UpPrior}[args["prior"]["class_path"].rsplit(".", 1)[1]]
    with torch.device("meta"):
        prior = prior_class(**args["prior"]["init_args"])
    n_params = sum(p.numel() for p in prior.parameters())
    assert n_params == {"vggsound_gravo": 157_344_768 + 1_050_624, "vggsound_up": 203_056_640}[name]
    assert args["lr"] == 3e-4 and args["warmup_steps"] == 100


def test_toy_priors_fit_the_toy_vqvae_and_window():
    if not (CONFIGS / "toy_vqvae.yaml").is_file():
        pytest.skip("the toy VQ-VAE stage's config is not here")
    vqvae = resolved_config(CONFIGS / "toy_vqvae.yaml")["model"]["init_args"]["vqvae"]["init_args"]
    window = round(resolved_config(CONFIGS / "toy_up.yaml")["data"]["init_args"]["window_seconds"] * 16_000)
    for name, hop in (("toy_low_gravo", 32), ("toy_up", 8)):
        prior = model_args(name)["prior"]["init_args"]
        assert prior["n_codes"] == vqvae["l_bins"]
        assert prior["n_ctx"] * hop == window
