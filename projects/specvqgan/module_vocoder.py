"""Training SpecVQGAN's MelGAN vocoder (arXiv:2110.08791, sec. 3.3, 6.1.5; official
`vocoder/scripts/train.py`).

Per step, as the official training script does it, on a batch of random waveform segments x (8192
samples, random gain; see `data_audio.WaveformDataModule`):

    s = mel(x) cut to len(x) // 256 frames         SpecVQGAN's [0, 1] mel, computed here in torch
    x^ = G(s)                                      len(x) samples again
    D step:  sum over scales k of  mean relu(1 - D_k(x)) + mean relu(1 + D_k(x^))          (hinge)
    G step:  sum_k -mean D_k(x^)  +  lambda_feat * sum_k sum_l w |D_k,l(x^) - D_k,l(x)|_1 (mean)
             with w = 1/num_D * 4/(n_layers_D + 1), l over every layer but the score (feature matching)

`lambda_mel` > 0 adds lambda_mel * |mel(x^) - s|_1 (mean) to the generator's loss. This term is not part
of SpecVQGAN's vocoder (the paper config keeps it at 0); it is HiFi-GAN's mel reconstruction loss, which the
toy config turns on because the GAN and feature-matching terms alone take many thousands of steps to move
the mel error, more than a few CPU minutes give (the README's vocoder section has the figures).

The discriminator steps first, on x^ detached; the generator's adversarial term then sees the updated
D, and its feature-matching targets are D's features of x from before that update (as the official code).
Adam lr 1e-4, betas (0.5, 0.9) for both. One optimisation step (`global_step`, `max_steps`) is one
generator update; the discriminator's step does not advance it.

The official code recomputes the mel on the CPU with librosa in the training loop; here it is the repo's
`shared.audio.MelFrontEnd` (torchaudio, same numbers to < 1e-5, see `shared/audio/mel.py`) on the batch,
on the training device. Validation vocodes the mel of each whole clip and reports `val/mel_l1`, the mean
absolute difference between that input mel and the mel of the generated waveform (the official
"mel_reconstruction" error, there on training segments, here on held-out clips).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.loggers import TensorBoardLogger

from projects.specvqgan.models.melgan import MelGANDiscriminator, MelGANGenerator
from shared.audio import MelFrontEnd
from shared.metrics import StageMeans

GENERATOR_CONFIG_KEY = "melgan_generator"  # checkpoint entry: the generator's sizes, for load_vocoder


class MelGANVocoder(LightningModule):
    """Batch keys used: `wave` [B, samples] (training: segments; evaluation: whole clips), `clip_id`."""

    def __init__(
        self,
        generator: MelGANGenerator,
        discriminator: MelGANDiscriminator,
        mel_preset: str = "specvqgan",
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.5, 0.9),
        lambda_feat: float = 10.0,
        lambda_mel: float = 0.0,
        n_audio_examples: int = 2,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.generator = generator
        self.discriminator = discriminator
        self.front_end = MelFrontEnd.from_preset(mel_preset)
        hop = self.front_end.config.hop_length
        if generator.hop_length != hop:
            raise ValueError(
                f"the generator upsamples by {generator.hop_length} (ratios {generator.config['ratios']}) "
                f"but the {mel_preset!r} mel has a hop of {hop} samples"
            )
        if generator.config["n_mels"] != self.front_end.config.n_mels:
            raise ValueError(
                f"the generator takes {generator.config['n_mels']} mel bins, the {mel_preset!r} mel has "
                f"{self.front_end.config.n_mels}"
            )
        self.feat_weight = lambda_feat / discriminator.num_D * 4.0 / (discriminator.n_layers + 1)
        self.lambda_mel = lambda_mel
        self.eval_means = StageMeans(["mel_l1"])

    @property
    def hop_length(self) -> int:
        return self.generator.hop_length

    def configure_optimizers(self):
        betas = tuple(self.hparams.betas)
        return [
            torch.optim.Adam(self.generator.parameters(), lr=self.hparams.lr, betas=betas),
            torch.optim.Adam(self.discriminator.parameters(), lr=self.hparams.lr, betas=betas),
        ]

    def mel(self, wave: torch.Tensor) -> torch.Tensor:
        """[B, samples] -> [B, n_mels, samples // hop]: the mel frames whose samples the generator rebuilds.

        With centred frames the front end gives 1 + samples // hop frames; the official training keeps
        the first samples // hop, so that G (hop samples per frame) rebuilds exactly `samples` samples."""
        with torch.no_grad():
            return self.front_end(wave)[..., : wave.shape[-1] // self.hop_length]

    def vocode(self, mel: torch.Tensor) -> torch.Tensor:
        """[B, n_mels, T] -> [B, hop * T]."""
        return self.generator(mel).squeeze(1)

    def training_step(self, batch: dict, batch_idx: int) -> None:
        opt_g, opt_d = self.optimizers()
        wave = batch["wave"]
        mel = self.mel(wave)
        real = wave[:, None, : mel.shape[-1] * self.hop_length]
        fake = self.generator(mel)

        d_fake = self.discriminator(fake.detach())
        d_real = self.discriminator(real)
        loss_d = sum(F.relu(1 + s[-1]).mean() for s in d_fake) + sum(F.relu(1 - s[-1]).mean() for s in d_real)
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(loss_d)
        # Lightning counts every manual optimiser step in global_step; one step means one generator update.
        self.trainer.strategy.optimizer_step(opt_d.optimizer, closure=lambda: None)

        self.discriminator.requires_grad_(False)  # G's backward needs no D weight gradients
        d_fake = self.discriminator(fake)
        loss_g = sum(-s[-1].mean() for s in d_fake)
        loss_feat = sum(
            F.l1_loss(f, r.detach())
            for fake_scale, real_scale in zip(d_fake, d_real, strict=True)
            for f, r in zip(fake_scale[:-1], real_scale[:-1], strict=True)
        )
        reconstruction = self.lambda_mel > 0
        with torch.set_grad_enabled(reconstruction):
            mel_l1 = (self.front_end(fake.squeeze(1))[..., : mel.shape[-1]] - mel).abs().mean()
        loss = loss_g + self.feat_weight * loss_feat
        if reconstruction:
            loss = loss + self.lambda_mel * mel_l1
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        opt_g.step()
        self.discriminator.requires_grad_(True)

        self.log_dict(
            {"train/d": loss_d.detach(), "train/g_adv": loss_g.detach(), "train/feat": loss_feat.detach()}
        )
        self.log("train/mel_l1", mel_l1.detach(), prog_bar=True)

    def _evaluate(self, batch: dict, stage: str) -> torch.Tensor:
        mel = self.mel(batch["wave"])
        generated = self.vocode(mel)
        mel_l1 = (self.mel(generated) - mel).abs().mean()
        self.eval_means.log(self, stage, {"mel_l1": mel_l1}, len(mel))
        return generated

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        generated = self._evaluate(batch, "val")
        if batch_idx == 0:
            self._log_audio(batch["wave"], generated)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        """The resynthesised waveform [B, samples] of each clip (its mel vocoded), for a prediction writer."""
        return {"clip_id": batch["clip_id"], "wave": self.vocode(self.mel(batch["wave"]))}

    def examples(self, batch: dict) -> dict[str, torch.Tensor]:
        """Mels in [0, 1], [N, F, T], for `shared.callbacks.ExampleLogger`: input and vocoded."""
        mel = self.mel(batch["wave"])
        return {"input": mel, "vocoded": self.mel(self.vocode(mel))}

    def _log_audio(self, wave: torch.Tensor, generated: torch.Tensor) -> None:
        """The first clips of the first validation batch, as sound: generated always, originals once."""
        if (
            self.trainer.sanity_checking
            or not self.trainer.is_global_zero
            or self.hparams.n_audio_examples < 1
        ):
            return
        writer = next((lg.experiment for lg in self.loggers if isinstance(lg, TensorBoardLogger)), None)
        if writer is None:
            return
        rate, n = self.front_end.sample_rate, self.hparams.n_audio_examples
        for i, clip in enumerate(generated[:n].float().cpu()):
            writer.add_audio(f"audio/generated/{i}", clip.clamp(-1, 1)[None], self.global_step, rate)
        if not getattr(self, "_originals_logged", False):
            for i, clip in enumerate(wave[:n].float().cpu()):
                writer.add_audio(f"audio/original/{i}", clip.clamp(-1, 1)[None], self.global_step, rate)
            self._originals_logged = True

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[GENERATOR_CONFIG_KEY] = dict(self.generator.config)
