"""The toy BEATs stage: a BEATs-architecture encoder trained as a classifier of the toy clips.

AudioToken (arXiv:2305.13050, sec. 2.1) uses the released BEATs fine-tuned on AudioSet-2M with its predictor
(`BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt`, `microsoft/unilm` `beats/`). No weights can be fetched
here, so the toy pipeline trains the same architecture (`shared.encoders.beats.BEATs`, the official front end
and layers, at toy width) with the fine-tuned releases' head: a linear `predictor` on every token of the last
block, averaged over tokens (BEATs' fine-tuning, arXiv:2212.09058 sec. 3.3). The toy classes are single-label,
so the loss is cross-entropy on the averaged logits where AudioSet's multi-label fine-tuning uses a sigmoid;
AdamW.

Whenever a checkpoint is saved, the encoder is also written in the official layout (`save_official`) as
`<run>/beats.pt`, so later stages load it through the official loading path (`load_official_beats` or
`shared.encoders.load_beats(<run>)`); it holds the weights of the latest checkpoint saved (at the end of
training, the final ones).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torchmetrics.classification import MulticlassAccuracy

from shared.encoders.beats import FILE_IN_RUN, BEATs, BEATsConfig, save_official


class BEATsClassifierTraining(LightningModule):
    """Batch keys used: `wave` [B, T] float32 at 16 kHz in [-1, 1], `label` [B] int64 in [0, cfg.predictor_class).

    `cfg` is the encoder's (with `predictor_class` the number of classes); the module builds `BEATs(cfg,
    predictor=True)` as `self.model`.
    """

    def __init__(
        self,
        cfg: BEATsConfig | dict,
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        betas: tuple[float, float] = (0.9, 0.999),
    ):
        super().__init__()
        if isinstance(cfg, dict):
            cfg = BEATsConfig.from_dict(cfg)
        cfg = dataclasses.replace(cfg, finetuned_model=True)
        self.save_hyperparameters(ignore=["cfg"])
        self.hparams["cfg"] = dataclasses.asdict(cfg)  # plain values: checkpoints load with weights_only
        self.model = BEATs(cfg, predictor=True)
        n_classes = cfg.predictor_class
        self.accuracy = torch.nn.ModuleDict(
            {stage: MulticlassAccuracy(n_classes, average="micro") for stage in ("val", "test")}
        )

    def _loss(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model.logits(batch["wave"])
        return F.cross_entropy(logits, batch["label"]), logits

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss, _ = self._loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["label"]))
        return loss

    def _evaluate(self, batch: dict, stage: str) -> None:
        loss, logits = self._loss(batch)
        accuracy = self.accuracy[stage]
        accuracy.update(logits, batch["label"])
        self.log(f"{stage}/loss", loss, batch_size=len(batch["label"]))
        self.log(f"{stage}/acc", accuracy, prog_bar=stage == "val", batch_size=len(batch["label"]))

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.trainer.is_global_zero:
            save_official(self.model, Path(self.trainer.default_root_dir) / FILE_IN_RUN)

    def configure_optimizers(self):
        return torch.optim.AdamW(
            self.parameters(),
            lr=self.hparams.lr,
            weight_decay=self.hparams.weight_decay,
            betas=self.hparams.betas,
        )
