"""The toy CLIP stage: a small transformers `CLIPModel` (arXiv:2103.00020) trained on the toy frames.

AudioToken (arXiv:2305.13050) relies on CLIP ViT-L/14 as Stable Diffusion 1.x's text encoder and, in its metrics
(sec. 2.2), as the image classifier and embedder. No weights can be fetched here, so the toy pipeline trains this
stand-in on the toy frames with captions "a photo of a <label>"; the toy SD's text encoder is its text tower.

Loss: class-prompt cross-entropy, i.e. CLIP's symmetric contrastive loss (sec. 2.3) with the text side being the
captions of all classes rather than of the batch. With 6 captions a batch of 8 always holds the same caption
several times, so the in-batch InfoNCE would push an image away from its own (duplicated) caption; comparing each
image with every class caption once has no such false negatives, trains the text tower on every caption at every
step, and is exactly the zero-shot classifier (sec. 3.1.2) the metrics use. The logit scale is CLIP's learnable
temperature (init 1 / 0.07).

On every checkpoint save the model is exported with `save_pretrained` to `<run>/clip/` (atomically), which
later stages load with `projects.audiotoken.models.toy_clip.load_clip`. Validation logs `val/zero_shot_acc`
(top-1 over the class captions; chance 1 / number of classes).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule

from projects.audiotoken.exports import ExportsOnCheckpoint
from projects.audiotoken.models.toy_clip import class_prompts, clip_pixel_values, toy_clip_model
from shared.data.toy import TOY_CLASSES
from shared.encoders.clip_tokenizer import clip_tokenizer


def class_targets(label_text: list[str], class_names: list[str]) -> torch.Tensor:
    """Each batch label's index in `class_names` (the batch's own `label` ids need not share this order)."""
    unknown = sorted(set(label_text) - set(class_names))
    if unknown:
        raise ValueError(f"labels {unknown} are not among the configured class_names {class_names}")
    return torch.tensor([class_names.index(text) for text in label_text])


class ToyCLIPTraining(ExportsOnCheckpoint, LightningModule):
    """Batch keys used: `image` [B, 3, H, W] float32 in [-1, 1], `label_text` list[str] (the class label).

    `class_names` defaults to the toy dataset's labels; `export_dir` defaults to `<run>/clip`.
    """

    export_name = "clip"

    def __init__(
        self,
        class_names: list[str] | None = None,
        prompt_template: str = "a photo of a {}",
        layers: int = 2,
        lr: float = 1e-3,
        weight_decay: float = 0.1,
        seed: int = 0,
        export_dir: str | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.class_names = list(class_names) if class_names else [c.label for c in TOY_CLASSES]
        self.model = toy_clip_model(seed=seed, layers=layers)
        ids = clip_tokenizer()(
            class_prompts(self.class_names, prompt_template), padding="max_length", max_length=77
        ).input_ids
        self.register_buffer("prompt_ids", torch.tensor(ids), persistent=False)

    def logits(self, image: torch.Tensor) -> torch.Tensor:
        """[B, C] scaled cosine similarities of the images with every class caption."""
        pixels = clip_pixel_values(image, self.model.config.vision_config.image_size)
        return self.model(input_ids=self.prompt_ids, pixel_values=pixels).logits_per_image

    def _step(self, batch: dict, stage: str) -> torch.Tensor:
        logits = self.logits(batch["image"])
        targets = class_targets(batch["label_text"], self.class_names).to(logits.device)
        loss = F.cross_entropy(logits, targets)
        accuracy = (logits.argmax(dim=1) == targets).float().mean()
        sync = stage != "train"
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=len(targets), sync_dist=sync)
        self.log(f"{stage}/zero_shot_acc", accuracy, prog_bar=sync, batch_size=len(targets), sync_dist=sync)
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "test")

    def on_validation_epoch_end(self) -> None:
        self.log("val/zero_shot_chance", 1.0 / len(self.class_names))

    def write_export(self, folder: Path) -> None:
        self.model.save_pretrained(folder)

    def configure_optimizers(self):
        return torch.optim.AdamW(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )
