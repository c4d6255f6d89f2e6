"""The toy image VQGAN stage: its loss is taming's pixel L1 plus the quantiser's term (commitment + 0.25 x
codebook), a few Adam steps lower it, and `load_vqgan` gives back the trained VQGAN from a run folder or a
checkpoint, or one line naming a file it cannot use."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from diffusers import VQModel
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader

from projects.wavbrivl.module_vqgan import ImageVQGANTraining, load_vqgan
from shared.callbacks import ExampleLogger
from shared.callbacks.examples import GAP
from shared.runs import UserError
from tests.projects.wavbrivl.test_generate import save_checkpoint
from tests.shared.test_examples import logged

pytestmark = pytest.mark.usefixtures("one_thread")

# two levels (f = 2), 32 codes of 8 dimensions: a forward pass on 16x16 images takes milliseconds
TINY = {
    "channels": (16, 32),
    "attention_levels": (),
    "latent_channels": 8,
    "n_codes": 32,
    "code_dim": 8,
    "norm_groups": 8,
}
SIZE = 16


def tiny_module(seed: int = 0, **kwargs) -> ImageVQGANTraining:
    torch.manual_seed(seed)
    return ImageVQGANTraining(**TINY, **kwargs)


def toy_images(n: int = 4, seed: int = 0) -> torch.Tensor:
    """[n, 3, 16, 16] in [0, 1]: 4x4 random colours upsampled, smooth images a small VQGAN can learn."""
    coarse = torch.rand(n, 3, 4, 4, generator=torch.Generator().manual_seed(seed))
    return F.interpolate(coarse, size=SIZE, mode="bilinear", align_corners=False)


def nearest_codes(vqgan: VQModel, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(index [B*h*w], quantised latents [B, D, h, w]): each latent vector's nearest code by squared distance."""
    flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
    codebook = vqgan.quantize.embedding.weight
    index = ((flat[:, None] - codebook[None]) ** 2).sum(-1).argmin(-1)
    b, _, h, w = z.shape
    return index, codebook[index].view(b, h, w, -1).permute(0, 3, 1, 2)


def latents_of(vqgan: VQModel) -> list[torch.Tensor]:
    """Collects the encoder's latents (the quantiser's input) of every forward pass, keeping their gradient."""
    seen = []

    def keep(module, inputs, output):
        output.retain_grad()
        seen.append(output)

    vqgan.quant_conv.register_forward_hook(keep)
    return seen


@pytest.mark.parametrize("pixel_loss", ["l1", "mse"])
def test_the_loss_is_the_pixel_term_plus_commitment_plus_a_quarter_of_the_codebook_term(pixel_loss):
    module = tiny_module(pixel_loss=pixel_loss)
    image = toy_images()
    x = image * 2 - 1  # taming's VQModel works on [-1, 1]
    with torch.no_grad():
        losses, reconstruction = module.losses(image)
        z = module.vqgan.encode(x).latents
        _, z_q = nearest_codes(module.vqgan, z)
        decoded = module.vqgan.decoder(module.vqgan.post_quant_conv(z_q))
    torch.testing.assert_close(reconstruction, decoded)
    pixel = (decoded - x).abs().mean() if pixel_loss == "l1" else ((decoded - x) ** 2).mean()
    distance = ((z_q - z) ** 2).mean()  # the commitment and codebook terms have this value; 1 + 0.25 in all
    assert distance > 1e-3  # the quantiser's term is not negligible at init: it would show if it were dropped
    torch.testing.assert_close(losses["rec_loss"], pixel)
    torch.testing.assert_close(losses["codebook_loss"], 1.25 * distance)
    torch.testing.assert_close(losses["loss"], pixel + 1.25 * distance)


def test_the_encoder_is_pulled_to_its_codes_with_weight_one_and_the_codes_to_the_encoder_with_a_quarter():
    """taming's `VectorQuantizer2` with its default legacy=True (the one `vqgan_imagenet_f16_16384` was trained
    with): mean((z - sg(z_q))^2) + 0.25 mean((sg(z) - z_q)^2)."""
    module = tiny_module()
    seen = latents_of(module.vqgan)
    losses, _ = module.losses(toy_images())
    losses["codebook_loss"].backward()
    [z] = seen
    index, z_q = nearest_codes(module.vqgan, z.detach())
    n = z.numel()
    torch.testing.assert_close(z.grad, 2 * (z.detach() - z_q) / n)
    codebook = module.vqgan.quantize.embedding.weight
    flat = z.detach().permute(0, 2, 3, 1).reshape(-1, z.shape[1])
    expected = torch.zeros_like(codebook).index_add_(0, index, 0.25 * 2 * (codebook[index] - flat) / n)
    torch.testing.assert_close(codebook.grad, expected)


def test_a_few_adam_steps_on_one_batch_lower_the_reconstruction_loss_and_move_the_codes():
    module = tiny_module()
    optimizer = module.configure_optimizers()
    assert optimizer.defaults["betas"] == (0.5, 0.9)  # taming's
    image = toy_images()
    codebook = module.vqgan.quantize.embedding.weight.detach().clone()
    with torch.no_grad():
        before = module.losses(image)[0]["rec_loss"]
    for _ in range(30):
        optimizer.zero_grad()
        module.losses(image)[0]["loss"].backward()
        optimizer.step()
    with torch.no_grad():
        after = module.losses(image)[0]["rec_loss"]
    x = image * 2 - 1
    flat_colours = (x - x.mean((2, 3), keepdim=True)).abs().mean()  # each image as its mean colour
    assert after < before and after < flat_colours, (before.item(), after.item(), flat_colours.item())
    # the pixel loss reaches the codes only through the straight-through estimator, which gives them no
    # gradient: the codes move because of the quantiser's codebook term
    assert not torch.equal(module.vqgan.quantize.embedding.weight, codebook)


def assert_same_vqgan(loaded: VQModel, module: ImageVQGANTraining) -> None:
    assert isinstance(loaded, VQModel)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    expected = module.vqgan.state_dict()
    state = loaded.state_dict()
    assert state.keys() == expected.keys()
    assert all(torch.equal(state[k], expected[k]) for k in expected)
    x = toy_images(seed=1) * 2 - 1
    module.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).sample, module.vqgan(x).sample, rtol=0, atol=0)


def test_load_vqgan_gives_the_saved_vqgan_from_a_checkpoint_or_a_run_folder(tmp_path):
    best, last = tiny_module(seed=1), tiny_module(seed=2)
    run = tmp_path / "run"
    save_checkpoint(best, run / "checkpoints" / "best.ckpt")
    save_checkpoint(last, run / "checkpoints" / "last.ckpt")
    assert_same_vqgan(load_vqgan(run), best)  # a run folder: its best.ckpt before its last.ckpt
    assert_same_vqgan(load_vqgan(run / "checkpoints" / "last.ckpt"), last)


@pytest.mark.slow
def test_a_lightning_run_logs_its_reconstructions_and_loads_back(tmp_path):
    torch.manual_seed(0)
    module = ImageVQGANTraining(**TINY)
    batches = [{"image": image} for image in toy_images(n=8)]
    run = tmp_path / "run"
    trainer = Trainer(
        accelerator="cpu",
        max_steps=4,
        log_every_n_steps=1,
        logger=TensorBoardLogger(run, name="", version=""),
        callbacks=[ModelCheckpoint(dirpath=run / "checkpoints", save_last=True), ExampleLogger(n_examples=2)],
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, DataLoader(batches, batch_size=4), DataLoader(batches, batch_size=4))
    assert trainer.global_step == 4
    assert_same_vqgan(load_vqgan(run), module)
    events = logged(trainer)
    assert {"train/loss", "val/loss", "val/rec_loss", "val/codebook_loss"} <= set(events.Tags()["scalars"])
    assert set(events.Tags()["images"]) == {f"examples/real_reconstruction/{i}" for i in (0, 1)}
    pictures = events.Images("examples/real_reconstruction/1")
    assert [p.step for p in pictures] == [2, 4]  # one per validation, at the end of each 2-batch epoch
    assert all(
        (p.height, p.width) == (SIZE, 2 * SIZE + GAP) for p in pictures
    )  # a frame | its reconstruction


def test_examples_show_each_frame_beside_its_reconstruction():
    module = tiny_module().eval()
    image = toy_images(n=3)
    images = module.examples({"image": image}).images["real_reconstruction"]
    assert images.shape == (3, 3, SIZE, 2 * SIZE + GAP)
    with torch.no_grad():
        _, reconstruction = module.losses(image)
    torch.testing.assert_close(images[..., :SIZE], image)
    torch.testing.assert_close(images[..., -SIZE:], ((reconstruction + 1) / 2).clamp(0, 1))


@pytest.mark.parametrize(
    ("name", "contents", "message"),
    [
        ("absent.ckpt", None, "{path}: no such file"),
        ("empty_run", "folder", "no checkpoint in {path}"),
        ("notes.txt", b"not a checkpoint\n", "{path}: not a readable torch checkpoint"),
        ("tower.ckpt", {"state_dict": {"tower.w": torch.zeros(1)}, "hyper_parameters": {"n_classes": 3}},
         "{path}: not a taming-transformers VQGAN checkpoint"),
    ],
)  # fmt: skip
def test_load_vqgan_names_the_file_it_cannot_use_in_one_line(tmp_path, name, contents, message):
    path = tmp_path / name
    if contents == "folder":
        path.mkdir()
    elif isinstance(contents, bytes):
        path.write_bytes(contents)
    elif contents is not None:
        torch.save(contents, path)
    with pytest.raises(UserError) as error:
        load_vqgan(path)
    assert str(error.value).startswith(message.format(path=path)), str(error.value)
    assert "\n" not in str(error.value)
