"""Validation of an audio tower trained into an image embedding space: retrieval over the whole split.

Shared by the LightningModules that train audio embeddings against frozen image embeddings (Wav2CLIP's
training in `shared.wav2clip_training`, WavBriVL's audio tower in `projects.wavbrivl.module_audio_tower`):
each validation or test batch adds its audio embeddings, image embeddings and labels to per-stage `CatMetric`s
(gathered across processes), and the epoch's end logs audio -> image recall@1 of the clip's own image
(`<stage>/r1`, chance 1 / N) and, where the batches have labels, of an image of the same class
(`<stage>/class_r1`, with its chance level). Where the batches also give each item's `index` in the split's
dataset, the gathered split (embeddings, labels, indices) is kept in `retrieval_split[stage]` until the next
epoch's end, so that a module can show what its audio retrieves (WavBriVL's `examples`).
"""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics import CatMetric

from shared.contrastive import class_retrieval, retrieval_recall

STAGES = ("val", "test")
KINDS = ("audio", "image", "label", "index")


class RetrievalValidation:
    """Mixin for a LightningModule: call `init_retrieval()` in `__init__` and implement `_evaluate(batch,
    stage)`, which logs the stage's losses and calls `update_retrieval`."""

    def init_retrieval(self) -> None:
        self.embeddings = nn.ModuleDict(
            {f"{stage}_{kind}": CatMetric() for stage in STAGES for kind in KINDS}
        )
        self.retrieval_split: dict[str, dict[str, torch.Tensor]] = {}

    def update_retrieval(
        self,
        stage: str,
        audio: torch.Tensor,
        image: torch.Tensor,
        label: torch.Tensor | None,
        index: torch.Tensor | None = None,
    ) -> None:
        self.embeddings[f"{stage}_audio"].update(audio)
        self.embeddings[f"{stage}_image"].update(image)
        if label is not None:
            self.embeddings[f"{stage}_label"].update(label)
        if index is not None:
            self.embeddings[f"{stage}_index"].update(index)

    def _log_retrieval(self, stage: str) -> None:
        metrics = {kind: self.embeddings[f"{stage}_{kind}"] for kind in KINDS}
        if not metrics["audio"].update_called:
            return
        split = {kind: metric.compute() for kind, metric in metrics.items() if metric.update_called}
        audio_all, image_all = split["audio"], split["image"]
        self.log(f"{stage}/r1", retrieval_recall(audio_all, image_all, k=1), prog_bar=stage == "val")
        self.log(f"{stage}/r1_chance", 1.0 / len(audio_all))
        if "label" in split:
            class_r1, chance = class_retrieval(audio_all, image_all, split["label"].long())
            self.log(f"{stage}/class_r1", class_r1)
            self.log(f"{stage}/class_r1_chance", chance.float())
        if "index" in split:  # CatMetric keeps floats; labels and indices are whole numbers
            self.retrieval_split[stage] = {
                kind: values.long() if kind in ("label", "index") else values
                for kind, values in split.items()
            }
        for metric in metrics.values():
            metric.reset()

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_validation_epoch_end(self) -> None:
        self._log_retrieval("val")

    def on_test_epoch_end(self) -> None:
        self._log_retrieval("test")
