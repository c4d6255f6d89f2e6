"""Training Im2Wav's Low and Up priors and GRAVO's Low prior (GRAVO, Interspeech 2023, sec. 2.2-2.4, eq. 6;
Im2Wav, arXiv:2211.03089, sec. 2.2-2.3; `RoySheffer/im2wav`, `models/train.py`, `models/hparams.py`).

One LightningModule for every prior; the prior given (`projects.gravo.models.priors`) sets the level:

| config | prior | loss | paper |
| --- | --- | --- | --- |
| `*_low_im2wav` | `LowPrior` | CE | Im2Wav, Table 1-2 baseline |
| `*_gravo_mha` | `LowPrior(frame_attention=True)` | CE | Table 2, no auxiliary loss |
| `*_gravo_lw` | same | CE + lambda_w L_w | Table 2 |
| `*_gravo_lf` | same | CE + lambda_f L_f | Table 2 |
| `*_gravo` | same | CE + lambda_w L_w + lambda_f L_f (eq. 6) | GRAVO, Table 1 |
| `*_up` | `UpPrior` | CE | both (eq. 2: Up is Im2Wav's) |

Each training window's codes come from the frozen VQ-VAE (`vqvae_ckpt`: a checkpoint of the VQ-VAE stage,
`projects.gravo.module_vqvae.load_vqvae`). The Low prior drops the
conditions of each example with probability `cfg_prob` (0.5, classifier-free guidance, sec. 2.4); the Up prior
has no null condition. The auxiliary losses need the target audio's embedding w from a frozen Wav2CLIP
(`wav2clip_ckpt`, `shared.encoders.wav2clip.load_wav2clip`). Both frozen networks are kept out of this
module's checkpoints: the prior's run folder holds the prior alone, next to the VQ-VAE's.

`ce_units`: the cross-entropy L_Low enters eq. 6 in bits (default) or nats. Bits by default because that is
the loss Im2Wav's training loop minimises (`ConditionalAutoregressive2D.forward` divides by ln 2), the code
GRAVO builds on, so the lambdas were most likely balanced against it; the paper writes -log p without a
base. The logged `ce_bits` is in bits either way (Im2Wav's reported unit).

Optimiser as Im2Wav's priors: Adam, lr 3e-4, betas (0.9, 0.999), eps 1e-8, linear warm-up over 100 steps
(lr x min(1, step / 100)); gradient clipping at norm 1.0 is the trainer's `gradient_clip_val`. Im2Wav's
`FusedAdam` applies the weight decay (0.01 on the Low prior's command line, 0 on Up's) to the weights apart
from the gradient moments, which is AdamW's decoupled decay.

Logged: `train/loss`, `train/ce_bits`, and with the frame attention `train/loss_w`, `train/loss_f`; at
validation, on the conditional branch (no condition dropped), `val/loss`, `val/ce_bits` (the configs keep
the best checkpoint by it), the auxiliary losses and, with a Wav2CLIP, `val/tcs`: 100 cos(w, mean of the
frames the prior is conditioned on), Table 2's tCS (with Im2Wav's prior: the CLIP frames themselves).

TensorBoard (`shared.callbacks.ExampleLogger` in the configs): at validation, `examples` samples a few validation
windows with the prior (Low: its codes with Im2Wav's guidance 3, decoded by the VQ-VAE's level-1 decoder, as
Jukebox-style models are monitored before an upsampler exists; Up: its codes given the real window's Low codes,
decoded at level 0 as generation does) and shows them beside the VQ-VAE's reconstruction of the real window at
that level (what the prior's codes can sound like at best) and the real window, as sound and spectrograms.

Batch keys used: `wave` [B, T] float32 at 16 kHz (T a multiple of 32), `clip_feats` [B, F, 512] (the window's
L2-normalised per-frame CLIP embeddings), `offset` [B] and `total_length` [B] in samples (Low's time signal).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import nn

from projects.gravo.models.conditioning import SAMPLE_RATE
from projects.gravo.models.gravo import GravoLossWeights, auxiliary_losses, target_clip_score
from projects.gravo.models.pipeline import SamplingSettings
from projects.gravo.models.priors import LowPrior, UpPrior
from projects.gravo.module_vqvae import load_vqvae
from shared.callbacks import Examples, side_by_side, sound_pictures
from shared.encoders.wav2clip import load_wav2clip
from shared.metrics import StageMeans


class GravoPrior(LightningModule):
    """A Low (Im2Wav / GRAVO) or Up prior trained on the codes of a frozen VQ-VAE."""

    def __init__(
        self,
        prior: LowPrior | UpPrior,
        vqvae_ckpt: str,
        wav2clip_ckpt: str | None = None,
        cfg_prob: float = 0.5,
        lambda_w: float = 0.0,
        lambda_f: float = 0.0,
        gamma: float = 0.9,
        ce_units: Literal["bits", "nats"] = "bits",
        lr: float = 3e-4,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        warmup_steps: int = 100,
    ):
        super().__init__()
        self.save_hyperparameters()
        if ce_units not in ("bits", "nats"):
            raise ValueError(f"ce_units must be 'bits' or 'nats', got {ce_units!r}")
        is_low = isinstance(prior, LowPrior)
        if not is_low and cfg_prob > 0:
            raise ValueError(
                "the Up prior has no null condition (Im2Wav trains it without guidance): cfg_prob 0"
            )
        guided = is_low and prior.frame_attention is not None
        if (lambda_w or lambda_f) and not guided:
            raise ValueError(
                "lambda_w and lambda_f weigh the losses on GRAVO's frame attention; this prior has none "
                "(LowPrior(frame_attention=True)), so set them to 0"
            )
        if (lambda_w or lambda_f) and not wav2clip_ckpt:
            raise ValueError(
                "the auxiliary losses need the target audio's Wav2CLIP embedding: give wav2clip_ckpt"
            )
        self.prior, self.is_low = prior, is_low
        self.loss_weights = GravoLossWeights(lambda_w, lambda_f, gamma)
        # a plain dict, not submodules: the frozen networks stay out of the prior's checkpoints
        self.frozen: dict[str, nn.Module] = {"vqvae": load_vqvae(vqvae_ckpt).requires_grad_(False)}
        if wav2clip_ckpt:
            self.frozen["wav2clip"] = load_wav2clip(wav2clip_ckpt).requires_grad_(False)
        names = ["loss", "ce_bits"] + (["loss_w", "loss_f"] if guided else [])
        self.eval_means = StageMeans(names + (["tcs"] if wav2clip_ckpt and is_low else []))

    # --- pieces ----------------------------------------------------------------------------------------
    def frozen_model(self, name: str, device: torch.device) -> nn.Module:
        """The frozen `vqvae` or `wav2clip`, on `device` and in eval mode."""
        return self.frozen[name].to(device).eval()

    def encode(self, wave: torch.Tensor) -> list[torch.Tensor]:
        """The frozen VQ-VAE's codes of the window: [codes_up [B, T / 8], codes_low [B, T / 32]], in float32
        under mixed precision too (a bf16 encoder would pick other nearest codes than the one they came from)."""
        with torch.autocast(wave.device.type, enabled=False):
            return self.frozen_model("vqvae", wave.device).encode(wave.float())

    def audio_embedding(self, wave: torch.Tensor) -> torch.Tensor:
        """w: the frozen Wav2CLIP embedding [B, 512] of the target audio (float32, no gradient)."""
        with torch.no_grad(), torch.autocast(wave.device.type, enabled=False):
            return self.frozen_model("wav2clip", wave.device)(wave.float())

    def losses(self, batch: dict, null_prob: float = 0.0) -> dict[str, torch.Tensor]:
        """{"loss", "ce_bits"} and, with the frame attention, {"loss_w", "loss_f"} (eq. 6), plus "frames"."""
        wave, clip = batch["wave"], batch["clip_feats"]
        codes_up, codes_low = self.encode(wave)
        if self.is_low:
            logits, frames = self.prior(codes_low, clip, batch["offset"], batch["total_length"], null_prob)
            target = codes_low
        else:
            logits, frames, target = self.prior(codes_up, codes_low, clip), clip, codes_up
        ce_nats = F.cross_entropy(logits.flatten(0, 1).float(), target.flatten())
        ce_bits = ce_nats / math.log(2)
        out = {"ce_bits": ce_bits, "loss": ce_bits if self.hparams.ce_units == "bits" else ce_nats}
        if self.is_low and self.prior.frame_attention is not None and "wav2clip" in self.frozen:
            w = self.audio_embedding(wave)
            aux = auxiliary_losses(w, clip, frames, self.loss_weights)
            out.update(loss=out["loss"] + aux["aux"], loss_w=aux["loss_w"], loss_f=aux["loss_f"], w=w)
        out["frames"] = frames
        return out

    # --- training --------------------------------------------------------------------------------------
    def configure_optimizers(self):
        hp = self.hparams
        optimizer = torch.optim.AdamW(
            self.prior.parameters(), lr=hp.lr, betas=tuple(hp.betas), eps=hp.eps, weight_decay=hp.weight_decay
        )
        warmup = max(hp.warmup_steps, 1)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, step / warmup))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        out = self.losses(batch, null_prob=self.hparams.cfg_prob if self.is_low else 0.0)
        batch_size = len(batch["wave"])
        self.log("train/loss", out["loss"], prog_bar=True, batch_size=batch_size)
        self.log("train/ce_bits", out["ce_bits"], batch_size=batch_size)
        for name in ("loss_w", "loss_f"):
            if name in out:
                self.log(f"train/{name}", out[name], batch_size=batch_size)
        return out["loss"]

    # --- evaluation ------------------------------------------------------------------------------------
    def _evaluate(self, batch: dict, stage: str) -> None:
        out = self.losses(batch)  # the conditional branch: no condition dropped
        values = {name: out[name] for name in self.eval_means.names if name in out}
        if "tcs" in self.eval_means.names:
            w = out["w"] if "w" in out else self.audio_embedding(batch["wave"])
            values["tcs"] = target_clip_score(w, out["frames"]).mean()
        self.eval_means.log(self, stage, values, len(batch["wave"]))

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    # --- examples ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def examples(self, batch: dict) -> Examples:
        """Per window: the sound this prior samples (Im2Wav's sampling settings, a fixed seed), the VQ-VAE's
        reconstruction of the real window at the prior's level, and the real window (module docstring)."""
        wave, clip = batch["wave"], batch["clip_feats"]
        codes_up, codes_low = self.encode(wave)
        settings, generator = SamplingSettings(), torch.Generator(wave.device).manual_seed(0)
        if self.is_low:
            level, real_codes = 1, codes_low
            codes = self.prior.sample(
                clip,
                settings.tokens,
                guidance_scale=settings.guidance_scale,
                generators=generator,
                offset=batch["offset"],
                total_length=batch["total_length"],
            )
        else:
            level, real_codes = 0, codes_up
            codes = self.prior.sample(codes_low, clip, settings.tokens, generators=generator)
        vqvae = self.frozen_model("vqvae", wave.device)
        sounds = {
            "generated": vqvae.decode(codes, level).clamp(-1, 1),
            "reconstruction": vqvae.decode(real_codes, level).clamp(-1, 1),
            "real": wave,
        }
        pictures = side_by_side(*(sound_pictures(sound, SAMPLE_RATE) for sound in sounds.values()))
        return Examples({"generated_reconstruction_real": pictures}, sounds, SAMPLE_RATE)
