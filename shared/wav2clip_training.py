"""Training Wav2CLIP (arXiv:2110.11499): the frozen audio target of GRAVO's auxiliary losses and CS metric
(GRAVO, Interspeech 2023) and the audio side of AudioToken's AIS metric (arXiv:2305.13050, sec. 2.2).

GRAVO uses the released Wav2CLIP; this stage trains one at toy scale (and, with the paper config, at the
released size) with the official recipe (`descriptinc/lyrebird-wav2clip`, `wav2clip/pre_training/model.py`,
`ResNetDistillation` with loss `clip_loss_x`, the variant whose `audio_transform` head the released model
carries; `conf/distillation_args.yaml`):

- target: the mean over frames of the clip's per-frame CLIP image embeddings (frozen, precomputed, the
  batch's `clip_feats`), or, for a batch without them, the embedding of its one frame `image` computed on the
  fly by a frozen CLIP (`image_encoder_root`, a transformers `CLIPModel` folder read by
  `shared.encoders.CLIPImageText`, centre-cropped unless `image_encoder_crop` is False): AudioToken's toy Wav2CLIP learns the toy CLIP's image space from the
  frame of each training window;
- cross-projection: `image_transform` (an MLP like `audio_transform`) maps the CLIP mean into the encoder's
  space, `audio_transform` maps the encoder's output into CLIP's space; the loss is the mean of two symmetric
  InfoNCE terms, InfoNCE(encoder(a), image_transform(v)) and InfoNCE(audio_transform(encoder(a)), v), each
  with its own learnable temperature (init 1 / 0.07);
- Adam lr 1e-3; ReduceLROnPlateau on the validation loss (factor 0.1, patience 5, min lr 1e-6); the paper
  config adds early stopping (patience 10).

Validation reports the loss and audio -> image retrieval over the whole split (Wav2CLIP's output against the
CLIP means): recall@1 of the clip's own frames (`r1`, chance 1 / N) and, when batches carry labels, the share
whose nearest frames are of the same class (`class_r1`, chance sum_c (n_c / N)^2). `shared.encoders.load_wav2clip` loads the
checkpoints this writes (the `model.` tensors; the image head and temperatures are training-only).
"""

from __future__ import annotations

import torch
from lightning.pytorch import LightningModule

from shared.contrastive import SymmetricInfoNCE
from shared.encoders.clip_image_text import load_clip_image_text
from shared.encoders.wav2clip import ProjectionMLP, Wav2CLIP
from shared.metrics import StageMeans
from shared.retrieval_validation import RetrievalValidation


class Wav2CLIPTraining(RetrievalValidation, LightningModule):
    """Batch keys used: `wave` [B, T] float32 at 16 kHz, `clip_feats` [B, F, D] per-frame CLIP embeddings
    (D = the model's `embed_dim`) or, with `image_encoder_root`, `image` [B, 3, H, W] in [-1, 1], `label` [B]
    int64 if present (evaluation only). The frozen image encoder's weights stay out of the checkpoints."""

    def __init__(
        self,
        model: Wav2CLIP,
        lr: float = 1e-3,
        lr_factor: float = 0.1,
        lr_patience: int = 5,
        min_lr: float = 1e-6,
        temperature: float = 0.07,
        dropout: float = 0.1,
        image_encoder_root: str | None = None,
        image_encoder_crop: bool = True,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["model"])
        self.model = model
        clip_dim = model.embed_dim
        self.image_encoder = (
            None
            if image_encoder_root is None
            else load_clip_image_text(image_encoder_root, image_encoder_crop)
        )
        if self.image_encoder is not None and self.image_encoder.embed_dim != clip_dim:
            raise ValueError(
                f"{image_encoder_root}: its CLIP embeddings are {self.image_encoder.embed_dim}-d, "
                f"Wav2CLIP's embed_dim is {clip_dim}"
            )
        self.image_transform = ProjectionMLP(clip_dim, clip_dim, model.audio_encoder.out_dim, dropout)
        self.loss_audio_space = SymmetricInfoNCE(temperature)
        self.loss_clip_space = SymmetricInfoNCE(temperature)
        self.eval_means = StageMeans(["loss"])
        self.init_retrieval()

    def loss(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(the cross-projection loss, Wav2CLIP's output [B, D], the CLIP means [B, D])."""
        clip_feats = self.clip_feats(batch)
        if clip_feats.dim() != 3 or clip_feats.shape[-1] != self.model.embed_dim:
            raise ValueError(
                f"expected clip_feats [B, F, {self.model.embed_dim}], got {tuple(clip_feats.shape)}"
            )
        image = clip_feats.float().mean(dim=1)
        encoded = self.model.audio_encoder(batch["wave"].float())
        audio = self.model.audio_transform(encoded)
        loss = (
            self.loss_audio_space(encoded, self.image_transform(image)) + self.loss_clip_space(audio, image)
        ) / 2
        return loss, audio, image

    def clip_feats(self, batch: dict) -> torch.Tensor:
        """The batch's `clip_feats`, else its `image` embedded by the frozen image encoder as one frame."""
        if "clip_feats" in batch:
            return batch["clip_feats"]
        if self.image_encoder is None or "image" not in batch:
            raise ValueError(
                "a batch needs clip_feats [B, F, D], or image [B, 3, H, W] with an image_encoder_root"
            )
        return self.image_encoder.encode_images(batch["image"])[:, None]

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith("image_encoder.")]:
            del state[key]

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if self.image_encoder is not None:  # the frozen encoder's own weights, left out when saving
            image_encoder = {f"image_encoder.{k}": v for k, v in self.image_encoder.state_dict().items()}
            checkpoint["state_dict"] = checkpoint["state_dict"] | image_encoder

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss, _, _ = self.loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["wave"]))
        self.log("train/logit_scale", self.loss_clip_space.logit_scale.exp(), batch_size=len(batch["wave"]))
        return loss

    def _evaluate(self, batch: dict, stage: str) -> None:
        loss, audio, image = self.loss(batch)
        self.eval_means.log(self, stage, {"loss": loss}, len(audio))
        self.update_retrieval(stage, audio, image, batch.get("label"))

    def configure_optimizers(self):
        trained = [p for p in self.parameters() if p.requires_grad]  # not the frozen image encoder
        optimizer = torch.optim.Adam(trained, lr=self.hparams.lr)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode="min",
            factor=self.hparams.lr_factor,
            patience=self.hparams.lr_patience,
            min_lr=self.hparams.min_lr,
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val/loss"}}
