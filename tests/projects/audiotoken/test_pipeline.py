"""AudioToken's inference pipeline on a tiny random Stable Diffusion (AudioToken arXiv:2305.13050, sec. 2.1):
the hook's prompt_embeds give diffusers' own text path, batching, schedulers, frozen parameters."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, PNDMScheduler
from torch import nn

from projects.audiotoken.models.embedder import Embedder
from projects.audiotoken.models.pipeline import (
    SCHEDULERS,
    AudioTokenPipeline,
    SamplingSettings,
    make_scheduler,
)
from projects.audiotoken.models.stable_diffusion import toy_stable_diffusion

pytestmark = pytest.mark.usefixtures("one_thread")

FEATURES = 12
SETTINGS = SamplingSettings(steps=3, height=32, width=32)


class FrameFeatures(nn.Module):
    """A stand-in audio encoder: wav [B, T] -> features [B, T // 160, FEATURES] of 10-ms frames."""

    def __init__(self):
        super().__init__()
        self.project = nn.Linear(160, FEATURES)

    def forward(self, wav):
        return self.project(wav[:, : wav.shape[1] // 160 * 160].reshape(wav.shape[0], -1, 160))


@pytest.fixture(scope="module")
def pipeline():
    torch.manual_seed(0)
    parts = toy_stable_diffusion(seed=1)
    return AudioTokenPipeline(FrameFeatures(), Embedder(FEATURES, 64), parts)


def generators(*seeds):
    return [torch.Generator().manual_seed(seed) for seed in seeds]


def dog_token(pipeline):
    (dog,) = pipeline.tokenizer("dog", add_special_tokens=False).input_ids
    return pipeline.text_encoder.get_input_embeddings().weight[dog][None]


def test_frozen_and_eval(pipeline):
    assert not any(p.requires_grad for p in pipeline.parameters())
    assert not any(m.training for m in pipeline.modules())
    assert pipeline.text_encoder.get_input_embeddings().weight.shape[0] == 49408  # vocabulary not resized


def test_hook_embeds_give_the_text_prompt_image(pipeline):
    """Token = the "dog" row: the same image as diffusers' own text path with "a photo of dog"."""
    ours = pipeline.generate_from_tokens(dog_token(pipeline), SETTINGS, generators(5), output_type="pt")
    pipeline.stable_diffusion.scheduler = make_scheduler("pndm", pipeline.noise_schedule)
    stock = pipeline.stable_diffusion(
        prompt="a photo of dog",
        num_inference_steps=SETTINGS.steps,
        guidance_scale=SETTINGS.guidance,
        height=SETTINGS.height,
        width=SETTINGS.width,
        generator=generators(5),
        output_type="pt",
    ).images
    assert ours.shape == (1, 3, 32, 32)
    assert ours.min() >= 0 and ours.max() <= 1
    torch.testing.assert_close(ours, stock, rtol=0, atol=1e-5)
    # and the text-label baseline's path gives it too
    text = pipeline.generate_from_text(["a photo of dog"], SETTINGS, generators(5), output_type="pt")
    torch.testing.assert_close(text, stock, rtol=0, atol=1e-5)
    # a different token changes the image: the token reaches the UNet
    other = pipeline.generate_from_tokens(torch.randn(1, 64), SETTINGS, generators(5), output_type="pt")
    assert (other - stock).abs().max() > 1e-3


def test_batch_equals_one_by_one(pipeline):
    torch.manual_seed(2)
    wav = torch.randn(2, 16000) * 0.1
    batch = pipeline.generate(wav, SETTINGS, generators(11, 12), output_type="pt")
    single = torch.cat(
        [
            pipeline.generate(wav[i : i + 1], SETTINGS, generators(seed), output_type="pt")
            for i, seed in enumerate((11, 12))
        ]
    )
    assert batch.shape == (2, 3, 32, 32)
    torch.testing.assert_close(batch, single, rtol=0, atol=1e-5)
    assert (batch[0] - batch[1]).abs().max() > 1e-3
    images = pipeline.generate(wav, SETTINGS)  # PIL by default, seeded from the settings
    assert [image.size for image in images] == [(32, 32), (32, 32)]


SCHEDULER_CLASSES = {
    "pndm": PNDMScheduler,
    "ddim": DDIMScheduler,
    "dpmsolver++": DPMSolverMultistepScheduler,
    "ddpm": DDPMScheduler,
}


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_each_scheduler(pipeline, scheduler):
    settings = SamplingSettings(steps=3, height=32, width=32, scheduler=scheduler)
    images = pipeline.generate_from_tokens(torch.randn(1, 64), settings, generators(0), output_type="pt")
    used = pipeline.stable_diffusion.scheduler
    assert type(used) is SCHEDULER_CLASSES[scheduler]
    if scheduler == "dpmsolver++":
        assert used.config.algorithm_type == "dpmsolver++"
    assert images.shape == (1, 3, 32, 32) and torch.isfinite(images).all()
    assert pipeline.stable_diffusion.scheduler.config.beta_schedule == "scaled_linear"
    assert pipeline.stable_diffusion.scheduler.num_inference_steps == 3


def test_unknown_scheduler_and_width_mismatch():
    with pytest.raises(ValueError, match="unknown scheduler 'euler'"):
        SamplingSettings(scheduler="euler")
    with pytest.raises(ValueError, match="768-d tokens but the text encoder is 64 wide"):
        AudioTokenPipeline(FrameFeatures(), Embedder(FEATURES, 768), toy_stable_diffusion())
