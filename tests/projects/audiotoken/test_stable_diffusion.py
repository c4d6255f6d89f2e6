"""The toy Stable Diffusion: diffusers layout round trip, pipeline loading, clear errors."""

import pytest
import torch
from diffusers import PNDMScheduler, StableDiffusionPipeline

from projects.audiotoken.models.stable_diffusion import (
    load_stable_diffusion,
    save_stable_diffusion,
    toy_stable_diffusion,
)
from shared.runs import UserError


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    parts = toy_stable_diffusion(seed=3, scaling_factor=0.5)
    folder = save_stable_diffusion(parts, tmp_path_factory.mktemp("sd") / "stable_diffusion")
    return parts, folder


def _outputs(parts):
    torch.manual_seed(0)
    ids = parts.tokenizer(
        ["a photo of a dog"], padding="max_length", max_length=77, return_tensors="pt"
    ).input_ids
    image = torch.rand(2, 3, 40, 64) * 2 - 1
    with torch.no_grad():
        context = parts.text_encoder(ids).last_hidden_state.expand(2, -1, -1)
        latents = parts.vae.encode(image).latent_dist.mean * parts.scaling_factor
        noise = parts.unet(latents, torch.tensor([10, 900]), context).sample
        decoded = parts.vae.decode(latents / parts.scaling_factor).sample
    return ids, context, latents, noise, decoded


def test_toy_parts_are_frozen_with_sd14_schedule():
    parts = toy_stable_diffusion()
    assert all(not p.requires_grad for m in parts.modules() for p in m.parameters())
    assert not any(m.training for m in parts.modules())
    config = parts.noise_scheduler.config
    assert (config.num_train_timesteps, config.beta_schedule, config.prediction_type) == (
        1000,
        "scaled_linear",
        "epsilon",
    )
    assert parts.noise_scheduler.betas[0].item() == pytest.approx(0.00085, rel=1e-4)
    assert parts.noise_scheduler.betas[-1].item() == pytest.approx(0.012, rel=1e-4)
    latents = parts.vae.encode(torch.zeros(1, 3, 40, 64)).latent_dist.mean
    assert latents.shape == (1, 4, 10, 16)


def test_save_load_round_trip_gives_identical_outputs(saved):
    parts, folder = saved
    loaded = load_stable_diffusion(folder)
    assert loaded.scaling_factor == 0.5
    assert loaded.noise_scheduler.config.num_train_timesteps == 1000
    assert all(not p.requires_grad for m in loaded.modules() for p in m.parameters())
    for a, b in zip(_outputs(parts), _outputs(loaded), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_pipeline_loads_the_saved_folder_and_generates(saved):
    _, folder = saved
    pipe = StableDiffusionPipeline.from_pretrained(folder, safety_checker=None)
    assert isinstance(pipe.scheduler, PNDMScheduler)
    assert pipe.scheduler.config.skip_prk_steps and pipe.scheduler.config.steps_offset == 1
    assert not pipe.scheduler.config.set_alpha_to_one
    pipe.set_progress_bar_config(disable=True)
    image = pipe("a photo of a dog", num_inference_steps=2, output_type="np").images
    assert image.shape == (1, 64, 64, 3)
    assert ((image >= 0) & (image <= 1)).all()


def test_missing_parts_are_named(tmp_path, saved):
    with pytest.raises(UserError, match="no such"):
        load_stable_diffusion(tmp_path / "nowhere")
    (tmp_path / "sd" / "vae").mkdir(parents=True)
    with pytest.raises(UserError, match=r"missing tokenizer/, text_encoder/, unet/, scheduler/"):
        load_stable_diffusion(tmp_path / "sd")


def test_saving_again_replaces_the_folder(saved, tmp_path):
    parts, _ = saved
    folder = tmp_path / "sd"
    save_stable_diffusion(parts, folder)
    (folder / "stray").write_text("x")
    save_stable_diffusion(parts, folder)
    assert not (folder / "stray").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sd"]
