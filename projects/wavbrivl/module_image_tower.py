"""The toy image tower: BriVL's image-tower architecture at toy size, trained on toy frames with their class as
the target, then frozen as the image side WavBriVL's audio tower learns to match (arXiv:2303.04585, sec. 3).

BriVL trained its image tower against its text tower (MoCo-style cross-modal contrast, arXiv:2103.06561,
sec. 3); the toy set has no captions and no BriVL weights can be fetched here, so the toy tower learns what the
toy frames carry instead, their class: a linear head on the unit-norm joint embedding, cross-entropy. The
head's logits are scaled by 1 / temperature (BriVL's 0.07): a unit-norm embedding bounds a linear head's
logits by its weight norm, and the scale lets the softmax saturate from the first steps, as the contrastive
logits over the same embedding do. What the audio tower later needs is an embedding in which the classes
are apart, which this gives.

Validation logs the loss, the accuracy (`val/acc`, chance 1 / n_classes: `val/chance`); `load_image_tower`
loads a checkpoint this writes as a frozen `ImageTower` that also classifies (`classify(images) -> logits`,
the generation's agreement metric).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from projects.wavbrivl.models.image_tower import BriVLImageTower, FrozenImageTower
from shared.metrics import StageMeans
from shared.runs import UserError, run_checkpoint


class ScaledLinearHead(nn.Linear):
    """A linear classifier on a unit-norm embedding, logits scaled by 1 / `temperature` (module docstring)."""

    def __init__(self, embed_dim: int, n_classes: int, temperature: float):
        super().__init__(embed_dim, n_classes)
        self.temperature = float(temperature)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return super().forward(embedding) / self.temperature


class ImageTowerClassification(LightningModule):
    """Batch keys used: `image` [B, 3, H, W] float in [0, 1], `label` [B] int64."""

    def __init__(
        self,
        tower: BriVLImageTower,
        n_classes: int = 6,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        temperature: float = 0.07,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["tower"])
        self.hparams["tower_config"] = tower.config  # `load_image_tower` rebuilds the tower from this
        self.tower = tower
        self.head = ScaledLinearHead(tower.embed_dim, n_classes, temperature)
        self.accuracy = nn.ModuleDict(
            {s: MulticlassAccuracy(n_classes, average="micro") for s in ("val", "test")}
        )
        self.eval_means = StageMeans(["loss"])

    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule
        if stage == "fit" and datamodule.n_classes != self.hparams.n_classes:
            raise ValueError(
                f"{datamodule.dataset} has {datamodule.n_classes} classes but the head has "
                f"{self.hparams.n_classes}; set model.init_args.n_classes"
            )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.tower(images))

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        logits = self(batch["image"])
        loss = F.cross_entropy(logits, batch["label"])
        size = len(batch["label"])
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        self.log("train/acc", (logits.argmax(-1) == batch["label"]).float().mean(), batch_size=size)
        return loss

    def _evaluate(self, batch: dict, stage: str) -> None:
        logits = self(batch["image"])
        size = len(logits)
        self.eval_means.log(self, stage, {"loss": F.cross_entropy(logits, batch["label"])}, size)
        self.accuracy[stage].update(logits, batch["label"])
        self.log(f"{stage}/acc", self.accuracy[stage], prog_bar=stage == "val", batch_size=size)
        self.log(f"{stage}/chance", 1.0 / self.hparams.n_classes, batch_size=size)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def configure_optimizers(self):
        return torch.optim.AdamW(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )


def load_image_tower(path: str | Path) -> FrozenImageTower:
    """The image tower of a toy image-tower run (its folder: best.ckpt, else last.ckpt) or checkpoint file,
    frozen, with its class head (`classify`)."""
    path = Path(path)
    checkpoint_path = run_checkpoint(path) if path.is_dir() else path
    if not checkpoint_path.is_file():
        raise UserError(f"{checkpoint_path}: no such run folder or checkpoint")
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
    hparams = checkpoint.get("hyper_parameters", {})
    if "tower_config" not in hparams:
        raise UserError(f"{checkpoint_path}: no tower_config in its hyper-parameters; not an image-tower run")
    tower = BriVLImageTower(**hparams["tower_config"])
    head = ScaledLinearHead(tower.embed_dim, hparams["n_classes"], hparams["temperature"])
    state = checkpoint["state_dict"]
    for prefix, module in (("tower.", tower), ("head.", head)):
        module.load_state_dict({k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)})
    return FrozenImageTower(tower, head)
