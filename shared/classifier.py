"""Training a spectrogram classifier (SpecVQGAN's VGGish-ish and Melception; TiVA trains its toy Melception with it): VGGish-ish for LPAPS (SpecVQGAN paper sec. 6.1.3) and Melception for
the evaluation metrics (sec. 6.1.6, "similar to VGGish-ish").

Cross-entropy on the dataset's labels; Adam lr 3e-4, betas (0.9, 0.999), weight decay 1e-3 for VGGish-ish
(the paper's values; the official code used 1e-4) and none for Melception; stop when the validation loss
has not improved for 5 epochs (EarlyStopping in the config). The classifier's input statistics come from
the training split.

`net` is any module with `forward(inputs) -> logits [B, n_classes]`, an `n_classes` attribute and
`set_mel_statistics(mean [F], std [F])`; its inputs are the batch's `input_key`: a mel [B, 1, F, T] in
[0, 1] (`projects.specvqgan.models.VGGishish`, `shared.encoders.Melception`) or a waveform [B, T] for a net
that makes its own mel (`shared.encoders.WaveMelception`, which also has `mel(inputs)`). The statistics
come from the DataModule's `mel_statistics()` or, when it has none, from one pass over its training loader
(batches as its `on_after_batch_transfer` hands them over) through the net's `mel`, summed over all
processes so that every process standardises alike.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from shared.metrics import StageMeans


class SpectrogramClassifier(LightningModule):
    """Batch keys used: `input_key` (`mel` [B, 1, F, T] in [0, 1] by default), `label` [B]."""

    def __init__(
        self,
        net: nn.Module,
        lr: float = 3e-4,
        betas: tuple[float, float] = (0.9, 0.999),
        weight_decay: float = 1e-3,
        input_key: str = "mel",
    ):
        super().__init__()
        self.save_hyperparameters()
        self.net = net
        n_classes = net.n_classes
        self.accuracy = nn.ModuleDict(
            {s: MulticlassAccuracy(n_classes, average="micro") for s in ("val", "test")}
        )
        self.eval_means = StageMeans(["loss"])

    def setup(self, stage: str) -> None:
        # A resumed run's statistics come back with its checkpoint, which Lightning loads after setup.
        if stage == "fit":
            datamodule = self.trainer.datamodule
            if datamodule.n_classes != self.net.n_classes:
                raise ValueError(
                    f"{datamodule.dataset} has {datamodule.n_classes} classes but the classifier has "
                    f"{self.net.n_classes} outputs; set model.net.init_args.n_classes"
                )
            if hasattr(datamodule, "mel_statistics"):
                self.net.set_mel_statistics(*datamodule.mel_statistics())
            else:
                self.net.set_mel_statistics(*self._training_mel_statistics(datamodule))

    @torch.no_grad()
    def _training_mel_statistics(self, datamodule) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-mel-bin mean and std over all frames of the training loader's batches, through `net.mel`."""
        if not hasattr(self.net, "mel"):
            raise ValueError(
                f"{type(datamodule).__name__} has no mel_statistics() and {type(self.net).__name__} makes no "
                "mel of its own: the classifier cannot standardise its input"
            )
        sums = None
        for batch in datamodule.train_dataloader():
            batch = datamodule.on_after_batch_transfer(batch, 0)  # e.g. training crops cut here
            mel = self.net.mel(batch[self.hparams.input_key]).double()  # [B, 1, F, T]
            part = torch.stack(
                [torch.ones_like(mel).sum((0, 1, 3)), mel.sum((0, 1, 3)), (mel**2).sum((0, 1, 3))]
            )
            sums = part if sums is None else sums + part
        if sums is None:
            raise ValueError(f"{type(datamodule).__name__}: the training loader is empty")
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(sums)
        mean = sums[1] / sums[0]
        return mean.float(), (sums[2] / sums[0] - mean**2).clamp_min(0).sqrt().float()

    def configure_optimizers(self):
        return torch.optim.Adam(
            [p for p in self.net.parameters() if p.requires_grad],  # Melception's auxiliary head is frozen
            lr=self.hparams.lr,
            betas=self.hparams.betas,
            weight_decay=self.hparams.weight_decay,
        )

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = F.cross_entropy(self.net(batch[self.hparams.input_key]), batch["label"])
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def _evaluate(self, batch: dict, stage: str) -> None:
        logits = self.net(batch[self.hparams.input_key])
        self.eval_means.log(self, stage, {"loss": F.cross_entropy(logits, batch["label"])}, len(logits))
        self.accuracy[stage].update(logits, batch["label"])
        self.log(f"{stage}/acc", self.accuracy[stage], prog_bar=stage == "val")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "test")
