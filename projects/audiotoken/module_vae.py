"""The toy VAE stage: Stable Diffusion's `AutoencoderKL` at toy size trained on the toy frames.

AudioToken (arXiv:2305.13050) freezes Stable Diffusion; no SD weights can be fetched here, so the toy pipeline
trains a small SD of the same diffusers classes, first its autoencoder (the KL-regularised first stage of latent
diffusion, arXiv:2112.10752, sec. 3.1 and appendix G): images [B, 3, 40, 64] -> latents [B, 4, 10, 16] (f = 4).

The real SD VAE was trained with an L1 reconstruction term plus an LPIPS perceptual loss and a patch-based
adversarial loss, and a KL term of weight 1e-6 (`CompVis/latent-diffusion`, `ldm/modules/losses/contperceptual.py`,
`LPIPSWithDiscriminator`, sums over pixels and latents per image, mean over the batch). Here: the same L1 and KL
terms with the same normalisation and weight, without LPIPS (its VGG weights cannot be fetched) and without the
discriminator (flat-coloured toy shapes need no texture sharpening, and it would triple the CPU time).

On every checkpoint save the autoencoder is exported with `save_pretrained` to `<run>/vae/` (atomically); the
toy LDM stage loads it with `--model.init_args.vae_root=<that folder>` and sets its latent scaling factor.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL
from lightning.pytorch import LightningModule

from projects.audiotoken.exports import ExportsOnCheckpoint
from projects.audiotoken.models.stable_diffusion import toy_vae


def vae_loss(vae: AutoencoderKL, image: torch.Tensor, kl_weight: float) -> tuple[torch.Tensor, dict]:
    """L1 + kl_weight x KL(q(z|x) || N(0, I)), both summed per image and averaged over the batch (as LDM's)."""
    posterior = vae.encode(image).latent_dist
    reconstruction = vae.decode(posterior.sample()).sample
    l1 = (reconstruction - image).abs().sum(dim=(1, 2, 3)).mean()
    kl = posterior.kl().mean()
    mse = (reconstruction.clamp(-1, 1) - image).pow(2).mean()
    psnr = 10 * torch.log10(4 / mse)  # images span [-1, 1]: peak-to-peak 2
    return l1 + kl_weight * kl, {"l1_per_pixel": l1 / image[0].numel(), "kl": kl, "psnr": psnr}


class ToyVAETraining(ExportsOnCheckpoint, LightningModule):
    """Batch keys used: `image` [B, 3, H, W] float32 in [-1, 1] (H, W multiples of 4)."""

    export_name = "vae"

    def __init__(
        self,
        kl_weight: float = 1e-6,
        lr: float = 1e-3,
        seed: int = 0,
        export_dir: str | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        torch.manual_seed(seed)
        self.vae = toy_vae()

    def _step(self, batch: dict, stage: str) -> torch.Tensor:
        loss, parts = vae_loss(self.vae, batch["image"], self.hparams.kl_weight)
        sync = stage != "train"
        size = len(batch["image"])
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=size, sync_dist=sync)
        for name, value in parts.items():
            self.log(f"{stage}/{name}", value, prog_bar=name == "psnr", batch_size=size, sync_dist=sync)
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "test")

    def write_export(self, folder: Path) -> None:
        self.vae.save_pretrained(folder)

    def configure_optimizers(self):
        return torch.optim.Adam(self.vae.parameters(), lr=self.hparams.lr, betas=(0.5, 0.9))
