"""Training Im2Wav's waveform VQ-VAE, the first stage of GRAVO (Im2Wav, arXiv:2211.03089; GRAVO
reuses the pretrained Im2Wav VQ-VAE unchanged, GRAVO paper sec. 3.2).

loss = sum over levels [lmix + multispectral_weight x multi-resolution STFT] + commitment (weight inside the
codebooks), as `RoySheffer/im2wav`, `models/vqvae/vqvae.py` (`VQVAE.forward`) sums it; the codebooks are
EMA k-means and get no gradient. Adam (lr 3e-4, betas (0.9, 0.999)) with the official linear warm-up
lr x min(1, step / warmup_steps) (`models/train.py`, `get_lr_scheduler`); gradient clipping (1.0) is set in
the trainer config.
"""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch import LightningModule
from torch import nn

from projects.gravo.models import WaveVQVAE
from projects.gravo.models.waveform_losses import WaveformReconstructionLoss
from shared.callbacks import Examples, side_by_side, sound_pictures
from shared.metrics import StageMeans
from shared.runs import UserError
from shared.vq import CodebookUsage

SAMPLE_RATE = 16000


class WaveVQVAETraining(LightningModule):
    """Batch keys used: `wave` [B, T] float32 at 16 kHz in [-1, 1], T a multiple of the largest hop (32)."""

    def __init__(
        self,
        vqvae: WaveVQVAE,
        loss: WaveformReconstructionLoss | None = None,
        lr: float = 3e-4,
        betas: tuple[float, float] = (0.9, 0.999),
        warmup_steps: int = 100,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.vqvae = vqvae
        self.loss = loss or WaveformReconstructionLoss()
        self._provisional_bandwidth = False
        levels = range(vqvae.levels)
        names = ["loss", "recon", "multispectral", "commit"] + [f"recon_l{level}" for level in levels]
        self.eval_means = StageMeans(names)
        self.usage = nn.ModuleDict(
            {
                f"{stage}_l{level}": CodebookUsage(vqvae.l_bins)
                for stage in ("val", "test")
                for level in levels
            }
        )

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(
            self.vqvae.parameters(), lr=self.hparams.lr, betas=tuple(self.hparams.betas)
        )
        warmup = max(self.hparams.warmup_steps, 1)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, step / warmup))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_train_start(self) -> None:
        # A bandwidth measured on Lightning's sanity-check validation batch only stood in until now: the
        # first training batch (cut as training cuts it) sets the one the run keeps.
        if self._provisional_bandwidth:
            self.loss.forget_bandwidth()
            self._provisional_bandwidth = False

    def losses(self, wave: torch.Tensor):
        out = self.vqvae(wave)
        losses = self.loss(wave, out.reconstructions)
        losses["commit"] = sum(out.commit_losses)
        losses["loss"] = losses["loss"] + losses["commit"]
        return losses, out

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        losses, out = self.losses(batch["wave"])
        self.log("train/loss", losses["loss"].detach(), prog_bar=True)
        self.log_dict(
            {f"train/{name}": losses[name].detach() for name in ("recon", "multispectral", "commit")}
        )
        for level, perplexity in enumerate(out.perplexities):
            self.log(f"train/perplexity_l{level}", perplexity, prog_bar=level == 0)
        return losses["loss"]

    def _evaluate(self, batch: dict, stage: str) -> None:
        if self.trainer.sanity_checking and not self.loss.bandwidth_known:
            self._provisional_bandwidth = True
        losses, out = self.losses(batch["wave"])
        self.eval_means.log(
            self, stage, {name: losses[name] for name in self.eval_means.names}, len(batch["wave"])
        )
        for level, codes in enumerate(out.codes):
            self.usage[f"{stage}_l{level}"].update(codes)

    def _log_usage(self, stage: str) -> None:
        for level in range(self.vqvae.levels):
            usage = self.usage[f"{stage}_l{level}"]
            values = usage.compute()
            self.log(f"{stage}/perplexity_l{level}", values["perplexity"])
            self.log(f"{stage}/codes_used_l{level}", values["used_fraction"])
            usage.reset()

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_usage("val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._log_usage("test")

    @torch.no_grad()
    def examples(self, batch: dict) -> Examples:
        """The input clips and each level's reconstruction, as sound and as spectrograms side by side (input,
        level 0, level 1), for `shared.callbacks.ExampleLogger`."""
        out = self.vqvae(batch["wave"])
        sounds = {"input": batch["wave"]} | {
            f"reconstruction_l{level}": wave.clamp(-1, 1) for level, wave in enumerate(out.reconstructions)
        }
        pictures = side_by_side(*(sound_pictures(wave, SAMPLE_RATE) for wave in sounds.values()))
        return Examples({"input_reconstructions": pictures}, sounds, SAMPLE_RATE)


def load_vqvae(ckpt_path: str | Path) -> WaveVQVAE:
    """The VQ-VAE of a checkpoint of this stage (`avgen fit` with a `*_vqvae.yaml`), in eval mode."""
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    config = ckpt.get("hyper_parameters", {}).get("vqvae")
    if not isinstance(config, dict) or "init_args" not in config:
        raise UserError(
            f"{ckpt_path}: not a checkpoint of the VQ-VAE stage (no vqvae config in its hyper-parameters); "
            "official Im2Wav files load with projects.gravo.convert.load_official"
        )
    model = WaveVQVAE(**config["init_args"])
    prefix = "vqvae."
    model.load_state_dict(
        {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    )
    return model.eval()
