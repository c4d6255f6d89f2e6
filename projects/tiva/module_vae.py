"""A small mel VAE: the toy stand-in for AudioLDM2's frozen VAE (TiVA paper sec. 3.2.2 and 4.1.1).

TiVA takes its VAE from AudioLDM2 and never trains it. AudioLDM2's VAE cannot be downloaded here, so the toy
pipeline trains the same diffusers class (`AutoencoderKL`, one input channel, the log-mel seen as an image
[B, 1, T, 64] with time as height, x4 down in time and frequency) at a small width, and writes it where the
paper configuration reads AudioLDM2's: `<run>/audioldm/vae` in diffusers' format. Every later stage loads it
through the same `projects.tiva.models.load_vae(root)` as the real one.

Loss: L1 reconstruction of the log-mel plus `kl_weight` x KL to N(0, I) (the LDM autoencoder objective
without its adversarial and perceptual terms, which a toy-sized, few-minute stage does not need). The
latent scale follows AudioLDM2's `scale_by_std`: at the end of training the standard deviation of the
posterior samples over `scale_batches` training batches gives `scaling_factor = 1 / std`, stored in the
exported config, from which the generator stages read it (as they read 0.411 from AudioLDM2's).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from lightning.pytorch import LightningModule

from projects.tiva.frontend import AudioFrontEnd
from shared.metrics import StageMeans


class MelVAE(LightningModule):
    """Batch keys used: `wave` [B, samples] at 16 kHz."""

    def __init__(
        self,
        vae: dict,
        lr: float = 1e-3,
        kl_weight: float = 1e-6,
        scale_batches: int = 8,
        export_dir: str | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.vae = AutoencoderKL(**vae)
        self.front_end = AudioFrontEnd()
        self.eval_means = StageMeans(["loss", "l1"])

    def _images(self, wave: torch.Tensor) -> torch.Tensor:
        return self.front_end(wave).transpose(1, 2).unsqueeze(1)  # [B, 1, T, 64]: time is the height

    def _losses(self, wave: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self._images(wave)
        posterior = self.vae.encode(x).latent_dist
        recon = self.vae.decode(posterior.sample()).sample
        l1 = F.l1_loss(recon, x)
        kl = posterior.kl().mean() / x[0].numel()
        return {"loss": l1 + self.hparams.kl_weight * kl, "l1": l1, "kl": kl}

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        losses = self._losses(batch["wave"])
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, prog_bar=True)
        return losses["loss"]

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        losses = self._losses(batch["wave"])
        self.eval_means.log(self, "val", {k: losses[k] for k in ("loss", "l1")}, len(batch["wave"]))

    def test_step(self, batch: dict, batch_idx: int) -> None:
        losses = self._losses(batch["wave"])
        self.eval_means.log(self, "test", {k: losses[k] for k in ("loss", "l1")}, len(batch["wave"]))

    def configure_optimizers(self):
        return torch.optim.Adam(self.vae.parameters(), lr=self.hparams.lr)

    @torch.no_grad()
    def latent_std(self, loader) -> float:
        """Standard deviation of posterior samples over the first `scale_batches` batches (scale_by_std)."""
        samples = []
        for i, batch in enumerate(loader):
            if i == self.hparams.scale_batches:
                break
            samples.append(self.vae.encode(self._images(batch["wave"].to(self.device))).latent_dist.sample())
        return torch.cat(samples).float().std().item()

    def on_train_end(self) -> None:
        """Write the trained VAE in diffusers' format (`<export_dir>` or `<run>/audioldm/vae`) with its scale."""
        self.vae.eval()
        std = self.latent_std(self.trainer.datamodule.train_dataloader())
        self.vae.register_to_config(scaling_factor=1.0 / std)
        if self.trainer.is_global_zero:
            out = Path(self.hparams.export_dir or Path(self.trainer.default_root_dir) / "audioldm" / "vae")
            self.vae.save_pretrained(out)
