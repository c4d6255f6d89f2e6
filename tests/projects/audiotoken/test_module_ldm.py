"""The toy VAE and LDM stages: losses, the latent scaling factor, and the exported folders later stages load."""

import pytest
import torch
from diffusers import StableDiffusionPipeline
from lightning.pytorch import Trainer

from projects.audiotoken.models.stable_diffusion import load_stable_diffusion, toy_vae
from projects.audiotoken.models.toy_clip import toy_clip_model
from projects.audiotoken.module_ldm import ToyLDMTraining, load_vae
from projects.audiotoken.module_vae import ToyVAETraining, vae_loss
from shared.runs import UserError
from tests.projects.audiotoken.toy_frames import ToyFrames, loader


def _trainer(root, **kwargs):
    return Trainer(
        accelerator="cpu",
        default_root_dir=root,
        logger=False,
        enable_progress_bar=False,
        num_sanity_val_steps=0,
        **kwargs,
    )


@pytest.fixture(scope="module")
def frames():
    return ToyFrames(1)


def test_vae_loss_is_l1_plus_weighted_kl():
    torch.manual_seed(0)
    vae = toy_vae()
    image = torch.rand(2, 3, 40, 64) * 2 - 1
    torch.manual_seed(1)
    loss, parts = vae_loss(vae, image, kl_weight=0.5)
    torch.manual_seed(1)
    unweighted, _ = vae_loss(vae, image, kl_weight=0.0)
    torch.testing.assert_close(loss, unweighted + 0.5 * parts["kl"])
    torch.testing.assert_close(unweighted, parts["l1_per_pixel"] * image[0].numel())


def test_missing_prior_stage_folders_are_named(tmp_path):
    with pytest.raises(UserError, match="toy VAE stage"):
        load_vae(tmp_path)


@pytest.mark.slow
def test_vae_then_ldm_export_loadable_folders(tmp_path, frames):
    vae_module = ToyVAETraining()
    _trainer(tmp_path / "vae_run", max_steps=2).fit(vae_module, loader(frames), loader(frames, shuffle=False))
    exported_vae = load_vae(tmp_path / "vae_run" / "vae")
    image = frames[0]["image"][None]
    with torch.no_grad():
        torch.testing.assert_close(
            exported_vae.encode(image).latent_dist.mean, vae_module.vae.encode(image).latent_dist.mean
        )
    toy_clip_model().save_pretrained(tmp_path / "clip")

    module = ToyLDMTraining(
        clip_root=str(tmp_path / "clip"),
        vae_root=str(tmp_path / "vae_run" / "vae"),
        val_images_per_class=1,
        val_steps=2,
    )
    trainer = _trainer(tmp_path / "ldm_run", max_steps=2, val_check_interval=2)
    trainer.fit(module, loader(frames), loader(frames, shuffle=False))

    with torch.no_grad():
        posteriors = [exported_vae.encode(b["image"]).latent_dist for b in loader(frames)]
        samples = torch.cat([p.sample() for _ in range(20) for p in posteriors])
    # the moments' figure is the limit of the samples' std: 20 draws per latent bring them within 1 %
    assert module.scaling_factor.item() == pytest.approx(1 / samples.std().item(), rel=0.01)
    assert 0 <= trainer.callback_metrics["val/generated_clip_acc"].item() <= 1
    assert not any(p.requires_grad for p in module.text_encoder.parameters())
    assert not any(p.requires_grad for p in module.vae.parameters())

    parts = load_stable_diffusion(tmp_path / "ldm_run" / "stable_diffusion")
    assert parts.scaling_factor == pytest.approx(module.scaling_factor.item())
    for name, tensor in module.unet.state_dict().items():
        torch.testing.assert_close(parts.unet.state_dict()[name], tensor, rtol=0, atol=0)
    ids = module.parts.tokenizer(
        ["a photo of a dog", ""], padding="max_length", max_length=77, return_tensors="pt"
    )
    with torch.no_grad():
        torch.testing.assert_close(
            parts.text_encoder(ids.input_ids).last_hidden_state, module.encode_text(["a photo of a dog", ""])
        )
    pipe = StableDiffusionPipeline.from_pretrained(
        tmp_path / "ldm_run" / "stable_diffusion", safety_checker=None
    )
    pipe.set_progress_bar_config(disable=True)
    assert pipe("a photo of a dog", num_inference_steps=2, output_type="np").images.shape == (1, 64, 64, 3)
