"""Logging example spectrograms to TensorBoard as pictures and as sound.

A LightningModule that wants examples logged implements `examples(batch) -> {name: mel [N, F, T]}` with
mels on its front end's compressed [0, 1] scale; this callback takes the first validation batch of every
`every_n_epochs`-th validation, and on rank 0 only writes each mel as an image (low frequencies at the
bottom) and, through Griffin-Lim, as audio.
"""

from __future__ import annotations

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger

from shared.audio import GriffinLimVocoder, MelFrontEnd


def take(batch: dict, n: int) -> dict:
    """The first n items of every tensor or list in a batch dict."""
    return {k: v[:n] for k, v in batch.items()}


class MelExampleLogger(Callback):
    def __init__(
        self, preset: str = "specvqgan", n_examples: int = 4, every_n_epochs: int = 1, audio: bool = True
    ):
        self.preset, self.n_examples, self.every_n_epochs, self.audio = (
            preset,
            n_examples,
            every_n_epochs,
            audio,
        )
        self._vocoder: GriffinLimVocoder | None = None

    def _writer(self, trainer: Trainer):
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                return logger.experiment
        return None

    @torch.no_grad()
    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs,
        batch,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if batch_idx != 0 or dataloader_idx != 0 or trainer.sanity_checking or not trainer.is_global_zero:
            return
        if trainer.current_epoch % self.every_n_epochs != 0 or not hasattr(pl_module, "examples"):
            return
        writer = self._writer(trainer)
        if writer is None:
            return
        mels = pl_module.examples(take(batch, self.n_examples))
        step = trainer.global_step
        for name, mel in mels.items():
            mel = mel.float().cpu()
            for i, m in enumerate(mel):
                writer.add_image(f"examples/{name}/{i}", m.flip(0).clamp(0, 1), step, dataformats="HW")
            if self.audio:
                if self._vocoder is None:
                    self._vocoder = GriffinLimVocoder(MelFrontEnd.from_preset(self.preset))
                waves = self._vocoder(mel)
                for i, wave in enumerate(waves):
                    writer.add_audio(f"audio/{name}/{i}", wave.unsqueeze(0), step, self._vocoder.sample_rate)
