"""Training the spectrogram codebook (SpecVQGAN, arXiv:2110.08791, sec. 3.1, eqs. 2-3; settings of
sec. 6.1.2).

Generator loss = L1(x, x_hat) + perceptual_weight * LPAPS(x, x_hat) + codebook_weight * VQ loss
                 + disc_weight * (-mean D(x_hat))                 once the step count reaches disc_start;
discriminator loss = 0.5 * (mean relu(1 - D(x)) + mean relu(1 + D(x_hat)))   from disc_start on.
The reconstruction norm is L1 and the adversarial loss the hinge form, as in the official code that
produced the released codebooks (the paper writes the log-D form); the adaptive weight of the official
code is clamped to 1, so the GAN weight is the constant `disc_weight` (0.8) and is applied as such.
Two Adam optimisers, betas (0.5, 0.9), fixed lr = base_lr * n_gpus * batch_size (sec. 6.1.2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import nn

from projects.specvqgan.models import LPAPS, PatchDiscriminator, SpectrogramVQGAN
from shared.metrics import StageMeans
from shared.vq import CodebookUsage


class SpecVQGANCodebook(LightningModule):
    """Batch keys used: `mel` [B, 1, F, T] in [0, 1] (scaled to [-1, 1] here, as the official input)."""

    def __init__(
        self,
        autoencoder: SpectrogramVQGAN,
        discriminator: PatchDiscriminator,
        classifier_ckpt: str | None = None,
        base_lr: float = 4.5e-6,
        disc_start: int = 30001,
        disc_weight: float = 0.8,
        perceptual_weight: float = 1.0,
        codebook_weight: float = 1.0,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.autoencoder = autoencoder
        self.discriminator = discriminator
        self.lpaps = None
        if perceptual_weight > 0:
            if not classifier_ckpt:
                raise ValueError(
                    "perceptual_weight > 0 needs classifier_ckpt (a trained VGGish-ish checkpoint)"
                )
            from projects.specvqgan.convert import load_vggishish

            self.lpaps = LPAPS(load_vggishish(classifier_ckpt))
        names = ["l1", "codebook", "total"] + (["lpaps"] if self.lpaps is not None else [])
        self.eval_means = StageMeans(names)
        self.usage = nn.ModuleDict({stage: CodebookUsage(autoencoder.n_codes) for stage in ("val", "test")})

    def configure_optimizers(self):
        batch_size = self.trainer.datamodule.batch_size
        lr = self.hparams.base_lr * self.trainer.world_size * batch_size
        return [
            torch.optim.Adam(self.autoencoder.parameters(), lr=lr, betas=(0.5, 0.9)),
            torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=(0.5, 0.9)),
        ]

    def on_train_start(self) -> None:
        self.log("lr", self.optimizers()[0].param_groups[0]["lr"], rank_zero_only=True)

    def _generator_losses(
        self, x: torch.Tensor, x_hat: torch.Tensor, vq_loss: torch.Tensor, adversarial: bool = True
    ) -> dict:
        losses = {"l1": (x - x_hat).abs().mean(), "codebook": vq_loss}
        total = losses["l1"] + self.hparams.codebook_weight * vq_loss
        if self.lpaps is not None:
            losses["lpaps"] = self.lpaps(x, x_hat).mean()
            total = total + self.hparams.perceptual_weight * losses["lpaps"]
        if adversarial and self.gan_active:
            losses["g_adv"] = -self.discriminator(x_hat).mean()
            total = total + self.hparams.disc_weight * losses["g_adv"]
        losses["total"] = total
        return losses

    @property
    def gan_active(self) -> bool:
        return self.global_step >= self.hparams.disc_start

    def training_step(self, batch: dict, batch_idx: int) -> None:
        opt_g, opt_d = self.optimizers()
        x = batch["mel"] * 2 - 1
        x_hat, q = self.autoencoder(x)
        losses = self._generator_losses(x, x_hat, q.loss)
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(losses["total"])
        opt_g.step()
        if self.gan_active:
            d_loss = 0.5 * (
                F.relu(1 - self.discriminator(x)).mean()
                + F.relu(1 + self.discriminator(x_hat.detach())).mean()
            )
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(d_loss)
            # Lightning counts every manual optimiser step in global_step; a step here means one
            # generator update, as disc_start, max_steps and the paper count them.
            self.trainer.strategy.optimizer_step(opt_d.optimizer, closure=lambda: None)
            losses["d"] = d_loss
        self.log_dict({f"train/{k}": v.detach() for k, v in losses.items() if k != "l1"})
        self.log("train/l1", losses["l1"].detach(), prog_bar=True)
        self.log("train/perplexity", q.perplexity, prog_bar=True)

    def _evaluate(self, batch: dict, stage: str) -> None:
        x = batch["mel"] * 2 - 1
        x_hat, q = self.autoencoder(x)
        self.eval_means.log(self, stage, self._generator_losses(x, x_hat, q.loss, adversarial=False), len(x))
        self.usage[stage].update(q.indices)

    def _log_usage(self, stage: str) -> None:
        usage = self.usage[stage].compute()
        self.log(f"{stage}/codes_used", usage["used_fraction"], prog_bar=stage == "val")
        self.log(f"{stage}/perplexity", usage["perplexity"])
        self.usage[stage].reset()

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_usage("val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._log_usage("test")

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        """Reconstructions (mel in [0, 1], [B, F, T]) and codes [B, H, W] of each clip, for a prediction writer."""
        x_hat, q = self.autoencoder(batch["mel"] * 2 - 1)
        return {"clip_id": batch["clip_id"], "mel": ((x_hat[:, 0] + 1) / 2).clamp(0, 1), "codes": q.indices}

    def examples(self, batch: dict) -> dict[str, torch.Tensor]:
        """Mels in [0, 1], [N, F, T], for the example logger: inputs and their reconstructions."""
        x = batch["mel"] * 2 - 1
        x_hat, _ = self.autoencoder(x)
        return {"input": batch["mel"][:, 0], "reconstruction": ((x_hat[:, 0] + 1) / 2).clamp(0, 1)}
