"""What AudioToken's Embedder stage shows in TensorBoard at validation (`AudioTokenTraining.examples`), on the
tiny Stable Diffusion and BEATs of test_module."""

import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import TensorBoardLogger

from projects.audiotoken.models.pipeline import make_scheduler
from projects.audiotoken.module_audiotoken import AudioTokenTraining
from shared.callbacks import ExampleLogger
from shared.callbacks.examples import GAP
from tests.shared.test_examples import logged

from . import test_module
from .test_module import make_batch

sd_root, beats_ckpt = test_module.sd_root, test_module.beats_ckpt  # its fixtures: tiny SD and BEATs on disk

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see tests/conftest.py


def test_images_generated_from_the_audio_tokens_are_shown_beside_the_real_frames(sd_root, beats_ckpt):
    module = AudioTokenTraining(sd_root, beats_ckpt, example_steps=3).eval()
    unet_calls = []
    module.frozen.sd.unet.register_forward_hook(lambda *args: unet_calls.append(1))
    batch = make_batch(size=2)  # frames 64 x 40 in [-1, 1]
    examples = module.examples(batch)
    images = examples.images["generated_real"]
    assert set(examples.images) == {"generated_real"} and not examples.sounds and not examples.pictures
    assert images.shape == (2, 3, 40, 64 + GAP + 64)
    torch.testing.assert_close(images[..., -64:], (batch["image"] + 1) / 2)
    generated = images[..., :64]
    assert generated.min() >= 0 and generated.max() <= 1 and generated.std() > 0
    # `example_steps` denoising steps (one UNet call each, both guidance branches in one batch)
    scheduler = make_scheduler("pndm", module.frozen.sd.noise_scheduler.config)
    scheduler.set_timesteps(3)
    assert len(unet_calls) == len(scheduler.timesteps)
    torch.testing.assert_close(module.examples(batch).images["generated_real"], images)  # a fixed seed


def test_a_validation_run_writes_them_to_tensorboard(sd_root, beats_ckpt, tmp_path):
    trainer = Trainer(
        accelerator="cpu", logger=TensorBoardLogger(tmp_path, name="", version=""), limit_val_batches=1,
        callbacks=[ExampleLogger(n_examples=2)], enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.validate(
        AudioTokenTraining(sd_root, beats_ckpt, example_steps=2), test_module.loader(make_batch(3))
    )
    events = logged(trainer)
    assert set(events.Tags()["images"]) == {"examples/generated_real/0", "examples/generated_real/1"}
    image = events.Images("examples/generated_real/1")[0]
    assert (image.height, image.width) == (40, 64 + GAP + 64)
