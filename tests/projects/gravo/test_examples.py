"""What GRAVO's prior stages show in TensorBoard at validation (`GravoPrior.examples`), on the tiny frozen
VQ-VAE and priors of test_module_prior."""

import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader

from projects.gravo.models.priors import UpPrior
from projects.gravo.module_prior import GravoPrior
from projects.gravo.module_vqvae import WaveVQVAETraining, load_vqvae
from shared.callbacks import ExampleLogger, sound_pictures
from shared.callbacks.examples import GAP
from tests.shared.test_examples import logged

from . import test_module_prior
from .test_module_prior import PRIOR, batch, gravo_module

checkpoints = test_module_prior.checkpoints  # its fixture: a tiny frozen VQ-VAE in a checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see tests/conftest.py


def up_module(paths: dict[str, str]) -> GravoPrior:
    torch.manual_seed(3)
    prior = UpPrior(n_ctx=64, **PRIOR, cond_width=8, cond_depth=2, cond_dilation_cycle=None)
    return GravoPrior(prior, vqvae_ckpt=paths["vqvae_ckpt"], cfg_prob=0.0)


@pytest.mark.parametrize(("kind", "level"), [("low", 1), ("up", 0)])
def test_a_prior_shows_its_sample_beside_the_reconstruction_and_the_real_window(checkpoints, kind, level):
    module = (gravo_module(checkpoints) if kind == "low" else up_module(checkpoints)).eval()
    data = batch()  # 3 windows of 512 samples: 16 Low codes, 64 Up codes
    examples = module.examples(data)
    again = module.examples(data)
    assert examples.sample_rate == 16_000
    assert set(examples.sounds) == {"generated", "reconstruction", "real"}
    assert all(sound.shape == (3, 512) for sound in examples.sounds.values())
    torch.testing.assert_close(examples.sounds["real"], data["wave"])
    vqvae = module.frozen["vqvae"]
    expected = vqvae.decode(vqvae.encode(data["wave"])[level], level)
    torch.testing.assert_close(examples.sounds["reconstruction"], expected.clamp(-1, 1))
    torch.testing.assert_close(examples.sounds["generated"], again.sounds["generated"])  # a fixed seed
    ((name, picture),) = examples.pictures.items()
    frames = sound_pictures(data["wave"], 16_000).shape[-1]
    assert name == "generated_reconstruction_real" and picture.shape == (3, 80, 3 * frames + 2 * GAP)
    torch.testing.assert_close(picture[..., -frames:], sound_pictures(data["wave"], 16_000))


def test_a_validation_run_writes_them_to_tensorboard(checkpoints, tmp_path):
    trainer = Trainer(
        accelerator="cpu", logger=TensorBoardLogger(tmp_path, name="", version=""),
        callbacks=[ExampleLogger(n_examples=2)], enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.validate(gravo_module(checkpoints), DataLoader([batch()], batch_size=None))
    events = logged(trainer)
    assert set(events.Tags()["images"]) == {f"examples/generated_reconstruction_real/{i}" for i in (0, 1)}
    assert set(events.Tags()["audio"]) == {
        f"audio/{kind}/{i}" for kind in ("generated", "reconstruction", "real") for i in (0, 1)
    }
    assert events.Audio("audio/generated/1")[0].sample_rate == 16_000


def test_the_vqvae_shows_the_input_beside_each_level_s_reconstruction(checkpoints):
    vqvae = load_vqvae(checkpoints["vqvae_ckpt"])
    wave = batch()["wave"]
    examples = WaveVQVAETraining(vqvae).eval().examples({"wave": wave})
    assert set(examples.sounds) == {"input", "reconstruction_l0", "reconstruction_l1"}
    for level, reconstruction in enumerate(vqvae(wave).reconstructions):
        torch.testing.assert_close(examples.sounds[f"reconstruction_l{level}"], reconstruction.clamp(-1, 1))
    frames = sound_pictures(wave, 16_000).shape[-1]
    assert examples.pictures["input_reconstructions"].shape == (3, 80, 3 * frames + 2 * GAP)
