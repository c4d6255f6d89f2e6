"""The toy image VQGAN stage: a small taming-layout VQGAN (`models.vqgan.vqgan_model`) trained on video frames,
the stand-in for taming's `vqgan_imagenet_f16_16384` that WavBriVL generates with (arXiv:2303.04585, sec. 5).

loss = |x - x_rec| (taming's pixel term, `taming/modules/losses/vqperceptual.py`) + the quantiser's loss
mean((z - sg(z_q))^2) + 0.25 mean((sg(z) - z_q)^2), on images in [-1, 1] as taming's VQModel takes them;
Adam with taming's betas (0.5, 0.9). The quantiser's loss is taming's `VectorQuantizer2` with its default
legacy=True (`taming/modules/vqvae/quantize.py`), which `vqgan_imagenet_f16_16384` was trained with and
diffusers' `VectorQuantizer` keeps: the commitment term (pulling the encoder to its codes) has weight 1 and
the codebook term 0.25, the reverse of the VQ-VAE paper's beta.

What we leave out, and why: taming adds an LPIPS perceptual term (it needs VGG-16 weights that cannot be
fetched here) and a patch-GAN loss (its ImageNet config starts the discriminator after 250,001 steps, far
beyond a toy run of a few hundred). Without them the toy reconstructions are blurrier than a VQGAN's; the
generation loop only needs a decoder whose codes span the toy frames' colours and shapes.

`pixel_loss: mse` (toy only; default `l1`, taming's) trades the L1 term for a squared error: on the toy frames,
mostly a uniform background around one coloured shape, L1's gradient pulls every pixel towards its median,
the background, and a toy VQGAN trained with it kept drawing background where the shapes are for the first
few hundred steps; the squared error pulls towards the mean, which has the shape's colour from the start.

TensorBoard (`shared.callbacks.ExampleLogger` in the config): at validation, `examples` shows a few validation
frames, each beside its reconstruction.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import VQModel
from lightning.pytorch import LightningModule

from projects.wavbrivl.models.vqgan import load_taming_vqgan, vqgan_model
from shared.callbacks import Examples, side_by_side
from shared.runs import UserError, run_checkpoint

SIZES = (
    "channels",
    "layers_per_block",
    "attention_levels",
    "latent_channels",
    "n_codes",
    "code_dim",
    "norm_groups",
)

PIXEL_LOSSES = {"l1": F.l1_loss, "mse": F.mse_loss}


class ImageVQGANTraining(LightningModule):
    """Batch key used: `image` [B, 3, H, W] float in [0, 1] (H and W multiples of the downsampling factor)."""

    def __init__(
        self,
        channels: tuple[int, ...] = (32, 64, 64, 128),
        layers_per_block: int = 1,
        attention_levels: tuple[int, ...] = (),
        latent_channels: int = 64,
        n_codes: int = 256,
        code_dim: int = 64,
        norm_groups: int = 8,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.5, 0.9),
        pixel_loss: str = "l1",
    ):
        super().__init__()
        if pixel_loss not in PIXEL_LOSSES:
            raise ValueError(f"pixel_loss={pixel_loss!r}: expected one of {sorted(PIXEL_LOSSES)}")
        self.save_hyperparameters()
        self.vqgan = vqgan_model(**{name: self.hparams[name] for name in SIZES})

    def configure_optimizers(self):
        return torch.optim.Adam(self.vqgan.parameters(), lr=self.hparams.lr, betas=tuple(self.hparams.betas))

    def losses(self, image: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        x = image * 2 - 1
        out = self.vqgan(x)
        rec = PIXEL_LOSSES[self.hparams.pixel_loss](out.sample, x)
        codebook = out.commit_loss.mean()
        return {"loss": rec + codebook, "rec_loss": rec, "codebook_loss": codebook}, out.sample

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        losses, _ = self.losses(batch["image"])
        self.log("train/loss", losses["loss"].detach(), prog_bar=True)
        self.log("train/rec_loss", losses["rec_loss"].detach())
        return losses["loss"]

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        losses, _ = self.losses(batch["image"])
        size = len(batch["image"])
        self.log_dict({f"val/{name}": value for name, value in losses.items()}, batch_size=size)

    @torch.no_grad()
    def examples(self, batch: dict) -> Examples:
        """Each frame beside its reconstruction, RGB in [0, 1], for `shared.callbacks.ExampleLogger`."""
        image = batch["image"].float()
        reconstruction = ((self.vqgan(image * 2 - 1).sample + 1) / 2).clamp(0, 1)
        return Examples(images={"real_reconstruction": side_by_side(image, reconstruction)})


def load_vqgan(path: str | Path) -> VQModel:
    """A VQGAN in eval mode from a toy VQGAN run folder or checkpoint (this stage's), or an official
    taming-transformers checkpoint (`vqgan_imagenet_f16_16384`'s `last.ckpt`)."""
    path = Path(path)
    ckpt_path = run_checkpoint(path) if path.is_dir() else path
    if not ckpt_path.is_file():
        raise UserError(f"{ckpt_path}: no such file")
    try:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as error:
        raise UserError(
            f"{ckpt_path}: not a readable torch checkpoint ({str(error).splitlines()[0]})"
        ) from error
    hparams = ckpt.get("hyper_parameters", {}) if isinstance(ckpt, dict) else {}
    if all(name in hparams for name in SIZES):
        model = vqgan_model(**{name: hparams[name] for name in SIZES})
        prefix = "vqgan."
        model.load_state_dict(
            {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
        )
        return model.requires_grad_(False).eval()
    del ckpt  # taming's file is about 1 GB: not two copies in memory while it is read again
    return load_taming_vqgan(ckpt_path).requires_grad_(False)
