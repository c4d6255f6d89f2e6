"""The toy text-to-image latent diffusion stage: the toy Stable Diffusion's UNet trained on the toy frames.

AudioToken (arXiv:2305.13050) adapts a frozen Stable Diffusion; no SD weights can be fetched here, so the toy
pipeline trains a small SD of the same diffusers classes, as SD itself was trained (latent diffusion,
arXiv:2112.10752, sec. 3.3 and eq. 2): a `UNet2DConditionModel` predicts the noise added to the frozen VAE's
latents (x the scaling factor) at a uniform timestep of SD 1.4's DDPM schedule, conditioned by cross-attention on
the frozen text encoder's `last_hidden_state` of the caption "a photo of a <label>" (padded to 77 with
`<|endoftext|>`); 10 % of the captions are replaced by the empty caption so that classifier-free guidance works,
as SD's training drops its text conditioning. The text encoder is the toy CLIP's text tower (arXiv:2103.00020),
as SD 1.x's is CLIP ViT-L/14's.

Prior stages come in by path: `clip_root` (the toy CLIP stage's `<run>/clip/`) and `vae_root` (the toy VAE
stage's `<run>/vae/`). The latent scaling factor is 1 / std of the training set's latents, measured once at the
start of training (SD 1.x's 0.18215 was chosen the same way, for unit-variance latents) and kept in the
checkpoint. On every checkpoint save the whole model is exported in the diffusers SD 1.x layout to
`<run>/stable_diffusion/` (atomically), which the AudioToken stage loads with
`--model.init_args.sd_root=<that folder>` exactly as a real SD 1.x folder. Validation logs the noise loss at fixed
timesteps and noise, and the toy CLIP's zero-shot accuracy on images generated from each class caption
(`val/generated_clip_acc`; chance 1 / number of classes).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from lightning.pytorch import LightningModule

from projects.audiotoken.exports import ExportsOnCheckpoint
from projects.audiotoken.models.stable_diffusion import (
    StableDiffusionParts,
    inference_pipeline,
    save_stable_diffusion,
    toy_stable_diffusion,
)
from projects.audiotoken.models.toy_clip import (
    class_prompts,
    load_clip,
    text_encoder_from_clip,
    zero_shot_logits,
)
from shared.data.toy import TOY_CLASSES
from shared.runs import UserError


def load_vae(folder: str | Path) -> AutoencoderKL:
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise UserError(
            f"{folder}: not an AutoencoderKL folder (no config.json); train the toy VAE stage first"
        )
    return AutoencoderKL.from_pretrained(folder).requires_grad_(False).eval()


def noise_loss(parts: StableDiffusionParts, latents: torch.Tensor, context: torch.Tensor, generator=None):
    """LDM's objective (arXiv:2112.10752, eq. 2): MSE between the UNet's prediction and the scheduler's target
    (the noise for epsilon prediction, the velocity for v-prediction) at a uniform timestep."""
    scheduler = parts.noise_scheduler
    noise = torch.randn(latents.shape, generator=generator, device=latents.device)
    steps = scheduler.config.num_train_timesteps
    t = torch.randint(0, steps, (len(latents),), generator=generator, device=latents.device)
    noisy = scheduler.add_noise(latents, noise, t)
    target = (
        noise if scheduler.config.prediction_type == "epsilon" else scheduler.get_velocity(latents, noise, t)
    )
    return F.mse_loss(parts.unet(noisy, t, context).sample, target)


class ToyLDMTraining(ExportsOnCheckpoint, LightningModule):
    """Batch keys used: `image` [B, 3, H, W] float32 in [-1, 1], `caption` list[str].

    `class_names` (default: the toy dataset's labels) only feed the validation's generated-image check.
    """

    export_name = "stable_diffusion"

    def __init__(
        self,
        clip_root: str,
        vae_root: str,
        class_names: list[str] | None = None,
        prompt_template: str = "a photo of a {}",
        empty_caption_prob: float = 0.1,
        lr: float = 1e-3,
        seed: int = 0,
        val_images_per_class: int = 2,
        val_steps: int = 50,
        guidance_scale: float = 7.5,
        export_dir: str | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.class_names = list(class_names) if class_names else [c.label for c in TOY_CLASSES]
        self.clip = load_clip(clip_root)
        self.parts = toy_stable_diffusion(text_encoder=text_encoder_from_clip(self.clip), seed=seed)
        self.parts.vae = load_vae(vae_root)
        self.parts.unet.requires_grad_(True).train()
        # registered so that Lightning moves, saves and restores them; the frozen ones stay in eval mode
        self.unet, self.vae, self.text_encoder = self.parts.unet, self.parts.vae, self.parts.text_encoder
        self.register_buffer("scaling_factor", torch.tensor(float("nan")))

    def train(self, mode: bool = True):
        super().train(mode)
        for frozen in (self.clip, self.vae, self.text_encoder):
            frozen.eval()
        return self

    @torch.no_grad()
    def encode_text(self, captions: list[str]) -> torch.Tensor:
        ids = self.parts.tokenizer(
            captions, padding="max_length", max_length=77, truncation=True, return_tensors="pt"
        ).input_ids
        return self.text_encoder(ids.to(self.device)).last_hidden_state

    @torch.no_grad()
    def encode_image(self, image: torch.Tensor, generator=None) -> torch.Tensor:
        latents = self.vae.encode(image).latent_dist.sample(generator)
        return latents * self.scaling_factor

    @torch.no_grad()
    def measure_scaling_factor(self) -> float:
        """1 / std of the VAE's latent samples over the training set (one pass), from the posteriors' moments
        (E z^2 = mu^2 + sigma^2), so the figure does not depend on the sampling noise."""
        first, second, count = 0.0, 0.0, 0
        for batch in self._train_batches():
            posterior = self.vae.encode(batch["image"].to(self.device)).latent_dist
            first += posterior.mean.double().sum().item()
            second += (posterior.mean.double() ** 2 + posterior.var.double()).sum().item()
            count += posterior.mean.numel()
        return 1.0 / math.sqrt(second / count - (first / count) ** 2)

    def _train_batches(self):
        return (
            self.trainer.datamodule.train_dataloader()
            if self.trainer.datamodule
            else self.trainer.train_dataloader
        )

    def on_train_start(self) -> None:  # the train dataloader exists from here on
        if torch.isnan(self.scaling_factor):
            self.scaling_factor.fill_(self.measure_scaling_factor())
        self.parts.scaling_factor = self.scaling_factor.item()

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        captions = [
            "" if torch.rand(()) < self.hparams.empty_caption_prob else caption
            for caption in batch["caption"]
        ]
        loss = noise_loss(self.parts, self.encode_image(batch["image"]), self.encode_text(captions))
        self.log("train/loss", loss, prog_bar=True, batch_size=len(captions))
        return loss

    def _evaluate(self, batch: dict, batch_idx: int, stage: str) -> None:
        generator = torch.Generator(self.device).manual_seed(batch_idx)  # the same noise at every validation
        latents = self.encode_image(batch["image"], generator)
        loss = noise_loss(self.parts, latents, self.encode_text(batch["caption"]), generator)
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=len(latents), sync_dist=True)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "test")

    @torch.no_grad()
    def generated_accuracy(self, per_class: int, steps: int, guidance_scale: float, seed: int = 0) -> float:
        """The toy CLIP's zero-shot accuracy on images generated from every class caption (PNDM, CFG)."""
        prompts = class_prompts(self.class_names, self.hparams.prompt_template)
        pipeline = inference_pipeline(self.parts)
        pipeline.set_progress_bar_config(disable=True)
        images = pipeline(
            [p for p in prompts for _ in range(per_class)],
            num_inference_steps=steps,
            guidance_scale=guidance_scale,
            generator=torch.Generator(self.device).manual_seed(seed),
            output_type="pt",
        ).images
        logits = zero_shot_logits(self.clip, self.parts.tokenizer, images * 2 - 1, prompts)
        targets = torch.arange(len(prompts), device=logits.device).repeat_interleave(per_class)
        return (logits.argmax(dim=1) == targets).float().mean().item()

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking or self.hparams.val_images_per_class == 0:
            return
        was_training = self.unet.training
        self.unet.eval()
        accuracy = self.generated_accuracy(
            self.hparams.val_images_per_class, self.hparams.val_steps, self.hparams.guidance_scale
        )
        self.unet.train(was_training)
        self.log("val/generated_clip_acc", accuracy, prog_bar=True, rank_zero_only=True)
        self.log("val/generated_clip_chance", 1.0 / len(self.class_names), rank_zero_only=True)

    def write_export(self, folder: Path) -> None:
        self.parts.scaling_factor = self.scaling_factor.item()
        save_stable_diffusion(self.parts, folder)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.unet.parameters(), lr=self.hparams.lr, weight_decay=1e-2)
